// What the agent's netlink readers (sock_diag, conntrack) share, on top of
// libmnl: the socket handle, strict framing of datagrams, and the loop that
// reads a dump reply to its end.
#pragma once

#include <libmnl/libmnl.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

struct nlmsghdr;

namespace depgraph::netlink {

using MnlSocket = std::unique_ptr<mnl_socket, Free<mnl_socket_close>>;

// The kernel sizes dump datagrams to the reader's buffer, up to 32 KiB; a
// smaller buffer gets MSG_TRUNC, which libmnl reports as ENOSPC.
constexpr size_t kDumpBufferSize = 32768;

// Called for each data message of a datagram (control messages are handled
// by libmnl); an error stops the datagram and is returned as is.
using MessageHandler = std::function<Status(const nlmsghdr*)>;

enum class Batch { kMore, kDone, kInterrupted };

// One datagram: checks that it holds whole messages, then hands each data
// message to `on_message`. `what` prefixes errors ("sock_diag dump failed").
// seq/portid 0 accept any (multicast events carry 0).
Result<Batch> decode_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid, const std::string& what,
                           const MessageHandler& on_message);

// decode_batch for the unit-testable batch parsers: true once NLMSG_DONE
// has arrived, and NLM_F_DUMP_INTR is an error.
Result<bool> decode_dump_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid, const std::string& what,
                               const MessageHandler& on_message);

// Opens a netlink socket of `bus` (NETLINK_SOCK_DIAG, NETLINK_NETFILTER)
// in the calling thread's network namespace, bound to a kernel-chosen
// port id. `flags` adds SOCK_NONBLOCK and the like to SOCK_CLOEXEC.
// When the socket cannot be opened, errno still holds the cause.
Result<MnlSocket> open_socket(int bus, int flags, const std::string& what);

// After the request (sequence number `seq`) has been sent: reads datagrams
// until NLMSG_DONE. True when the dump is complete, false when the kernel
// marked it interrupted (its tables changed under it) and it must be taken
// again, on a fresh socket: the rest of it is still queued on this one.
Result<bool> receive_dump(const mnl_socket* nl, uint32_t seq, const std::string& what,
                          const MessageHandler& on_message);

// Sends a request that one message answers (a lookup, not a dump) and
// hands that answer to `on_message`. False when the kernel answered that
// there is no such thing (ENOENT).
Result<bool> ask_one(const mnl_socket* nl, const nlmsghdr* request, const std::string& what,
                     const MessageHandler& on_message);

}  // namespace depgraph::netlink
