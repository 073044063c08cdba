#include "tests/graph/fixture_db.hpp"

#include <algorithm>
#include <stdexcept>

#include "store/rollup.hpp"
#include "store/rows.hpp"

namespace depgraph::fixture {
namespace {

Database open_or_throw(const std::string& path) {
    auto db = Database::open_for_write(path);
    if (!db) throw std::runtime_error(db.error().message);
    return std::move(*db);
}

Statement prepare_or_throw(Database& db, std::string_view sql) {
    auto stmt = db.prepare(sql);
    if (!stmt) throw std::runtime_error(stmt.error().message);
    return std::move(*stmt);
}

void run_or_throw(Statement& stmt) {
    if (auto s = stmt.run(); !s) throw std::runtime_error(s.error().message);
}

}  // namespace

HostDb::HostDb(const std::string& path, std::string host)
    : db_(open_or_throw(path)), host_(std::move(host)), statements_(8) {}

Statement& HostDb::statement(int which, std::string_view sql) {
    auto& slot = statements_[static_cast<size_t>(which)];
    if (!slot) slot.emplace(prepare_or_throw(db_, sql));
    return *slot;
}

void HostDb::run(const std::string& run_id, int64_t started, int64_t stopped, int64_t last_report, int64_t netns) {
    auto& stmt = statement(0,
        "INSERT INTO agent_runs (run_id, host, started_at, stopped_at, last_report_at, version, kernel, scope, netns) "
        "VALUES (?, ?, ?, ?, ?, '0.1.0', '6.1.0', 'netns', ?)");
    stmt.bind(1, run_id).bind(2, host_).bind(3, started).bind(5, last_report).bind(6, netns);
    if (stopped == 0) {
        stmt.bind_null(4);
    } else {
        stmt.bind(4, stopped);
    }
    run_or_throw(stmt);
}

void HostDb::address(const std::string& addr, int64_t first_seen, int64_t last_seen, int64_t netns) {
    auto& stmt = statement(1,
        "INSERT INTO host_addresses (host, netns, addr, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)");
    stmt.bind(1, host_).bind(2, netns).bind(3, addr).bind(4, first_seen).bind(5, last_seen);
    run_or_throw(stmt);
}

int64_t HostDb::edge(const std::string& direction, const std::string& process, const std::string& local_addr,
                     const std::string& remote_addr, int port, bool loopback, const std::string& cgroup,
                     int64_t netns) {
    auto& stmt = statement(2,
        "INSERT INTO edges (host, direction, netns, process, cgroup, local_addr, remote_addr, port, loopback, source) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'ebpf')");
    stmt.bind(1, host_).bind(2, direction).bind(3, netns).bind(4, process).bind(5, cgroup);
    stmt.bind(6, local_addr).bind(7, remote_addr).bind(8, port).bind(9, loopback ? 1 : 0);
    run_or_throw(stmt);
    return sqlite3_last_insert_rowid(db_.handle());
}

void HostDb::bucket(int64_t edge_id, int64_t bucket_start, const Bucket& c, int64_t bucket_seconds) {
    auto& bucket = statement(3,
        "INSERT INTO edge_buckets (edge_id, bucket_start, bucket_seconds, connects, failed, refused, accepts, "
        "closes, bytes_sent, bytes_received, lifetime_ns, open) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
        "?12)");
    // The agent's own statements: the day rows and their running totals as it writes them.
    auto& day = statement(5, kAddBucketToDay);
    auto& later_days = statement(6, kAddBucketToLaterDays);
    for (Statement* stmt : {&bucket, &day, &later_days}) {
        stmt->bind(1, edge_id).bind(2, bucket_start).bind(3, bucket_seconds).bind(4, c.connects).bind(5, c.failed);
        stmt->bind(6, c.refused).bind(7, c.accepts).bind(8, c.closes).bind(9, c.bytes_sent);
        stmt->bind(10, c.bytes_received).bind(11, int64_t{0}).bind(12, c.open);
        run_or_throw(*stmt);
    }
    // The edge's totals (schema 5), as the agent refreshes them after each
    // flush: here after each bucket, or at commit() inside a transaction.
    touched_.insert(edge_id);
    if (sqlite3_get_autocommit(db_.handle())) refresh_totals();
}

void HostDb::refresh_totals() {
    std::vector<EdgeDayRange> ranges;
    for (int64_t id : touched_) ranges.push_back(EdgeDayRange::all_days_of(id));
    touched_.clear();
    if (auto s = rebuild_edge_totals(db_, ranges); !s) throw std::runtime_error(s.error().message);
}

void HostDb::loss(const std::string& run_id, int64_t bucket_start, const std::string& counter, int64_t value) {
    auto& stmt = statement(4,
        "INSERT INTO losses (run_id, bucket_start, counter, value) VALUES (?, ?, ?, ?)");
    stmt.bind(1, run_id).bind(2, bucket_start).bind(3, counter).bind(4, value);
    run_or_throw(stmt);
}

void HostDb::translation(int64_t bucket_start, const std::string& client, const std::string& nat,
                         const std::string& dialled, const std::string& server, int port, int64_t flows,
                         int64_t open) {
    auto& stmt = statement(7,
        "INSERT INTO nat_translations (host, netns, bucket_start, bucket_seconds, client_addr, nat_addr, "
        "dialled_addr, dialled_port, server_addr, server_port, flows, open) VALUES (?, ?, ?, 60, ?, ?, ?, ?, ?, ?, ?, ?)");
    stmt.bind(1, host_).bind(2, kRootNetns).bind(3, bucket_start).bind(4, client).bind(5, nat).bind(6, dialled);
    stmt.bind(7, int64_t{port}).bind(8, server).bind(9, int64_t{port}).bind(10, flows).bind(11, open);
    run_or_throw(stmt);
}

void HostDb::begin() {
    if (auto s = db_.exec("BEGIN"); !s) throw std::runtime_error(s.error().message);
}

void HostDb::commit() {
    refresh_totals();
    if (auto s = db_.exec("COMMIT"); !s) throw std::runtime_error(s.error().message);
}

std::vector<std::string> table_rows(const std::string& path, const std::string& table) {
    auto db = Database::open_read_only(path);
    if (!db) throw std::runtime_error(db.error().message);
    // The column names first, to quote each column in SQL: quote() keeps NULL apart from 'NULL' and 0 from '0'.
    std::string columns;
    auto s = for_each_row(*db, "SELECT name FROM pragma_table_info('" + table + "')", [&](const Statement& row) {
        columns += (columns.empty() ? "quote(" : " || ' ' || quote(") + row.column_text(0) + ")";
    });
    if (!s || columns.empty()) throw std::runtime_error("cannot read the columns of " + table + " in " + path);
    std::vector<std::string> rows;
    s = for_each_row(*db, "SELECT " + columns + " FROM " + table,
                     [&](const Statement& row) { rows.push_back(row.column_text(0)); });
    if (!s) throw std::runtime_error(s.error().message);
    std::sort(rows.begin(), rows.end());
    return rows;
}

}  // namespace depgraph::fixture
