#include "graph/join.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace depgraph {
namespace {

// The agent stamps addresses at its flushes and edges at bucket bounds, so
// the two disagree by up to a flush interval.
constexpr int64_t kOwnershipSlack = 300;

Traffic client_side(const EdgeRecord& e) {
    return {e.connects, e.failed, e.bytes_sent, e.bytes_received, e.open, e.first_seen, e.last_seen};
}

// The service's record, turned to the client's point of view.
Traffic service_side(const EdgeRecord& e) {
    return {e.accepts, 0, e.bytes_received, e.bytes_sent, e.open, e.first_seen, e.last_seen};
}

std::set<std::string> vias(const EdgeRecord& e) {
    if (e.via.empty()) return {};
    return {std::string(e.via)};
}

// Both halves of the connections from one client host to one service host on one port.
struct Bundle {
    std::vector<const EdgeRecord*> outgoing;
    std::vector<const EdgeRecord*> incoming;
    // An outgoing half also belongs to another service host (its address
    // changed owner within the window): only the services' counts can tell
    // the two apart.
    bool shared = false;
};
using BundleKey = std::tuple<std::string_view, std::string_view, int>;  // client host, service host, port
using HostPort = std::pair<std::string_view, int>;

// The join's keys are views of the records' text, hashed by content. The
// graph comes out in its own order (Graph::settle), whatever order the
// bundles are joined in: no two bundles make the same edge.
struct KeyHash {
    static size_t mix(size_t seed, size_t h) { return seed ^ (h + 0x9e3779b97f4a7c15 + (seed << 6) + (seed >> 2)); }
    size_t operator()(const HostPort& k) const {
        return mix(std::hash<std::string_view>{}(k.first), std::hash<int>{}(k.second));
    }
    size_t operator()(const BundleKey& k) const {
        auto& [client, service, port] = k;
        return mix(operator()(HostPort{client, port}), std::hash<std::string_view>{}(service));
    }
};

class Joiner {
public:
    Joiner(const Records& records, Graph& graph) : records_(records), book_(records.addresses), graph_(graph) {
        bundles_.reserve(records.edges.size());  // at most one per record: never rehashed
        for (const auto& e : records.edges) {
            if (!e.outgoing()) listeners_[{e.host, e.port}][e.process] += e.accepts + 1;
        }
    }

    // Incoming halves first, so that an outgoing half whose address had two
    // owners in the window can go to the ones that saw it arrive.
    void run() {
        for (const auto& e : records_.edges) {
            if (!e.outgoing()) place_incoming(e);
        }
        for (const auto& e : records_.edges) {
            if (e.outgoing()) place_outgoing(e);
        }
        for (const auto& [key, bundle] : bundles_) join(key, bundle);
    }

private:
    // The node of a host's process. Most calls find it already there: its id
    // is built in one reused buffer, not a new string each time.
    size_t process_node(std::string_view host, std::string_view process, NodeKind kind) {
        id_.assign(host).append("/").append(process);
        return graph_.node(id_, kind, host, process);
    }

    // The hosts at the far end of a half: itself for loopback or its own address.
    std::set<std::string_view> far_hosts(const EdgeRecord& e) const {
        if (e.loopback || book_.owned_by(e.remote_addr, e.host)) return {e.host};
        auto owners = book_.owners(e.remote_addr, e.first_seen - kOwnershipSlack, e.last_seen + kOwnershipSlack);
        owners.erase(e.host);
        return owners;
    }

    void place_outgoing(const EdgeRecord& e) {
        auto servers = far_hosts(e);
        if (servers.empty()) {
            size_t client = process_node(e.host, e.process, NodeKind::client);
            size_t external = graph_.node(e.remote_addr, NodeKind::external, e.remote_addr, "");
            graph_.connect(client, external, e.port, client_side(e), false, vias(e));
            return;
        }
        if (servers.size() > 1) {
            std::set<std::string_view> answered;
            for (const auto& server : servers) {
                auto it = bundles_.find({e.host, server, e.port});
                if (it != bundles_.end() && !it->second.incoming.empty()) answered.insert(server);
            }
            if (!answered.empty()) servers = answered;
        }
        for (const auto& server : servers) {
            auto& bundle = bundles_[{e.host, server, e.port}];
            bundle.outgoing.push_back(&e);
            bundle.shared = bundle.shared || servers.size() > 1;
        }
    }

    void place_incoming(const EdgeRecord& e) {
        auto clients = far_hosts(e);
        if (clients.empty()) {
            size_t external = graph_.node(e.remote_addr, NodeKind::external, e.remote_addr, "");
            size_t service = process_node(e.host, e.process, NodeKind::service);
            graph_.connect(external, service, e.port, service_side(e), false);
            return;
        }
        for (const auto& client : clients) bundles_[{client, e.host, e.port}].incoming.push_back(&e);
    }

    // The process serving a port on a host: the one that accepted most there,
    // whichever client it was (a SNAT'd client's half names another address).
    std::string_view service_process(std::string_view host, int port, const Bundle& bundle) const {
        std::map<std::string_view, int64_t> accepted;
        for (const auto* in : bundle.incoming) accepted[in->process] += in->accepts + 1;
        if (accepted.empty()) {
            auto it = listeners_.find({host, port});
            if (it == listeners_.end()) return kUnknownProcess;
            accepted = it->second;
        }
        return std::max_element(accepted.begin(), accepted.end(),
                                [](const auto& a, const auto& b) { return a.second < b.second; })
            ->first;
    }

    void join(const BundleKey& key, const Bundle& bundle) {
        const auto& [client_host, service_host, port] = key;
        auto process = service_process(service_host, port, bundle);
        size_t service = process_node(service_host, process, NodeKind::service);

        Traffic seen_by_service;
        for (const auto* in : bundle.incoming) seen_by_service.add(service_side(*in));
        if (bundle.outgoing.empty()) {
            size_t client = process_node(client_host, kUnknownProcess, NodeKind::client);
            graph_.connect(client, service, port, seen_by_service, true);
            return;
        }
        std::map<std::string_view, Traffic> by_process;
        std::map<std::string_view, std::set<std::string>> via_by_process;
        Traffic seen_by_clients;
        for (const auto* out : bundle.outgoing) {
            by_process[out->process].add(client_side(*out));
            if (!out->via.empty()) via_by_process[out->process].emplace(out->via);
            seen_by_clients.add(client_side(*out));
        }
        if (bundle.shared) {
            by_process = {{by_process.begin()->first, seen_by_service}};
            seen_by_clients = seen_by_service;
        }
        bool disputed = seen_by_service.connections != seen_by_clients.connections;
        // Keep the larger count: what the clients missed goes to their busiest process.
        auto& top = std::max_element(by_process.begin(), by_process.end(), [](const auto& a, const auto& b) {
                        return a.second.connections < b.second.connections;
                    })->second;
        top.connections += std::max<int64_t>(0, seen_by_service.connections - seen_by_clients.connections);
        top.bytes_sent += std::max<int64_t>(0, seen_by_service.bytes_sent - seen_by_clients.bytes_sent);
        top.bytes_received += std::max<int64_t>(0, seen_by_service.bytes_received - seen_by_clients.bytes_received);
        for (const auto& [name, traffic] : by_process) {
            size_t client = process_node(client_host, name, NodeKind::client);
            graph_.connect(client, service, port, traffic, disputed, via_by_process[name]);
        }
    }

    const Records& records_;
    AddressBook book_;
    Graph& graph_;
    // A name's accepts on each (host, port): ordered, so that a tie goes to the first name.
    std::unordered_map<HostPort, std::map<std::string_view, int64_t>, KeyHash> listeners_;
    std::unordered_map<BundleKey, Bundle, KeyHash> bundles_;
    std::string id_;  // process_node's buffer
};

}  // namespace

AddressBook::AddressBook(const std::vector<AddressRecord>& addresses) {
    for (const auto& a : addresses) by_addr_[a.addr].push_back(a);
}

const std::vector<AddressRecord>& AddressBook::records_of(std::string_view addr) const {
    static const std::vector<AddressRecord> kNone;
    auto it = by_addr_.find(addr);
    return it == by_addr_.end() ? kNone : it->second;
}

std::set<std::string_view> AddressBook::owners(std::string_view addr, int64_t from, int64_t to) const {
    std::set<std::string_view> hosts;
    for (const auto& a : records_of(addr)) {
        if (a.first_seen <= to && a.last_seen >= from) hosts.insert(a.host);
    }
    return hosts;
}

std::set<std::string_view> AddressBook::owners(std::string_view addr) const {
    std::set<std::string_view> hosts;
    for (const auto& a : records_of(addr)) hosts.insert(a.host);
    return hosts;
}

bool AddressBook::owned_by(std::string_view addr, std::string_view host) const {
    const auto& records = records_of(addr);
    return std::any_of(records.begin(), records.end(), [&](const AddressRecord& a) { return a.host == host; });
}

Graph build_graph(const Records& records, const Window& window) {
    Graph graph;
    graph.window = window;
    // Each edge of the graph has at least one record: no edge moves as they are added.
    graph.edges.reserve(records.edges.size());
    Joiner(records, graph).run();
    graph.settle();
    return graph;
}

}  // namespace depgraph
