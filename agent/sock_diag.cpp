#include "agent/sock_diag.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>

#include "common/unique_fd.hpp"

namespace depgraph {

namespace {

using MnlSocket = std::unique_ptr<mnl_socket, Free<mnl_socket_close>>;

// The kernel sizes dump datagrams to the reader's buffer, up to 32 KiB; a
// smaller buffer gets MSG_TRUNC, which libmnl reports as ENOSPC.
constexpr size_t kDumpBufferSize = 32768;

// A dump that the kernel marks inconsistent (NLM_F_DUMP_INTR) is retried
// this many times before giving up.
constexpr int kDumpAttempts = 3;

const std::string kDumpFailed = "sock_diag dump failed";

Error dump_error(const std::string& detail) { return Error{kDumpFailed + ": " + detail}; }

struct DumpContext {
    std::vector<TcpSocket>* out = nullptr;
    std::optional<Error> parse_error;
};

int on_data_message(const nlmsghdr* nlh, void* data) {
    auto* ctx = static_cast<DumpContext*>(data);
    auto sock = parse_inet_diag_msg(nlh);
    if (!sock) {
        ctx->parse_error = sock.error();
        return MNL_CB_ERROR;
    }
    ctx->out->push_back(std::move(*sock));
    return MNL_CB_OK;
}

// mnl_cb_run stops without complaint at a truncated trailing message, so
// the framing is checked first: a short datagram must not look complete.
std::optional<Error> check_framing(const void* buf, size_t len) {
    int left = static_cast<int>(len);
    auto* nlh = static_cast<const nlmsghdr*>(buf);
    while (mnl_nlmsg_ok(nlh, left)) nlh = mnl_nlmsg_next(nlh, &left);
    // Negative `left` is only the alignment padding of the last message.
    if (left > 0) {
        return dump_error("truncated netlink message (" + std::to_string(left) + " trailing bytes of " +
                          std::to_string(len) + ")");
    }
    return std::nullopt;
}

enum class Batch { kMore, kDone, kInterrupted };

// One datagram of a dump: its messages are appended to ctx.out.
Result<Batch> decode_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid, DumpContext& ctx) {
    if (auto bad = check_framing(buf, len)) return *bad;
    errno = 0;
    int rc = mnl_cb_run(buf, len, seq, portid, on_data_message, &ctx);
    if (rc == MNL_CB_OK) return Batch::kMore;
    if (rc == MNL_CB_STOP) return Batch::kDone;
    if (ctx.parse_error) return *ctx.parse_error;
    // libmnl reports NLM_F_DUMP_INTR as EINTR: the kernel's tables changed
    // under the dump, which may then hold duplicates or miss sockets.
    if (errno == EINTR) return Batch::kInterrupted;
    // EBADMSG: an NLMSG_ERROR too short to hold its error code.
    return errno_error(kDumpFailed, errno);
}

bool is_v4_mapped(const std::array<uint8_t, 16>& a) {
    static const uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a.data(), kPrefix, sizeof kPrefix) == 0;
}

bool is_unspecified(const std::array<uint8_t, 16>& a) {
    for (uint8_t b : a) {
        if (b != 0) return false;
    }
    return true;
}

void unmap_v4(std::array<uint8_t, 16>& a) {
    if (is_unspecified(a)) return;
    std::memmove(a.data(), a.data() + 12, 4);
    std::memset(a.data() + 4, 0, 12);
}

bool is_v4_side(const std::array<uint8_t, 16>& a) { return is_v4_mapped(a) || is_unspecified(a); }

// A dual-stack AF_INET6 socket talking IPv4 carries ::ffff:a.b.c.d on both
// ends (or :: on the remote end of a listener); as AF_INET it is the same
// edge as a plain IPv4 socket. A listener on :: alone stays AF_INET6.
void normalise_v4_mapped(TcpSocket& s) {
    if (s.family != AF_INET6 || !is_v4_side(s.local) || !is_v4_side(s.remote)) return;
    if (!is_v4_mapped(s.local) && !is_v4_mapped(s.remote)) return;
    s.family = AF_INET;
    unmap_v4(s.local);
    unmap_v4(s.remote);
}

Status send_dump_request(const mnl_socket* nl, uint8_t family, uint32_t state_mask, uint32_t seq) {
    alignas(nlmsghdr) char buf[NLMSG_SPACE(sizeof(inet_diag_req_v2))] = {};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    req->sdiag_family = family;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_states = state_mask;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return errno_error(kDumpFailed + ": send request", errno);
    return ok_status();
}

// One complete dump of one address family, appended to `out`. False when
// the kernel marked it interrupted and it must be taken again.
Result<bool> dump_family(const mnl_socket* nl, uint8_t family, uint32_t state_mask, std::vector<TcpSocket>& out) {
    const auto seq = static_cast<uint32_t>(std::time(nullptr));
    const uint32_t portid = mnl_socket_get_portid(nl);
    if (auto sent = send_dump_request(nl, family, state_mask, seq); !sent) return sent.error();

    auto buf = std::make_unique<char[]>(kDumpBufferSize);
    DumpContext ctx{&out, std::nullopt};
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf.get(), kDumpBufferSize);
        if (n < 0) {
            if (errno == EINTR) continue;  // a signal, not the dump: read again
            return errno_error(kDumpFailed + ": receive", errno);
        }
        if (n == 0) return dump_error("netlink socket closed before the end of the dump");
        auto batch = decode_batch(buf.get(), static_cast<size_t>(n), seq, portid, ctx);
        if (!batch) return batch.error();
        if (*batch == Batch::kDone) return true;
        if (*batch == Batch::kInterrupted) return false;
    }
}

}  // namespace

Result<TcpSocket> parse_inet_diag_msg(const nlmsghdr* nlh) {
    if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(inet_diag_msg))) {
        return dump_error("truncated inet_diag message (" + std::to_string(nlh->nlmsg_len) + " bytes, need " +
                          std::to_string(mnl_nlmsg_size(sizeof(inet_diag_msg))) + ")");
    }
    if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
        return dump_error("unexpected netlink message type " + std::to_string(nlh->nlmsg_type));
    }
    inet_diag_msg msg;
    std::memcpy(&msg, mnl_nlmsg_get_payload(nlh), sizeof msg);
    if (msg.idiag_family != AF_INET && msg.idiag_family != AF_INET6) {
        return dump_error("unexpected address family " + std::to_string(msg.idiag_family));
    }

    TcpSocket s;
    s.family = msg.idiag_family;
    const size_t addr_len = s.family == AF_INET ? 4 : 16;
    std::memcpy(s.local.data(), msg.id.idiag_src, addr_len);
    std::memcpy(s.remote.data(), msg.id.idiag_dst, addr_len);
    normalise_v4_mapped(s);
    s.local_port = ntohs(msg.id.idiag_sport);
    s.remote_port = ntohs(msg.id.idiag_dport);
    s.state = msg.idiag_state;
    // sock_diag_save_cookie() stores sock_gen_cookie() low word first, in
    // host order; bpf_get_socket_cookie() returns the same sock_gen_cookie().
    s.cookie = static_cast<uint64_t>(msg.id.idiag_cookie[1]) << 32 | msg.id.idiag_cookie[0];
    s.inode = msg.idiag_inode;
    return s;
}

Result<bool> parse_inet_diag_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid,
                                   std::vector<TcpSocket>& out) {
    DumpContext ctx{&out, std::nullopt};
    auto batch = decode_batch(buf, len, seq, portid, ctx);
    if (!batch) return batch.error();
    if (*batch == Batch::kInterrupted) return dump_error("interrupted by a concurrent change (NLM_F_DUMP_INTR)");
    return *batch == Batch::kDone;
}

Result<std::vector<TcpSocket>> dump_tcp_sockets(uint32_t state_mask) {
    for (int attempt = 1; attempt <= kDumpAttempts; ++attempt) {
        // A fresh socket per attempt: the rest of an interrupted dump is
        // still queued on the old one.
        MnlSocket nl(mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC));
        if (!nl) return errno_error(kDumpFailed + ": open NETLINK_SOCK_DIAG socket", errno);
        if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
            return errno_error(kDumpFailed + ": bind netlink socket", errno);
        }
        std::vector<TcpSocket> sockets;
        bool complete = true;
        for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
            auto done = dump_family(nl.get(), family, state_mask, sockets);
            if (!done) return done.error();
            if (!*done) {
                complete = false;
                break;
            }
        }
        if (complete) return sockets;
    }
    return dump_error("interrupted by concurrent changes " + std::to_string(kDumpAttempts) + " times in a row");
}

}  // namespace depgraph
