#include "agent/conntrack.hpp"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>

namespace depgraph {

namespace {

const std::string kDumpFailed = "conntrack dump failed";
const std::string kEventsFailed = "conntrack events";
const std::string kLookupFailed = "conntrack lookup failed";
const std::string kMalformed = "malformed conntrack message";
// is_conntrack_unavailable() matches this prefix: Error carries no code.
const std::string kUnavailable = "conntrack over netlink is not available";

// A dump that the kernel marks inconsistent (NLM_F_DUMP_INTR) is retried
// this many times before giving up.
constexpr int kDumpAttempts = 3;

// read_available() returns after this many datagrams (one event each), so a
// flood of events cannot keep the caller's loop from its other work.
constexpr int kMaxDatagramsPerRead = 4096;

// Enough for the one-message answers read outside a dump.
constexpr size_t kSmallReplyBytes = 8192;

Error malformed(const std::string& where, const std::string& problem) {
    return Error{kMalformed + ": " + where + problem};
}

// The kernel answers EPROTONOSUPPORT for a netlink family it lacks
// (NETLINK_NETFILTER), EINVAL from nfnetlink for a subsystem nobody has
// registered (no nf_conntrack_netlink), and EOPNOTSUPP for a message type
// the subsystem lacks.
bool means_unavailable(int err) { return err == EPROTONOSUPPORT || err == EINVAL || err == EOPNOTSUPP; }

// Conntrack over netlink answers EPERM to a process without CAP_NET_ADMIN,
// and says no more: the message names what is missing.
Error refused(const std::string& what, int err) {
    Error e = errno_error(what, err);
    if (err == EPERM || err == EACCES) e.message += " (conntrack needs root or CAP_NET_ADMIN)";
    return e;
}

Error unavailable(const std::string& what, int err) {
    return Error{kUnavailable + " (" + what + ": " + errno_text(err) +
                 "): NAT is not followed; load nf_conntrack_netlink to enable it"};
}

// ---------------------------------------------------------------- parsing

using AttrTable = std::vector<const nlattr*>;

int collect_attr(const nlattr* attr, void* data) {
    auto* table = static_cast<AttrTable*>(data);
    const uint16_t type = mnl_attr_get_type(attr);
    // Types past the table are attributes of newer kernels: not ours to judge.
    if (type < table->size()) (*table)[type] = attr;
    return MNL_CB_OK;
}

// mnl_attr_parse* stop without complaint at a truncated attribute (or a
// zero nla_len), which would silently drop the rest: check the whole
// stream of attributes first.
std::optional<Error> check_attr_framing(const void* payload, size_t len, const std::string& where) {
    int left = static_cast<int>(len);
    auto* attr = static_cast<const nlattr*>(payload);
    while (mnl_attr_ok(attr, left)) {
        left -= static_cast<int>(MNL_ALIGN(attr->nla_len));
        attr = mnl_attr_next(attr);
    }
    // Negative `left` is only the alignment padding of the last attribute.
    if (left > 0) {
        return malformed(where, "truncated attribute (" + std::to_string(left) + " trailing bytes of " +
                                    std::to_string(len) + ")");
    }
    return std::nullopt;
}

std::optional<Error> check_payload(const nlattr* attr, mnl_attr_data_type type, size_t expected,
                                   const std::string& where) {
    if (mnl_attr_validate2(attr, type, expected) == 0) return std::nullopt;
    return malformed(where, "payload of " + std::to_string(mnl_attr_get_payload_len(attr)) + " bytes, expected " +
                                std::to_string(expected));
}

// The attributes of a nest, by type; `where` names the nest for errors.
Result<AttrTable> parse_nest(const nlattr* nest, uint16_t max_type, const std::string& where) {
    if (mnl_attr_validate(nest, MNL_TYPE_NESTED) < 0) {
        return malformed(where, "not a nested attribute (payload of " +
                                    std::to_string(mnl_attr_get_payload_len(nest)) + " bytes)");
    }
    if (auto bad = check_attr_framing(mnl_attr_get_payload(nest), mnl_attr_get_payload_len(nest), where)) {
        return *bad;
    }
    AttrTable table(max_type + 1u, nullptr);
    mnl_attr_parse_nested(nest, collect_attr, &table);
    return table;
}

bool has_ports(uint8_t l4proto) {
    return l4proto == IPPROTO_TCP || l4proto == IPPROTO_UDP || l4proto == IPPROTO_UDPLITE ||
           l4proto == IPPROTO_SCTP || l4proto == IPPROTO_DCCP;
}

struct Tuple {
    std::array<uint8_t, 16> src{}, dst{};
    uint16_t sport = 0, dport = 0;  // host order
    uint8_t l4proto = 0;
};

Result<std::array<uint8_t, 16>> parse_address(const AttrTable& ip, uint16_t type, size_t len,
                                              const std::string& where) {
    if (!ip[type]) return malformed(where, "missing");
    if (auto bad = check_payload(ip[type], MNL_TYPE_BINARY, len, where)) return *bad;
    std::array<uint8_t, 16> address{};
    std::memcpy(address.data(), mnl_attr_get_payload(ip[type]), len);
    return address;
}

Status parse_tuple_ip(const nlattr* nest, int family, const std::string& where, Tuple& tuple) {
    auto ip = parse_nest(nest, CTA_IP_MAX, where);
    if (!ip) return ip.error();
    const bool v4 = family == AF_INET;
    const uint16_t src = v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC;
    const uint16_t dst = v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST;
    // An address of the other family would mean the header's family lies.
    for (uint16_t other : {v4 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, v4 ? CTA_IP_V6_DST : CTA_IP_V4_DST}) {
        if ((*ip)[other]) return malformed(where, "address of the wrong family (attribute " + std::to_string(other) + ")");
    }
    const size_t len = v4 ? 4 : 16;
    auto s = parse_address(*ip, src, len, where + (v4 ? "CTA_IP_V4_SRC: " : "CTA_IP_V6_SRC: "));
    if (!s) return s.error();
    auto d = parse_address(*ip, dst, len, where + (v4 ? "CTA_IP_V4_DST: " : "CTA_IP_V6_DST: "));
    if (!d) return d.error();
    tuple.src = *s;
    tuple.dst = *d;
    return ok_status();
}

Result<uint16_t> parse_port(const AttrTable& proto, uint16_t type, bool required, const std::string& where) {
    if (!proto[type]) {
        if (required) return malformed(where, "missing");
        return uint16_t{0};
    }
    if (auto bad = check_payload(proto[type], MNL_TYPE_U16, sizeof(uint16_t), where)) return *bad;
    return ntohs(mnl_attr_get_u16(proto[type]));
}

Status parse_tuple_proto(const nlattr* nest, const std::string& where, Tuple& tuple) {
    auto proto = parse_nest(nest, CTA_PROTO_MAX, where);
    if (!proto) return proto.error();
    const nlattr* num = (*proto)[CTA_PROTO_NUM];
    if (!num) return malformed(where + "CTA_PROTO_NUM: ", "missing");
    if (auto bad = check_payload(num, MNL_TYPE_U8, sizeof(uint8_t), where + "CTA_PROTO_NUM: ")) return *bad;
    tuple.l4proto = mnl_attr_get_u8(num);
    // ICMP and friends carry type/code/id instead; their ports stay 0.
    const bool required = has_ports(tuple.l4proto);
    auto sport = parse_port(*proto, CTA_PROTO_SRC_PORT, required, where + "CTA_PROTO_SRC_PORT: ");
    if (!sport) return sport.error();
    auto dport = parse_port(*proto, CTA_PROTO_DST_PORT, required, where + "CTA_PROTO_DST_PORT: ");
    if (!dport) return dport.error();
    tuple.sport = *sport;
    tuple.dport = *dport;
    return ok_status();
}

Result<Tuple> parse_tuple(const AttrTable& top, uint16_t type, int family, const std::string& name) {
    const std::string where = name + ": ";
    if (!top[type]) return malformed(where, "missing");
    auto tuple_attrs = parse_nest(top[type], CTA_TUPLE_MAX, where);
    if (!tuple_attrs) return tuple_attrs.error();
    const nlattr* ip = (*tuple_attrs)[CTA_TUPLE_IP];
    const nlattr* proto = (*tuple_attrs)[CTA_TUPLE_PROTO];
    Tuple tuple;
    if (!ip) return malformed(where + "CTA_TUPLE_IP: ", "missing");
    if (auto st = parse_tuple_ip(ip, family, where + "CTA_TUPLE_IP: ", tuple); !st) return st.error();
    if (!proto) return malformed(where + "CTA_TUPLE_PROTO: ", "missing");
    if (auto st = parse_tuple_proto(proto, where + "CTA_TUPLE_PROTO: ", tuple); !st) return st.error();
    return tuple;
}

Result<uint32_t> parse_u32(const AttrTable& top, uint16_t type, const std::string& name) {
    if (!top[type]) return malformed(name + ": ", "missing");
    if (auto bad = check_payload(top[type], MNL_TYPE_U32, sizeof(uint32_t), name + ": ")) return *bad;
    return ntohl(mnl_attr_get_u32(top[type]));
}

// The TCP state from CTA_PROTOINFO, which dumps and DESTROY events carry
// (NEW events only when the state changed with them); 0 when absent.
Result<uint8_t> parse_tcp_state(const AttrTable& top) {
    if (!top[CTA_PROTOINFO]) return uint8_t{0};
    auto info = parse_nest(top[CTA_PROTOINFO], CTA_PROTOINFO_MAX, "CTA_PROTOINFO: ");
    if (!info) return info.error();
    if (!(*info)[CTA_PROTOINFO_TCP]) return uint8_t{0};
    auto tcp = parse_nest((*info)[CTA_PROTOINFO_TCP], CTA_PROTOINFO_TCP_MAX, "CTA_PROTOINFO_TCP: ");
    if (!tcp) return tcp.error();
    const nlattr* state = (*tcp)[CTA_PROTOINFO_TCP_STATE];
    if (!state) return uint8_t{0};
    if (auto bad = check_payload(state, MNL_TYPE_U8, sizeof(uint8_t), "CTA_PROTOINFO_TCP_STATE: ")) return *bad;
    return mnl_attr_get_u8(state);
}

// Keeps the flows of one transport protocol (0: all).
netlink::MessageHandler append_to(std::vector<ConntrackFlow>& out, uint8_t l4proto = 0) {
    return [&out, l4proto](const nlmsghdr* nlh) -> Status {
        auto flow = parse_conntrack_msg(nlh);
        if (!flow) return flow.error();
        if (l4proto == 0 || flow->l4proto == l4proto) out.push_back(std::move(*flow));
        return ok_status();
    };
}

// ---------------------------------------------------------------- requests

// The header of a ctnetlink request in `buf`; attributes may follow.
nlmsghdr* put_request(char* buf, uint8_t msg_type, uint16_t flags, uint32_t seq, uint8_t family) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = static_cast<uint16_t>(NFNL_SUBSYS_CTNETLINK << 8 | msg_type);
    nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
    nlh->nlmsg_seq = seq;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = 0;
    return nlh;
}

// A request without attributes, for both IPv4 and IPv6.
Status send_request(const mnl_socket* nl, uint8_t msg_type, uint16_t flags, uint32_t seq, const std::string& what) {
    alignas(nlmsghdr) char buf[MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(nfgenmsg))] = {};
    nlmsghdr* nlh = put_request(buf, msg_type, flags, seq, AF_UNSPEC);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return errno_error(what + ": send request", errno);
    return ok_status();
}

// The original tuple of `flow`, as CTA_TUPLE_ORIG: what names an entry.
void put_orig_tuple(nlmsghdr* nlh, const ConntrackFlow& flow) {
    const bool v4 = flow.family == AF_INET;
    const size_t len = v4 ? 4 : 16;
    nlattr* tuple = mnl_attr_nest_start(nlh, CTA_TUPLE_ORIG);
    nlattr* ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
    mnl_attr_put(nlh, v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, len, flow.orig_src.data());
    mnl_attr_put(nlh, v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, len, flow.orig_dst.data());
    mnl_attr_nest_end(nlh, ip);
    nlattr* proto = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
    mnl_attr_put_u8(nlh, CTA_PROTO_NUM, flow.l4proto);
    mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(flow.orig_sport));
    mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(flow.orig_dport));
    mnl_attr_nest_end(nlh, proto);
    mnl_attr_nest_end(nlh, tuple);
}

// Asks for the table's statistics, a one-message request that fails the
// way a dump would on a kernel without ctnetlink, but before any data: the
// errno is still ours to read (a dump's error comes back as text).
Status probe(const mnl_socket* nl, const std::string& what) {
    const auto seq = static_cast<uint32_t>(std::time(nullptr));
    if (auto sent = send_request(nl, IPCTNL_MSG_CT_GET_STATS, 0, seq, what); !sent) return sent.error();
    alignas(nlmsghdr) char buf[kSmallReplyBytes];
    ssize_t n;
    do {
        n = mnl_socket_recvfrom(nl, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error(what + ": receive", errno);
    errno = 0;
    if (mnl_cb_run(buf, static_cast<size_t>(n), seq, mnl_socket_get_portid(nl), nullptr, nullptr) < 0) {
        if (means_unavailable(errno)) return unavailable("conntrack statistics request", errno);
        return refused(what + ": conntrack statistics request", errno);
    }
    return ok_status();
}

// Reads and drops whatever is queued, e.g. the rest of a dump that an
// earlier error abandoned: it would otherwise answer the next request.
void drain(const mnl_socket* nl) {
    alignas(nlmsghdr) char buf[kSmallReplyBytes];
    while (recv(mnl_socket_get_fd(nl), buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

// A complete dump on `nl`, which may have served earlier ones.
Result<std::vector<ConntrackFlow>> dump_on(const mnl_socket* nl, uint8_t l4proto) {
    for (int attempt = 1; attempt <= kDumpAttempts; ++attempt) {
        drain(nl);
        // A fresh sequence number per attempt, so that a late datagram of
        // an earlier attempt is refused (EPROTO) rather than counted twice.
        const auto seq = static_cast<uint32_t>(std::time(nullptr)) + static_cast<uint32_t>(attempt);
        if (auto sent = send_request(nl, IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq, kDumpFailed); !sent) return sent.error();
        std::vector<ConntrackFlow> flows;
        auto complete = netlink::receive_dump(nl, seq, kDumpFailed, append_to(flows, l4proto));
        if (!complete) return complete.error();
        if (*complete) return flows;
    }
    return Error{kDumpFailed + ": interrupted by concurrent changes " + std::to_string(kDumpAttempts) +
                 " times in a row"};
}

Result<netlink::MnlSocket> open_netfilter_socket(int flags, const std::string& what) {
    auto nl = netlink::open_socket(NETLINK_NETFILTER, flags, what);
    if (!nl && means_unavailable(errno)) return unavailable("open NETLINK_NETFILTER socket", errno);
    return nl;
}

// Enlarges the receive buffer as far as allowed; returns what the kernel granted.
Result<size_t> set_receive_buffer(int fd, size_t bytes) {
    const int size = bytes > static_cast<size_t>(INT32_MAX / 2) ? INT32_MAX / 2 : static_cast<int>(bytes);
    // SO_RCVBUFFORCE passes net.core.rmem_max but needs CAP_NET_ADMIN;
    // SO_RCVBUF works for anyone, capped at rmem_max.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) < 0) {
        return errno_error(kEventsFailed + ": set receive buffer to " + std::to_string(bytes) + " bytes", errno);
    }
    int granted = 0;
    socklen_t len = sizeof granted;
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &len) < 0) {
        return errno_error(kEventsFailed + ": read receive buffer size", errno);
    }
    return static_cast<size_t>(granted);
}

}  // namespace

// ---------------------------------------------------------------- public

bool ConntrackFlow::dnat() const {
    if (status & IPS_DST_NAT_DONE) return (status & IPS_DST_NAT) != 0;
    return reply_src != orig_dst || reply_sport != orig_dport;
}

bool ConntrackFlow::snat() const {
    if (status & IPS_SRC_NAT_DONE) return (status & IPS_SRC_NAT) != 0;
    return reply_dst != orig_src || reply_dport != orig_sport;
}

bool ConntrackFlow::established() const { return (status & IPS_ASSURED) != 0; }

bool ConntrackFlow::refused() const { return !established() && tcp_state == TCP_CONNTRACK_CLOSE; }

bool is_conntrack_unavailable(const Error& error) { return error.message.rfind(kUnavailable, 0) == 0; }

Result<ConntrackFlow> parse_conntrack_msg(const nlmsghdr* nlh) {
    const size_t header = MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(nfgenmsg));
    if (nlh->nlmsg_len < header) {
        return malformed("", "truncated (" + std::to_string(nlh->nlmsg_len) + " bytes, need " +
                                 std::to_string(header) + ")");
    }
    const uint16_t type = nlh->nlmsg_type;
    const int msg = NFNL_MSG_TYPE(type);
    if (NFNL_SUBSYS_ID(type) != NFNL_SUBSYS_CTNETLINK || (msg != IPCTNL_MSG_CT_NEW && msg != IPCTNL_MSG_CT_DELETE)) {
        return malformed("", "unexpected message type " + std::to_string(type));
    }
    nfgenmsg nfg;
    std::memcpy(&nfg, mnl_nlmsg_get_payload(nlh), sizeof nfg);
    if (nfg.nfgen_family != AF_INET && nfg.nfgen_family != AF_INET6) {
        return malformed("", "unexpected address family " + std::to_string(nfg.nfgen_family));
    }
    if (auto bad = check_attr_framing(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)),
                                      nlh->nlmsg_len - header, "")) {
        return *bad;
    }
    AttrTable top(CTA_MAX + 1u, nullptr);
    mnl_attr_parse(nlh, sizeof(nfgenmsg), collect_attr, &top);

    ConntrackFlow flow;
    flow.family = nfg.nfgen_family;
    flow.destroyed = msg == IPCTNL_MSG_CT_DELETE;
    auto orig = parse_tuple(top, CTA_TUPLE_ORIG, flow.family, "CTA_TUPLE_ORIG");
    if (!orig) return orig.error();
    auto reply = parse_tuple(top, CTA_TUPLE_REPLY, flow.family, "CTA_TUPLE_REPLY");
    if (!reply) return reply.error();
    if (orig->l4proto != reply->l4proto) {
        return malformed("", "protocol " + std::to_string(orig->l4proto) + " in the original tuple, " +
                                 std::to_string(reply->l4proto) + " in the reply tuple");
    }
    // Dumps and events always carry both (ctnetlink_fill_info,
    // ctnetlink_conntrack_event): without them a message was cut short.
    auto status = parse_u32(top, CTA_STATUS, "CTA_STATUS");
    if (!status) return status.error();
    auto id = parse_u32(top, CTA_ID, "CTA_ID");
    if (!id) return id.error();
    auto tcp_state = parse_tcp_state(top);
    if (!tcp_state) return tcp_state.error();

    flow.l4proto = orig->l4proto;
    flow.orig_src = orig->src;
    flow.orig_dst = orig->dst;
    flow.orig_sport = orig->sport;
    flow.orig_dport = orig->dport;
    flow.reply_src = reply->src;
    flow.reply_dst = reply->dst;
    flow.reply_sport = reply->sport;
    flow.reply_dport = reply->dport;
    flow.status = *status;
    flow.id = *id;
    flow.tcp_state = *tcp_state;
    return flow;
}

Result<bool> parse_conntrack_batch(const void* buf, size_t len, uint32_t seq, uint32_t portid,
                                   std::vector<ConntrackFlow>& out) {
    return netlink::decode_dump_batch(buf, len, seq, portid, kDumpFailed, append_to(out));
}

Result<std::vector<ConntrackFlow>> dump_conntrack(uint8_t l4proto) {
    auto nl = open_netfilter_socket(0, kDumpFailed);
    if (!nl) return nl.error();
    if (auto st = probe(nl->get(), kDumpFailed); !st) return st.error();
    return dump_on(nl->get(), l4proto);
}

Result<ConntrackTable> ConntrackTable::open() {
    auto nl = open_netfilter_socket(0, kLookupFailed);
    if (!nl) return nl.error();
    return ConntrackTable(std::move(*nl));
}

Result<std::optional<ConntrackFlow>> ConntrackTable::find(const ConntrackFlow& flow) {
    alignas(nlmsghdr) char buf[kSmallReplyBytes] = {};
    nlmsghdr* nlh = put_request(buf, IPCTNL_MSG_CT_GET, 0, ++seq_, static_cast<uint8_t>(flow.family));
    put_orig_tuple(nlh, flow);
    std::vector<ConntrackFlow> found;
    auto answered = netlink::ask_one(nl_.get(), nlh, kLookupFailed, append_to(found));
    if (!answered) return answered.error();
    if (!*answered || found.size() != 1 || found[0].id != flow.id) return std::optional<ConntrackFlow>{};
    return std::optional<ConntrackFlow>(std::move(found[0]));
}

ConntrackEvents::ConntrackEvents(netlink::MnlSocket events, netlink::MnlSocket dumps, const Options& options,
                                 size_t granted)
    : events_(std::move(events)), dumps_(std::move(dumps)), options_(options), receive_buffer_bytes_(granted) {}

Result<ConntrackEvents> ConntrackEvents::open(const Options& options) {
    auto events = open_netfilter_socket(SOCK_NONBLOCK, kEventsFailed);
    if (!events) return events.error();
    auto dumps = open_netfilter_socket(0, kEventsFailed);
    if (!dumps) return dumps.error();
    // Joining the groups succeeds even without ctnetlink (nfnetlink only
    // asks for the module): the probe is what tells.
    if (auto st = probe(dumps->get(), kEventsFailed); !st) return st.error();
    for (int group : {NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_DESTROY}) {
        if (mnl_socket_setsockopt(events->get(), NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) {
            return refused(kEventsFailed + ": join multicast group " + std::to_string(group), errno);
        }
    }
    auto granted = set_receive_buffer(mnl_socket_get_fd(events->get()), options.receive_buffer_bytes);
    if (!granted) return granted.error();
    return ConntrackEvents(std::move(*events), std::move(*dumps), options, *granted);
}

int ConntrackEvents::fd() const { return mnl_socket_get_fd(events_.get()); }

Result<std::vector<ConntrackFlow>> ConntrackEvents::read_available() {
    std::vector<ConntrackFlow> flows;
    auto buf = std::make_unique<char[]>(netlink::kDumpBufferSize);
    for (int datagrams = 0; datagrams < kMaxDatagramsPerRead;) {
        ssize_t n = mnl_socket_recvfrom(events_.get(), buf.get(), netlink::kDumpBufferSize);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) {
                // The kernel dropped events; the socket goes on with later ones.
                ++enobufs_;
                resync_needed_ = true;
                continue;
            }
            return errno_error(kEventsFailed + ": receive", errno);
        }
        ++datagrams;
        // Events carry sequence number 0 and the port id of whoever caused
        // them: 0, 0 checks neither.
        auto batch = netlink::decode_batch(buf.get(), static_cast<size_t>(n), 0, 0, kEventsFailed,
                                           append_to(flows, options_.l4proto));
        if (!batch) {
            // The events read so far are dropped with the error: a resync replaces them.
            resync_needed_ = true;
            return batch.error();
        }
    }
    return flows;
}

bool ConntrackEvents::resync_due() const {
    if (!resync_needed_) return false;
    return !last_resync_ || std::chrono::steady_clock::now() - *last_resync_ >= options_.min_resync_interval;
}

Result<std::optional<std::vector<ConntrackFlow>>> ConntrackEvents::resync() {
    if (!resync_due()) return std::optional<std::vector<ConntrackFlow>>{};
    // A failed dump counts for the rate limit too: a broken table must not
    // be asked again in a loop.
    last_resync_ = std::chrono::steady_clock::now();
    auto flows = dump_on(dumps_.get(), options_.l4proto);
    if (!flows) return flows.error();
    resync_needed_ = false;
    return std::optional<std::vector<ConntrackFlow>>(std::move(*flows));
}

}  // namespace depgraph
