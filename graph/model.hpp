// The dependency graph: nodes are (host, process) pairs, whole hosts, roles,
// or external addresses; an edge is a client calling a service on one port,
// with what was counted on it over the window.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "graph/records.hpp"

namespace depgraph {

enum class NodeKind { service, client, external };
const char* to_string(NodeKind kind);

struct Node {
    std::string id;       // unique: "host/process", "host", a role name, or the external address
    NodeKind kind = NodeKind::client;
    std::string host;     // the host, the role, or the external address
    std::string process;  // empty unless grouped by process
    std::string name;     // an external address's name in /etc/hosts, if any
    std::set<int> ports;  // ports it accepts on (those its incoming edges use)
    std::set<std::string, std::less<>> members;  // the agent hosts folded into this node (settle() fills in the host)
};

struct Traffic {
    int64_t connections = 0;  // established
    int64_t failed = 0;
    int64_t bytes_sent = 0;      // client to service
    int64_t bytes_received = 0;  // service to client
    int64_t open = 0;
    int64_t first_seen = 0;
    int64_t last_seen = 0;

    void add(const Traffic& other);
    int64_t attempts() const { return connections + failed; }
};

struct Edge {
    size_t source = 0;  // the client
    size_t target = 0;  // the service
    int port = 0;
    Traffic traffic;
    // The two hosts' halves disagreed (one agent was down or missed some):
    // the larger count was kept.
    bool disputed = false;
    // The addresses the clients dialled when NAT sent them here ("VIP:port").
    std::set<std::string> via;
};

class Graph {
public:
    Window window;
    std::vector<Node> nodes;
    std::vector<Edge> edges;

    // The node with this id, added with `kind` if it does not exist yet.
    size_t node(std::string_view id, NodeKind kind, std::string_view host, std::string_view process);
    std::optional<size_t> find(const std::string& id) const;
    // Adds traffic to the (source, target, port) edge, creating it if needed.
    // `via` is a dialled address that NAT translated, or empty.
    void connect(size_t source, size_t target, int port, const Traffic& traffic, bool disputed,
                 const std::set<std::string>& via = {});
    // Puts nodes in id order and edges in (source, target, port) order, so
    // every output is deterministic, and rebuilds the id index (the edge
    // index is rebuilt by the next connect()); a node that an edge enters
    // becomes a service with that edge's port. Node indices change.
    void settle();

private:
    // By id; std::string keys looked up by view.
    struct IdHash {
        using is_transparent = void;
        size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
    };
    std::unordered_map<std::string, size_t, IdHash, std::equal_to<>> index_;
    // By (source, target, port); only looked up, never walked, so unordered.
    struct EdgeKeyHash {
        size_t operator()(const std::tuple<size_t, size_t, int>& k) const {
            auto& [source, target, port] = k;
            return (source * 0x9e3779b97f4a7c15) ^ (target * 0xc2b2ae3d27d4eb4f) ^ static_cast<size_t>(port);
        }
    };
    std::unordered_map<std::tuple<size_t, size_t, int>, size_t, EdgeKeyHash> edge_index_;
};

}  // namespace depgraph
