// Writes a seed corpus for fuzz_conntrack: well-formed datagrams as the
// kernel sends them (dumps and events, IPv4 and IPv6, NAT and not), so that
// the fuzzer starts inside the nested attributes instead of guessing them.
// Usage: make_seeds DIR
#include <cstdio>
#include <string>

#include "tests/unit/conntrack_messages.hpp"

using namespace depgraph::test;

namespace {

void write_seed(const std::string& dir, const std::string& name, const Datagram& d) {
    const std::string path = dir + "/" + name;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(d.data(), 1, d.size(), f) != d.size() || std::fclose(f) != 0) {
        std::perror(path.c_str());
        std::exit(1);
    }
}

constexpr uint32_t kStatus = IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE;

}  // namespace

int main(int argc, char* argv[]) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    const TupleSpec plain{"198.18.0.1", 40000, "198.18.0.2", 5432}, plain_reply{"198.18.0.2", 5432, "198.18.0.1", 40000};
    const TupleSpec vip{"198.18.0.1", 40001, "198.18.5.5", 80}, backend{"198.18.0.2", 8080, "198.18.0.1", 40001};
    const TupleSpec v6{"2001:db8::1", 50000, "2001:db8::2", 443}, v6_reply{"2001:db8::2", 443, "2001:db8::1", 50000};

    CtMessage ipv4(AF_INET), dnat(AF_INET), ipv6(AF_INET6), destroy(AF_INET, IPCTNL_MSG_CT_DELETE);
    fill_flow(ipv4, plain, plain_reply, kStatus, 1);
    fill_flow(dnat, vip, backend, kStatus | IPS_DST_NAT, 2);
    fill_flow(ipv6, v6, v6_reply, kStatus, 3);
    fill_flow(destroy, plain, plain_reply, kStatus, 1);

    Datagram one_v4, one_v6, event_destroy, dump, refused;
    one_v4.add(ipv4.nlh());
    one_v6.add(ipv6.nlh());
    event_destroy.add(destroy.nlh());
    dump.add(ipv4.nlh());
    dump.add(dnat.nlh());
    dump.add(ipv6.nlh());
    dump.add_done();
    refused.add_error(1);
    write_seed(dir, "ipv4", one_v4);
    write_seed(dir, "ipv6", one_v6);
    write_seed(dir, "destroy", event_destroy);
    write_seed(dir, "dump", dump);
    write_seed(dir, "error", refused);
    return 0;
}
