#include "agent/netlink.hpp"

#include <linux/netlink.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <optional>

namespace depgraph::netlink {

namespace {

struct BatchContext {
    const MessageHandler* on_message = nullptr;
    std::optional<Error> error;
};

int on_data_message(const nlmsghdr* nlh, void* data) {
    auto* ctx = static_cast<BatchContext*>(data);
    Status handled = (*ctx->on_message)(nlh);
    if (!handled) {
        ctx->error = handled.error();
        return MNL_CB_ERROR;
    }
    return MNL_CB_OK;
}

// mnl_cb_run stops without complaint at a truncated trailing message, so
// the framing is checked first: a short datagram must not look complete.
// Not with mnl_nlmsg_ok: it casts nlmsg_len to int, so a length of 2 GiB or
// more passes as negative and the next header is read far out of bounds
// (found by tests/fuzz). Once this check passes, mnl_cb_run is safe.
std::optional<Error> check_framing(const void* buf, size_t len, const std::string& what) {
    size_t left = len;
    auto* at = static_cast<const char*>(buf);
    while (left >= sizeof(nlmsghdr)) {
        const auto* nlh = reinterpret_cast<const nlmsghdr*>(at);
        if (nlh->nlmsg_len < sizeof(nlmsghdr) || nlh->nlmsg_len > left) break;
        // The last message may lack its alignment padding.
        const size_t step = std::min<size_t>(NLMSG_ALIGN(nlh->nlmsg_len), left);
        left -= step;
        at += step;
    }
    if (left > 0) {
        return Error{what + ": truncated netlink message (" + std::to_string(left) + " trailing bytes of " +
                     std::to_string(len) + ")"};
    }
    return std::nullopt;
}

}  // namespace

Result<Batch> decode_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid, const std::string& what,
                           const MessageHandler& on_message) {
    // mnl_cb_run calls an empty datagram "done": it must not end a dump.
    if (len == 0) return Error{what + ": empty netlink datagram"};
    if (auto bad = check_framing(buf, len, what)) return *bad;
    BatchContext ctx{&on_message, std::nullopt};
    errno = 0;
    int rc = mnl_cb_run(buf, len, seq, portid, on_data_message, &ctx);
    if (rc == MNL_CB_OK) return Batch::kMore;
    if (rc == MNL_CB_STOP) return Batch::kDone;
    if (ctx.error) return *ctx.error;
    // libmnl reports NLM_F_DUMP_INTR as EINTR: the kernel's tables changed
    // under the dump, which may then hold duplicates or miss entries.
    if (errno == EINTR) return Batch::kInterrupted;
    // EBADMSG: an NLMSG_ERROR too short to hold its error code; EPROTO: a
    // reply to another request; otherwise the error the kernel sent.
    return errno_error(what, errno);
}

Result<bool> decode_dump_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid, const std::string& what,
                               const MessageHandler& on_message) {
    auto batch = decode_batch(buf, len, seq, portid, what, on_message);
    if (!batch) return batch.error();
    if (*batch == Batch::kInterrupted) {
        return Error{what + ": interrupted by a concurrent change (NLM_F_DUMP_INTR)"};
    }
    return *batch == Batch::kDone;
}

Result<MnlSocket> open_socket(int bus, int flags, const std::string& what) {
    MnlSocket nl(mnl_socket_open2(bus, SOCK_CLOEXEC | flags));
    if (!nl) {
        const int err = errno;
        Error error = errno_error(what + ": open netlink socket", err);
        errno = err;  // for callers that tell a missing protocol apart
        return error;
    }
    if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
        return errno_error(what + ": bind netlink socket", errno);
    }
    return nl;
}

Result<bool> receive_dump(const mnl_socket* nl, uint32_t seq, const std::string& what,
                          const MessageHandler& on_message) {
    const uint32_t portid = mnl_socket_get_portid(nl);
    auto buf = std::make_unique<char[]>(kDumpBufferSize);
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf.get(), kDumpBufferSize);
        if (n < 0) {
            if (errno == EINTR) continue;  // a signal, not the dump: read again
            return errno_error(what + ": receive", errno);
        }
        if (n == 0) return Error{what + ": netlink socket closed before the end of the dump"};
        auto batch = decode_batch(buf.get(), static_cast<size_t>(n), seq, portid, what, on_message);
        if (!batch) return batch.error();
        if (*batch == Batch::kDone) return true;
        if (*batch == Batch::kInterrupted) return false;
    }
}

Result<bool> ask_one(const mnl_socket* nl, const nlmsghdr* request, const std::string& what,
                     const MessageHandler& on_message) {
    if (mnl_socket_sendto(nl, request, request->nlmsg_len) < 0) return errno_error(what + ": send request", errno);
    alignas(nlmsghdr) char buf[8192];
    ssize_t n;
    do {
        n = mnl_socket_recvfrom(nl, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error(what + ": receive", errno);
    const auto* reply = reinterpret_cast<const nlmsghdr*>(buf);
    if (static_cast<size_t>(n) >= NLMSG_SPACE(sizeof(nlmsgerr)) && reply->nlmsg_type == NLMSG_ERROR &&
        reply->nlmsg_seq == request->nlmsg_seq &&
        static_cast<const nlmsgerr*>(NLMSG_DATA(reply))->error == -ENOENT) {
        return false;
    }
    auto batch = decode_batch(buf, static_cast<size_t>(n), request->nlmsg_seq, mnl_socket_get_portid(nl), what,
                              on_message);
    if (!batch) return batch.error();
    return true;
}

}  // namespace depgraph::netlink
