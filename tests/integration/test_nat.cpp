// NAT as the agents see it: a client dials a VIP that an nft DNAT rule in
// its own namespace sends to a server in another one. The client's agent
// records its socket's view (the VIP) and conntrack's translation (VIP ->
// server), exactly once per connection; the server's agent sees the client.
#define CATCH_CONFIG_RUNNER
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>

#include "store/database.hpp"
#include "tests/integration/child_process.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace depgraph;
using namespace depgraph::test;

namespace {

constexpr int kConnections = 6;

int64_t count(Database& db, const std::string& sql) {
    auto stmt = db.prepare(sql);
    REQUIRE(stmt.ok());
    REQUIRE(*stmt->step());
    return stmt->column_int(0);
}

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char tmpl[] = "/tmp/depgraph-nat-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string db(const std::string& host) const { return (path / (host + ".db")).string(); }
};

// One agent per namespace, as a host of its own; returns once it has
// attached and written its first flush.
ChildProcess start_agent(TestNetns& ns, const std::string& host, const std::string& db,
                         const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{std::getenv("DEPGRAPH_AGENT"), "--db", db, "--scope", "netns", "--hostname", host,
                                  "--flush-interval", "1s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto agent = ChildProcess::exec_in(ns.path(), argv);
    auto flushed = [&] {
        auto d = Database::open_read_only(db);
        return d.ok() && count(*d, "SELECT count(*) FROM host_addresses") > 0;
    };
    for (int i = 0; i < 100 && !flushed(); i++) usleep(100000);
    REQUIRE(flushed());
    return agent;
}

// Connects `n` times to addr:port and closes; the exit code says whether all succeeded.
ChildProcess dial(TestNetns& ns, const std::string& addr, uint16_t port, int n) {
    return ChildProcess::fork_in(ns.path(), "dg-dialler", [=] {
        auto target = socket_address(addr, port);
        int made = 0;
        for (int i = 0; i < n; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            made += connect(fd, target.get(), target.length) == 0;
            close(fd);
        }
        return made == n ? 0 : 1;
    });
}

// Accepts and closes, forever.
int serve(uint16_t port) {
    auto addr = socket_address("0.0.0.0", port);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 64) != 0) return 2;
    for (;;) {
        int fd = accept(ls, nullptr, nullptr);
        if (fd >= 0) close(fd);
    }
}

}  // namespace

TEST_CASE("a DNAT rule on the client: the agent records the dialled VIP and the actual server") {
    TestNetns client, server;
    auto [if_client, if_server] = TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    // Routing picks the way out before the DNAT rule rewrites the address.
    client.ip({"route", "add", "198.18.5.5/32", "dev", if_client});
    client.nft("add table ip nat");
    client.nft("add chain ip nat output { type nat hook output priority -100 ; }");
    client.nft("add rule ip nat output ip daddr 198.18.5.5 tcp dport 80 dnat to 198.18.0.2:8080");

    TempDir dir;
    std::string db_client = dir.db("client"), db_server = dir.db("server");
    auto listener = ChildProcess::fork_in(server.path(), "dg-backend", [] { return serve(8080); });
    auto agent_client = start_agent(client, "client", db_client);
    auto agent_server = start_agent(server, "server", db_server);

    REQUIRE(dial(client, "198.18.5.5", 80, kConnections).wait_exit(20000) == 0);
    usleep(300000);  // the last DESTROY events
    REQUIRE(agent_client.stop(SIGINT) == 0);
    REQUIRE(agent_server.stop(SIGINT) == 0);

    auto c = Database::open_read_only(db_client);
    auto s = Database::open_read_only(db_server);
    REQUIRE(c.ok());
    REQUIRE(s.ok());
    // The socket's view: the client dialled the VIP.
    CHECK(count(*c, "SELECT sum(connects) FROM edges JOIN edge_buckets USING (edge_id) WHERE direction = 'out' "
                    "AND process = 'dg-dialler' AND remote_addr = '198.18.5.5' AND port = 80") == kConnections);
    // conntrack's view: each of those connections went to the server.
    CHECK(count(*c, "SELECT sum(flows) FROM nat_translations WHERE client_addr = '198.18.0.1' AND "
                    "nat_addr = '198.18.0.1' AND dialled_addr = '198.18.5.5' AND dialled_port = 80 AND "
                    "server_addr = '198.18.0.2' AND server_port = 8080") == kConnections);
    CHECK(count(*c, "SELECT count(*) FROM nat_translations WHERE server_addr != '198.18.0.2'") == 0);
    CHECK(count(*c, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter = 'conntrack_enobufs'") == 0);
    // The server saw the real client on its real port.
    CHECK(count(*s, "SELECT sum(accepts) FROM edges JOIN edge_buckets USING (edge_id) WHERE direction = 'in' "
                    "AND process = 'dg-backend' AND remote_addr = '198.18.0.1' AND port = 8080") == kConnections);
}

TEST_CASE("masquerade on a router: the router's agent records who was behind its address") {
    TestNetns client, router, server;
    TestNetns::link(client, "198.18.1.1/24", router, "198.18.1.254/24");
    auto [if_router_out, if_server] = TestNetns::link(router, "198.18.2.254/24", server, "198.18.2.1/24");
    client.ip({"route", "add", "default", "via", "198.18.1.254"});
    run_command({"ip", "netns", "exec", router.name(), "sysctl", "-qw", "net.ipv4.ip_forward=1"});
    router.nft("add table ip nat");
    router.nft("add chain ip nat postrouting { type nat hook postrouting priority 100 ; }");
    router.nft("add rule ip nat postrouting oifname " + if_router_out + " masquerade");

    TempDir dir;
    auto listener = ChildProcess::fork_in(server.path(), "dg-backend", [] { return serve(8080); });
    auto agent_client = start_agent(client, "client", dir.db("client"));
    auto agent_router = start_agent(router, "router", dir.db("router"));
    auto agent_server = start_agent(server, "server", dir.db("server"));

    REQUIRE(dial(client, "198.18.2.1", 8080, kConnections).wait_exit(20000) == 0);
    usleep(300000);
    for (auto* agent : {&agent_client, &agent_router, &agent_server}) REQUIRE(agent->stop(SIGINT) == 0);

    auto c = Database::open_read_only(dir.db("client"));
    auto r = Database::open_read_only(dir.db("router"));
    auto s = Database::open_read_only(dir.db("server"));
    REQUIRE((c.ok() && r.ok() && s.ok()));
    CHECK(count(*c, "SELECT sum(connects) FROM edges JOIN edge_buckets USING (edge_id) WHERE direction = 'out' "
                    "AND remote_addr = '198.18.2.1' AND port = 8080") == kConnections);
    // The server saw the router's address, not the client's ...
    CHECK(count(*s, "SELECT sum(accepts) FROM edges JOIN edge_buckets USING (edge_id) WHERE direction = 'in' "
                    "AND remote_addr = '198.18.2.254' AND port = 8080") == kConnections);
    // ... and the router knows whose connections those were.
    CHECK(count(*r, "SELECT sum(flows) FROM nat_translations WHERE client_addr = '198.18.1.1' AND "
                    "nat_addr = '198.18.2.254' AND dialled_addr = '198.18.2.1' AND dialled_port = 8080 AND "
                    "server_addr = '198.18.2.1' AND server_port = 8080") == kConnections);
    // A router forwards; it has no sockets of its own in these connections.
    CHECK(count(*r, "SELECT count(*) FROM edges") == 0);
}

TEST_CASE("a burst that overflows a small netlink buffer is counted, resynchronised, and still counted right") {
    TestNetns client, server;
    auto [if_client, if_server] = TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    client.ip({"route", "add", "198.18.5.5/32", "dev", if_client});
    client.nft("add table ip nat");
    client.nft("add chain ip nat output { type nat hook output priority -100 ; }");
    client.nft("add rule ip nat output ip daddr 198.18.5.5 tcp dport 80 dnat to 198.18.0.2:8080");

    TempDir dir;
    constexpr int kBurst = 400;
    auto listener = ChildProcess::fork_in(server.path(), "dg-backend", [] { return serve(8080); });
    auto agent = start_agent(client, "client", dir.db("client"), {"--netlink-buffer", "4096"});
    // The agent cannot read while stopped, so the burst overflows its buffer for certain.
    REQUIRE(kill(agent.pid(), SIGSTOP) == 0);
    auto burst = dial(client, "198.18.5.5", 80, kBurst);
    int burst_exit = burst.wait_exit(60000);
    REQUIRE(kill(agent.pid(), SIGCONT) == 0);
    REQUIRE(burst_exit == 0);
    usleep(2500000);  // resynchronisation, then a flush
    REQUIRE(agent.stop(SIGINT) == 0);

    auto c = Database::open_read_only(dir.db("client"));
    REQUIRE(c.ok());
    CHECK(count(*c, "SELECT sum(value) FROM losses WHERE counter = 'conntrack_enobufs'") > 0);
    CHECK(count(*c, "SELECT sum(connects) FROM edges JOIN edge_buckets USING (edge_id) WHERE direction = 'out' "
                    "AND remote_addr = '198.18.5.5' AND port = 80") == kBurst);
    // Closed connections stay in the conntrack table (TIME_WAIT) long after
    // the burst, so the resynchronising dump still finds every one of them.
    CHECK(count(*c, "SELECT sum(flows) FROM nat_translations WHERE dialled_addr = '198.18.5.5' AND "
                    "server_addr = '198.18.0.2' AND server_port = 8080") == kBurst);
}

int main(int argc, char* argv[]) {
    if (!can_run_as_root(argv[0])) return kSkipExitCode;
    return Catch::Session().run(argc, argv);
}
