// Edges from conntrack, for hosts where the BPF programs cannot load (no
// BTF, an old or locked-down kernel): `depgraph-agent --source conntrack`.
// The agent feeds it the NEW and DESTROY events of the conntrack
// subscriptions it already holds for NAT, and drains it like the tracer, so
// everything after the drain (identity, open gauges, store) is one code path.
//
// A flow is this host's when one of its namespace's addresses is
//   - the original source: an outgoing connection, keyed as the socket sees
//     it (remote = the dialled address, service port = the dialled port), as
//     the eBPF source does; a DNAT's real destination goes to the NAT
//     translations like in eBPF mode, so the graph tool joins both the same way;
//   - the reply source: an incoming connection (service port = the local
//     port, remote = the client as this host saw it, after SNAT).
// A loopback flow is both, as two sockets are.
//
// Counting rule. conntrack sends no event when a handshake completes (that
// is an UPDATE); NEW comes with the first SYN, and DESTROY says, in its
// status, whether the flow was ever established (IPS_ASSURED: the handshake's
// last ACK was seen). So:
//   - a NEW is pending until the first drain at least kSettleAge after it was
//     read; it is then counted as a connect (out) or an accept (in). A
//     connection is thus counted up to one flush interval late, never twice.
//   - a DESTROY of a pending, never-established flow is a failed connect
//     (out; nothing for in, as eBPF counts no accept either). It is also
//     counted as refused: a connect refused with a RST is destroyed at once
//     (the kernel drops a flow whose only reply is a RST), while one that
//     times out lives for nf_conntrack_tcp_timeout_syn_sent (120 s).
//   - a DESTROY of a pending, established flow is a connect/accept and a close.
//   - a DESTROY of a counted flow is a close; if it was never established
//     (a connect that timed out) also a failed connect: its connect stays
//     counted, because counters are deltas already written.
// conntrack keeps a closed connection for TIME_WAIT (120 s by default), so
// its close, and the end of its `open` gauge, come that much late; it counts
// no bytes (nf_conntrack_acct is off by default) and no lifetime.
//
// Processes. An outgoing flow's socket is looked up by its 4-tuple in a
// sock_diag snapshot of the namespace, refreshed when a lookup misses (at most
// every kOwnerRefresh, as each refresh also scans /proc); an incoming flow is
// named after the listener on its port. A connection that is gone before the
// agent reads its NEW event (a refused one, usually) is attributed "?".
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "agent/conntrack.hpp"
#include "agent/edge_store.hpp"
#include "agent/process_table.hpp"
#include "agent/sock_diag.hpp"
#include "agent/tracer.hpp"

namespace depgraph {

// Whether conntrack tracks TCP in the calling thread's network namespace:
// only where some rule uses it (an nft `ct` expression, iptables -m state,
// NAT). An empty table cannot tell "no rule" from "no traffic yet", so this
// makes one loopback connection and looks for it in the table.
Result<bool> conntrack_tracks_connections();

class ConntrackEdgeSource {
public:
    using Clock = std::chrono::steady_clock;
    static constexpr Clock::duration kSettleAge = std::chrono::seconds(1);
    static constexpr Clock::duration kOwnerRefresh = std::chrono::milliseconds(20);

    // The traced namespaces' addresses (store text): which flows are ours.
    void set_addresses(const std::vector<HostAddress>& addresses);

    // The table of a namespace when its subscription began. Its flows were
    // open before the agent: they count only through seed_open().
    void note_table_at_start(uint32_t netns, const std::vector<ConntrackFlow>& table);
    // A connection open before the agent (sock_diag snapshot, after
    // note_table_at_start), owned by `owner`. True when conntrack tracks it:
    // the agent then counts it as open, and its DESTROY will count its close
    // on the same edge.
    bool seed_open(uint32_t netns, const TcpSocket& socket, bool incoming, const dg_process& owner);

    // Events of a namespace's subscription. Call inside that namespace:
    // sockets are looked up there.
    void note_events(uint32_t netns, const std::vector<ConntrackFlow>& flows, Clock::time_point now);
    // After lost events, the namespace's table as it is now: flows that began
    // meanwhile are pending, tracked ones that are gone have ended.
    void note_resync(uint32_t netns, const std::vector<ConntrackFlow>& table, Clock::time_point now);
    // Retries the owners of this namespace's pending outgoing flows that
    // have none yet. Call inside that namespace.
    void attribute_pending(uint32_t netns, Clock::time_point now);
    // The namespace is gone.
    void forget(uint32_t netns);

    // What was counted since the last drain; `final` settles every pending flow.
    std::vector<EdgeSample> drain(Clock::time_point now, bool final);

private:
    enum class Phase { pending, counted, ignored };
    struct Tracked {
        std::vector<dg_edge_key> edges;  // out, in, or both for loopback
        Phase phase = Phase::pending;
        Clock::time_point seen_at;
        bool owner_known = true;  // false: an outgoing edge still names no process
        std::array<uint8_t, 16> local{}, remote{};  // the outgoing socket's view
        uint16_t local_port = 0, remote_port = 0;
    };
    using FlowId = std::pair<uint32_t, uint64_t>;  // (netns, conntrack id)

    // One namespace's sockets by (family, local, local port, remote, remote
    // port), its listeners by port, and who owns them.
    struct Sockets {
        using Key = std::tuple<int, std::array<uint8_t, 16>, uint16_t, std::array<uint8_t, 16>, uint16_t>;
        std::map<Key, uint64_t> inode_of;
        std::map<uint16_t, uint64_t> listener_inode_of;
        Clock::time_point taken_at{};
        bool taken = false;
    };

    Tracked edges_of(uint32_t netns, const ConntrackFlow& flow) const;
    bool is_local(uint32_t netns, int family, const std::array<uint8_t, 16>& addr) const;
    void attribute(uint32_t netns, Tracked& t, Clock::time_point now);
    void refresh_sockets(uint32_t netns, Clock::time_point now);
    void count_settled(const Tracked& t);
    void count_end(const Tracked& t, bool established);

    struct KeyLess {
        bool operator()(const dg_edge_key& a, const dg_edge_key& b) const;
    };

    std::map<uint32_t, std::set<std::string>> addresses_;
    std::map<FlowId, Tracked> flows_;
    // The flows of the tables at start by (netns, incoming, their socket's
    // 4-tuple), for seed_open(); dropped at the first drain.
    using StartSocket = std::tuple<uint32_t, bool, int, std::array<uint8_t, 16>, uint16_t, std::array<uint8_t, 16>,
                                   uint16_t>;
    std::map<StartSocket, FlowId> start_sockets_;
    std::map<uint32_t, Sockets> sockets_;
    std::unordered_map<uint64_t, ProcessIdentity> owners_;  // socket inode -> process, as of the last refresh
    std::map<dg_edge_key, dg_edge_counters, KeyLess> counts_;  // since the last drain
};

}  // namespace depgraph
