#include "graph/join.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <numeric>
#include <span>
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

const std::set<std::string> kNoVia;  // a call that NAT did not translate

std::set<std::string> vias(const EdgeRecord& e) {
    if (e.via.empty()) return {};
    return {std::string(e.via)};
}

// Both halves of the connections from one client host to one service
// address and port on a host.
struct Bundle {
    std::span<const EdgeRecord* const> outgoing;
    std::span<const EdgeRecord* const> incoming;
};
// Client host, service host, service address, port, and for loopback the
// namespace: two pods on a host may serve one port on their own addresses,
// two containers each their own 127.0.0.1.
using BundleKey = std::tuple<std::string_view, std::string_view, std::string_view, int, int64_t>;
using HostPort = std::pair<std::string_view, int>;
using HostAddressPort = std::tuple<std::string_view, std::string_view, int>;
// One side's view of the connections between two addresses on a port: host,
// outgoing, port, its own address, the other's.
using Pair = std::tuple<std::string_view, bool, int, std::string_view, std::string_view>;

// Where a host's name and a process's name lie, and their lengths: the same
// places hold the same text, whatever it is.
using TextPlaces = std::tuple<const char*, size_t, const char*, size_t>;

// The join's keys are views of the records' text, hashed by content. The
// graph comes out in its own order (Graph::settle), whatever order the
// bundles are joined in: no two bundles make the same edge.
struct KeyHash {
    static size_t mix(size_t seed, size_t h) { return seed ^ (h + 0x9e3779b97f4a7c15 + (seed << 6) + (seed >> 2)); }
    size_t operator()(const HostPort& k) const {
        return mix(std::hash<std::string_view>{}(k.first), std::hash<int>{}(k.second));
    }
    size_t operator()(const HostAddressPort& k) const {
        auto& [host, addr, port] = k;
        return mix(operator()(HostPort{host, port}), std::hash<std::string_view>{}(addr));
    }
    size_t operator()(const BundleKey& k) const {
        auto& [client, service, addr, port, netns] = k;
        size_t h = mix(operator()(HostAddressPort{service, addr, port}), std::hash<std::string_view>{}(client));
        return mix(h, std::hash<int64_t>{}(netns));
    }
    size_t operator()(const Pair& k) const {
        auto& [host, outgoing, port, local, remote] = k;
        size_t h = mix(operator()(HostPort{host, port}), std::hash<std::string_view>{}(local));
        return mix(mix(h, std::hash<std::string_view>{}(remote)), outgoing);
    }
    size_t operator()(const std::pair<Pair, std::string_view>& k) const {
        return mix(operator()(k.first), std::hash<std::string_view>{}(k.second));
    }
    size_t operator()(const TextPlaces& k) const {
        auto& [host, host_size, process, process_size] = k;
        return mix(mix(std::hash<const char*>{}(host), host_size),
                   mix(std::hash<const char*>{}(process), process_size));
    }
};

// What one side counted: connections established, from its point of view.
int64_t connections_of(const EdgeRecord& e) { return e.outgoing() ? e.connects : e.accepts; }

// The pair as the other side records it.
Pair seen_from(std::string_view far_host, const EdgeRecord& e) {
    return {far_host, !e.outgoing(), e.port, e.remote_addr, e.local_addr};
}

class Joiner {
public:
    Joiner(const Records& records, Graph& graph) : records_(records), book_(records.addresses), graph_(graph) {
        bundle_numbers_.reserve(records.edges.size());  // at most one per record: never rehashed
        halves_.reserve(records.edges.size());          // one per record, more only where a half is split
    }

    // A half whose far address belonged to one host goes whole to that
    // host's bundle. One whose address changed owner within its span (a
    // client's address re-used by another client, a service's moved) is
    // split among the owners by what each of them counted of it, less what
    // the halves placed before it already explain: placed after those with
    // a single owner.
    void run() {
        std::vector<std::pair<const EdgeRecord*, std::vector<std::string_view>>> shared;
        std::vector<std::pair<const EdgeRecord*, std::string_view>> single;
        single.reserve(records_.edges.size());
        std::vector<std::string_view> far;
        for (const auto& e : records_.edges) {
            far_hosts(e, far);
            if (far.empty()) {
                place_external(e);
            } else if (far.size() == 1) {
                place(e, far[0]);
                single.emplace_back(&e, far[0]);
            } else {
                shared.emplace_back(&e, far);
            }
        }
        if (!shared.empty()) {
            // Rare (addresses re-used within the window): the sums are built only then.
            for (const auto& e : records_.edges) {
                auto pair = pair_of(e);
                counted_[pair] += connections_of(e);
                auto& seen = seen_.try_emplace(pair, e.first_seen, e.last_seen).first->second;
                seen = {std::min(seen.first, e.first_seen), std::max(seen.second, e.last_seen)};
            }
            for (const auto& [e, far] : single) placed_[{pair_of(*e), far}] += connections_of(*e);
        }
        for (const auto& [e, far] : shared) place_shared(*e, far);
        // The halves side by side, bundle by bundle, each bundle's outgoing
        // ones first, in the order placed: a vector of each per bundle was
        // an allocation and a free for most halves.
        std::vector<size_t> start(bundle_numbers_.size() + 1);
        for (const auto& [bundle, half] : halves_) start[bundle + 1]++;
        std::partial_sum(start.begin(), start.end(), start.begin());
        std::vector<const EdgeRecord*> side_by_side(halves_.size());
        auto next = start;
        for (const auto& [bundle, half] : halves_) {
            if (half->outgoing()) side_by_side[next[bundle]++] = half;
        }
        const auto first_incoming = next;
        for (const auto& [bundle, half] : halves_) {
            if (!half->outgoing()) side_by_side[next[bundle]++] = half;
        }
        std::span<const EdgeRecord* const> all(side_by_side);
        auto bundle_of = [&](size_t b) {
            return Bundle{all.subspan(start[b], first_incoming[b] - start[b]),
                          all.subspan(first_incoming[b], start[b + 1] - first_incoming[b])};
        };
        // Only a bundle without incoming halves asks who listens: most fleets have few or none.
        for (size_t b = 0; b < bundle_numbers_.size(); b++) {
            if (bundle_of(b).incoming.empty()) {
                find_listeners();
                break;
            }
        }
        for (const auto& [key, b] : bundle_numbers_) join(key, bundle_of(b));
    }

private:
    // The node of a host's process. Most calls find it already there, by
    // where the two names lie, without hashing their text: the records' text
    // is interned, one place per name. So every name given here must lie
    // where it is, unchanged, for the whole join (the records' text, a
    // static string): a key is the place, not the text, and a buffer freed
    // and reused for another name would find this one's node. A second place
    // of one name only misses, and is found by its id, built in one reused buffer.
    size_t process_node(std::string_view host, std::string_view process, NodeKind kind) {
        auto [known, added] =
            process_nodes_.try_emplace({host.data(), host.size(), process.data(), process.size()}, 0);
        if (added) {
            id_.assign(host).append("/").append(process);
            known->second = graph_.node(id_, kind, host, process);
        }
        return known->second;
    }

    // The hosts at the far end of a half, in name order, into `far`: itself
    // for loopback or an address it held at the time; else whoever held the
    // address then.
    void far_hosts(const EdgeRecord& e, std::vector<std::string_view>& far) const {
        far.clear();
        if (!e.loopback) {
            book_.owners(e.remote_addr, e.first_seen - kOwnershipSlack, e.last_seen + kOwnershipSlack, far);
        }
        if (e.loopback || std::binary_search(far.begin(), far.end(), e.host)) far.assign(1, e.host);
    }

    // Each (host, port)'s and (host, address, port)'s accepting processes, for service_process.
    void find_listeners() {
        for (const auto& e : records_.edges) {
            if (e.outgoing()) continue;
            listeners_[{e.host, e.port}][e.process] += e.accepts + 1;
            listeners_on_address_[{e.host, e.local_addr, e.port}][e.process] += e.accepts + 1;
        }
    }

    static Pair pair_of(const EdgeRecord& e) { return {e.host, e.outgoing(), e.port, e.local_addr, e.remote_addr}; }

    void place(const EdgeRecord& e, std::string_view far) {
        int64_t netns = e.loopback ? e.netns : 0;
        auto key = e.outgoing() ? BundleKey{e.host, far, e.remote_addr, e.port, netns}
                                : BundleKey{far, e.host, e.local_addr, e.port, netns};
        halves_.emplace_back(bundle_numbers_.try_emplace(key, bundle_numbers_.size()).first->second, &e);
    }

    void place_external(const EdgeRecord& e) {
        size_t external = graph_.node(e.remote_addr, NodeKind::external, e.remote_addr, "");
        if (e.outgoing()) {
            size_t client = process_node(e.host, e.process, NodeKind::client);
            graph_.connect(client, external, e.port, client_side(e), false, vias(e));
        } else {
            size_t service = process_node(e.host, e.process, NodeKind::service);
            graph_.connect(external, service, e.port, service_side(e), false);
        }
    }

    void place_shared(const EdgeRecord& e, const std::vector<std::string_view>& owners) {
        std::vector<int64_t> weights;
        for (auto owner : owners) {
            auto counted = counted_.find(seen_from(owner, e));
            weights.push_back(std::max<int64_t>(0, (counted == counted_.end() ? 0 : counted->second) -
                                                       placed_[{pair_of(e), owner}]));
        }
        // No owner's agent counted it: it goes whole to the one that owned
        // the address longest while it lasted (the first by name on a tie).
        if (std::all_of(weights.begin(), weights.end(), [](int64_t w) { return w == 0; })) {
            auto longest = std::max_element(owners.begin(), owners.end(), [&](auto a, auto b) {
                return book_.time_owned(e.remote_addr, a, e.first_seen, e.last_seen) <
                       book_.time_owned(e.remote_addr, b, e.first_seen, e.last_seen);
            });
            place(e, *longest);
            return;
        }
        auto parts = split_record(e, weights);
        for (size_t i = 0; i < owners.size(); i++) {
            if (weights[i] == 0) continue;
            // A part is seen when its owner saw the connections it stands for.
            auto& part = parts_.emplace_back(parts[i]);
            if (auto seen = seen_.find(seen_from(owners[i], e)); seen != seen_.end()) {
                part.narrow(seen->second.first, seen->second.second);
            }
            placed_[{pair_of(e), owners[i]}] += connections_of(part);
            place(part, owners[i]);
        }
    }

    // The process serving an address and port on a host: the one that
    // accepted most there, whichever client it was (a SNAT'd client's half
    // names another address); else on the port, whatever the address.
    std::string_view service_process(std::string_view host, std::string_view addr, int port,
                                     const Bundle& bundle) const {
        // Most services are one process: it needs no tally.
        auto same_process = [&](const EdgeRecord* in) { return in->process == bundle.incoming[0]->process; };
        if (!bundle.incoming.empty() && std::all_of(bundle.incoming.begin(), bundle.incoming.end(), same_process)) {
            return bundle.incoming[0]->process;
        }
        std::map<std::string_view, int64_t> accepted;
        for (const auto* in : bundle.incoming) accepted[in->process] += in->accepts + 1;
        if (accepted.empty()) {
            if (auto it = listeners_on_address_.find({host, addr, port}); it != listeners_on_address_.end()) {
                accepted = it->second;
            } else if (auto any = listeners_.find({host, port}); any != listeners_.end()) {
                accepted = any->second;
            } else {
                return kUnknownProcess;
            }
        }
        return std::max_element(accepted.begin(), accepted.end(),
                                [](const auto& a, const auto& b) { return a.second < b.second; })
            ->first;
    }

    void join(const BundleKey& key, const Bundle& bundle) {
        const auto& [client_host, service_host, service_addr, port, netns] = key;
        auto process = service_process(service_host, service_addr, port, bundle);
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
        bool disputed = seen_by_service.connections != seen_by_clients.connections;
        // Keep the larger count: what the clients missed goes to their busiest process.
        auto& top = std::max_element(by_process.begin(), by_process.end(), [](const auto& a, const auto& b) {
                        return a.second.connections < b.second.connections;
                    })->second;
        top.connections += std::max<int64_t>(0, seen_by_service.connections - seen_by_clients.connections);
        top.bytes_sent += std::max<int64_t>(0, seen_by_service.bytes_sent - seen_by_clients.bytes_sent);
        top.bytes_received += std::max<int64_t>(0, seen_by_service.bytes_received - seen_by_clients.bytes_received);
        // So are the times: what the service saw before or after the clients'
        // agents did (one of them was down) is when the busiest process called.
        if (!bundle.incoming.empty() && seen_by_service.first_seen < seen_by_clients.first_seen) {
            top.first_seen = std::min(top.first_seen, seen_by_service.first_seen);
        }
        if (seen_by_service.last_seen > seen_by_clients.last_seen) top.last_seen = seen_by_service.last_seen;
        for (const auto& [name, traffic] : by_process) {
            size_t client = process_node(client_host, name, NodeKind::client);
            // Looked up, not indexed: an empty set made for each name is an allocation and a free.
            auto via = via_by_process.find(name);
            graph_.connect(client, service, port, traffic, disputed,
                           via == via_by_process.end() ? kNoVia : via->second);
        }
    }

    const Records& records_;
    AddressBook book_;
    Graph& graph_;
    // A name's accepts on each (host, port): ordered, so that a tie goes to the first name.
    std::unordered_map<HostPort, std::map<std::string_view, int64_t>, KeyHash> listeners_;
    std::unordered_map<HostAddressPort, std::map<std::string_view, int64_t>, KeyHash> listeners_on_address_;
    // Each bundle's number, and the halves placed with their bundle's number.
    std::unordered_map<BundleKey, size_t, KeyHash> bundle_numbers_;
    std::vector<std::pair<size_t, const EdgeRecord*>> halves_;
    // The split halves' parts, which bundles point into: a deque never moves them.
    std::deque<EdgeRecord> parts_;
    // Per pair, what its side counted; per pair and far host, what the halves
    // placed so far took there.
    std::unordered_map<Pair, int64_t, KeyHash> counted_;
    std::unordered_map<std::pair<Pair, std::string_view>, int64_t, KeyHash> placed_;
    // Per pair, the first and last time its side saw it.
    std::unordered_map<Pair, std::pair<int64_t, int64_t>, KeyHash> seen_;
    std::string id_;  // process_node's buffer
    // process_node's, by where the names lie: names that live as long as the join (see there)
    std::unordered_map<TextPlaces, size_t, KeyHash> process_nodes_;
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
    std::vector<std::string_view> hosts;
    owners(addr, from, to, hosts);
    return {hosts.begin(), hosts.end()};
}

void AddressBook::owners(std::string_view addr, int64_t from, int64_t to, std::vector<std::string_view>& hosts) const {
    hosts.clear();
    for (const auto& a : records_of(addr)) {
        if (a.first_seen <= to && a.last_seen >= from) hosts.push_back(a.host);
    }
    std::sort(hosts.begin(), hosts.end());
    hosts.erase(std::unique(hosts.begin(), hosts.end()), hosts.end());
}

int64_t AddressBook::time_owned(std::string_view addr, std::string_view host, int64_t from, int64_t to) const {
    int64_t seconds = 0;
    for (const auto& a : records_of(addr)) {
        if (a.host == host) seconds += std::max<int64_t>(0, std::min(a.last_seen, to) - std::max(a.first_seen, from));
    }
    return seconds;
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
