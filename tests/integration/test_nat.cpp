// NAT as the agents see it: a client dials a VIP that an nft DNAT rule in
// its own namespace sends to a server in another one. The client's agent
// records its socket's view (the VIP) and conntrack's translation (VIP ->
// server), exactly once per connection; the server's agent sees the client.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "store/database.hpp"
#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/child_process.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace depgraph;
using namespace depgraph::test;

namespace {

constexpr int kConnections = 6;

// The client's connections to the VIP as conntrack translated them, in link_with_vip.
const std::string kFlowsToServer =
    "SELECT coalesce(sum(flows), 0) FROM nat_translations WHERE client_addr = '198.18.0.1' AND "
    "nat_addr = '198.18.0.1' AND dialled_addr = '198.18.5.5' AND dialled_port = 80 AND "
    "server_addr = '198.18.0.2' AND server_port = 8080";

// `depgraph render --format json` over these databases.
nlohmann::json render_json(const std::vector<std::string>& dbs) {
    std::vector<std::string> argv{std::getenv("DEPGRAPH"), "render", "-o", "-", "--format", "json"};
    for (const auto& db : dbs) {
        argv.push_back("--db");
        argv.push_back(db);
    }
    auto out = run_captured(argv);
    INFO(out.err);
    REQUIRE(out.exit_code == 0);
    return nlohmann::json::parse(out.out);
}

// The client (198.18.0.1) and the server (198.18.0.2) on one link, and a DNAT
// rule in the client's namespace that sends the VIP 198.18.5.5:80 to the
// server's port 8080.
void link_with_vip(TestNetns& client, TestNetns& server) {
    auto [if_client, if_server] = TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    // Routing picks the way out before the DNAT rule rewrites the address.
    client.ip({"route", "add", "198.18.5.5/32", "dev", if_client});
    client.nft("add table ip nat");
    client.nft("add chain ip nat output { type nat hook output priority -100 ; }");
    client.nft("add rule ip nat output ip daddr 198.18.5.5 tcp dport 80 dnat to 198.18.0.2:8080");
}

}  // namespace

TEST_CASE("a DNAT rule on the client: the agent records the dialled VIP and the actual server") {
    TestNetns client, server;
    link_with_vip(client, server);

    TempDir dir;
    std::string db_client = dir.db("client"), db_server = dir.db("server");
    auto listener = ChildProcess::fork_in(server.path(), "dg-backend", [] { return accept_and_close(8080); });
    auto agent_client = start_agent(client, "client", db_client);
    auto agent_server = start_agent(server, "server", db_server);

    REQUIRE(dial(client, "198.18.5.5", 80, kConnections).wait_exit(20000) == 0);
    // conntrack's events reach the agent on its own time, and a stop does not
    // read those still queued: wait until a flush has written every flow.
    wait_for_count(db_client, kFlowsToServer, kConnections);
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
    CHECK(count(*c, kFlowsToServer) == kConnections);
    CHECK(count(*c, "SELECT count(*) FROM nat_translations WHERE server_addr != '198.18.0.2'") == 0);
    CHECK(count(*c, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter = 'conntrack_enobufs'") == 0);
    // The server saw the real client on its real port.
    CHECK(count(*s, "SELECT sum(accepts) FROM edges JOIN edge_buckets USING (edge_id) WHERE direction = 'in' "
                    "AND process = 'dg-backend' AND remote_addr = '198.18.0.1' AND port = 8080") == kConnections);

    // The merged graph: client -> server on the real port, the VIP an
    // attribute of the edge and never a node.
    auto graph = render_json({db_client, db_server});
    CHECK(graph["nodes"].size() == 2);
    for (const auto& n : graph["nodes"]) CHECK(n["id"] != "198.18.5.5");
    REQUIRE(graph["edges"].size() == 1);
    const auto& e = graph["edges"][0];
    CHECK(e["source"] == "client/dg-dialler");
    CHECK(e["target"] == "server/dg-backend");
    CHECK(e["port"] == 8080);
    CHECK(e["connections"] == kConnections);
    CHECK(e["disputed"] == false);
    CHECK(e["via"] == nlohmann::json::array({"198.18.5.5:80"}));
    // Merged (twice: merging is idempotent), the fleet file keeps the translations.
    auto fleet = dir.db("fleet");
    for (int i = 0; i < 2; i++) {
        auto merged = run_captured({std::getenv("DEPGRAPH"), "merge", "-o", fleet, db_client, db_server});
        REQUIRE(merged.exit_code == 0);
    }
    CHECK(render_json({fleet})["edges"] == graph["edges"]);
    // Who depends on the backend includes those who reached it through the VIP.
    auto impact = run_captured({std::getenv("DEPGRAPH"), "impact", "198.18.0.2:8080", "--db", db_client, "--db",
                                db_server, "--format", "json"});
    REQUIRE(impact.exit_code == 0);
    auto dependents = nlohmann::json::parse(impact.out)["dependents"];
    REQUIRE(dependents.size() == 1);
    CHECK(dependents[0]["node"] == "client/dg-dialler");
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
    auto listener = ChildProcess::fork_in(server.path(), "dg-backend", [] { return accept_and_close(8080); });
    auto agent_client = start_agent(client, "client", dir.db("client"));
    auto agent_router = start_agent(router, "router", dir.db("router"));
    auto agent_server = start_agent(server, "server", dir.db("server"));

    REQUIRE(dial(client, "198.18.2.1", 8080, kConnections).wait_exit(20000) == 0);
    const std::string masqueraded =
        "SELECT coalesce(sum(flows), 0) FROM nat_translations WHERE client_addr = '198.18.1.1' AND "
        "nat_addr = '198.18.2.254' AND dialled_addr = '198.18.2.1' AND dialled_port = 8080 AND "
        "server_addr = '198.18.2.1' AND server_port = 8080";
    // As above: the router's conntrack events, written by a flush.
    wait_for_count(dir.db("router"), masqueraded, kConnections);
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
    CHECK(count(*r, masqueraded) == kConnections);
    // A router forwards; it has no sockets of its own in these connections.
    CHECK(count(*r, "SELECT count(*) FROM edges") == 0);

    // The merged graph joins the server's half (from the router's address)
    // to the client's: one edge, both halves agreeing, no phantom client.
    auto graph = render_json({dir.db("client"), dir.db("router"), dir.db("server")});
    REQUIRE(graph["edges"].size() == 1);
    const auto& e = graph["edges"][0];
    CHECK(e["source"] == "client/dg-dialler");
    CHECK(e["target"] == "server/dg-backend");
    CHECK(e["connections"] == kConnections);
    CHECK(e["disputed"] == false);
    for (const auto& n : graph["nodes"]) CHECK(n["kind"] != "external");
}

TEST_CASE("a burst that overflows a small netlink buffer is counted, resynchronised, and still counted right") {
    TestNetns client, server;
    link_with_vip(client, server);

    TempDir dir;
    constexpr int kBurst = 400;
    auto listener = ChildProcess::fork_in(server.path(), "dg-backend", [] { return accept_and_close(8080); });
    auto agent = start_agent(client, "client", dir.db("client"), {"--netlink-buffer", "4096"});
    // The agent cannot read while stopped, so the burst overflows its buffer for certain.
    REQUIRE(kill(agent.pid(), SIGSTOP) == 0);
    auto burst = dial(client, "198.18.5.5", 80, kBurst);
    int burst_exit = burst.wait_exit(60000);
    REQUIRE(kill(agent.pid(), SIGCONT) == 0);
    REQUIRE(burst_exit == 0);
    // Closed connections stay in the conntrack table (TIME_WAIT) long after
    // the burst, so the resynchronising dump still finds every one of them:
    // wait until a flush after the resynchronisation has written them.
    wait_for_count(dir.db("client"), kFlowsToServer, kBurst, 30000);
    REQUIRE(agent.stop(SIGINT) == 0);

    auto c = Database::open_read_only(dir.db("client"));
    REQUIRE(c.ok());
    CHECK(count(*c, "SELECT sum(value) FROM losses WHERE counter = 'conntrack_enobufs'") > 0);
    CHECK(count(*c, "SELECT sum(connects) FROM edges JOIN edge_buckets USING (edge_id) WHERE direction = 'out' "
                    "AND remote_addr = '198.18.5.5' AND port = 80") == kBurst);
    CHECK(count(*c, kFlowsToServer) == kBurst);
}
