// Snapshots of TCP sockets from netlink sock_diag (inet_diag), with libmnl.
// The agent takes one after its tracepoints are attached, to learn listeners
// and connections that were open before it started.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <netinet/tcp.h>
#include <string>
#include <optional>
#include <vector>

#include "agent/netlink.hpp"
#include "common/result.hpp"

struct nlmsghdr;

namespace depgraph {

struct TcpSocket {
    int family = 0;                      // AF_INET or AF_INET6, after IPv4-mapped normalisation
    std::array<uint8_t, 16> local{};     // network order; IPv4 in the first 4 bytes
    std::array<uint8_t, 16> remote{};    // network order; IPv4 in the first 4 bytes
    uint16_t local_port = 0;             // host order
    uint16_t remote_port = 0;            // host order
    uint8_t state = 0;                   // TCP_LISTEN, TCP_ESTABLISHED, ... (netinet/tcp.h)
    uint64_t cookie = 0;                 // inet_diag cookie, equal to the BPF socket cookie
    uint64_t inode = 0;                  // socket inode, to find the owning process in /proc
};

// The states of a connection from its establishment to its close: one
// side may have shut down its half, and the close is still to come.
inline constexpr uint32_t kOpenStates = (1u << TCP_ESTABLISHED) | (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) |
                                        (1u << TCP_CLOSE_WAIT) | (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING);

// inet_diag's idiag_timer of a TIME_WAIT socket.
inline constexpr uint8_t kTimeWaitTimer = 3;

// All TCP sockets (IPv4 and IPv6) of the calling thread's network namespace
// whose state is in `state_mask` (bit 1 << TCP_xxx).
Result<std::vector<TcpSocket>> dump_tcp_sockets(uint32_t state_mask);

// Looks up single TCP sockets by their two ends in one network namespace:
// the one of the thread that opens it (the netlink socket keeps it, so it
// may be used from any thread). The kernel answers from a hash lookup, where
// a dump walks the whole table of every namespace: far quicker when the
// caller wants a few sockets among many.
class TcpSocketLookup {
public:
    static Result<TcpSocketLookup> open();
    // The socket with this local and remote address and port (network
    // order; IPv4 in the first 4 bytes); nullopt when there is none.
    Result<std::optional<TcpSocket>> find(int family, const std::array<uint8_t, 16>& local, uint16_t local_port,
                                          const std::array<uint8_t, 16>& remote, uint16_t remote_port);

private:
    explicit TcpSocketLookup(netlink::MnlSocket nl) : nl_(std::move(nl)) {}
    netlink::MnlSocket nl_;
    uint32_t seq_ = 0;
};

// Decodes one SOCK_DIAG_BY_FAMILY reply. Exposed for unit tests; `nlh` must
// point at nlh->nlmsg_len readable bytes (the caller checks the framing).
Result<TcpSocket> parse_inet_diag_msg(const nlmsghdr* nlh);

// Decodes one datagram of a dump reply (several netlink messages), appending
// to `out`. Returns true once the dump is complete (NLMSG_DONE), false when
// more datagrams follow. Exposed for unit tests on hand-built buffers.
Result<bool> parse_inet_diag_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid,
                                   std::vector<TcpSocket>& out);

}  // namespace depgraph
