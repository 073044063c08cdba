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
// A flow none of whose addresses the namespace had when they were last read
// is undecided: an address added since, or another host's flow forwarded
// through this one. The addresses are read again (at most every
// kAddressRefresh, and at each drain) and it is decided then, its DESTROY
// too if that came meanwhile; forwarded flows are dropped.
//
// Counting rule. conntrack sends no event when a handshake completes (that
// is an UPDATE); NEW comes with the first SYN, and DESTROY says, in its
// status, whether the flow was ever established (IPS_ASSURED: the handshake's
// last ACK was seen). So:
//   - a NEW is pending until a drain finds it established in the table (a
//     lookup per pending flow); it is then counted as a connect (out) or an
//     accept (in). A connection is thus counted up to one flush interval
//     late, never twice, and never before it got its reply.
//   - a DESTROY of a pending, never-established flow is a failed connect
//     (out; nothing for in, as eBPF counts no accept either), and refused
//     when a RST ended it (state CLOSE; a SYN that timed out leaves the
//     flow in SYN_SENT until nf_conntrack_tcp_timeout_syn_sent, 120 s).
//   - a DESTROY of a pending, established flow is a connect/accept and a close.
//   - a DESTROY of a counted flow is a close.
// conntrack keeps a closed connection for TIME_WAIT (120 s by default), so
// its close, and the end of its `open` gauge, come that much late; it counts
// no bytes (nf_conntrack_acct is off by default) and no lifetime.
//
// Processes. An outgoing flow's socket is looked up by its 4-tuple with a
// targeted sock_diag request as soon as its NEW is read; its owner is
// searched first among the processes that owned recent flows' sockets, then
// in all of /proc (at most once per batch of events). An incoming flow is
// named after the listener on its port (listed again at most once per batch).
// A connection that is gone before the agent reads its NEW event (a refused
// one, usually, or one that lives less than the agent takes to react) is
// attributed "?".
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "agent/conntrack.hpp"
#include "agent/edge_store.hpp"
#include "agent/listener_table.hpp"
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
    // Forwarded flows name none of a namespace's addresses all the time:
    // this bounds how often they make the source read the addresses again.
    static constexpr Clock::duration kAddressRefresh = std::chrono::milliseconds(100);
    // The processes that owned the last flows' sockets, searched before
    // the whole of /proc: a client's next connection is most likely theirs.
    static constexpr size_t kRecentOwners = 16;

    // The traced namespaces' addresses (store text), read just now: which
    // flows are ours.
    void set_addresses(const std::vector<HostAddress>& addresses);

    // The table of a namespace when its subscription began. Its flows were
    // open before the agent: they count only through seed_open(). Call
    // inside that namespace: the lookups of its flows are opened there.
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
    // Decides this namespace's undecided flows with its addresses as they
    // are now, and retries the owners of its pending outgoing flows that
    // have none yet. Call inside that namespace.
    void attribute_pending(uint32_t netns, Clock::time_point now);
    // The namespace is gone.
    void forget(uint32_t netns);

    // What was counted since the last drain. Every pending flow is looked
    // up in its table, so the last drain of a run needs nothing more.
    std::vector<EdgeSample> drain();

private:
    enum class Phase { undecided, pending, counted, ignored };
    struct Tracked {
        ConntrackFlow flow;  // its NEW; for an undecided flow, its DESTROY once that came
        std::vector<dg_edge_key> edges;  // out, in, or both for loopback
        Phase phase = Phase::pending;
        Clock::time_point seen_at;  // when its batch of events was read
        bool owner_known = true;  // false: an outgoing edge still names no process
    };
    using FlowId = std::pair<uint32_t, uint64_t>;  // (netns, conntrack id)

    // What the source keeps of each traced namespace. The lookups are
    // opened inside it, so that they can be used from anywhere.
    struct Namespace {
        std::set<std::string> addresses;
        Clock::time_point addresses_read_at{};
        ListenerTable<uint64_t> listener_inodes;  // socket inodes
        Clock::time_point listeners_listed_at{};
        std::optional<TcpSocketLookup> sockets;
        std::optional<ConntrackTable> table;
        std::set<uint64_t> undecided;  // conntrack ids of its flows in Phase::undecided
    };

    void track(uint32_t netns, const ConntrackFlow& flow, Clock::time_point now);
    void decide(uint32_t netns, Tracked& t, Clock::time_point now);
    void decide_undecided(uint32_t netns, Clock::time_point now, Clock::duration min_age);
    std::vector<dg_edge_key> edges_of(uint32_t netns, const ConntrackFlow& flow) const;
    bool is_local(uint32_t netns, int family, const std::array<uint8_t, 16>& addr) const;
    void attribute(uint32_t netns, Tracked& t, Clock::time_point now);
    bool name_edges(uint32_t netns, Tracked& t, Clock::time_point now);
    bool refresh_listeners(uint32_t netns, Clock::time_point now);
    uint64_t socket_inode(uint32_t netns, const dg_edge_key& key, const ConntrackFlow& flow);
    const ProcessIdentity* owner_of(uint64_t inode, Clock::time_point now);
    bool established_now(uint32_t netns, const ConntrackFlow& flow);
    void count_settled(const Tracked& t);
    void count_end(const Tracked& t, bool established, bool refused);

    std::map<uint32_t, Namespace> namespaces_;
    std::map<FlowId, Tracked> flows_;
    // The flows of the tables at start by (netns, incoming, their socket's
    // 4-tuple), for seed_open(); dropped at the first drain.
    using StartSocket = std::tuple<uint32_t, bool, int, std::array<uint8_t, 16>, uint16_t, std::array<uint8_t, 16>,
                                   uint16_t>;
    std::map<StartSocket, FlowId> start_sockets_;
    // Socket inode -> process, as found since the last drain.
    std::unordered_map<uint64_t, ProcessIdentity> owners_;
    Clock::time_point owners_scanned_at_{};  // the last scan of all of /proc
    std::vector<ProcessIdentity> recent_owners_;  // most recent first
    std::map<dg_edge_key, dg_edge_counters, EdgeKeyLess> counts_;  // since the last drain
};

}  // namespace depgraph
