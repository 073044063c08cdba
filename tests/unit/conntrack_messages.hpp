// Hand-built ctnetlink messages, laid out as the kernel sends them, for the
// conntrack parser's unit tests and the fuzzer's seed corpus. Each part can
// be left out or written wrongly on purpose.
#pragma once

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace depgraph::test {

constexpr uint32_t kCtSeq = 11;
constexpr uint32_t kCtPortid = 5151;

struct TupleSpec {
    const char* src;
    uint16_t sport;
    const char* dst;
    uint16_t dport;
    uint8_t l4proto = IPPROTO_TCP;
};

class CtMessage {
public:
    explicit CtMessage(int family, uint16_t msg_type = IPCTNL_MSG_CT_NEW) : family_(family) {
        nlh_ = mnl_nlmsg_put_header(words_.data());
        nlh_->nlmsg_type = static_cast<uint16_t>(NFNL_SUBSYS_CTNETLINK << 8 | msg_type);
        nlh_->nlmsg_flags = NLM_F_MULTI;
        nlh_->nlmsg_seq = kCtSeq;
        nlh_->nlmsg_pid = kCtPortid;
        auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh_, sizeof(nfgenmsg)));
        nfg->nfgen_family = static_cast<uint8_t>(family);
        nfg->version = NFNETLINK_V0;
    }
    CtMessage(const CtMessage&) = delete;
    CtMessage& operator=(const CtMessage&) = delete;

    nlmsghdr* nlh() { return nlh_; }
    const nlmsghdr* nlh() const { return nlh_; }
    int family() const { return family_; }

    // A well-formed CTA_TUPLE_ORIG or CTA_TUPLE_REPLY, nested as ctnetlink does.
    CtMessage& tuple(uint16_t which, const TupleSpec& t) {
        nlattr* outer = nest(which);
        nlattr* ip = nest(CTA_TUPLE_IP);
        address(family_ == AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, t.src);
        address(family_ == AF_INET ? CTA_IP_V4_DST : CTA_IP_V6_DST, t.dst);
        end(ip);
        nlattr* proto = nest(CTA_TUPLE_PROTO);
        mnl_attr_put_u8(nlh_, CTA_PROTO_NUM, t.l4proto);
        mnl_attr_put_u16(nlh_, CTA_PROTO_SRC_PORT, htons(t.sport));
        mnl_attr_put_u16(nlh_, CTA_PROTO_DST_PORT, htons(t.dport));
        end(proto);
        end(outer);
        return *this;
    }
    CtMessage& u32(uint16_t type, uint32_t value) {
        mnl_attr_put_u32(nlh_, type, htonl(value));
        return *this;
    }
    void address(uint16_t type, const char* text) {
        uint8_t addr[16] = {};
        const bool v6 = std::strchr(text, ':') != nullptr;
        if (inet_pton(v6 ? AF_INET6 : AF_INET, text, addr) != 1) throw std::invalid_argument(text);
        mnl_attr_put(nlh_, type, v6 ? 16 : 4, addr);
    }
    // ctnetlink sets NLA_F_NESTED on its nests (nla_nest_start, Linux 5.2+).
    nlattr* nest(uint16_t type) {
        nlattr* n = mnl_attr_nest_start(nlh_, type);
        n->nla_type |= NLA_F_NESTED;
        return n;
    }
    void end(nlattr* n) { mnl_attr_nest_end(nlh_, n); }
    void put(uint16_t type, const void* data, size_t len) { mnl_attr_put(nlh_, type, len, data); }

    // Exactly nlmsg_len bytes, so that a sanitizer sees any read past the end.
    std::vector<uint8_t> bytes() const {
        auto* p = reinterpret_cast<const uint8_t*>(nlh_);
        return std::vector<uint8_t>(p, p + nlh_->nlmsg_len);
    }

private:
    std::vector<uint32_t> words_ = std::vector<uint32_t>(1024, 0);  // uint32_t: aligned headers
    nlmsghdr* nlh_ = nullptr;
    int family_;
};

// A complete flow as a dump or a NEW event carries it.
inline void fill_flow(CtMessage& m, const TupleSpec& orig, const TupleSpec& reply, uint32_t status, uint32_t id) {
    m.tuple(CTA_TUPLE_ORIG, orig).tuple(CTA_TUPLE_REPLY, reply).u32(CTA_STATUS, status).u32(CTA_ID, id);
}

// A datagram: messages back to back, each NLMSG_ALIGNed.
class Datagram {
public:
    void add(const nlmsghdr* nlh) {
        const size_t offset = bytes_;
        bytes_ += NLMSG_ALIGN(nlh->nlmsg_len);
        words_.resize((bytes_ + 3) / 4, 0);
        std::memcpy(reinterpret_cast<char*>(words_.data()) + offset, nlh, nlh->nlmsg_len);
    }
    void add_control(uint16_t type, int error) {
        alignas(nlmsghdr) char buf[NLMSG_SPACE(sizeof(nlmsgerr))] = {};
        nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
        nlh->nlmsg_type = type;
        nlh->nlmsg_seq = kCtSeq;
        nlh->nlmsg_pid = kCtPortid;
        if (type == NLMSG_ERROR) {
            auto* e = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nlmsgerr)));
            e->error = -error;
        } else {
            nlh->nlmsg_flags = NLM_F_MULTI;
            mnl_nlmsg_put_extra_header(nlh, sizeof(int));
        }
        add(nlh);
    }
    void add_done() { add_control(NLMSG_DONE, 0); }
    void add_error(int err) { add_control(NLMSG_ERROR, err); }

    const void* data() const { return words_.data(); }
    size_t size() const { return bytes_; }

private:
    std::vector<uint32_t> words_;
    size_t bytes_ = 0;
};

}  // namespace depgraph::test
