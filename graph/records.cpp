#include "graph/records.hpp"

#include <algorithm>
#include <map>
#include <tuple>

#include "graph/rows.hpp"

namespace depgraph {
namespace {

// `open` is a gauge, so it comes from the latest bucket rather than a sum.
// CROSS JOIN fixes the loop order: edges outside, buckets through their
// primary key inside, already grouped. Left to itself the planner takes the
// time index and sorts a month of buckets in a temporary B-tree, 10x slower.
constexpr std::string_view kEdgesInWindow = R"sql(
SELECT e.host, e.direction, e.netns, e.process, e.cgroup, e.local_addr, e.remote_addr, e.port, e.loopback,
       sum(b.connects), sum(b.failed), sum(b.refused), sum(b.accepts), sum(b.closes),
       sum(b.bytes_sent), sum(b.bytes_received),
       min(b.bucket_start), max(b.bucket_start + b.bucket_seconds),
       (SELECT l.open FROM edge_buckets l
         WHERE l.edge_id = e.edge_id AND l.bucket_start >= ?1 AND l.bucket_start < ?2
         ORDER BY l.bucket_start DESC LIMIT 1)
FROM edges e CROSS JOIN edge_buckets b ON b.edge_id = e.edge_id
WHERE b.bucket_start >= ?1 AND b.bucket_start < ?2
GROUP BY e.edge_id
)sql";

constexpr std::string_view kAddresses =
    "SELECT host, addr, min(first_seen), max(last_seen) FROM host_addresses GROUP BY host, addr, first_seen";

// The columns of the edges table's UNIQUE constraint, by reference.
auto identity_of(const EdgeRecord& e) {
    return std::tie(e.host, e.direction, e.netns, e.process, e.cgroup, e.local_addr, e.remote_addr, e.port);
}
using EdgeColumns = std::tuple<std::string, std::string, int64_t, std::string, std::string, std::string,
                                std::string, int>;

void fold_duplicate(EdgeRecord& kept, const EdgeRecord& other) {
    if (other.last_seen > kept.last_seen) kept.open = other.open;
    kept.connects = std::max(kept.connects, other.connects);
    kept.failed = std::max(kept.failed, other.failed);
    kept.refused = std::max(kept.refused, other.refused);
    kept.accepts = std::max(kept.accepts, other.accepts);
    kept.closes = std::max(kept.closes, other.closes);
    kept.bytes_sent = std::max(kept.bytes_sent, other.bytes_sent);
    kept.bytes_received = std::max(kept.bytes_received, other.bytes_received);
    kept.first_seen = std::min(kept.first_seen, other.first_seen);
    kept.last_seen = std::max(kept.last_seen, other.last_seen);
}

Status read_edges(Database& db, const Window& window, std::vector<EdgeRecord>& out) {
    auto stmt = db.prepare(kEdgesInWindow);
    if (!stmt) return stmt.error();
    stmt->bind(1, window.since).bind(2, window.until);
    return for_each_row(db, *stmt, [&](const Statement& row) {
        EdgeRecord e;
        e.host = row.column_text(0);
        e.direction = row.column_text(1);
        e.netns = row.column_int(2);
        e.process = row.column_text(3);
        e.cgroup = row.column_text(4);
        e.local_addr = row.column_text(5);
        e.remote_addr = row.column_text(6);
        e.port = static_cast<int>(row.column_int(7));
        e.loopback = row.column_int(8) != 0;
        e.connects = row.column_int(9);
        e.failed = row.column_int(10);
        e.refused = row.column_int(11);
        e.accepts = row.column_int(12);
        e.closes = row.column_int(13);
        e.bytes_sent = row.column_int(14);
        e.bytes_received = row.column_int(15);
        e.first_seen = row.column_int(16);
        e.last_seen = row.column_int(17);
        e.open = row.column_int(18);
        out.push_back(std::move(e));
    });
}

Status read_addresses(Database& db, std::vector<AddressRecord>& out) {
    return for_each_row(db, kAddresses, [&](const Statement& row) {
        out.push_back({row.column_text(0), row.column_text(1), row.column_int(2), row.column_int(3)});
    });
}

}  // namespace

Result<Records> load_records(const std::vector<std::string>& db_paths, const Window& window) {
    std::vector<EdgeRecord> all;
    Records records;
    for (const auto& path : db_paths) {
        auto db = Database::open_read_only(path);
        if (!db) return db.error();
        if (auto s = read_edges(*db, window, all); !s) return s.error();
        if (auto s = read_addresses(*db, records.addresses); !s) return s.error();
    }
    std::map<EdgeColumns, size_t> seen;
    for (auto& e : all) {
        auto [it, inserted] = seen.try_emplace(identity_of(e), records.edges.size());
        if (inserted) {
            records.edges.push_back(std::move(e));
        } else {
            fold_duplicate(records.edges[it->second], e);
        }
    }
    std::sort(records.edges.begin(), records.edges.end(),
              [](const EdgeRecord& a, const EdgeRecord& b) { return identity_of(a) < identity_of(b); });
    return records;
}

}  // namespace depgraph
