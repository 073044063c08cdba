#include "agent/conntrack_edges.hpp"

#include <arpa/inet.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/address.hpp"
#include "common/unique_fd.hpp"

namespace depgraph {
namespace {

// Every state a socket with an owner can be in; TIME_WAIT sockets have none.
constexpr uint32_t kOwnedStates = (1u << TCP_SYN_SENT) | (1u << TCP_SYN_RECV) | (1u << TCP_ESTABLISHED) |
                                  (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | (1u << TCP_CLOSE_WAIT) |
                                  (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING) | (1u << TCP_LISTEN);

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

bool ConntrackEdgeSource::KeyLess::operator()(const dg_edge_key& a, const dg_edge_key& b) const {
    return std::memcmp(&a, &b, sizeof a) < 0;
}

void ConntrackEdgeSource::set_addresses(const std::vector<HostAddress>& addresses) {
    addresses_.clear();
    for (const auto& a : addresses) addresses_[a.netns].insert(a.addr);
}

bool ConntrackEdgeSource::is_local(uint32_t netns, int family, const std::array<uint8_t, 16>& addr) const {
    auto ns = addresses_.find(netns);
    return ns != addresses_.end() && ns->second.count(format_address(family, addr.data())) > 0;
}

ConntrackEdgeSource::Tracked ConntrackEdgeSource::edges_of(uint32_t netns, const ConntrackFlow& flow) const {
    Tracked t;
    if (flow.l4proto != IPPROTO_TCP) return t;
    if (is_local(netns, flow.family, flow.orig_src)) {
        t.edges.push_back(edge_key(netns, flow.family, flow.orig_src, flow.orig_dst, flow.orig_dport, DG_DIR_OUT));
        t.owner_known = false;
        t.local = flow.orig_src;
        t.remote = flow.orig_dst;
        t.local_port = flow.orig_sport;
        t.remote_port = flow.orig_dport;
    }
    if (is_local(netns, flow.family, flow.reply_src)) {
        t.edges.push_back(edge_key(netns, flow.family, flow.reply_src, flow.reply_dst, flow.reply_sport, DG_DIR_IN));
    }
    return t;
}

void ConntrackEdgeSource::refresh_sockets(uint32_t netns, Clock::time_point now) {
    Sockets& s = sockets_[netns];
    if (s.taken && now - s.taken_at < kOwnerRefresh) return;
    s.taken = true;
    s.taken_at = now;
    auto sockets = dump_tcp_sockets(kOwnedStates);
    if (!sockets) return;  // the flows stay unattributed, as "?"
    s.inode_of.clear();
    s.listener_inode_of.clear();
    for (const auto& sock : *sockets) {
        if (sock.state == TCP_LISTEN) {
            s.listener_inode_of.emplace(sock.local_port, sock.inode);
        } else {
            s.inode_of[{sock.family, sock.local, sock.local_port, sock.remote, sock.remote_port}] = sock.inode;
        }
    }
    owners_ = socket_owners();
}

void ConntrackEdgeSource::attribute(uint32_t netns, Tracked& t, Clock::time_point now) {
    // Two tries: the snapshot as it is, then a fresh one if the rate limit allows.
    for (int attempt = 0; attempt < 2; attempt++) {
        if (attempt == 1) refresh_sockets(netns, now);
        const Sockets& s = sockets_[netns];
        bool all_known = true;
        for (auto& key : t.edges) {
            if (key.process.comm[0] != '\0') continue;
            uint64_t inode = 0;
            if (key.direction == DG_DIR_OUT) {
                auto it = s.inode_of.find({key.family, t.local, t.local_port, t.remote, t.remote_port});
                if (it != s.inode_of.end()) inode = it->second;
            } else if (auto it = s.listener_inode_of.find(key.service_port); it != s.listener_inode_of.end()) {
                inode = it->second;
            }
            auto owner = owners_.find(inode);
            if (owner != owners_.end()) {
                key.process = process_of(owner->second);
            } else {
                all_known = false;
            }
        }
        if (all_known) {
            t.owner_known = true;
            return;
        }
    }
    // An incoming edge without an owner here is named from the agent's
    // listener table; only an outgoing one is worth retrying.
    t.owner_known = true;
    for (const auto& key : t.edges) t.owner_known &= !(key.direction == DG_DIR_OUT && key.process.comm[0] == '\0');
}

void ConntrackEdgeSource::note_table_at_start(uint32_t netns, const std::vector<ConntrackFlow>& table) {
    for (const auto& flow : table) {
        Tracked t = edges_of(netns, flow);
        if (t.edges.empty()) continue;
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

void ConntrackEdgeSource::note_events(uint32_t netns, const std::vector<ConntrackFlow>& flows, Clock::time_point now) {
    for (const auto& flow : flows) {
        FlowId id{netns, flow.id};
        auto known = flows_.find(id);
        if (!flow.destroyed) {
            if (known != flows_.end()) continue;  // also in the table we dumped
            Tracked t = edges_of(netns, flow);
            if (t.edges.empty()) continue;  // forwarded, or not TCP
            t.seen_at = now;
            attribute(netns, t, now);
            flows_.emplace(id, std::move(t));
            continue;
        }
        if (known == flows_.end()) continue;  // began before we watched, or its NEW was lost
        count_end(known->second, (flow.status & IPS_ASSURED) != 0);
        flows_.erase(known);
    }
}

void ConntrackEdgeSource::note_resync(uint32_t netns, const std::vector<ConntrackFlow>& table, Clock::time_point now) {
    std::set<uint64_t> present;
    for (const auto& flow : table) {
        present.insert(flow.id);
        if (flows_.count({netns, flow.id})) continue;
        // Began while events were lost: it still began.
        Tracked t = edges_of(netns, flow);
        if (t.edges.empty()) continue;
        t.seen_at = now;
        attribute(netns, t, now);
        flows_.emplace(FlowId{netns, flow.id}, std::move(t));
    }
    // Ended while events were lost. Whether it was ever established is
    // unknown; nearly all are, and a refused one rarely lives long enough
    // to be tracked here.
    for (auto it = flows_.lower_bound({netns, 0}); it != flows_.end() && it->first.first == netns;) {
        if (present.count(it->first.second)) {
            ++it;
            continue;
        }
        count_end(it->second, true);
        it = flows_.erase(it);
    }
}

void ConntrackEdgeSource::attribute_pending(uint32_t netns, Clock::time_point now) {
    for (auto it = flows_.lower_bound({netns, 0}); it != flows_.end() && it->first.first == netns; ++it) {
        if (it->second.phase == Phase::pending && !it->second.owner_known) attribute(netns, it->second, now);
    }
}

void ConntrackEdgeSource::forget(uint32_t netns) {
    flows_.erase(flows_.lower_bound({netns, 0}), flows_.lower_bound({netns + 1, 0}));
    sockets_.erase(netns);
    addresses_.erase(netns);
}

void ConntrackEdgeSource::count_settled(const Tracked& t) {
    for (const auto& key : t.edges) {
        auto& c = counts_[key];
        (key.direction == DG_DIR_OUT ? c.connects : c.accepts) += 1;
    }
}

void ConntrackEdgeSource::count_end(const Tracked& t, bool established) {
    switch (t.phase) {
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
            c.refused += 1;
        }
        return;
    case Phase::counted:
        for (const auto& key : t.edges) {
            auto& c = counts_[key];
            c.closes += 1;
            if (!established && key.direction == DG_DIR_OUT) c.failed += 1;
        }
        return;
    }
}

std::vector<EdgeSample> ConntrackEdgeSource::drain(Clock::time_point now, bool final) {
    for (auto& [id, t] : flows_) {
        if (t.phase != Phase::pending || (!final && now - t.seen_at < kSettleAge)) continue;
        count_settled(t);
        t.phase = Phase::counted;
    }
    start_sockets_.clear();  // the start-up snapshot is over
    std::vector<EdgeSample> samples;
    samples.reserve(counts_.size());
    for (const auto& [key, c] : counts_) samples.push_back({key, c});
    counts_.clear();
    return samples;
}

}  // namespace depgraph
