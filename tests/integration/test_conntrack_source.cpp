// `depgraph-agent --source conntrack`, the fallback for hosts where the BPF
// programs cannot load: two namespaces as two hosts, each with a firewall
// rule that makes conntrack track its connections, and an agent each that
// builds edges from conntrack events and sock_diag alone.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <vector>

#include "store/database.hpp"
#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/child_process.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace depgraph;
using namespace depgraph::test;

namespace {

constexpr int kConnections = 5;  // N
constexpr int kRefused = 3;      // M
constexpr uint16_t kServicePort = 8080;
constexpr uint16_t kClosedPort = 9090;
// Long enough for the agent to read the NEW event and find the socket.
constexpr useconds_t kHoldUs = 100000;

// conntrack only tracks flows in a namespace where some rule uses it.
void track_connections(TestNetns& ns) {
    ns.nft("add table inet track");
    ns.nft("add chain inet track input { type filter hook input priority 0 ; }");
    ns.nft("add rule inet track input ct state established,related accept");
}

struct EdgeTotals {
    int64_t rows = 0, connects = 0, failed = 0, refused = 0, accepts = 0, closes = 0, open = 0;
};

// Counters of the edges matching `where`, summed over their buckets; `open`
// from the latest bucket.
EdgeTotals totals(Database& db, const std::string& where) {
    auto stmt = db.prepare(
        "SELECT count(DISTINCT e.edge_id), sum(connects), sum(failed), sum(refused), sum(accepts), sum(closes), "
        "(SELECT sum(open) FROM edge_buckets b2 WHERE b2.edge_id IN (SELECT edge_id FROM edges WHERE " + where +
        ") AND b2.bucket_start = (SELECT max(bucket_start) FROM edge_buckets)) "
        "FROM edges e JOIN edge_buckets b USING (edge_id) WHERE " + where);
    REQUIRE(stmt.ok());
    REQUIRE(*stmt->step());
    EdgeTotals t;
    int64_t* fields[] = {&t.rows, &t.connects, &t.failed, &t.refused, &t.accepts, &t.closes, &t.open};
    for (int i = 0; i < 7; i++) *fields[i] = stmt->column_int(i);
    return t;
}

// Waits, up to 20 s, until `done` holds.
bool wait_until(const std::function<bool()>& done) {
    for (int i = 0; i < 200; i++) {
        if (done()) return true;
        usleep(100000);
    }
    return done();
}

// The counters of `where` in `db`, read while its agent writes to it.
EdgeTotals totals_now(const std::string& db, const std::string& where) {
    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    return totals(*d, where);
}

// A client "dg-burster" in `ns` that opens `n` connections to addr:port
// back to back and keeps them all open until `release` is signalled (or,
// without one, for `hold_us`), then closes them. Exit code as dial()'s.
ChildProcess burst(TestNetns& ns, const std::string& addr, uint16_t port, int n, useconds_t hold_us,
                   Signal* release = nullptr) {
    return ChildProcess::fork_in(ns.path(), "dg-burster", [=] {
        auto target = socket_address(addr, port);
        std::vector<int> fds;
        int made = 0;
        for (int i = 0; i < n; i++) {
            fds.push_back(socket(target.family(), SOCK_STREAM, 0));
            made += connect(fds.back(), target.get(), target.length) == 0;
        }
        if (release) {
            release->wait(60000);
        } else {
            usleep(hold_us);
        }
        for (int fd : fds) close(fd);
        return made == n ? 0 : made == 0 ? 1 : 2;
    });
}

void sysctl(TestNetns& ns, const std::string& setting) {
    run_command({"ip", "netns", "exec", ns.name(), "sysctl", "-qw", setting});
}

std::string read_file(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

TEST_CASE("--source conntrack: exact counts, processes from sockets, and the source on each edge") {
    TestNetns client, server;
    TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    track_connections(client);
    track_connections(server);

    TempDir dir;
    auto listener = ChildProcess::fork_in(server.path(), "dg-server", [] { return accept_and_close(kServicePort); });
    usleep(100000);  // listening before the agents' snapshots
    const auto err_client = (dir.path / "client.err").string(), err_server = (dir.path / "server.err").string();
    auto agent_client = start_agent(client, "client", dir.db("client"), {"--source", "conntrack"}, err_client);
    auto agent_server = start_agent(server, "server", dir.db("server"), {"--source", "conntrack"}, err_server);

    REQUIRE(dial(client, "198.18.0.2", kServicePort, kConnections, kHoldUs).wait_exit(20000) == 0);
    // Refused connections are gone before their NEW event is read: the agent
    // is stopped meanwhile so that this is certain, not merely likely.
    REQUIRE(kill(agent_client.pid(), SIGSTOP) == 0);
    int refused_exit = dial(client, "198.18.0.2", kClosedPort, kRefused).wait_exit(20000);
    REQUIRE(kill(agent_client.pid(), SIGCONT) == 0);
    REQUIRE(refused_exit == 1);  // none connected
    usleep(300000);
    REQUIRE(agent_client.stop(SIGINT) == 0);
    REQUIRE(agent_server.stop(SIGINT) == 0);

    // The tables were empty at start, and the agents found that conntrack
    // tracks connections anyway: nothing to warn about.
    CHECK(read_file(err_client).empty());
    CHECK(read_file(err_server).empty());

    auto c = Database::open_read_only(dir.db("client"));
    auto s = Database::open_read_only(dir.db("server"));
    REQUIRE((c.ok() && s.ok()));
    {
        auto out = totals(*c, "direction = 'out' AND process = 'dg-dialler' AND local_addr = '198.18.0.1' AND "
                              "remote_addr = '198.18.0.2' AND port = 8080 AND source = 'conntrack'");
        CHECK(out.rows == 1);
        CHECK(out.connects == kConnections);
        CHECK(out.failed == 0);
        CHECK(out.accepts == 0);
        // conntrack reports a close only when it forgets the flow, TIME_WAIT
        // (120 s) after it: until then the connections count as open.
        CHECK(out.closes == 0);
        CHECK(out.open == kConnections);

        auto refused = totals(*c, "direction = 'out' AND process = '?' AND remote_addr = '198.18.0.2' AND "
                                  "port = 9090 AND source = 'conntrack'");
        CHECK(refused.rows == 1);
        CHECK(refused.failed == kRefused);
        CHECK(refused.refused == kRefused);
        CHECK(refused.connects == 0);
        CHECK(refused.open == 0);

        CHECK(count(*c, "SELECT count(*) FROM edges") == 2);
    }
    {
        auto in = totals(*s, "direction = 'in' AND process = 'dg-server' AND local_addr = '198.18.0.2' AND "
                             "remote_addr = '198.18.0.1' AND port = 8080 AND source = 'conntrack'");
        CHECK(in.rows == 1);
        CHECK(in.accepts == kConnections);
        CHECK(in.connects == 0);
        CHECK(in.failed == 0);
        // A refused SYN is no accept, as with eBPF: no edge for port 9090.
        CHECK(count(*s, "SELECT count(*) FROM edges") == 1);
    }
    // The agents' own probe connection over loopback is never an edge.
    for (auto* db : {&*c, &*s}) CHECK(count(*db, "SELECT count(*) FROM edges WHERE remote_addr = '127.0.0.1'") == 0);
}

TEST_CASE("--source conntrack: a connect that times out is a failure, never a connect or a close") {
    TestNetns client, server;
    TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    track_connections(client);
    track_connections(server);
    server.nft("add rule inet track input tcp dport 7000 drop");  // SYNs go unanswered
    sysctl(client, "net.ipv4.tcp_syn_retries=1");  // connect() gives up after about 3 s
    // conntrack forgets the unanswered flow this long after its last SYN.
    sysctl(client, "net.netfilter.nf_conntrack_tcp_timeout_syn_sent=2");

    TempDir dir;
    auto agent = start_agent(client, "client", dir.db("client"), {"--source", "conntrack"});
    const std::string edge = "direction = 'out' AND remote_addr = '198.18.0.2' AND port = 7000";
    auto first = dial(client, "198.18.0.2", 7000, 1), second = dial(client, "198.18.0.2", 7000, 1);
    REQUIRE(first.wait_exit(20000) == 1);
    REQUIRE(second.wait_exit(20000) == 1);
    REQUIRE(wait_until([&] { return totals_now(dir.db("client"), edge).failed == 2; }));
    REQUIRE(agent.stop(SIGINT) == 0);

    auto c = Database::open_read_only(dir.db("client"));
    REQUIRE(c.ok());
    auto out = totals(*c, edge);
    CHECK(out.rows == 1);
    CHECK(out.connects == 0);
    CHECK(out.failed == 2);
    CHECK(out.refused == 0);  // no RST came: it timed out
    CHECK(out.closes == 0);
    CHECK(out.open == 0);
    CHECK(count(*c, "SELECT count(*) FROM edge_buckets WHERE open > 0") == 0);  // not even while it was pending
}

TEST_CASE("--source conntrack: connections from an address added after the agent started are counted") {
    TestNetns client, server;
    auto [client_if, server_if] = TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    track_connections(client);
    track_connections(server);
    auto listener = ChildProcess::fork_in(server.path(), "dg-server", [] { return accept_and_close(kServicePort); });

    TempDir dir;
    auto agent = start_agent(client, "client", dir.db("client"), {"--source", "conntrack"});
    // Stopped, the agent reads neither the new address nor the events
    // until all of them have happened: it learns of the address from them.
    REQUIRE(kill(agent.pid(), SIGSTOP) == 0);
    client.ip({"addr", "add", "198.18.1.1/24", "dev", client_if});
    server.ip({"addr", "add", "198.18.1.2/24", "dev", server_if});
    Signal release;
    auto held = burst(client, "198.18.1.2", kServicePort, kConnections, 0, &release);
    int refused_exit = dial(client, "198.18.1.2", kClosedPort, kRefused).wait_exit(20000);
    REQUIRE(kill(agent.pid(), SIGCONT) == 0);
    REQUIRE(refused_exit == 1);
    const std::string edge = "direction = 'out' AND local_addr = '198.18.1.1' AND remote_addr = '198.18.1.2' AND "
                             "port = 8080";
    // Held open until counted, so that the agent can still find their owner.
    REQUIRE(wait_until([&] { return totals_now(dir.db("client"), edge).connects == kConnections; }));
    release.send();
    REQUIRE(held.wait_exit(20000) == 0);
    REQUIRE(agent.stop(SIGINT) == 0);

    auto c = Database::open_read_only(dir.db("client"));
    REQUIRE(c.ok());
    auto out = totals(*c, edge + " AND process = 'dg-burster'");
    CHECK(out.rows == 1);
    CHECK(out.connects == kConnections);
    CHECK(out.failed == 0);
    auto refused = totals(*c, "direction = 'out' AND process = '?' AND local_addr = '198.18.1.1' AND port = 9090");
    CHECK(refused.rows == 1);
    CHECK(refused.failed == kRefused);
    CHECK(refused.refused == kRefused);
    CHECK(refused.connects == 0);
    CHECK(count(*c, "SELECT count(*) FROM edges") == 2);
    CHECK(count(*c, "SELECT count(*) FROM losses WHERE value > 0 AND counter <> 'flush_late'") == 0);
}

TEST_CASE("--source conntrack: a burst of connections that close before the next flush is named") {
    TestNetns client, server;
    TestNetns::link(client, "198.18.0.1/24", server, "198.18.0.2/24");
    track_connections(client);
    auto listener = ChildProcess::fork_in(server.path(), "dg-server", [] { return accept_and_close(kServicePort); });

    TempDir dir;
    auto agent = start_agent(client, "client", dir.db("client"), {"--source", "conntrack"});
    constexpr int kBurst = 50;
    // All opened within a few milliseconds, all gone 50 ms later: no flush
    // comes in between (mostly), so each must be named as its NEW is read.
    REQUIRE(burst(client, "198.18.0.2", kServicePort, kBurst, 50000).wait_exit(20000) == 0);
    const std::string edge = "direction = 'out' AND remote_addr = '198.18.0.2' AND port = 8080";
    REQUIRE(wait_until([&] { return totals_now(dir.db("client"), edge).connects == kBurst; }));
    REQUIRE(agent.stop(SIGINT) == 0);

    auto c = Database::open_read_only(dir.db("client"));
    REQUIRE(c.ok());
    CHECK(totals(*c, edge + " AND process = 'dg-burster'").connects == kBurst);
    CHECK(totals(*c, edge + " AND process = '?'").rows == 0);
}

TEST_CASE("--source conntrack without a rule that uses conntrack: one line saying so, and a clean exit") {
    TestNetns ns;
    TempDir dir;
    const auto err = (dir.path / "agent.err").string();
    auto agent = start_agent(ns, "solo", dir.db("solo"), {"--source", "conntrack"}, err);
    REQUIRE(agent.stop(SIGINT) == 0);
    std::string logged = read_file(err);
    INFO(logged);
    CHECK(std::count(logged.begin(), logged.end(), '\n') == 1);
    CHECK(logged.find("conntrack tracks no connections") != std::string::npos);
    CHECK(logged.find("ct state") != std::string::npos);
    auto db = Database::open_read_only(dir.db("solo"));
    REQUIRE(db.ok());
    CHECK(count(*db, "SELECT count(*) FROM edges") == 0);
    CHECK(count(*db, "SELECT count(*) FROM agent_runs WHERE stopped_at IS NOT NULL") == 1);
}

// Without privileges conntrack fails too: the BPF load's refusal does not
// offer it as a way out, and each source names what it needs.
TEST_CASE("without privileges each source says what it needs, and neither points to the other as a way out") {
    TempDir dir;
    auto ebpf = run_agent_as_nobody(dir.path, {"--db", dir.db("x"), "--once"});
    INFO(ebpf.err);
    CHECK(ebpf.exit_code == 1);
    CHECK(ebpf.err == "depgraph-agent: error: failed to load the BPF programs: Operation not permitted (run "
                      "depgraph-agent as root, or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; --source conntrack "
                      "needs root or CAP_NET_ADMIN)\n");
    auto conntrack = run_agent_as_nobody(dir.path, {"--db", dir.db("x"), "--once", "--source", "conntrack"});
    INFO(conntrack.err);
    CHECK(conntrack.exit_code == 1);
    CHECK(conntrack.err == "depgraph-agent: error: --source conntrack: conntrack events: conntrack statistics "
                           "request: Operation not permitted (conntrack needs root or CAP_NET_ADMIN)\n");
    CHECK_FALSE(std::filesystem::exists(dir.db("x")));
}

// Two programs on one port on different addresses: each accept is named
// after the listener on its local address, as the eBPF source names it. The
// conntrack source used to key listeners by port alone, and gave the first
// one listed all of the port's accepts.
TEST_CASE("--source conntrack: two listeners on one port on different addresses each get their own accepts") {
    constexpr uint16_t kPort = 8088;
    TestNetns host;
    host.ip({"addr", "add", "198.18.0.2/32", "dev", "lo"});
    track_connections(host);
    TempDir dir;
    Signal sidecar_listening, appsrv_listening;
    auto sidecar = ChildProcess::fork_in(host.path(), "dg-sidecar",
                                         [&] { return accept_and_close(kPort, "127.0.0.1", &sidecar_listening); });
    auto appsrv = ChildProcess::fork_in(host.path(), "dg-appsrv",
                                        [&] { return accept_and_close(kPort, "198.18.0.2", &appsrv_listening); });
    REQUIRE(sidecar_listening.wait(5000));
    REQUIRE(appsrv_listening.wait(5000));
    std::string db = dir.db("host");
    auto agent = start_agent(host, "host", db, {"--source", "conntrack"});

    REQUIRE(dial(host, "127.0.0.1", kPort, 4, kHoldUs).wait_exit(20000) == 0);
    REQUIRE(dial(host, "198.18.0.2", kPort, 2, kHoldUs).wait_exit(20000) == 0);
    auto accepted = [&] { return totals_now(db, "direction = 'in'").accepts; };
    CHECK(wait_until([&] { return accepted() == 6; }));
    REQUIRE(agent.stop(SIGINT) == 0);

    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    CHECK(totals(*d, "direction = 'in' AND process = 'dg-sidecar' AND local_addr = '127.0.0.1'").accepts == 4);
    CHECK(totals(*d, "direction = 'in' AND process = 'dg-appsrv' AND local_addr = '198.18.0.2'").accepts == 2);
    CHECK(totals(*d, "direction = 'in'").accepts == 6);
}
