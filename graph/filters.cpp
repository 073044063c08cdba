#include "graph/filters.hpp"

#include <fnmatch.h>

#include <functional>

namespace depgraph {
namespace {

// In any case, as targets are: DB-01 is db-01.
bool matches(const std::string& pattern, const std::string& text) {
    return fnmatch(pattern.c_str(), text.c_str(), FNM_CASEFOLD) == 0;
}

// `role`: the role the node is drawn in, or "" when not grouping by role.
bool excluded(const Node& n, const Filters& filters, const std::string& role) {
    if (filters.no_external && n.kind == NodeKind::external) return true;
    for (const auto& p : filters.excludes) {
        if (matches(p, n.id) || matches(p, n.host) || (!n.process.empty() && matches(p, n.process)) ||
            (!n.name.empty() && matches(p, n.name)) || (!role.empty() && matches(p, role))) {
            return true;
        }
    }
    return false;
}

// The graph with only the edges `keep` accepts, and the nodes those touch.
Graph keep_edges(const Graph& graph, const std::function<bool(const Edge&)>& keep) {
    Graph kept;
    kept.window = graph.window;
    std::vector<size_t> renumbered(graph.nodes.size(), SIZE_MAX);
    auto place = [&](size_t old) {
        if (renumbered[old] == SIZE_MAX) {
            renumbered[old] = kept.nodes.size();
            kept.nodes.push_back(graph.nodes[old]);
        }
        return renumbered[old];
    };
    for (const auto& e : graph.edges) {
        if (!keep(e)) continue;
        Edge copy = e;
        copy.source = place(e.source);
        copy.target = place(e.target);
        kept.edges.push_back(copy);
    }
    kept.settle();
    return kept;
}

}  // namespace

Graph subgraph(const Graph& graph, const std::vector<bool>& keep) {
    Graph kept;
    kept.window = graph.window;
    std::vector<size_t> renumbered(graph.nodes.size());
    for (size_t i = 0; i < graph.nodes.size(); i++) {
        if (!keep[i]) continue;
        renumbered[i] = kept.nodes.size();
        kept.nodes.push_back(graph.nodes[i]);
    }
    for (const auto& e : graph.edges) {
        if (!keep[e.source] || !keep[e.target]) continue;
        kept.edges.push_back(e);
        kept.edges.back().source = renumbered[e.source];
        kept.edges.back().target = renumbered[e.target];
    }
    kept.settle();
    return kept;
}

// A node left with no edge once its peers are gone goes too: it was only in the graph for them.
Graph exclude_nodes(Graph graph, const Filters& filters, GroupBy group_by, const RoleRules& roles) {
    // Nothing to leave out: spare the re-sorting and re-indexing (and the copy) of a fleet.
    if (filters.excludes.empty() && !filters.no_external) return graph;
    std::vector<bool> gone(graph.nodes.size());
    for (size_t i = 0; i < graph.nodes.size(); i++) {
        const auto& n = graph.nodes[i];
        // As group_graph does: an external address is in no role.
        bool in_role = group_by == GroupBy::role && n.kind != NodeKind::external;
        gone[i] = excluded(n, filters, in_role ? roles.role_of(n.host) : std::string());
    }
    return keep_edges(graph, [&](const Edge& e) { return !gone[e.source] && !gone[e.target]; });
}

Graph drop_small_edges(Graph graph, const Filters& filters) {
    if (filters.min_connections == 0) return graph;
    return keep_edges(graph, [&](const Edge& e) {
        return e.traffic.attempts() >= filters.min_connections || e.traffic.open > 0;
    });
}

}  // namespace depgraph
