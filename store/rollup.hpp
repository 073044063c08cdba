// The per-day rollup (edge_days) rebuilt from the buckets it sums. One place
// holds this SQL: the schema migration builds the rollup with it and
// `depgraph merge` rebuilds the days it touched with it, so the two cannot
// disagree about what a day row is.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "store/database.hpp"

namespace depgraph {

// Adds one bucket's counters to its day's row, as the agent writes them:
// ?1 edge_id, ?2 bucket_start, ?3 bucket_seconds, ?4..?11 connects, failed,
// refused, accepts, closes, bytes_sent, bytes_received, lifetime_ns, ?12 open.
// A new day row starts its running totals from the edge's previous day row
// (one seek back through the primary key). `WHERE true` tells SQLite's parser
// that ON CONFLICT belongs to the upsert, not to a join.
inline constexpr std::string_view kAddBucketToDay = R"sql(
INSERT INTO edge_days (edge_id, day_start, first_bucket, last_bucket, bucket_seconds, connects, failed, refused,
    accepts, closes, bytes_sent, bytes_received, lifetime_ns, open, cum_connects, cum_failed, cum_refused,
    cum_accepts, cum_closes, cum_bytes_sent, cum_bytes_received, cum_lifetime_ns)
SELECT ?1, ?2 - ?2 % 86400, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
       ?4 + coalesce(p.cum_connects, 0), ?5 + coalesce(p.cum_failed, 0), ?6 + coalesce(p.cum_refused, 0),
       ?7 + coalesce(p.cum_accepts, 0), ?8 + coalesce(p.cum_closes, 0), ?9 + coalesce(p.cum_bytes_sent, 0),
       ?10 + coalesce(p.cum_bytes_received, 0), ?11 + coalesce(p.cum_lifetime_ns, 0)
FROM (SELECT 1) LEFT JOIN (SELECT * FROM edge_days WHERE edge_id = ?1 AND day_start < ?2 - ?2 % 86400
                           ORDER BY day_start DESC LIMIT 1) p ON true
WHERE true
ON CONFLICT (edge_id, day_start) DO UPDATE SET
    first_bucket = min(first_bucket, excluded.first_bucket),
    last_bucket = max(last_bucket, excluded.last_bucket),
    bucket_seconds = CASE WHEN excluded.last_bucket >= last_bucket THEN excluded.bucket_seconds ELSE bucket_seconds END,
    open = CASE WHEN excluded.last_bucket >= last_bucket THEN excluded.open ELSE open END,
    connects = connects + excluded.connects, failed = failed + excluded.failed, refused = refused + excluded.refused,
    accepts = accepts + excluded.accepts, closes = closes + excluded.closes,
    bytes_sent = bytes_sent + excluded.bytes_sent, bytes_received = bytes_received + excluded.bytes_received,
    lifetime_ns = lifetime_ns + excluded.lifetime_ns,
    cum_connects = cum_connects + excluded.connects, cum_failed = cum_failed + excluded.failed,
    cum_refused = cum_refused + excluded.refused, cum_accepts = cum_accepts + excluded.accepts,
    cum_closes = cum_closes + excluded.closes, cum_bytes_sent = cum_bytes_sent + excluded.bytes_sent,
    cum_bytes_received = cum_bytes_received + excluded.bytes_received,
    cum_lifetime_ns = cum_lifetime_ns + excluded.lifetime_ns
)sql";

// Run after kAddBucketToDay, with the same parameters: a bucket written
// behind a later day (the clock stepped back) is in that day's running
// totals too. Normally no row matches, and that costs one seek. ?3 and ?12
// appear only so that one set of bindings serves both statements.
inline constexpr std::string_view kAddBucketToLaterDays = R"sql(
UPDATE edge_days
SET cum_connects = cum_connects + ?4, cum_failed = cum_failed + ?5, cum_refused = cum_refused + ?6,
    cum_accepts = cum_accepts + ?7, cum_closes = cum_closes + ?8, cum_bytes_sent = cum_bytes_sent + ?9,
    cum_bytes_received = cum_bytes_received + ?10, cum_lifetime_ns = cum_lifetime_ns + ?11
WHERE edge_id = ?1 AND day_start > ?2 - ?2 % 86400 AND ?3 + ?12 IS NOT NULL
)sql";

// Edges [first_edge, last_edge], their days from `since_day` (a day_start) on.
struct EdgeDayRange {
    int64_t first_edge = std::numeric_limits<int64_t>::min();
    int64_t last_edge = std::numeric_limits<int64_t>::max();
    int64_t since_day = std::numeric_limits<int64_t>::min();

    static EdgeDayRange edge_from(int64_t edge_id, int64_t since_day) { return {edge_id, edge_id, since_day}; }
    static EdgeDayRange all_days_of(int64_t edge_id) { return {edge_id, edge_id}; }
};

// Rewrites the day rows of each range as the sums of their buckets, then
// their cumulative columns (rebuild_edge_cums). A day with no bucket left is
// not deleted: buckets are never deleted either.
Status rebuild_edge_days(Database& db, std::span<const EdgeDayRange> ranges);

// Recomputes the cum_* columns of each range's day rows from the day rows
// themselves: each is that edge's sum over all its days up to this one; then
// the edges' totals (rebuild_edge_totals).
Status rebuild_edge_cums(Database& db, std::span<const EdgeDayRange> ranges);

// Sets the lifetime columns of each range's edges (first_day .. total_*,
// schema 5) from their first and last day rows. Whatever wrote the day rows
// runs this after: the agent for the edges of each flush, merge and the
// migration through the two above. Only the ranges' edges count, not their
// since_day: an edge's totals are its last day's.
Status rebuild_edge_totals(Database& db, std::span<const EdgeDayRange> ranges);

}  // namespace depgraph
