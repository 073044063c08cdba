// conntrack over netlink against the real kernel: an nft DNAT and SNAT in a
// client namespace linked to a server namespace, its NEW and DESTROY
// events, and a burst that overflows a deliberately small event buffer.
//
// Needs root: without it, main() (root_main.cpp) prints
// why and exits 77, which meson reports as SKIP (never a silent pass).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/conntrack.hpp"
#include "agent/netns.hpp"
#include "common/address.hpp"
#include "common/unique_fd.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace depgraph;
using depgraph::test::run_command;
using depgraph::test::socket_address;
using depgraph::test::TestNetns;

namespace {

using Clock = std::chrono::steady_clock;

// conntrack tracks a namespace only once a rule uses it: NAT here, a `ct`
// expression in the burst test. The SNAT address 198.18.0.3 is the
// client's second address, so the server's replies find their way back.
const std::string kNatRules = R"(
table ip nat {
    chain output {
        type nat hook output priority -100;
        ip daddr 198.18.5.5 tcp dport 80 dnat to 198.18.0.2:8080
    }
    chain postrouting {
        type nat hook postrouting priority 100;
        ip daddr 198.18.0.2 tcp dport 8081 snat to 198.18.0.3
    }
}
)";

const std::string kTrackRules = R"(
table inet track {
    chain input {
        type filter hook input priority 0;
        ct state established,related accept
    }
}
)";

// `nft -f FILE` inside the namespace; the rules go with the namespace.
void load_nft(const TestNetns& ns, const std::string& ruleset) {
    char path[] = "/tmp/depgraph-test-nft-XXXXXX";
    UniqueFd fd(mkstemp(path));
    if (!fd.valid()) throw std::runtime_error(std::string("mkstemp: ") + std::strerror(errno));
    struct Unlink {
        const char* path;
        ~Unlink() { unlink(path); }
    } unlink_later{path};
    if (write(fd.get(), ruleset.data(), ruleset.size()) != static_cast<ssize_t>(ruleset.size())) {
        throw std::runtime_error(std::string("write ") + path + ": " + std::strerror(errno));
    }
    run_command({"ip", "netns", "exec", ns.name(), "nft", "-f", path});
}

void inside(const TestNetns& ns, const std::function<void()>& work) {
    Status st = in_netns(ns.path(), [&]() -> Status {
        work();
        return ok_status();
    });
    INFO((st ? std::string() : st.error().message));
    REQUIRE(st.ok());
}

UniqueFd listen_on(const char* addr, uint16_t port) {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    int on = 1;
    REQUIRE(setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0);
    auto a = socket_address(addr, port);
    INFO("bind " << addr << ":" << port << ": " << std::strerror(errno));
    REQUIRE(bind(fd.get(), a.get(), a.length) == 0);
    REQUIRE(listen(fd.get(), 1024) == 0);
    return fd;
}

UniqueFd connect_to(const char* addr, uint16_t port) {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    auto a = socket_address(addr, port);
    const int rc = connect(fd.get(), a.get(), a.length);
    INFO("connect to " << addr << ":" << port << ": " << std::strerror(errno));
    REQUIRE(rc == 0);
    return fd;
}

UniqueFd accept_from(const UniqueFd& listener) {
    UniqueFd fd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(fd.valid());
    return fd;
}

sockaddr_in name_of(const UniqueFd& fd, bool peer) {
    sockaddr_in sin{};
    socklen_t len = sizeof sin;
    auto* sa = reinterpret_cast<sockaddr*>(&sin);
    REQUIRE((peer ? getpeername(fd.get(), sa, &len) : getsockname(fd.get(), sa, &len)) == 0);
    return sin;
}

uint16_t local_port_of(const UniqueFd& fd) { return ntohs(name_of(fd, false).sin_port); }

std::string text(const ConntrackFlow& f, const std::array<uint8_t, 16>& a) { return format_address(f.family, a.data()); }

std::vector<ConntrackFlow> dump_in(const TestNetns& ns) {
    std::vector<ConntrackFlow> flows;
    inside(ns, [&] {
        auto dumped = dump_conntrack();
        INFO((dumped ? std::string() : dumped.error().message));
        REQUIRE(dumped.ok());
        flows = std::move(*dumped);
    });
    return flows;
}

// The client's flow: the one from its ephemeral port.
const ConntrackFlow& flow_from(const std::vector<ConntrackFlow>& flows, uint16_t client_port) {
    auto it = std::find_if(flows.begin(), flows.end(),
                           [&](const ConntrackFlow& f) { return f.orig_sport == client_port; });
    INFO(flows.size() << " flows, none from port " << client_port);
    REQUIRE(it != flows.end());
    return *it;
}

ConntrackEvents open_events_in(const TestNetns& ns, const ConntrackEvents::Options& options) {
    std::optional<ConntrackEvents> events;
    inside(ns, [&] {
        auto opened = ConntrackEvents::open(options);
        INFO((opened ? std::string() : opened.error().message));
        REQUIRE(opened.ok());
        events.emplace(std::move(*opened));
    });
    return std::move(*events);
}

// Reads events until one matches or 5 s pass.
std::optional<ConntrackFlow> wait_for_event(ConntrackEvents& events,
                                            const std::function<bool(const ConntrackFlow&)>& match) {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline) {
        pollfd pfd{events.fd(), POLLIN, 0};
        if (poll(&pfd, 1, 100) < 0 && errno != EINTR) FAIL("poll: " << std::strerror(errno));
        auto flows = events.read_available();
        INFO((flows ? std::string() : flows.error().message));
        REQUIRE(flows.ok());
        for (const ConntrackFlow& f : *flows) {
            if (match(f)) return f;
        }
    }
    return std::nullopt;
}

size_t count_to_port(const std::vector<ConntrackFlow>& flows, uint16_t port) {
    return static_cast<size_t>(std::count_if(flows.begin(), flows.end(), [&](const ConntrackFlow& f) {
        return f.l4proto == IPPROTO_TCP && f.orig_dport == port;
    }));
}

// Opens and closes `n` connections to the listener, the client closing
// first: the conntrack entries stay (TIME_WAIT) while the fds go.
void connection_burst(const UniqueFd& listener, uint16_t port, int n) {
    for (int i = 0; i < n; ++i) {
        UniqueFd client = connect_to("127.0.0.1", port);
        UniqueFd server = accept_from(listener);
        client.reset();
        server.reset();
    }
}

// Reads everything queued, also past ENOBUFS.
void drain_events(ConntrackEvents& events) {
    for (;;) {
        auto flows = events.read_available();
        INFO((flows ? std::string() : flows.error().message));
        REQUIRE(flows.ok());
        if (flows->empty()) return;
    }
}

}  // namespace

TEST_CASE("a dump and the events show DNAT to the backend and SNAT to the NAT address") {
    TestNetns client, server;
    const auto links = TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    // The VIP has no owner: a route gets the SYN out to where DNAT rewrites it.
    client.ip({"route", "add", "198.18.5.5/32", "dev", links.first});
    client.ip({"addr", "add", "198.18.0.3/24", "dev", links.first});
    load_nft(client, kNatRules);

    UniqueFd backend, snat_backend;
    inside(server, [&] {
        backend = listen_on("198.18.0.2", 8080);
        snat_backend = listen_on("198.18.0.2", 8081);
    });
    ConntrackEvents events = open_events_in(client, {});
    CHECK(events.receive_buffer_bytes() >= (size_t{8} << 20));  // SO_RCVBUFFORCE as root

    SECTION("DNAT: dialled 198.18.5.5:80, really 198.18.0.2:8080") {
        UniqueFd conn;
        inside(client, [&] { conn = connect_to("198.18.5.5", 80); });
        UniqueFd accepted = accept_from(backend);
        const uint16_t client_port = local_port_of(conn);

        std::vector<ConntrackFlow> flows = dump_in(client);
        const ConntrackFlow f = flow_from(flows, client_port);
        CHECK(f.family == AF_INET);
        CHECK(f.l4proto == IPPROTO_TCP);
        CHECK(text(f, f.orig_src) == "198.18.0.1");
        CHECK(text(f, f.orig_dst) == "198.18.5.5");
        CHECK(f.orig_dport == 80);
        CHECK(text(f, f.reply_src) == "198.18.0.2");
        CHECK(f.reply_sport == 8080);
        CHECK(text(f, f.reply_dst) == "198.18.0.1");
        CHECK(f.reply_dport == client_port);
        CHECK(f.dnat());
        CHECK_FALSE(f.snat());
        CHECK((f.status & IPS_DST_NAT) != 0);
        CHECK((f.status & IPS_DST_NAT_DONE) != 0);  // so dnat() took the kernel's word
        CHECK(f.id != 0);
        CHECK_FALSE(f.destroyed);

        auto created = wait_for_event(events, [&](const ConntrackFlow& e) { return e.id == f.id && !e.destroyed; });
        REQUIRE(created);
        CHECK(created->orig_sport == client_port);
        CHECK(text(*created, created->orig_dst) == "198.18.5.5");
        CHECK(text(*created, created->reply_src) == "198.18.0.2");
        CHECK(created->dnat());

        // A closed TCP connection keeps its entry for minutes (TIME_WAIT);
        // deleting it is what makes the kernel send DESTROY now.
        conn.reset();
        accepted.reset();
        run_command({"ip", "netns", "exec", client.name(), "conntrack", "--delete", "--proto", "tcp", "--orig-dst",
                     "198.18.5.5", "--orig-port-src", std::to_string(client_port)});
        auto destroyed = wait_for_event(events, [&](const ConntrackFlow& e) { return e.id == f.id && e.destroyed; });
        REQUIRE(destroyed);
        CHECK(destroyed->reply_sport == 8080);
        CHECK(destroyed->dnat());
        const std::vector<ConntrackFlow> after = dump_in(client);
        CHECK(std::none_of(after.begin(), after.end(), [&](const ConntrackFlow& e) { return e.id == f.id; }));
    }

    SECTION("SNAT: the server saw 198.18.0.3, the reply tuple says so") {
        UniqueFd conn;
        inside(client, [&] { conn = connect_to("198.18.0.2", 8081); });
        UniqueFd accepted = accept_from(snat_backend);
        const uint16_t client_port = local_port_of(conn);
        const sockaddr_in seen = name_of(accepted, /*peer=*/true);

        const ConntrackFlow f = flow_from(dump_in(client), client_port);
        CHECK(f.snat());
        CHECK_FALSE(f.dnat());
        CHECK((f.status & IPS_SRC_NAT) != 0);
        CHECK(text(f, f.orig_src) == "198.18.0.1");
        CHECK(text(f, f.reply_dst) == "198.18.0.3");
        char seen_text[INET_ADDRSTRLEN] = {};
        REQUIRE(inet_ntop(AF_INET, &seen.sin_addr, seen_text, sizeof seen_text));
        CHECK(text(f, f.reply_dst) == seen_text);
        CHECK(f.reply_dport == ntohs(seen.sin_port));
    }

    SECTION("no NAT: a direct connection is neither") {
        UniqueFd conn;
        inside(client, [&] { conn = connect_to("198.18.0.2", 8080); });
        UniqueFd accepted = accept_from(backend);
        const ConntrackFlow f = flow_from(dump_in(client), local_port_of(conn));
        CHECK_FALSE(f.dnat());
        CHECK_FALSE(f.snat());
        CHECK(text(f, f.reply_src) == "198.18.0.2");
        // Null bindings: the NAT core looked at the flow and changed nothing.
        CHECK((f.status & (IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE)) == (IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE));
    }
}

TEST_CASE("a namespace without conntrack rules has an empty table") {
    TestNetns ns;
    UniqueFd listener, conn;
    inside(ns, [&] {
        listener = listen_on("127.0.0.1", 0);
        conn = connect_to("127.0.0.1", local_port_of(listener));
    });
    CHECK(dump_in(ns).empty());
}

TEST_CASE("a burst that overflows a small event buffer is counted, and a rate-limited resync finds every flow") {
    TestNetns ns;
    load_nft(ns, kTrackRules);
    UniqueFd listener;
    inside(ns, [&] { listener = listen_on("127.0.0.1", 0); });
    const uint16_t port = local_port_of(listener);

    ConntrackEvents::Options options;
    options.receive_buffer_bytes = 4096;
    ConntrackEvents events = open_events_in(ns, options);
    // The kernel doubles the request for its bookkeeping.
    CHECK(events.receive_buffer_bytes() == 8192);
    CHECK_FALSE(events.resync_needed());
    CHECK_FALSE(events.resync_due());

    inside(ns, [&] { connection_burst(listener, port, 500); });
    auto first = events.read_available();
    REQUIRE(first.ok());
    drain_events(events);
    CHECK(events.enobufs() > 0);
    CHECK(events.resync_needed());
    CHECK(first->size() < 500);

    REQUIRE(events.resync_due());
    const auto resynced_at = Clock::now();  // no later than the module's own mark
    auto resynced = events.resync();
    INFO((resynced ? std::string() : resynced.error().message));
    REQUIRE(resynced.ok());
    REQUIRE(resynced->has_value());
    CHECK(count_to_port(**resynced, port) == 500);
    CHECK_FALSE(events.resync_needed());

    SECTION("a second overflow within a second waits for the rate limit") {
        const uint64_t before = events.enobufs();
        inside(ns, [&] { connection_burst(listener, port, 100); });
        drain_events(events);
        CHECK(events.enobufs() > before);
        CHECK(events.resync_needed());
        if (Clock::now() - resynced_at < std::chrono::milliseconds(900)) {
            CHECK_FALSE(events.resync_due());
            auto early = events.resync();
            REQUIRE(early.ok());
            CHECK_FALSE(early->has_value());
            CHECK(events.resync_needed());
        }
        while (!events.resync_due()) usleep(20 * 1000);
        CHECK(Clock::now() - resynced_at >= std::chrono::seconds(1));
        auto later = events.resync();
        REQUIRE(later.ok());
        REQUIRE(later->has_value());
        CHECK(count_to_port(**later, port) == 600);
        CHECK_FALSE(events.resync_needed());
    }
    SECTION("a dump from outside the namespace sees none of it") {
        CHECK(count_to_port(*dump_conntrack(), port) == 0);
    }
}
