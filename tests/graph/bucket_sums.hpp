// The oracle for the per-day rollup: what a window's counters and the
// edge_days rows must be, computed the slow and obvious way, from every row
// of edge_buckets, in C++ rather than SQL.
#pragma once

#include <string>
#include <vector>

#include "graph/records.hpp"

namespace depgraph::fixture {

// Each edge with a bucket starting in the window, its buckets summed; in the
// order and shape load_records returns for one database.
Records sum_buckets(const std::string& path, const Window& window);

// "edge_id day_start first_bucket last_bucket bucket_seconds counters... open cum_counters...", one per row.
std::vector<std::string> days_from_buckets(const std::string& path);
std::vector<std::string> days_as_stored(const std::string& path);

// "edge_id first_day first_bucket last_day last_bucket last_bucket_seconds last_open totals...", one per edge
// in edge_id order; "edge_id NULL" for an edge without buckets.
std::vector<std::string> edge_totals_from_buckets(const std::string& path);
std::vector<std::string> edge_totals_as_stored(const std::string& path);

// Every field, for a readable failure.
std::string describe(const EdgeRecord& e);

}  // namespace depgraph::fixture
