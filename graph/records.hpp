// What the agents recorded, read back from one or many databases: per-edge
// counters summed over a time window, and which host owned which address when.
// Everything the graph is built from comes through here.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace depgraph {

// [since, until) in Unix seconds. A bucket belongs to the window when it
// starts inside it.
struct Window {
    int64_t since = std::numeric_limits<int64_t>::min();
    int64_t until = std::numeric_limits<int64_t>::max();

    bool bounded_since() const { return since != std::numeric_limits<int64_t>::min(); }
    bool bounded_until() const { return until != std::numeric_limits<int64_t>::max(); }
};

// One row of `edges` with its buckets in the window folded together.
struct EdgeRecord {
    std::string host;
    std::string direction;  // "out" or "in"
    int64_t netns = 0;
    std::string process;
    std::string cgroup;
    std::string local_addr;
    std::string remote_addr;
    int port = 0;
    bool loopback = false;
    int64_t connects = 0;
    int64_t failed = 0;
    int64_t refused = 0;
    int64_t accepts = 0;
    int64_t closes = 0;
    int64_t bytes_sent = 0;
    int64_t bytes_received = 0;
    int64_t open = 0;        // the gauge of the latest bucket in the window
    int64_t first_seen = 0;  // start of the first bucket
    int64_t last_seen = 0;   // end of the last bucket

    bool outgoing() const { return direction == "out"; }
};

struct AddressRecord {
    std::string host;
    std::string addr;
    int64_t first_seen = 0;
    int64_t last_seen = 0;
};

struct Records {
    std::vector<EdgeRecord> edges;
    std::vector<AddressRecord> addresses;
};

// Reads every database read-only. The same edge found in two databases (a
// host's own file and a merged one that contains it) is one edge: each counter
// takes the larger value, never the sum, as `depgraph merge` does per bucket.
Result<Records> load_records(const std::vector<std::string>& db_paths, const Window& window);

}  // namespace depgraph
