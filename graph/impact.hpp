// "If I touch this, who depends on it?" (impact) and its mirror, "what does
// this depend on?" (deps): a breadth-first walk along edges, each node listed
// once at its shortest depth, so cycles end.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "graph/grouping.hpp"
#include "graph/join.hpp"
#include "graph/model.hpp"

namespace depgraph {

// The nodes a TARGET names, and the port it singled out, if any.
struct Target {
    std::vector<size_t> nodes;
    std::optional<int> port;
};

// TARGET is HOST, HOST:PORT, HOST/PROCESS, ADDRESS, ADDRESS:PORT or a role
// (or a node id of a grouped graph). Unknown: an error naming the closest matches.
Result<Target> resolve_target(const Graph& graph, const std::string& text, const AddressBook& book,
                              const RoleRules& roles);

enum class Direction { dependents, dependencies };

struct Reached {
    size_t node = 0;
    int depth = 0;
    // Every edge it was reached through (to or from a node one level closer),
    // the busiest first: the best evidence. A client of two replicas depends on both.
    std::vector<size_t> edges;
    // Every way here passes through an address no agent reports for: what
    // runs there is unknown, so its callers may use another program of it
    // than the one that calls on towards the target.
    bool through_external = false;
};

// depth_limit 0: no limit. With a port, only the first hop is limited to it.
std::vector<Reached> walk(const Graph& graph, const Target& target, Direction direction, int depth_limit);

}  // namespace depgraph
