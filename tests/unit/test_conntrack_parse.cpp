// The conntrack message parser on hand-built ctnetlink messages: IPv4, IPv6,
// DNAT, SNAT and plain flows; truncated and malformed attributes must be
// errors, never crashes or guesses. No privileges and no kernel features.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "agent/conntrack.hpp"
#include "common/address.hpp"
#include "tests/unit/conntrack_messages.hpp"

using namespace depgraph;
using depgraph::test::CtMessage;
using depgraph::test::Datagram;
using depgraph::test::fill_flow;
using depgraph::test::kCtPortid;
using depgraph::test::kCtSeq;
using depgraph::test::TupleSpec;

namespace {

// What ctnetlink sends once the NAT core has bound both directions.
constexpr uint32_t kNatDone = IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE;
constexpr uint32_t kConfirmed = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED;

ConntrackFlow parse_ok(const std::vector<uint8_t>& bytes) {
    auto flow = parse_conntrack_msg(reinterpret_cast<const nlmsghdr*>(bytes.data()));
    INFO((flow ? std::string() : flow.error().message));
    REQUIRE(flow.ok());
    return *flow;
}

ConntrackFlow parse_ok(const CtMessage& m) { return parse_ok(m.bytes()); }

void require_malformed(const CtMessage& m, const std::string& fragment) {
    const std::vector<uint8_t> bytes = m.bytes();
    auto flow = parse_conntrack_msg(reinterpret_cast<const nlmsghdr*>(bytes.data()));
    REQUIRE_FALSE(flow.ok());
    CHECK_THAT(flow.error().message, Catch::StartsWith("malformed conntrack message") && Catch::Contains(fragment));
    CHECK_FALSE(is_conntrack_unavailable(flow.error()));
}

std::string text(const ConntrackFlow& f, const std::array<uint8_t, 16>& a) { return format_address(f.family, a.data()); }

// The original tuple of a plain client connection and its reply.
const TupleSpec kOrig{"198.18.0.1", 40000, "198.18.0.2", 5432};
const TupleSpec kReply{"198.18.0.2", 5432, "198.18.0.1", 40000};

using Part = std::function<void(CtMessage&)>;

// An original tuple whose CTA_TUPLE_IP and CTA_TUPLE_PROTO contents the test
// writes itself (an empty Part leaves that nest out), then a good reply
// tuple of `reply_proto`, status and id.
void orig_tuple_of(CtMessage& m, const Part& ip, const Part& proto, uint8_t reply_proto = IPPROTO_TCP) {
    nlattr* orig = m.nest(CTA_TUPLE_ORIG);
    for (auto [type, part] : {std::pair{CTA_TUPLE_IP, &ip}, std::pair{CTA_TUPLE_PROTO, &proto}}) {
        if (!*part) continue;
        nlattr* nest = m.nest(type);
        (*part)(m);
        m.end(nest);
    }
    m.end(orig);
    m.tuple(CTA_TUPLE_REPLY, {"198.18.0.2", 5432, "198.18.0.1", 40000, reply_proto});
    m.u32(CTA_STATUS, kConfirmed).u32(CTA_ID, 1);
}

void good_ip(CtMessage& m) {
    m.address(CTA_IP_V4_SRC, "198.18.0.1");
    m.address(CTA_IP_V4_DST, "198.18.0.2");
}

void tcp_ports(CtMessage& m) {
    mnl_attr_put_u8(m.nlh(), CTA_PROTO_NUM, IPPROTO_TCP);
    mnl_attr_put_u16(m.nlh(), CTA_PROTO_SRC_PORT, htons(40000));
    mnl_attr_put_u16(m.nlh(), CTA_PROTO_DST_PORT, htons(5432));
}

}  // namespace

TEST_CASE("a plain IPv4 flow decodes to both tuples, host-order ports, status and id") {
    CtMessage m(AF_INET);
    fill_flow(m, kOrig, kReply, kConfirmed | kNatDone, 0xdeadbeef);
    ConntrackFlow f = parse_ok(m);
    CHECK(f.family == AF_INET);
    CHECK(f.l4proto == IPPROTO_TCP);
    CHECK(text(f, f.orig_src) == "198.18.0.1");
    CHECK(text(f, f.orig_dst) == "198.18.0.2");
    CHECK(f.orig_sport == 40000);
    CHECK(f.orig_dport == 5432);
    CHECK(text(f, f.reply_src) == "198.18.0.2");
    CHECK(text(f, f.reply_dst) == "198.18.0.1");
    CHECK(f.reply_sport == 5432);
    CHECK(f.reply_dport == 40000);
    CHECK(f.status == (kConfirmed | kNatDone));
    CHECK(f.id == 0xdeadbeef);
    CHECK_FALSE(f.destroyed);
    CHECK_FALSE(f.dnat());
    CHECK_FALSE(f.snat());
    // IPv4 sits in the first 4 bytes, the rest stays zero.
    CHECK(f.orig_src == std::array<uint8_t, 16>{198, 18, 0, 1});
}

TEST_CASE("an IPv6 flow keeps all 16 bytes") {
    CtMessage m(AF_INET6);
    fill_flow(m, {"2001:db8::1", 50000, "2001:db8::2", 443}, {"2001:db8::2", 443, "2001:db8::1", 50000}, kConfirmed,
              7);
    ConntrackFlow f = parse_ok(m);
    CHECK(f.family == AF_INET6);
    CHECK(text(f, f.orig_src) == "2001:db8::1");
    CHECK(text(f, f.reply_src) == "2001:db8::2");
    CHECK(f.orig_dport == 443);
    CHECK_FALSE(f.dnat());
    CHECK_FALSE(f.snat());
}

TEST_CASE("DNAT: the reply's source is where the connection really went") {
    CtMessage m(AF_INET);
    fill_flow(m, {"198.18.0.1", 40000, "198.18.5.5", 80}, {"198.18.0.2", 8080, "198.18.0.1", 40000},
              kConfirmed | kNatDone | IPS_DST_NAT, 1);
    ConntrackFlow f = parse_ok(m);
    CHECK(f.dnat());
    CHECK_FALSE(f.snat());
    CHECK(text(f, f.orig_dst) == "198.18.5.5");
    CHECK(f.orig_dport == 80);
    CHECK(text(f, f.reply_src) == "198.18.0.2");
    CHECK(f.reply_sport == 8080);
}

TEST_CASE("SNAT: the reply's destination is the address the server saw") {
    CtMessage m(AF_INET);
    fill_flow(m, {"198.18.0.1", 40000, "198.18.0.2", 5432}, {"198.18.0.2", 5432, "198.18.1.1", 61000},
              kConfirmed | kNatDone | IPS_SRC_NAT, 2);
    ConntrackFlow f = parse_ok(m);
    CHECK(f.snat());
    CHECK_FALSE(f.dnat());
    CHECK(text(f, f.reply_dst) == "198.18.1.1");
    CHECK(f.reply_dport == 61000);
}

TEST_CASE("dnat()/snat(): the kernel's status bits when it sent them, the tuples otherwise") {
    const TupleSpec dnat_reply{"198.18.0.2", 8080, "198.18.0.1", 40000};
    const TupleSpec vip{"198.18.0.1", 40000, "198.18.5.5", 80};
    SECTION("no NAT bits at all: tuples decide") {
        CtMessage m(AF_INET);
        fill_flow(m, vip, dnat_reply, 0, 3);
        ConntrackFlow f = parse_ok(m);
        CHECK(f.dnat());
        CHECK_FALSE(f.snat());
    }
    SECTION("a port alone translated counts") {
        CtMessage m(AF_INET);
        fill_flow(m, kOrig, {"198.18.0.2", 5432, "198.18.0.1", 40001}, kConfirmed, 3);
        ConntrackFlow f = parse_ok(m);
        CHECK(f.snat());
        CHECK_FALSE(f.dnat());
    }
    SECTION("NAT bound (_DONE) without a translation bit: the kernel's word wins") {
        CtMessage m(AF_INET);
        fill_flow(m, vip, dnat_reply, kConfirmed | kNatDone, 3);
        CHECK_FALSE(parse_ok(m).dnat());
    }
    SECTION("no _DONE bit (no NAT in that namespace): tuples decide") {
        CtMessage m(AF_INET);
        fill_flow(m, vip, dnat_reply, kConfirmed, 3);
        CHECK(parse_ok(m).dnat());
    }
}

TEST_CASE("a DESTROY event is a flow marked destroyed") {
    CtMessage m(AF_INET, IPCTNL_MSG_CT_DELETE);
    fill_flow(m, kOrig, kReply, kConfirmed, 9);
    ConntrackFlow f = parse_ok(m);
    CHECK(f.destroyed);
    CHECK(f.id == 9);
}

TEST_CASE("protocols without ports, and unknown attributes, are accepted") {
    SECTION("ICMP carries no ports: they stay 0") {
        CtMessage m(AF_INET);
        orig_tuple_of(m, good_ip, [](CtMessage& msg) {
            mnl_attr_put_u8(msg.nlh(), CTA_PROTO_NUM, IPPROTO_ICMP);
            mnl_attr_put_u16(msg.nlh(), CTA_PROTO_ICMP_ID, htons(77));
        }, IPPROTO_ICMP);
        ConntrackFlow f = parse_ok(m);
        CHECK(f.l4proto == IPPROTO_ICMP);
        CHECK(f.orig_sport == 0);
        CHECK(f.orig_dport == 0);
    }
    SECTION("attributes of a newer kernel are skipped") {
        CtMessage m(AF_INET);
        fill_flow(m, kOrig, kReply, kConfirmed, 4);
        const uint64_t future = 42;
        m.put(CTA_MAX + 5, &future, sizeof future);
        m.u32(CTA_MARK, 1);
        CHECK(parse_ok(m).id == 4);
    }
}

TEST_CASE("malformed messages are clear errors") {
    CtMessage m(AF_INET);
    SECTION("shorter than its nfgenmsg header") {
        m.nlh()->nlmsg_len = MNL_NLMSG_HDRLEN + 2;
        require_malformed(m, "truncated (18 bytes, need 20)");
    }
    SECTION("a message of another netfilter subsystem") {
        fill_flow(m, kOrig, kReply, kConfirmed, 1);
        m.nlh()->nlmsg_type = NFNL_SUBSYS_CTNETLINK_EXP << 8 | IPCTNL_MSG_EXP_NEW;
        require_malformed(m, "unexpected message type");
    }
    SECTION("a conntrack message that is not a flow") {
        m.nlh()->nlmsg_type = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_GET_STATS;
        require_malformed(m, "unexpected message type");
    }
    SECTION("an address family that is neither IPv4 nor IPv6") {
        CtMessage unix_family(AF_UNIX);
        fill_flow(unix_family, kOrig, kReply, kConfirmed, 1);
        require_malformed(unix_family, "unexpected address family 1");
    }
    SECTION("missing reply tuple") {
        m.tuple(CTA_TUPLE_ORIG, kOrig).u32(CTA_STATUS, kConfirmed);
        require_malformed(m, "CTA_TUPLE_REPLY: missing");
    }
    SECTION("missing original tuple") {
        m.tuple(CTA_TUPLE_REPLY, kReply);
        require_malformed(m, "CTA_TUPLE_ORIG: missing");
    }
    SECTION("a tuple that is not nested") {
        const uint16_t two = 2;
        m.put(CTA_TUPLE_ORIG, &two, sizeof two);
        m.tuple(CTA_TUPLE_REPLY, kReply);
        require_malformed(m, "CTA_TUPLE_ORIG: not a nested attribute (payload of 2 bytes)");
    }
    SECTION("an empty tuple") {
        m.end(m.nest(CTA_TUPLE_ORIG));
        m.tuple(CTA_TUPLE_REPLY, kReply);
        require_malformed(m, "CTA_TUPLE_ORIG: CTA_TUPLE_IP: missing");
    }
    SECTION("a tuple without its protocol") {
        orig_tuple_of(m, good_ip, {});
        require_malformed(m, "CTA_TUPLE_ORIG: CTA_TUPLE_PROTO: missing");
    }
    SECTION("bad nesting: the IP attributes directly in the tuple") {
        nlattr* orig = m.nest(CTA_TUPLE_ORIG);
        good_ip(m);  // type 1 = CTA_TUPLE_IP, but 4 bytes of address, not a nest
        m.end(orig);
        m.tuple(CTA_TUPLE_REPLY, kReply);
        require_malformed(m, "CTA_TUPLE_ORIG: CTA_TUPLE_IP: truncated attribute");
    }
    SECTION("an IPv4 address of 3 bytes") {
        orig_tuple_of(m, [](CtMessage& msg) {
            const uint8_t short_addr[3] = {198, 18, 0};
            msg.put(CTA_IP_V4_SRC, short_addr, sizeof short_addr);
            msg.address(CTA_IP_V4_DST, "198.18.0.2");
        }, tcp_ports);
        require_malformed(m, "CTA_TUPLE_ORIG: CTA_TUPLE_IP: CTA_IP_V4_SRC: payload of 3 bytes, expected 4");
    }
    SECTION("an IPv6 address in an IPv4 message") {
        orig_tuple_of(m, [](CtMessage& msg) {
            msg.address(CTA_IP_V6_SRC, "2001:db8::1");
            msg.address(CTA_IP_V6_DST, "2001:db8::2");
        }, tcp_ports);
        require_malformed(m, "address of the wrong family");
    }
    SECTION("a missing destination address") {
        orig_tuple_of(m, [](CtMessage& msg) { msg.address(CTA_IP_V4_SRC, "198.18.0.1"); }, tcp_ports);
        require_malformed(m, "CTA_IP_V4_DST: missing");
    }
    SECTION("a TCP tuple without ports") {
        orig_tuple_of(m, good_ip, [](CtMessage& msg) { mnl_attr_put_u8(msg.nlh(), CTA_PROTO_NUM, IPPROTO_TCP); });
        require_malformed(m, "CTA_PROTO_SRC_PORT: missing");
    }
    SECTION("a port of 4 bytes") {
        orig_tuple_of(m, good_ip, [](CtMessage& msg) {
            mnl_attr_put_u8(msg.nlh(), CTA_PROTO_NUM, IPPROTO_TCP);
            mnl_attr_put_u32(msg.nlh(), CTA_PROTO_SRC_PORT, 80);
            mnl_attr_put_u16(msg.nlh(), CTA_PROTO_DST_PORT, 80);
        });
        require_malformed(m, "CTA_PROTO_SRC_PORT: payload of 4 bytes, expected 2");
    }
    SECTION("tuples of different protocols") {
        orig_tuple_of(m, good_ip, tcp_ports, IPPROTO_UDP);
        require_malformed(m, "protocol 6 in the original tuple, 17 in the reply tuple");
    }
    SECTION("a status of 2 bytes") {
        m.tuple(CTA_TUPLE_ORIG, kOrig).tuple(CTA_TUPLE_REPLY, kReply);
        mnl_attr_put_u16(m.nlh(), CTA_STATUS, 1);
        require_malformed(m, "CTA_STATUS: payload of 2 bytes, expected 4");
    }
    SECTION("no status") {
        m.tuple(CTA_TUPLE_ORIG, kOrig).tuple(CTA_TUPLE_REPLY, kReply).u32(CTA_ID, 1);
        require_malformed(m, "CTA_STATUS: missing");
    }
    SECTION("no id") {
        m.tuple(CTA_TUPLE_ORIG, kOrig).tuple(CTA_TUPLE_REPLY, kReply).u32(CTA_STATUS, kConfirmed);
        require_malformed(m, "CTA_ID: missing");
    }
    SECTION("an id of 8 bytes") {
        m.tuple(CTA_TUPLE_ORIG, kOrig).tuple(CTA_TUPLE_REPLY, kReply).u32(CTA_STATUS, 0);
        mnl_attr_put_u64(m.nlh(), CTA_ID, 1);
        require_malformed(m, "CTA_ID: payload of 8 bytes, expected 4");
    }
    SECTION("an attribute longer than the message") {
        fill_flow(m, kOrig, kReply, kConfirmed, 1);
        m.nlh()->nlmsg_len -= 2;  // cuts into CTA_ID
        require_malformed(m, "truncated attribute");
    }
    SECTION("an attribute of length zero") {
        m.tuple(CTA_TUPLE_ORIG, kOrig).tuple(CTA_TUPLE_REPLY, kReply);
        const uint32_t zero_len_attr = 0;  // nla_len 0, nla_type 0
        std::memcpy(mnl_nlmsg_get_payload_tail(m.nlh()), &zero_len_attr, sizeof zero_len_attr);
        m.nlh()->nlmsg_len += sizeof zero_len_attr;
        require_malformed(m, "truncated attribute (4 trailing bytes");
    }
    SECTION("a nest whose last attribute overruns it") {
        orig_tuple_of(m, [](CtMessage& msg) {
            msg.address(CTA_IP_V4_SRC, "198.18.0.1");
            auto* dst = static_cast<nlattr*>(mnl_nlmsg_get_payload_tail(msg.nlh()));
            msg.address(CTA_IP_V4_DST, "198.18.0.2");
            dst->nla_len = static_cast<uint16_t>(dst->nla_len + 8);  // claims 8 bytes past the end of its nest
        }, tcp_ports);
        require_malformed(m, "CTA_TUPLE_ORIG: CTA_TUPLE_IP: truncated attribute");
    }
}

TEST_CASE("every truncation of a valid message is an error, never a crash") {
    for (int family : {AF_INET, AF_INET6}) {
        CtMessage m(family);
        if (family == AF_INET) {
            fill_flow(m, kOrig, kReply, kConfirmed, 5);
        } else {
            fill_flow(m, {"2001:db8::1", 1, "2001:db8::2", 2}, {"2001:db8::2", 2, "2001:db8::1", 1}, kConfirmed, 5);
        }
        const std::vector<uint8_t> full = m.bytes();
        // Every prefix in its own exact-size buffer, so that a read past the
        // cut is a read past the allocation (visible under ASan).
        for (size_t len = MNL_NLMSG_HDRLEN; len < full.size(); ++len) {
            std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len));
            reinterpret_cast<nlmsghdr*>(cut.data())->nlmsg_len = static_cast<uint32_t>(len);
            auto flow = parse_conntrack_msg(reinterpret_cast<const nlmsghdr*>(cut.data()));
            INFO("family " << family << ", " << len << " of " << full.size() << " bytes");
            CHECK_FALSE(flow.ok());
        }
        CHECK(parse_ok(full).id == 5);
    }
}

TEST_CASE("random corruption of a valid message never crashes") {
    CtMessage m(AF_INET6);
    fill_flow(m, {"2001:db8::1", 1, "2001:db8::2", 2}, {"2001:db8::2", 2, "2001:db8::1", 1}, kConfirmed, 5);
    const std::vector<uint8_t> full = m.bytes();
    std::mt19937 rng(12345);  // fixed: a failure must reproduce
    size_t parsed = 0, refused = 0;
    for (int round = 0; round < 20000; ++round) {
        std::vector<uint8_t> bytes = full;
        const int flips = 1 + static_cast<int>(rng() % 4);
        // The netlink header stays intact: the batch parser checks its framing before this parser runs.
        for (int i = 0; i < flips; ++i) {
            bytes[MNL_NLMSG_HDRLEN + rng() % (bytes.size() - MNL_NLMSG_HDRLEN)] = static_cast<uint8_t>(rng());
        }
        auto flow = parse_conntrack_msg(reinterpret_cast<const nlmsghdr*>(bytes.data()));
        ++(flow ? parsed : refused);
    }
    CHECK(parsed > 0);
    CHECK(refused > 0);
}

TEST_CASE("a dump arrives in datagrams and ends with NLMSG_DONE") {
    std::vector<ConntrackFlow> out;
    Datagram first, last;
    CtMessage a(AF_INET), b(AF_INET6), c(AF_INET, IPCTNL_MSG_CT_DELETE);
    fill_flow(a, kOrig, kReply, kConfirmed, 1);
    fill_flow(b, {"2001:db8::1", 1, "2001:db8::2", 2}, {"2001:db8::2", 2, "2001:db8::1", 1}, kConfirmed, 2);
    fill_flow(c, kOrig, kReply, kConfirmed, 3);
    first.add(a.nlh());
    first.add(b.nlh());
    last.add(c.nlh());
    last.add_done();

    auto more = parse_conntrack_batch(first.data(), first.size(), kCtSeq, kCtPortid, out);
    REQUIRE(more.ok());
    CHECK_FALSE(*more);
    auto done = parse_conntrack_batch(last.data(), last.size(), kCtSeq, kCtPortid, out);
    REQUIRE(done.ok());
    CHECK(*done);
    REQUIRE(out.size() == 3);
    CHECK(out[0].id == 1);
    CHECK(out[1].family == AF_INET6);
    CHECK(out[2].destroyed);

    SECTION("events carry seq 0 and the causing socket's port id: 0, 0 accepts them") {
        Datagram event;
        CtMessage e(AF_INET);
        fill_flow(e, kOrig, kReply, kConfirmed, 4);
        e.nlh()->nlmsg_seq = 0;
        e.nlh()->nlmsg_pid = 0;
        event.add(e.nlh());
        auto r = parse_conntrack_batch(event.data(), event.size(), 0, 0, out);
        REQUIRE(r.ok());
        CHECK_FALSE(*r);
        CHECK(out.back().id == 4);
    }
}

TEST_CASE("broken dump datagrams are clear errors") {
    std::vector<ConntrackFlow> out;
    Datagram d;
    CtMessage a(AF_INET);
    fill_flow(a, kOrig, kReply, kConfirmed, 1);
    d.add(a.nlh());
    auto parse = [&](size_t len) { return parse_conntrack_batch(d.data(), len, kCtSeq, kCtPortid, out); };
    auto require_error = [](const Result<bool>& r, const std::string& fragment) {
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Catch::Contains("conntrack dump failed") && Catch::Contains(fragment));
    };

    SECTION("datagram cut inside the second message") {
        d.add(a.nlh());
        require_error(parse(d.size() - 10), "truncated netlink message");
    }
    SECTION("a message length of 2 GiB or more (libmnl's int cast reads it as negative)") {
        // Found by tests/fuzz: mnl_nlmsg_ok() took it for a fitting message.
        CtMessage huge(AF_INET);
        fill_flow(huge, kOrig, kReply, kConfirmed, 2);
        d.add(huge.nlh());
        auto* second = reinterpret_cast<nlmsghdr*>(static_cast<char*>(const_cast<void*>(d.data())) +
                                                   NLMSG_ALIGN(a.nlh()->nlmsg_len));
        for (uint32_t len : {0x80000000u, 0xffffffffu}) {
            second->nlmsg_len = len;
            require_error(parse(d.size()), "truncated netlink message");
        }
    }
    SECTION("the kernel refuses the dump") {
        d.add_error(EPERM);
        require_error(parse(d.size()), std::strerror(EPERM));
    }
    SECTION("a reply to some other request") {
        CtMessage other(AF_INET);
        fill_flow(other, kOrig, kReply, kConfirmed, 2);
        other.nlh()->nlmsg_seq = kCtSeq + 1;
        d.add(other.nlh());
        require_error(parse(d.size()), std::strerror(EPROTO));
    }
    SECTION("the kernel marks the dump inconsistent") {
        CtMessage other(AF_INET);
        fill_flow(other, kOrig, kReply, kConfirmed, 2);
        other.nlh()->nlmsg_flags |= NLM_F_DUMP_INTR;
        d.add(other.nlh());
        require_error(parse(d.size()), "NLM_F_DUMP_INTR");
    }
    SECTION("a malformed message in the middle") {
        CtMessage broken(AF_INET);
        broken.tuple(CTA_TUPLE_ORIG, kOrig);
        d.add(broken.nlh());
        d.add_done();
        auto r = parse(d.size());
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Catch::StartsWith("malformed conntrack message: CTA_TUPLE_REPLY: missing"));
    }
    SECTION("every cut of a two-message datagram is an error or an incomplete batch") {
        d.add(a.nlh());
        d.add_done();
        const auto* bytes = static_cast<const uint8_t*>(d.data());
        for (size_t len = 0; len < d.size(); ++len) {
            std::vector<uint8_t> cut(bytes, bytes + len);
            std::vector<ConntrackFlow> flows;
            auto r = parse_conntrack_batch(cut.data(), cut.size(), kCtSeq, kCtPortid, flows);
            INFO(len << " of " << d.size() << " bytes");
            CHECK_FALSE((r.ok() && *r));  // never "complete" without its NLMSG_DONE
        }
    }
}

TEST_CASE("only the unavailability error is recognised as such") {
    CHECK_FALSE(is_conntrack_unavailable(Error{"conntrack dump failed: Operation not permitted"}));
    CHECK(is_conntrack_unavailable(
        Error{"conntrack over netlink is not available (open NETLINK_NETFILTER socket: Protocol not supported): "
              "NAT is not followed; load nf_conntrack_netlink to enable it"}));
}
