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

#include "agent/netlink.hpp"

namespace depgraph {

namespace {

// A dump that the kernel marks inconsistent (NLM_F_DUMP_INTR) is retried
// this many times before giving up.
constexpr int kDumpAttempts = 3;

const std::string kDumpFailed = "sock_diag dump failed";
const std::string kLookupFailed = "sock_diag lookup failed";

Error dump_error(const std::string& detail) { return Error{kDumpFailed + ": " + detail}; }

netlink::MessageHandler append_to(std::vector<TcpSocket>& out) {
    return [&out](const nlmsghdr* nlh) -> Status {
        auto sock = parse_inet_diag_msg(nlh);
        if (!sock) return sock.error();
        out.push_back(std::move(*sock));
        return ok_status();
    };
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

// A TCP request in `buf`, sized NLMSG_SPACE(sizeof(inet_diag_req_v2)).
inet_diag_req_v2* put_request(char* buf, uint16_t flags, uint32_t seq, uint8_t family, uint32_t state_mask) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
    nlh->nlmsg_seq = seq;
    auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    req->sdiag_family = family;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_states = state_mask;
    return req;
}

Status send_dump_request(const mnl_socket* nl, uint8_t family, uint32_t state_mask, uint32_t seq) {
    alignas(nlmsghdr) char buf[NLMSG_SPACE(sizeof(inet_diag_req_v2))] = {};
    put_request(buf, NLM_F_DUMP, seq, family, state_mask);
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return errno_error(kDumpFailed + ": send request", errno);
    return ok_status();
}

// One complete dump of one address family, appended to `out`. False when
// the kernel marked it interrupted and it must be taken again.
Result<bool> dump_family(const mnl_socket* nl, uint8_t family, uint32_t state_mask, std::vector<TcpSocket>& out) {
    const auto seq = static_cast<uint32_t>(std::time(nullptr));
    if (auto sent = send_dump_request(nl, family, state_mask, seq); !sent) return sent.error();
    return netlink::receive_dump(nl, seq, kDumpFailed, append_to(out));
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
    // A TIME_WAIT socket reports its substate (FIN_WAIT2 or TIME_WAIT) as
    // its state, and the TIME_WAIT timer: its connection has closed, and a
    // FIN_WAIT2 state must not make it look open.
    s.state = msg.idiag_timer == kTimeWaitTimer ? uint8_t{TCP_TIME_WAIT} : msg.idiag_state;
    // sock_diag_save_cookie() stores sock_gen_cookie() low word first, in
    // host order; bpf_get_socket_cookie() returns the same sock_gen_cookie().
    s.cookie = static_cast<uint64_t>(msg.id.idiag_cookie[1]) << 32 | msg.id.idiag_cookie[0];
    s.inode = msg.idiag_inode;
    return s;
}

Result<bool> parse_inet_diag_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid,
                                   std::vector<TcpSocket>& out) {
    return netlink::decode_dump_batch(buf, len, seq, portid, kDumpFailed, append_to(out));
}

Result<TcpSocketLookup> TcpSocketLookup::open() {
    auto nl = netlink::open_socket(NETLINK_SOCK_DIAG, 0, kLookupFailed);
    if (!nl) return nl.error();
    return TcpSocketLookup(std::move(*nl));
}

Result<std::optional<TcpSocket>> TcpSocketLookup::find(int family, const std::array<uint8_t, 16>& local,
                                                       uint16_t local_port, const std::array<uint8_t, 16>& remote,
                                                       uint16_t remote_port) {
    alignas(nlmsghdr) char buf[NLMSG_SPACE(sizeof(inet_diag_req_v2))] = {};
    auto* req = put_request(buf, 0, ++seq_, static_cast<uint8_t>(family), ~0u);
    const size_t len = family == AF_INET ? 4 : 16;
    std::memcpy(req->id.idiag_src, local.data(), len);
    std::memcpy(req->id.idiag_dst, remote.data(), len);
    req->id.idiag_sport = htons(local_port);
    req->id.idiag_dport = htons(remote_port);
    // Any socket of that 4-tuple, not one particular incarnation of it.
    req->id.idiag_cookie[0] = req->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    std::vector<TcpSocket> found;
    auto answered = netlink::ask_one(nl_.get(), reinterpret_cast<const nlmsghdr*>(buf), kLookupFailed,
                                     append_to(found));
    if (!answered) return answered.error();
    if (!*answered || found.size() != 1) return std::optional<TcpSocket>{};
    return std::optional<TcpSocket>(found[0]);
}

Result<std::vector<TcpSocket>> dump_tcp_sockets(uint32_t state_mask) {
    for (int attempt = 1; attempt <= kDumpAttempts; ++attempt) {
        // A fresh socket per attempt: the rest of an interrupted dump is
        // still queued on the old one.
        auto nl = netlink::open_socket(NETLINK_SOCK_DIAG, 0, kDumpFailed);
        if (!nl) return nl.error();
        std::vector<TcpSocket> sockets;
        bool complete = true;
        for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
            auto done = dump_family(nl->get(), family, state_mask, sockets);
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
