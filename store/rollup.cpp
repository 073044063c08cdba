#include "store/rollup.hpp"

namespace depgraph {
namespace {

// A day's row: its buckets summed; the gauge and the length (which the
// reader adds to last_bucket for last_seen) are the last bucket's. The cums
// are left at 0 for rebuild_edge_cums, which needs every day row in place.
// The day of a bucket is `t - t % 86400` (day 0 also holds (-86400, 0)), so
// the first bound only narrows the scan and the second one decides.
constexpr std::string_view kRebuildDays = R"sql(
INSERT OR REPLACE INTO edge_days (edge_id, day_start, first_bucket, last_bucket, bucket_seconds, connects, failed,
    refused, accepts, closes, bytes_sent, bytes_received, lifetime_ns, open, cum_connects, cum_failed, cum_refused,
    cum_accepts, cum_closes, cum_bytes_sent, cum_bytes_received, cum_lifetime_ns)
SELECT d.edge_id, d.day_start, d.first_bucket, d.last_bucket, l.bucket_seconds, d.connects, d.failed, d.refused,
       d.accepts, d.closes, d.bytes_sent, d.bytes_received, d.lifetime_ns, l.open, 0, 0, 0, 0, 0, 0, 0, 0
FROM (SELECT edge_id, bucket_start - bucket_start % 86400 AS day_start, min(bucket_start) AS first_bucket,
             max(bucket_start) AS last_bucket, sum(connects) AS connects, sum(failed) AS failed,
             sum(refused) AS refused, sum(accepts) AS accepts, sum(closes) AS closes, sum(bytes_sent) AS bytes_sent,
             sum(bytes_received) AS bytes_received, sum(lifetime_ns) AS lifetime_ns
      FROM edge_buckets
      WHERE edge_id BETWEEN ?1 AND ?2 AND bucket_start > ?3 - 86400 AND bucket_start - bucket_start % 86400 >= ?3
      GROUP BY edge_id, day_start) d
JOIN edge_buckets l ON l.edge_id = d.edge_id AND l.bucket_start = d.last_bucket
)sql";

// The running sums need every day of the edge, also those before the range,
// but only the range's rows change.
constexpr std::string_view kRebuildCums = R"sql(
UPDATE edge_days
SET cum_connects = c.connects, cum_failed = c.failed, cum_refused = c.refused, cum_accepts = c.accepts,
    cum_closes = c.closes, cum_bytes_sent = c.bytes_sent, cum_bytes_received = c.bytes_received,
    cum_lifetime_ns = c.lifetime_ns
FROM (SELECT edge_id, day_start, sum(connects) OVER w AS connects, sum(failed) OVER w AS failed,
             sum(refused) OVER w AS refused, sum(accepts) OVER w AS accepts, sum(closes) OVER w AS closes,
             sum(bytes_sent) OVER w AS bytes_sent, sum(bytes_received) OVER w AS bytes_received,
             sum(lifetime_ns) OVER w AS lifetime_ns
      FROM edge_days
      WHERE edge_id BETWEEN ?1 AND ?2
      WINDOW w AS (PARTITION BY edge_id ORDER BY day_start ROWS UNBOUNDED PRECEDING)) c
WHERE edge_days.edge_id = c.edge_id AND edge_days.day_start = c.day_start AND c.day_start >= ?3
)sql";

// An edge's row takes its first day's start and its last day's end, gauge
// and running totals (schema 5); NULLs while it has no day row. Two seeks
// per edge through the primary key. ?3, the range's since_day, does not
// matter here; it is named so that run_over's bindings all land.
constexpr std::string_view kRebuildTotals = R"sql(
UPDATE edges
SET (first_day, first_bucket) = (SELECT day_start, first_bucket FROM edge_days WHERE edge_id = edges.edge_id
                                 ORDER BY day_start LIMIT 1),
    (last_day, last_bucket, last_bucket_seconds, last_open, total_connects, total_failed, total_refused,
     total_accepts, total_closes, total_bytes_sent, total_bytes_received, total_lifetime_ns) =
        (SELECT day_start, last_bucket, bucket_seconds, open, cum_connects, cum_failed, cum_refused, cum_accepts,
                cum_closes, cum_bytes_sent, cum_bytes_received, cum_lifetime_ns
         FROM edge_days WHERE edge_id = edges.edge_id ORDER BY day_start DESC LIMIT 1)
WHERE edge_id BETWEEN ?1 AND ?2 AND ?3 IS NOT NULL
)sql";

// Prepared once: merge rebuilds one range per edge, tens of thousands.
Status run_over(Database& db, std::string_view sql, std::span<const EdgeDayRange> ranges) {
    auto stmt = db.prepare(sql);
    if (!stmt) return stmt.error();
    for (const auto& range : ranges) {
        stmt->bind(1, range.first_edge).bind(2, range.last_edge).bind(3, range.since_day);
        if (auto s = stmt->run(); !s) {
            return Error{"cannot rebuild the per-day rollup of " + db.path() + ": " + s.error().message};
        }
    }
    return ok_status();
}

}  // namespace

Status rebuild_edge_days(Database& db, std::span<const EdgeDayRange> ranges) {
    if (auto s = run_over(db, kRebuildDays, ranges); !s) return s;
    return rebuild_edge_cums(db, ranges);
}

Status rebuild_edge_cums(Database& db, std::span<const EdgeDayRange> ranges) {
    if (auto s = run_over(db, kRebuildCums, ranges); !s) return s;
    return rebuild_edge_totals(db, ranges);
}

Status rebuild_edge_totals(Database& db, std::span<const EdgeDayRange> ranges) {
    return run_over(db, kRebuildTotals, ranges);
}

}  // namespace depgraph
