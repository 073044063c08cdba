#include "tests/graph/bucket_sums.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <tuple>

#include "store/rows.hpp"

namespace depgraph::fixture {
namespace {

constexpr int kCounters = 8;  // connects .. lifetime_ns, as stored

struct BucketRow {
    int64_t edge_id, start, seconds;
    int64_t counters[kCounters - 1];  // connects, failed, refused, accepts, closes, bytes_sent, bytes_received
    int64_t lifetime_ns, open;
};

Database open(const std::string& path) {
    auto db = Database::open_read_only(path);
    if (!db) throw std::runtime_error(db.error().message);
    return std::move(*db);
}

void check(const Status& s) {
    if (!s) throw std::runtime_error(s.error().message);
}

std::vector<BucketRow> all_buckets(Database& db) {
    std::vector<BucketRow> rows;
    check(for_each_row(db,
        "SELECT edge_id, bucket_start, bucket_seconds, connects, failed, refused, accepts, closes, bytes_sent, "
        "bytes_received, lifetime_ns, open FROM edge_buckets",
        [&](const Statement& r) {
            BucketRow b{r.column_int(0), r.column_int(1), r.column_int(2), {}, r.column_int(10), r.column_int(11)};
            for (int c = 0; c < kCounters - 1; c++) b.counters[c] = r.column_int(3 + c);
            rows.push_back(b);
        }));
    return rows;
}

}  // namespace

Records sum_buckets(const std::string& path, const Window& window) {
    auto db = open(path);
    Records sums;
    auto& text = sums.text;
    std::map<int64_t, EdgeRecord> edges;
    check(for_each_row(db,
        "SELECT edge_id, host, direction, netns, process, cgroup, local_addr, remote_addr, port, loopback FROM edges",
        [&](const Statement& r) {
            edges[r.column_int(0)] = {text.intern(r.column_view(1)), text.intern(r.column_view(2)), r.column_int(3),
                                      text.intern(r.column_view(4)), text.intern(r.column_view(5)),
                                      text.intern(r.column_view(6)), text.intern(r.column_view(7)),
                                      static_cast<int>(r.column_int(8)), r.column_int(9) != 0};
        }));
    std::map<int64_t, int64_t> latest;
    for (const auto& b : all_buckets(db)) {
        if (b.start < window.since || b.start >= window.until) continue;
        auto& e = edges.at(b.edge_id);
        bool first = !latest.count(b.edge_id);
        for (auto [field, value] : {std::pair{&e.connects, b.counters[0]}, {&e.failed, b.counters[1]},
                                    {&e.refused, b.counters[2]}, {&e.accepts, b.counters[3]},
                                    {&e.closes, b.counters[4]}, {&e.bytes_sent, b.counters[5]},
                                    {&e.bytes_received, b.counters[6]}}) {
            *field += value;
        }
        e.first_seen = first ? b.start : std::min(e.first_seen, b.start);
        e.last_seen = first ? b.start + b.seconds : std::max(e.last_seen, b.start + b.seconds);
        if (first || b.start > latest[b.edge_id]) {
            latest[b.edge_id] = b.start;
            e.open = b.open;
        }
    }
    auto& out = sums.edges;
    for (auto& [id, e] : edges) {
        if (latest.count(id)) out.push_back(e);
    }
    std::sort(out.begin(), out.end(), [](const EdgeRecord& a, const EdgeRecord& b) {
        return std::tie(a.host, a.direction, a.netns, a.process, a.cgroup, a.local_addr, a.remote_addr, a.port) <
               std::tie(b.host, b.direction, b.netns, b.process, b.cgroup, b.local_addr, b.remote_addr, b.port);
    });
    return sums;
}

std::vector<std::string> days_from_buckets(const std::string& path) {
    auto db = open(path);
    struct Day {
        int64_t first = 0, last = 0, seconds = 0, open = 0;
        int64_t sums[kCounters] = {};
    };
    std::map<std::pair<int64_t, int64_t>, Day> days;
    for (const auto& b : all_buckets(db)) {
        // UTC midnight at or before the bucket's start: the fixtures' times are all positive.
        auto [it, fresh] = days.try_emplace({b.edge_id, b.start / 86400 * 86400});
        auto& d = it->second;
        if (fresh || b.start < d.first) d.first = b.start;
        if (fresh || b.start > d.last) {
            d.last = b.start;
            d.seconds = b.seconds;
            d.open = b.open;
        }
        for (int c = 0; c < kCounters - 1; c++) d.sums[c] += b.counters[c];
        d.sums[kCounters - 1] += b.lifetime_ns;
    }
    std::vector<std::string> rows;
    int64_t edge_id = 0;
    int64_t running[kCounters] = {};  // the edge's sums up to this day: the cum_* columns
    for (const auto& [key, d] : days) {
        if (rows.empty() || key.first != edge_id) std::fill(std::begin(running), std::end(running), 0);
        edge_id = key.first;
        std::string row = std::to_string(key.first) + " " + std::to_string(key.second) + " " +
                          std::to_string(d.first) + " " + std::to_string(d.last) + " " + std::to_string(d.seconds);
        for (int64_t v : d.sums) row += " " + std::to_string(v);
        row += " " + std::to_string(d.open);
        for (int c = 0; c < kCounters; c++) row += " " + std::to_string(running[c] += d.sums[c]);
        rows.push_back(row);
    }
    return rows;
}

std::vector<std::string> days_as_stored(const std::string& path) {
    auto db = open(path);
    std::vector<std::string> rows;
    check(for_each_row(db, "SELECT * FROM edge_days ORDER BY edge_id, day_start", [&](const Statement& r) {
        std::string row;
        for (int c = 0; c < 14 + kCounters; c++) row += (c ? " " : "") + std::to_string(r.column_int(c));
        rows.push_back(row);
    }));
    return rows;
}

std::vector<std::string> edge_totals_from_buckets(const std::string& path) {
    auto db = open(path);
    struct Life {
        bool any = false;
        int64_t first = 0, last = 0, seconds = 0, open = 0;
        int64_t sums[kCounters] = {};
    };
    std::map<int64_t, Life> lives;
    check(for_each_row(db, "SELECT edge_id FROM edges", [&](const Statement& r) { lives[r.column_int(0)]; }));
    for (const auto& b : all_buckets(db)) {
        auto& l = lives.at(b.edge_id);
        if (!l.any || b.start < l.first) l.first = b.start;
        if (!l.any || b.start > l.last) {
            l.last = b.start;
            l.seconds = b.seconds;
            l.open = b.open;
        }
        l.any = true;
        for (int c = 0; c < kCounters - 1; c++) l.sums[c] += b.counters[c];
        l.sums[kCounters - 1] += b.lifetime_ns;
    }
    std::vector<std::string> rows;
    for (const auto& [id, l] : lives) {
        std::string row = std::to_string(id);
        if (!l.any) {
            rows.push_back(row + " NULL");
            continue;
        }
        for (int64_t v : {l.first / 86400 * 86400, l.first, l.last / 86400 * 86400, l.last, l.seconds, l.open}) {
            row += " " + std::to_string(v);
        }
        for (int64_t v : l.sums) row += " " + std::to_string(v);
        rows.push_back(row);
    }
    return rows;
}

std::vector<std::string> edge_totals_as_stored(const std::string& path) {
    auto db = open(path);
    std::vector<std::string> rows;
    check(for_each_row(db,
        "SELECT edge_id, first_day, first_bucket, last_day, last_bucket, last_bucket_seconds, last_open, "
        "total_connects, total_failed, total_refused, total_accepts, total_closes, total_bytes_sent, "
        "total_bytes_received, total_lifetime_ns FROM edges ORDER BY edge_id",
        [&](const Statement& r) {
            std::string row = std::to_string(r.column_int(0));
            if (r.column_is_null(1)) {
                rows.push_back(row + " NULL");
                return;
            }
            for (int c = 1; c < 15; c++) row += " " + std::to_string(r.column_int(c));
            rows.push_back(row);
        }));
    return rows;
}

std::string describe(const EdgeRecord& e) {
    std::string text;
    text.append(e.host).append(" ").append(e.direction).append(" ").append(e.process).append(" ");
    text.append(e.local_addr).append("->").append(e.remote_addr).append(":").append(std::to_string(e.port));
    for (int64_t v : {e.connects, e.failed, e.refused, e.accepts, e.closes, e.bytes_sent, e.bytes_received, e.open,
                      e.first_seen, e.last_seen}) {
        text += " " + std::to_string(v);
    }
    return text;
}

}  // namespace depgraph::fixture
