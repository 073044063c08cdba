// Takes a file of the current schema back to an older one, for tests of the
// migrations and of reading older files: the columns and indexes added since
// are dropped, as a file written by an older build never had them.
#pragma once

#include <string_view>

namespace depgraph::testing {

// Schema 5 added the edges' lifetime columns and made the buckets' time index covering.
inline constexpr std::string_view kBackToSchema4 = R"sql(
ALTER TABLE edges DROP COLUMN first_day;
ALTER TABLE edges DROP COLUMN first_bucket;
ALTER TABLE edges DROP COLUMN last_day;
ALTER TABLE edges DROP COLUMN last_bucket;
ALTER TABLE edges DROP COLUMN last_bucket_seconds;
ALTER TABLE edges DROP COLUMN last_open;
ALTER TABLE edges DROP COLUMN total_connects;
ALTER TABLE edges DROP COLUMN total_failed;
ALTER TABLE edges DROP COLUMN total_refused;
ALTER TABLE edges DROP COLUMN total_accepts;
ALTER TABLE edges DROP COLUMN total_closes;
ALTER TABLE edges DROP COLUMN total_bytes_sent;
ALTER TABLE edges DROP COLUMN total_bytes_received;
ALTER TABLE edges DROP COLUMN total_lifetime_ns;
DROP INDEX edge_buckets_by_time;
CREATE INDEX edge_buckets_by_time ON edge_buckets (bucket_start);
PRAGMA user_version = 4;
)sql";

}  // namespace depgraph::testing
