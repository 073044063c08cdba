// What the user asked to leave out of the graph.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/grouping.hpp"
#include "graph/model.hpp"

namespace depgraph {

struct Filters {
    // Attempts (established + failed) per edge; an edge with a connection open
    // stays whatever its count: a pool of long-lived connections is a dependency.
    int64_t min_connections = 0;
    // Globs on host, process, host/process, an external address or its name in /etc/hosts,
    // and on the role when grouping by role.
    std::vector<std::string> excludes;
    bool no_external = false;
};

// The nodes marked in `keep` (in their order) and the edges between them.
Graph subgraph(const Graph& graph, const std::vector<bool>& keep);

// Node filters: before grouping, while processes are still visible; with
// GroupBy::role an exclude also matches the role each host will be drawn as.
Graph exclude_nodes(Graph graph, const Filters& filters, GroupBy group_by, const RoleRules& roles);
// Edge filters: after grouping, so a role's edge counts its members together.
Graph drop_small_edges(Graph graph, const Filters& filters);

}  // namespace depgraph
