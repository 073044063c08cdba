// Connection tracking over netlink (nfnetlink_conntrack, with libmnl): a
// dump of a namespace's table and a subscription to its NEW and DESTROY
// events. The agent uses it to learn where a NATed connection really went
// (the reply tuple) and, for SNAT, which address the server saw.
//
// conntrack only tracks flows in a namespace where some rule uses it (an nft
// `ct` expression, or NAT); elsewhere the table is empty and costs nothing.
#pragma once

#include <netinet/in.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "agent/netlink.hpp"
#include "common/result.hpp"

struct nlmsghdr;

namespace depgraph {

struct ConntrackFlow {
    int family = 0;                        // AF_INET or AF_INET6
    uint8_t l4proto = 0;                   // IPPROTO_TCP, IPPROTO_UDP, ...
    // Original direction: the packets as the initiator sent them (the
    // dialled destination, before DNAT).
    std::array<uint8_t, 16> orig_src{};    // network order; IPv4 in the first 4 bytes
    std::array<uint8_t, 16> orig_dst{};
    uint16_t orig_sport = 0;               // host order; 0 for protocols without ports
    uint16_t orig_dport = 0;
    // Reply direction: the packets as the responder sends them, so its
    // source is the real destination and its destination the address the
    // responder saw as the client (after SNAT).
    std::array<uint8_t, 16> reply_src{};
    std::array<uint8_t, 16> reply_dst{};
    uint16_t reply_sport = 0;
    uint16_t reply_dport = 0;
    uint32_t status = 0;                   // IPS_* bits (linux/netfilter/nf_conntrack_common.h)
    uint8_t tcp_state = 0;                 // TCP_CONNTRACK_* (linux/netfilter/nf_conntrack_tcp.h); 0 when not sent
    uint64_t id = 0;                       // CTA_ID (32 bits today): stable for the entry's life
    bool destroyed = false;                // a DESTROY event (IPCTNL_MSG_CT_DELETE)

    // The destination was translated: the real one is reply_src:reply_sport.
    // The kernel's word (IPS_DST_NAT) once the NAT core has bound the
    // destination (IPS_DST_NAT_DONE, set in every namespace with a NAT
    // chain, also for a null binding); without NAT hooks no bit is ever set,
    // and the tuples are compared.
    bool dnat() const;
    // The source was translated (SNAT, masquerade, or a port clash remapped
    // by the kernel): the server saw reply_dst:reply_dport. The kernel's word
    // (IPS_SRC_NAT) with IPS_SRC_NAT_DONE, otherwise the tuples.
    bool snat() const;

    // The handshake completed (IPS_ASSURED: its last ACK was seen).
    bool established() const;
    // A never-established flow that a RST ended: a DESTROY in state CLOSE.
    // One whose SYN timed out is destroyed in SYN_SENT. A kernel that leaves
    // the state out of DESTROY events counts no refusal.
    bool refused() const;
};

// The conntrack table (IPv4 and IPv6) of the calling thread's network
// namespace, restricted to one transport protocol (0: all).
// On a kernel without conntrack netlink the error is one that
// is_conntrack_unavailable() recognises.
Result<std::vector<ConntrackFlow>> dump_conntrack(uint8_t l4proto = IPPROTO_TCP);

// Whether an error means "this kernel has no conntrack over netlink" (no
// nfnetlink, no nf_conntrack_netlink, no conntrack): the agent logs it once
// and carries on without NAT information.
bool is_conntrack_unavailable(const Error& error);

// NEW and DESTROY events of one network namespace: the one of the thread
// that opens it (the sockets keep it, so it may be read from any thread).
//
// netlink is lossy by contract: when events come faster than they are read,
// the kernel drops them and the next read fails with ENOBUFS. Each such loss
// is counted and raises resync_needed(); the caller then takes a fresh table
// with resync(), which the module rate-limits. Events read after a resync
// may predate it: apply them by `id`, idempotently.
class ConntrackEvents {
public:
    struct Options {
        // Kernel receive buffer (the kernel doubles it for bookkeeping).
        // Large, because a burst of connections outruns any reader; as root
        // SO_RCVBUFFORCE passes net.core.rmem_max, otherwise it caps it.
        size_t receive_buffer_bytes = size_t{8} << 20;
        uint8_t l4proto = IPPROTO_TCP;  // events and resyncs of other protocols are dropped; 0 keeps all
        std::chrono::milliseconds min_resync_interval{1000};
    };

    static Result<ConntrackEvents> open(const Options& options);
    static Result<ConntrackEvents> open() { return open(Options{}); }

    // Non-blocking; readable (POLLIN) when events are queued. Owned here.
    int fd() const;
    // The receive buffer the kernel granted (getsockopt SO_RCVBUF).
    size_t receive_buffer_bytes() const { return receive_buffer_bytes_; }

    // Events queued now, oldest first, without blocking; at most a bounded
    // number per call so that a flood cannot starve the caller's loop (the
    // fd then stays readable). ENOBUFS is counted, not returned.
    Result<std::vector<ConntrackFlow>> read_available();

    // How many times the kernel dropped events (ENOBUFS) since open().
    uint64_t enobufs() const { return enobufs_; }
    // Events were lost since the last successful resync().
    bool resync_needed() const { return resync_needed_; }
    // A resync is needed and the rate limit lets one run now.
    bool resync_due() const;
    // When resync_due(): dumps this namespace's table (filtered like the
    // events) and clears resync_needed(). Otherwise nullopt, and nothing is
    // dumped: a host whose buffer keeps overflowing must not dump in a loop.
    Result<std::optional<std::vector<ConntrackFlow>>> resync();

private:
    ConntrackEvents(netlink::MnlSocket events, netlink::MnlSocket dumps, const Options& options, size_t granted);

    netlink::MnlSocket events_;
    netlink::MnlSocket dumps_;  // opened with events_, so in the same namespace
    Options options_;
    size_t receive_buffer_bytes_ = 0;
    uint64_t enobufs_ = 0;
    bool resync_needed_ = false;
    std::optional<std::chrono::steady_clock::time_point> last_resync_;
};

// Looks up single flows in one network namespace's table: the one of the
// thread that opens it (the socket keeps it, so it may be used from any
// thread). Events say when a flow begins and ends, not when its handshake
// completes: this is how to ask.
class ConntrackTable {
public:
    static Result<ConntrackTable> open();
    // The table's entry for `flow` (by its original tuple) as it is now;
    // nullopt when it is gone, or the tuple now belongs to another flow.
    Result<std::optional<ConntrackFlow>> find(const ConntrackFlow& flow);

private:
    explicit ConntrackTable(netlink::MnlSocket nl) : nl_(std::move(nl)) {}
    netlink::MnlSocket nl_;
    uint32_t seq_ = 0;
};

// Decodes one conntrack message (IPCTNL_MSG_CT_NEW from a dump or a NEW
// event, IPCTNL_MSG_CT_DELETE from a DESTROY event). Exposed for unit tests;
// `nlh` must point at nlh->nlmsg_len readable bytes. Strict: a truncated or
// malformed attribute, a missing tuple or address is an error, never a guess.
Result<ConntrackFlow> parse_conntrack_msg(const nlmsghdr* nlh);

// Decodes one datagram (of a dump reply, or of events with seq = portid = 0),
// appending to `out`. Returns true once the dump is complete (NLMSG_DONE).
Result<bool> parse_conntrack_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid,
                                   std::vector<ConntrackFlow>& out);

}  // namespace depgraph
