#include "agent/conntrack_edges.hpp"

#include <arpa/inet.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <cstdlib>

#include "agent/netns.hpp"
#include "common/address.hpp"
#include "common/unique_fd.hpp"

namespace depgraph {
namespace {

dg_process process_of(const ProcessIdentity& p) {
    dg_process out{};
    std::strncpy(out.comm, p.comm.c_str(), sizeof out.comm - 1);
    out.cgroup_id = p.cgroup_id;
    return out;
}

dg_edge_key edge_key(uint32_t netns, int family, const std::array<uint8_t, 16>& local,
                     const std::array<uint8_t, 16>& remote, uint16_t service_port, uint8_t direction) {
    dg_edge_key key{};  // zeroed whole: keys are compared bytewise
    std::memcpy(key.local_addr, local.data(), sizeof key.local_addr);
    std::memcpy(key.remote_addr, remote.data(), sizeof key.remote_addr);
    key.netns_ino = netns;
    key.service_port = service_port;
    key.direction = direction;
    key.family = static_cast<uint8_t>(family);
    return key;
}

Result<uint16_t> local_port_of(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        return errno_error("conntrack probe: getsockname", errno);
    }
    return ntohs(addr.sin_port);
}

}  // namespace

Result<bool> conntrack_tracks_connections() {
    UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener.valid() || !client.valid()) return errno_error("conntrack probe: socket", errno);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listener.get(), 1) != 0) {
        return errno_error("conntrack probe: listen on 127.0.0.1", errno);
    }
    auto port = local_port_of(listener.get());
    if (!port) return port.error();
    addr.sin_port = htons(*port);
    // Over loopback the handshake completes inside connect(): the flow is
    // confirmed, and in the table, when it returns.
    if (connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        return errno_error("conntrack probe: connect to 127.0.0.1", errno);
    }
    auto client_port = local_port_of(client.get());
    if (!client_port) return client_port.error();
    auto table = dump_conntrack();
    if (!table) return table.error();
    for (const auto& flow : *table) {
        if (flow.family == AF_INET && flow.orig_sport == *client_port && flow.orig_dport == *port) return true;
    }
    return false;
}

void ConntrackEdgeSource::set_addresses(const std::vector<HostAddress>& addresses) {
    const auto now = Clock::now();
    for (auto& [netns, ns] : namespaces_) ns.addresses.clear();
    for (const auto& a : addresses) namespaces_[a.netns].addresses.insert(a.addr);
    for (auto& [netns, ns] : namespaces_) ns.addresses_read_at = now;
}

bool ConntrackEdgeSource::is_local(uint32_t netns, int family, const std::array<uint8_t, 16>& addr) const {
    auto ns = namespaces_.find(netns);
    return ns != namespaces_.end() && ns->second.addresses.count(format_address(family, addr.data())) > 0;
}

std::vector<dg_edge_key> ConntrackEdgeSource::edges_of(uint32_t netns, const ConntrackFlow& flow) const {
    std::vector<dg_edge_key> edges;
    if (is_local(netns, flow.family, flow.orig_src)) {
        edges.push_back(edge_key(netns, flow.family, flow.orig_src, flow.orig_dst, flow.orig_dport, DG_DIR_OUT));
    }
    if (is_local(netns, flow.family, flow.reply_src)) {
        edges.push_back(edge_key(netns, flow.family, flow.reply_src, flow.reply_dst, flow.reply_sport, DG_DIR_IN));
    }
    return edges;
}

// Listed at most once per batch of events (`now` is when the batch was
// read): a burst of accepts on a new port is served by one dump, which for
// listeners alone is cheap. False when this batch's is already taken.
bool ConntrackEdgeSource::refresh_listeners(uint32_t netns, Clock::time_point now) {
    Namespace& ns = namespaces_[netns];
    if (ns.listeners_listed_at >= now) return false;
    ns.listeners_listed_at = Clock::now();
    auto listeners = dump_tcp_sockets(1u << TCP_LISTEN);
    if (!listeners) return false;  // the flows stay unattributed, as "?"
    ns.listener_inodes.clear();
    for (const auto& sock : *listeners) {
        ns.listener_inodes.try_emplace(listener_key(netns, sock.family, sock.local.data(), sock.local_port), sock.inode);
    }
    return true;
}

// The inode of the socket behind one edge of `flow`; 0 when there is none
// (any more), or it belongs to no process (TIME_WAIT).
uint64_t ConntrackEdgeSource::socket_inode(uint32_t netns, const dg_edge_key& key, const ConntrackFlow& flow) {
    Namespace& ns = namespaces_[netns];
    if (key.direction == DG_DIR_IN) {
        const uint64_t* inode = ns.listener_inodes.find(netns, key.family, key.local_addr, key.service_port);
        return inode ? *inode : 0;
    }
    if (!ns.sockets) return 0;
    auto socket = ns.sockets->find(flow.family, flow.orig_src, flow.orig_sport, flow.orig_dst, flow.orig_dport);
    return socket && *socket ? (*socket)->inode : 0;
}

// A short connection's socket is closed within a millisecond or so, and a
// scan of all of /proc takes about that long: the file descriptors of the
// processes that owned the last flows' sockets are read first, as they
// usually own the next one.
const ProcessIdentity* ConntrackEdgeSource::owner_of(uint64_t inode, Clock::time_point now) {
    auto found = owners_.find(inode);
    for (size_t i = 0; found == owners_.end() && i < recent_owners_.size(); i++) {
        for (uint64_t held : socket_inodes_of(recent_owners_[i].pid)) owners_.try_emplace(held, recent_owners_[i]);
        found = owners_.find(inode);
    }
    if (found == owners_.end() && owners_scanned_at_ < now) {
        owners_scanned_at_ = Clock::now();  // once per batch of events
        owners_.merge(socket_owners());
        found = owners_.find(inode);
    }
    if (found == owners_.end()) return nullptr;
    const ProcessIdentity& owner = found->second;
    std::erase_if(recent_owners_, [&](const ProcessIdentity& p) { return p.pid == owner.pid; });
    recent_owners_.insert(recent_owners_.begin(), owner);
    if (recent_owners_.size() > kRecentOwners) recent_owners_.pop_back();
    return &owner;
}

// Names the edges of `t` that have no process yet; true when all have one.
bool ConntrackEdgeSource::name_edges(uint32_t netns, Tracked& t, Clock::time_point now) {
    bool all_named = true;
    for (auto& key : t.edges) {
        if (key.process.comm[0] != '\0') continue;
        const uint64_t inode = socket_inode(netns, key, t.flow);
        const ProcessIdentity* owner = inode != 0 ? owner_of(inode, now) : nullptr;
        if (owner) {
            key.process = process_of(*owner);
        } else {
            all_named = false;
        }
    }
    return all_named;
}

void ConntrackEdgeSource::attribute(uint32_t netns, Tracked& t, Clock::time_point now) {
    // A listener on a new port needs a new listing; an outgoing socket's
    // lookup is exact, and asking again would not find a closed one.
    if (!name_edges(netns, t, now) && refresh_listeners(netns, now)) name_edges(netns, t, now);
    // An incoming edge without an owner here is named from the agent's
    // listener table; only an outgoing one is worth retrying.
    t.owner_known = std::none_of(t.edges.begin(), t.edges.end(), [](const dg_edge_key& key) {
        return key.direction == DG_DIR_OUT && key.process.comm[0] == '\0';
    });
}

void ConntrackEdgeSource::note_table_at_start(uint32_t netns, const std::vector<ConntrackFlow>& table) {
    Namespace& ns = namespaces_[netns];
    // Without them a flow's process is "?", and no flow is found
    // established: each counts at its DESTROY.
    if (!ns.sockets) {
        if (auto sockets = TcpSocketLookup::open()) ns.sockets.emplace(std::move(*sockets));
    }
    if (!ns.table) {
        if (auto table = ConntrackTable::open()) ns.table.emplace(std::move(*table));
    }
    for (const auto& flow : table) {
        if (flow.l4proto != IPPROTO_TCP) continue;
        Tracked t;
        t.edges = edges_of(netns, flow);
        if (t.edges.empty()) continue;
        t.flow = flow;
        t.phase = Phase::ignored;
        FlowId id{netns, flow.id};
        for (const auto& key : t.edges) {
            bool in = key.direction == DG_DIR_IN;
            start_sockets_[{netns, in, flow.family, in ? flow.reply_src : flow.orig_src,
                            in ? flow.reply_sport : flow.orig_sport, in ? flow.reply_dst : flow.orig_dst,
                            in ? flow.reply_dport : flow.orig_dport}] = id;
        }
        flows_.emplace(id, std::move(t));
    }
}

bool ConntrackEdgeSource::seed_open(uint32_t netns, const TcpSocket& socket, bool incoming,
                                    const dg_process& owner) {
    auto found = start_sockets_.find({netns, incoming, socket.family, socket.local, socket.local_port, socket.remote,
                                      socket.remote_port});
    if (found == start_sockets_.end()) return false;
    auto flow = flows_.find(found->second);
    start_sockets_.erase(found);
    if (flow == flows_.end() || flow->second.phase != Phase::ignored) return false;
    // The agent counts the socket open; the flow's DESTROY closes it.
    flow->second.phase = Phase::counted;
    for (auto& key : flow->second.edges) {
        if ((key.direction == DG_DIR_IN) == incoming) key.process = owner;
    }
    return true;
}

// A flow that began (its NEW, or found in a resync), read at `now`.
void ConntrackEdgeSource::track(uint32_t netns, const ConntrackFlow& flow, Clock::time_point now) {
    if (flow.l4proto != IPPROTO_TCP) return;
    Tracked t;
    t.flow = flow;
    t.seen_at = now;
    t.phase = Phase::undecided;
    decide(netns, t, now);
    if (t.phase == Phase::undecided) namespaces_[netns].undecided.insert(flow.id);
    if (t.phase == Phase::undecided || t.phase == Phase::pending) flows_.emplace(FlowId{netns, flow.id}, std::move(t));
}

// Undecided: ours when one of its addresses is now known; dropped as
// another host's (forwarded) when the addresses were read after it came and
// still name none; otherwise left for the next read. Once ours, a flow whose
// DESTROY came meanwhile is counted as ended (and marked ignored: done).
void ConntrackEdgeSource::decide(uint32_t netns, Tracked& t, Clock::time_point now) {
    t.edges = edges_of(netns, t.flow);
    if (t.edges.empty()) {
        if (namespaces_[netns].addresses_read_at > t.seen_at) t.phase = Phase::ignored;
        return;
    }
    t.phase = Phase::pending;
    if (t.flow.destroyed) {
        count_end(t, t.flow.established(), t.flow.refused());
        t.phase = Phase::ignored;
        return;
    }
    attribute(netns, t, now);
}

// Reads the namespace's addresses again, when some flow named none of them
// and the last read is at least `min_age` old, then decides those flows.
void ConntrackEdgeSource::decide_undecided(uint32_t netns, Clock::time_point now, Clock::duration min_age) {
    Namespace& ns = namespaces_[netns];
    if (ns.undecided.empty() || Clock::now() - ns.addresses_read_at < min_age) return;
    auto addresses = try_local_addresses();
    if (!addresses) return;  // unreadable: the flows wait for the next read
    ns.addresses = {addresses->begin(), addresses->end()};
    ns.addresses_read_at = Clock::now();
    for (auto id = ns.undecided.begin(); id != ns.undecided.end();) {
        auto flow = flows_.find({netns, *id});
        decide(netns, flow->second, now);
        const Phase phase = flow->second.phase;
        if (phase == Phase::ignored) flows_.erase(flow);
        id = phase == Phase::undecided ? std::next(id) : ns.undecided.erase(id);
    }
}

void ConntrackEdgeSource::note_events(uint32_t netns, const std::vector<ConntrackFlow>& flows, Clock::time_point now) {
    for (const auto& flow : flows) {
        FlowId id{netns, flow.id};
        auto known = flows_.find(id);
        if (!flow.destroyed) {
            if (known == flows_.end()) track(netns, flow, now);  // else also in the table we dumped
            continue;
        }
        if (known == flows_.end()) continue;  // began before we watched, or its NEW was lost
        if (known->second.phase == Phase::undecided) {
            known->second.flow = flow;  // counted as ended once decided
            continue;
        }
        count_end(known->second, flow.established(), flow.refused());
        flows_.erase(known);
    }
    decide_undecided(netns, now, kAddressRefresh);
}

void ConntrackEdgeSource::note_resync(uint32_t netns, const std::vector<ConntrackFlow>& table, Clock::time_point now) {
    std::set<uint64_t> present;
    for (const auto& flow : table) {
        present.insert(flow.id);
        // Began while events were lost: it still began.
        if (!flows_.count({netns, flow.id})) track(netns, flow, now);
    }
    decide_undecided(netns, now, Clock::duration::zero());
    // Ended while events were lost. Whether it was ever established is
    // unknown; nearly all are, and a refused one rarely lives long enough
    // to be tracked here.
    for (auto it = flows_.lower_bound({netns, 0}); it != flows_.end() && it->first.first == netns;) {
        if (present.count(it->first.second) || it->second.phase == Phase::undecided) {
            ++it;
            continue;
        }
        count_end(it->second, true, false);
        it = flows_.erase(it);
    }
}

void ConntrackEdgeSource::attribute_pending(uint32_t netns, Clock::time_point now) {
    decide_undecided(netns, now, Clock::duration::zero());
    for (auto it = flows_.lower_bound({netns, 0}); it != flows_.end() && it->first.first == netns; ++it) {
        if (it->second.phase == Phase::pending && !it->second.owner_known) attribute(netns, it->second, now);
    }
}

void ConntrackEdgeSource::forget(uint32_t netns) {
    flows_.erase(flows_.lower_bound({netns, 0}), flows_.lower_bound({netns + 1, 0}));
    namespaces_.erase(netns);
}

void ConntrackEdgeSource::count_settled(const Tracked& t) {
    for (const auto& key : t.edges) {
        auto& c = counts_[key];
        (key.direction == DG_DIR_OUT ? c.connects : c.accepts) += 1;
    }
}

void ConntrackEdgeSource::count_end(const Tracked& t, bool established, bool refused) {
    switch (t.phase) {
    case Phase::undecided:
    case Phase::ignored:
        return;
    case Phase::pending:
        if (established) {
            count_settled(t);
            for (const auto& key : t.edges) counts_[key].closes += 1;
            return;
        }
        for (const auto& key : t.edges) {
            if (key.direction != DG_DIR_OUT) continue;
            auto& c = counts_[key];
            c.failed += 1;
            c.refused += refused ? 1 : 0;
        }
        return;
    case Phase::counted:
        for (const auto& key : t.edges) counts_[key].closes += 1;
        return;
    }
}

// Whether the table holds `flow` established now. A flow it no longer
// holds has ended: its DESTROY, still to be read, says how.
bool ConntrackEdgeSource::established_now(uint32_t netns, const ConntrackFlow& flow) {
    auto ns = namespaces_.find(netns);
    if (ns == namespaces_.end() || !ns->second.table) return false;
    auto found = ns->second.table->find(flow);
    return found && *found && (*found)->established();
}

std::vector<EdgeSample> ConntrackEdgeSource::drain() {
    for (auto& [id, t] : flows_) {
        if (t.phase != Phase::pending || !established_now(id.first, t.flow)) continue;
        count_settled(t);
        t.phase = Phase::counted;
    }
    start_sockets_.clear();  // the start-up snapshot is over
    // Inodes of closed sockets, and processes that may have exited or
    // exec()ed since: the next lookups find who is there now.
    owners_.clear();
    recent_owners_.clear();
    std::vector<EdgeSample> samples;
    samples.reserve(counts_.size());
    for (const auto& [key, c] : counts_) samples.push_back({key, c});
    counts_.clear();
    return samples;
}

}  // namespace depgraph
