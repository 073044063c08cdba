#include "graph/model.hpp"

#include <algorithm>
#include <tuple>

namespace depgraph {

const char* to_string(NodeKind kind) {
    switch (kind) {
        case NodeKind::service: return "service";
        case NodeKind::client: return "client";
        case NodeKind::external: return "external";
    }
    return "client";
}

void Traffic::add(const Traffic& other) {
    bool had_any = first_seen != 0 || last_seen != 0;
    connections += other.connections;
    failed += other.failed;
    bytes_sent += other.bytes_sent;
    bytes_received += other.bytes_received;
    open += other.open;
    first_seen = had_any ? std::min(first_seen, other.first_seen) : other.first_seen;
    last_seen = std::max(last_seen, other.last_seen);
}

size_t Graph::node(std::string_view id, NodeKind kind, std::string_view host, std::string_view process) {
    if (auto it = index_.find(id); it != index_.end()) return it->second;
    index_.emplace(id, nodes.size());
    Node n;
    n.id = id;
    n.kind = kind;
    n.host = host;
    n.process = process;
    nodes.push_back(std::move(n));
    return nodes.size() - 1;
}

std::optional<size_t> Graph::find(const std::string& id) const {
    auto it = index_.find(id);
    if (it == index_.end()) return std::nullopt;
    return it->second;
}

void Graph::connect(size_t source, size_t target, int port, const Traffic& traffic, bool disputed,
                    const std::set<std::string>& via) {
    if (edge_index_.empty()) {
        for (size_t i = 0; i < edges.size(); i++) edge_index_[{edges[i].source, edges[i].target, edges[i].port}] = i;
    }
    auto [it, inserted] = edge_index_.try_emplace({source, target, port}, edges.size());
    if (inserted) {
        edges.push_back({source, target, port, traffic, disputed, via});
        return;
    }
    auto& e = edges[it->second];
    e.traffic.add(traffic);
    e.disputed = e.disputed || disputed;
    e.via.insert(via.begin(), via.end());
}

void Graph::settle() {
    std::vector<size_t> order(nodes.size());
    for (size_t i = 0; i < order.size(); i++) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return nodes[a].id < nodes[b].id; });
    std::vector<size_t> renumbered(nodes.size());
    std::vector<Node> sorted;
    sorted.reserve(nodes.size());
    for (size_t i : order) {
        renumbered[i] = sorted.size();
        sorted.push_back(std::move(nodes[i]));
    }
    nodes = std::move(sorted);
    for (auto& e : edges) {
        e.source = renumbered[e.source];
        e.target = renumbered[e.target];
    }
    std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) {
        return std::tie(a.source, a.target, a.port) < std::tie(b.source, b.target, b.port);
    });
    index_.clear();
    // Rebuilt by the next connect(), if any: most settled graphs are only read.
    edge_index_.clear();
    for (size_t i = 0; i < nodes.size(); i++) {
        index_[nodes[i].id] = i;
        if (nodes[i].members.empty() && nodes[i].kind != NodeKind::external) nodes[i].members.insert(nodes[i].host);
        // A node's ports are those of the edges it has now: a filter that
        // took a port's edges away takes the port off its label too.
        nodes[i].ports.clear();
    }
    for (const auto& e : edges) {
        auto& target = nodes[e.target];
        target.ports.insert(e.port);
        if (target.kind != NodeKind::external) target.kind = NodeKind::service;
    }
}

}  // namespace depgraph
