#include "agent/edge_store.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>

#include "common/address.hpp"
#include "store/rollup.hpp"
#include "store/rows.hpp"

namespace depgraph {

void Flush::absorb(const Flush& later) {
    now = later.now;
    for (const auto& [edge, c] : later.edges) {
        auto& mine = edges[edge];
        mine.sums += c.sums;
        mine.open = c.open;
    }
    for (const auto& [t, c] : later.translations) {
        auto& mine = translations[t];
        mine.flows += c.flows;
        mine.open = c.open;
    }
    for (const auto& [name, delta] : later.loss_deltas) loss_deltas[name] += delta;
    addresses = later.addresses;
}

Result<EdgeStore> EdgeStore::open(const std::string& path) {
    auto db = Database::open_for_write(path);
    if (!db) return db.error();
    // One agent per database: a second one would count every connection
    // again. flock, not fcntl: SQLite's own locks on the file are fcntl
    // locks, which flock leaves alone (on local file systems), and the
    // kernel drops it however the agent ends.
    UniqueFd lock(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!lock.valid()) return errno_error("cannot open database " + path, errno);
    if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) return errno_error("cannot lock database " + path, errno);
        return Error{"another depgraph-agent is already writing to " + path +
                     ": one agent per database (two would count every connection twice)"};
    }
    return EdgeStore(std::move(lock), std::move(*db));
}

Result<Written> EdgeStore::begin_run(const AgentRun& run) {
    run_ = run;
    if (auto s = record_run(); !s) return unwritten(Error{"cannot record the agent run in " + db_.path() + ": " +
                                                          s.error().message});
    run_recorded_ = true;
    return Written::yes;
}

Status EdgeStore::record_run() {
    auto stmt = db_.prepare(
        "INSERT INTO agent_runs (run_id, host, started_at, last_report_at, version, kernel, scope, netns) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    if (!stmt) return stmt.error();
    stmt->bind(1, run_.run_id).bind(2, run_.host).bind(3, run_.started_at).bind(4, run_.started_at);
    stmt->bind(5, run_.version).bind(6, run_.kernel).bind(7, run_.scope).bind(8, static_cast<int64_t>(run_.netns));
    return stmt->run();
}

Result<Written> EdgeStore::unwritten(const Error& e) {
    if (db_.busy()) return Written::busy;
    if (db_.full()) return Written::full;
    return e;
}

Result<int64_t> EdgeStore::edge_id(const EdgeIdentity& edge, const std::string& host) {
    if (auto it = edge_ids_.find(edge); it != edge_ids_.end()) return it->second;
    auto upsert = db_.prepare(
        "INSERT INTO edges (host, direction, netns, process, cgroup, local_addr, remote_addr, port, loopback, source) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (host, direction, netns, process, cgroup, local_addr, remote_addr, port) "
        "DO UPDATE SET port = excluded.port RETURNING edge_id");
    if (!upsert) return upsert.error();
    bool loopback = is_loopback_address(edge.remote_addr) || edge.local_addr == edge.remote_addr;
    upsert->bind(1, host).bind(2, edge.direction).bind(3, static_cast<int64_t>(edge.netns)).bind(4, edge.process);
    upsert->bind(5, edge.cgroup).bind(6, edge.local_addr).bind(7, edge.remote_addr);
    upsert->bind(8, static_cast<int64_t>(edge.port)).bind(9, static_cast<int64_t>(loopback)).bind(10, run_.edge_source);
    auto row = upsert->step();
    if (!row) return Error{row.error().message};
    int64_t id = upsert->column_int(0);
    if (edge_ids_.size() >= kMaxCachedEdgeIds) edge_ids_.clear();
    edge_ids_.emplace(edge, id);
    return id;
}

Result<Written> EdgeStore::write(const Flush& flush) {
    std::map<HostAddress, int64_t> present;
    auto tx = Transaction::begin(db_);
    Status s = tx ? write_rows(flush, present) : Status(tx.error());
    if (s) s = tx->commit();
    if (s) {
        run_recorded_ = true;
        address_first_seen_ = std::move(present);
        return Written::yes;
    }
    // Ids of edges inserted by a rolled-back transaction do not exist.
    edge_ids_.clear();
    // Before the rollback (the transaction's end), which resets SQLite's error code.
    return unwritten(s.error());
}

// The body of write(): SQLite keeps a failed transaction's file intact
// (a full disk included), so none of it lands unless all of it does.
Status EdgeStore::write_rows(const Flush& flush, std::map<HostAddress, int64_t>& present) {
    // Its row could not be written when it began (a full disk).
    if (!run_recorded_) {
        if (auto s = record_run(); !s) return s;
    }
    // The same counters go to the bucket and, added up, to the day's rollup.
    constexpr const char* kAddCounters =
        "connects = connects + excluded.connects, failed = failed + excluded.failed, "
        "refused = refused + excluded.refused, accepts = accepts + excluded.accepts, "
        "closes = closes + excluded.closes, bytes_sent = bytes_sent + excluded.bytes_sent, "
        "bytes_received = bytes_received + excluded.bytes_received, "
        "lifetime_ns = lifetime_ns + excluded.lifetime_ns";
    auto bucket = db_.prepare(std::string(
        "INSERT INTO edge_buckets (edge_id, bucket_start, bucket_seconds, connects, failed, refused, accepts, "
        "closes, bytes_sent, bytes_received, lifetime_ns, open) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
        "?11, ?12) ON CONFLICT (edge_id, bucket_start) DO UPDATE SET open = excluded.open, ") + kAddCounters);
    // The day's row keeps its running totals (schema 4) exact: store/rollup.hpp.
    auto day = db_.prepare(kAddBucketToDay);
    auto later_days = db_.prepare(kAddBucketToLaterDays);
    if (!bucket) return bucket.error();
    if (!day) return day.error();
    if (!later_days) return later_days.error();
    std::vector<EdgeDayRange> flushed;
    flushed.reserve(flush.edges.size());
    for (const auto& [edge, c] : flush.edges) {
        auto id = edge_id(edge, run_.host);
        if (!id) return id.error();
        flushed.push_back(EdgeDayRange::all_days_of(*id));
        for (Statement* stmt : {&*bucket, &*day, &*later_days}) {
            stmt->bind(1, *id).bind(2, flush.bucket_start).bind(3, flush.bucket_seconds);
            int col = 4;
            for (uint64_t v : {c.sums.connects, c.sums.failed, c.sums.refused, c.sums.accepts, c.sums.closes,
                               c.sums.bytes_sent, c.sums.bytes_received,
                               c.sums.lifetime_ns}) {
                stmt->bind(col++, static_cast<int64_t>(v));
            }
            stmt->bind(col, c.open);
            if (auto s = stmt->run(); !s) return s.error();
        }
    }
    // The edges' own totals (schema 5) follow their day rows.
    if (auto s = rebuild_edge_totals(db_, flushed); !s) return s.error();

    // An address keeps its row while it stays; one that comes back after a
    // gap gets a new row, so a re-used address is not joined to its old owner.
    auto extend = db_.prepare("UPDATE host_addresses SET last_seen = ?5 WHERE host = ?1 AND netns = ?2 AND addr = ?3 "
                              "AND first_seen = ?4");
    auto add = db_.prepare("INSERT OR IGNORE INTO host_addresses (host, netns, addr, first_seen, last_seen) "
                           "VALUES (?, ?, ?, ?, ?)");
    if (!extend) return extend.error();
    if (!add) return add.error();
    for (const auto& a : flush.addresses) {
        auto known = address_first_seen_.find(a);
        bool seen_before = known != address_first_seen_.end();
        int64_t first_seen = seen_before ? known->second : flush.now;
        auto& stmt = seen_before ? *extend : *add;
        stmt.bind(1, run_.host).bind(2, static_cast<int64_t>(a.netns)).bind(3, a.addr);
        stmt.bind(4, first_seen).bind(5, flush.now);
        if (auto s = stmt.run(); !s) return s.error();
        present.emplace(a, first_seen);
    }

    auto loss = db_.prepare(
        "INSERT INTO losses (run_id, bucket_start, counter, value) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (run_id, bucket_start, counter) DO UPDATE SET value = value + excluded.value");
    if (!loss) return loss.error();
    for (const auto& [name, delta] : flush.loss_deltas) {
        if (!delta) continue;
        loss->bind(1, run_.run_id).bind(2, flush.bucket_start).bind(3, name).bind(4, static_cast<int64_t>(delta));
        if (auto s = loss->run(); !s) return s.error();
    }

    auto nat = db_.prepare(
        "INSERT INTO nat_translations (host, netns, bucket_start, bucket_seconds, client_addr, nat_addr, "
        "dialled_addr, dialled_port, server_addr, server_port, flows, open) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
        "flows = flows + excluded.flows, open = excluded.open");
    if (!nat) return nat.error();
    for (const auto& [t, c] : flush.translations) {
        nat->bind(1, run_.host).bind(2, static_cast<int64_t>(t.netns)).bind(3, flush.bucket_start);
        nat->bind(4, flush.bucket_seconds).bind(5, t.client_addr).bind(6, t.nat_addr).bind(7, t.dialled_addr);
        nat->bind(8, static_cast<int64_t>(t.dialled_port)).bind(9, t.server_addr);
        nat->bind(10, static_cast<int64_t>(t.server_port)).bind(11, static_cast<int64_t>(c.flows)).bind(12, c.open);
        if (auto s = nat->run(); !s) return s.error();
    }

    auto report = db_.prepare("UPDATE agent_runs SET last_report_at = ? WHERE run_id = ?");
    if (!report) return report.error();
    report->bind(1, flush.now).bind(2, run_.run_id);
    return report->run();
}

Result<Written> EdgeStore::end_run(int64_t now) {
    auto stmt = db_.prepare("UPDATE agent_runs SET stopped_at = ?, last_report_at = ? WHERE run_id = ?");
    if (!stmt) return stmt.error();
    stmt->bind(1, now).bind(2, now).bind(3, run_.run_id);
    if (auto s = stmt->run(); !s) return unwritten(s.error());
    return Written::yes;
}

Result<std::vector<EdgeIdentity>> EdgeStore::open_edges_of_host(const std::string& host) {
    auto stmt = db_.prepare(
        "SELECT direction, netns, process, cgroup, local_addr, remote_addr, port FROM edges "
        "WHERE host = ? AND last_open > 0");
    if (!stmt) return stmt.error();
    stmt->bind(1, host);
    std::vector<EdgeIdentity> out;
    auto read = for_each_row(db_, *stmt, [&](const Statement& row) {
        out.push_back(EdgeIdentity{row.column_text(0), static_cast<uint32_t>(row.column_int(1)), row.column_text(2),
                                   row.column_text(3), row.column_text(4), row.column_text(5),
                                   static_cast<uint16_t>(row.column_int(6))});
    });
    if (!read) return read.error();
    return out;
}

}  // namespace depgraph
