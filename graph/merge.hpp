// `depgraph merge`: many hosts' databases into one. Idempotent: a bucket
// already present from a copy of the same agent run (copies_of_one_another)
// keeps the larger of each counter, so merging the same database twice, or an
// overlapping one, never doubles a count; one from another run of the host is
// added. A new output appears only once complete. The per-day
// rollup (edge_days) of every day that received a bucket is then rebuilt from
// the merged buckets, so it stays their exact sum.
#pragma once

#include <string>
#include <vector>

#include "common/result.hpp"

namespace depgraph {

// What the output holds after the merge, and how much of it the merge added:
// merging the same files again adds nothing, so an operator can see it.
struct MergeSummary {
    int64_t databases = 0;
    int64_t edges = 0;
    int64_t buckets = 0;
    int64_t new_edges = 0;
    int64_t new_buckets = 0;
};

Result<MergeSummary> merge_databases(const std::string& output, const std::vector<std::string>& inputs);

}  // namespace depgraph
