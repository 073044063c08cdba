// The cross-host join, grouping and filters, checked through `render --format json`;
// and the names that external addresses take from /etc/hosts.
#include <catch2/catch.hpp>

#include <set>
#include <tuple>

#include "graph/host_names.hpp"
#include "tests/graph/fixture_db.hpp"
#include "tests/graph/small_fleet.hpp"

using namespace depgraph::fixture;
using nlohmann::json;

namespace {

json render_json(const std::vector<std::string>& dbs, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"render", "-o", "-", "--format", "json"};
    for (const auto& a : db_args(dbs)) args.push_back(a);
    for (const auto& a : extra) args.push_back(a);
    auto r = run_depgraph(args);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.json();
}

// cli-01/app (198.18.9.1) calling srv-01/svc (198.18.9.2) on port 80 in the bucket at kT0, as each side
// counted it; srv-01's agent recorded its address from `server_address_since`.
std::vector<std::string> write_call(const TempDir& dir, const Bucket& client_counted, const Bucket& server_counted,
                                    int64_t server_address_since = kT0) {
    std::vector<std::string> dbs{dir.file("cli-01.db"), dir.file("srv-01.db")};
    HostDb client(dbs[0], "cli-01");
    client.address("198.18.9.1", kT0, kT0 + 3600);
    client.bucket(client.edge("out", "app", "198.18.9.1", "198.18.9.2", 80), kT0, client_counted);
    HostDb server(dbs[1], "srv-01");
    server.address("198.18.9.2", server_address_since, kT0 + 3600);
    server.bucket(server.edge("in", "svc", "198.18.9.2", "198.18.9.1", 80), kT0, server_counted);
    return dbs;
}

}  // namespace

TEST_CASE("the join matches each outgoing half with the host that owned the address and accepted") {
    TempDir dir;
    auto g = render_json(write_small_fleet(dir));
    CHECK(g["window"]["since"].is_null());
    CHECK(g["nodes"].size() == 9);
    CHECK(g["edges"].size() == 8);

    auto db = find_edge(g, "web-01/app", "db-01/postgres");
    REQUIRE(db.is_object());
    CHECK(db["port"] == 5432);
    CHECK(db["connections"] == 10);
    CHECK(db["failed"] == 0);
    CHECK(db["bytes_sent"] == 1000);
    CHECK(db["bytes_received"] == 5000);
    CHECK(db["open"] == 2);
    CHECK(db["disputed"] == false);
    CHECK(db["first_seen"] == "2025-11-26T00:00:00Z");
    CHECK(db["last_seen"] == "2025-11-26T00:01:00Z");

    auto web2 = find_edge(g, "web-02/app", "db-01/postgres");
    CHECK(web2["connections"] == 6);
    CHECK(web2["failed"] == 2);
    CHECK(web2["disputed"] == false);

    auto postgres = find_node(g, "db-01/postgres");
    CHECK(postgres["kind"] == "service");
    CHECK(postgres["host"] == "db-01");
    CHECK(postgres["process"] == "postgres");
    CHECK(postgres["ports"] == json::array({5432}));
    CHECK(postgres["members"] == 1);
    CHECK(find_node(g, "web-02/app")["kind"] == "client");
}

TEST_CASE("loopback edges stay inside their host") {
    TempDir dir;
    auto g = render_json(write_small_fleet(dir));
    auto local = find_edge(g, "web-01/nginx", "web-01/app");
    REQUIRE(local.is_object());
    CHECK(local["port"] == 8080);
    CHECK(local["connections"] == 40);
    CHECK(local["disputed"] == false);
    CHECK(find_edge(g, "web-02/(unknown)", "web-01/app").is_null());
    CHECK(find_edge(g, "web-01/nginx", "web-02/app").is_null());
}

TEST_CASE("halves that disagree keep the larger count and are marked") {
    TempDir dir;
    auto g = render_json(write_small_fleet(dir));
    auto cache = find_edge(g, "web-01/app", "cache-01/redis");
    CHECK(cache["connections"] == 12);
    CHECK(cache["disputed"] == true);
    // batch-01 owns 198.18.0.13 but its agent recorded nothing: the service's half alone.
    auto batch = find_edge(g, "batch-01/(unknown)", "db-01/postgres");
    CHECK(batch["connections"] == 4);
    CHECK(batch["disputed"] == true);
}

// The service's agent was down for most of the minute: it counted 4 of the client's 10 connections, but
// those it saw moved more bytes than the client's agent counted (which closed before its own stop).
TEST_CASE("halves that disagree keep the larger of each count: connections from one side, bytes from the other") {
    TempDir dir;
    auto g = render_json(write_call(dir, {.connects = 10, .bytes_sent = 100, .bytes_received = 200},
                                    {.accepts = 4, .bytes_sent = 5000, .bytes_received = 1000}));
    REQUIRE(g["edges"].size() == 1);
    auto e = find_edge(g, "cli-01/app", "srv-01/svc");
    CHECK(e["connections"] == 10);
    CHECK(e["bytes_sent"] == 1000);
    CHECK(e["bytes_received"] == 5000);
    CHECK(e["disputed"] == true);
}

// A loopback edge's address need not be one the agent records (Debian names
// the host 127.0.1.1 in /etc/hosts): loopback alone keeps it inside the host.
TEST_CASE("a loopback edge to an address the host never recorded stays inside the host") {
    TempDir dir;
    {
        HostDb h(dir.file("h.db"), "web-01");
        h.address("198.18.9.5", kT0, kT0 + 3600);
        h.address("127.0.0.1", kT0, kT0 + 3600);
        h.bucket(h.edge("out", "app", "127.0.1.1", "127.0.1.1", 8080, true), kT0, {.connects = 3});
        h.bucket(h.edge("in", "api", "127.0.1.1", "127.0.1.1", 8080, true), kT0, {.accepts = 3});
    }
    auto g = render_json({dir.file("h.db")});
    REQUIRE(g["edges"].size() == 1);
    auto e = find_edge(g, "web-01/app", "web-01/api");
    CHECK(e["connections"] == 3);
    CHECK(e["disputed"] == false);
    CHECK(g["nodes"].size() == 2);
    CHECK(find_node(g, "127.0.1.1").is_null());
}

// The agent stamps an address when it flushes, an edge at its bucket's
// bounds: a service's address first recorded 200 s after the end of the
// bucket its first connection came in owns it then all the same.
TEST_CASE("an address recorded up to a flush interval after an edge's bucket still owns it") {
    TempDir dir;
    auto g = render_json(write_call(dir, {.connects = 2}, {.accepts = 2}, kT0 + 60 + 200));
    REQUIRE(g["edges"].size() == 1);
    auto e = find_edge(g, "cli-01/app", "srv-01/svc");
    CHECK(e["connections"] == 2);
    CHECK(e["disputed"] == false);
    CHECK(find_node(g, "198.18.9.2").is_null());
}

TEST_CASE("addresses no agent owns become external nodes, as clients and as services") {
    TempDir dir;
    auto g = render_json(write_small_fleet(dir));
    CHECK(find_node(g, "203.0.113.5")["kind"] == "external");
    CHECK(find_edge(g, "203.0.113.5", "web-01/nginx")["connections"] == 40);
    CHECK(find_edge(g, "198.18.0.77", "cache-01/redis")["connections"] == 1);
    auto api = find_node(g, "93.184.216.34");
    CHECK(api["kind"] == "external");
    CHECK(api["ports"] == json::array({443}));
    auto call = find_edge(g, "web-01/app", "93.184.216.34");
    CHECK(call["connections"] == 3);
    CHECK(call["failed"] == 1);

    TempDir again;
    auto inside = render_json(write_small_fleet(again), {"--no-external"});
    CHECK(inside["nodes"].size() == 6);
    CHECK(inside["edges"].size() == 5);
    CHECK(find_node(inside, "93.184.216.34").is_null());
    // web-01/nginx keeps its edge to app, so it stays
    CHECK(find_node(inside, "web-01/nginx").is_object());
}

TEST_CASE("a re-used address joins the host that owned it when the connection was made") {
    TempDir dir;
    const int64_t later = kT0 + 7200;
    {
        HostDb old_owner(dir.file("old.db"), "old-01");
        old_owner.address("198.18.0.99", kT0, kT0 + 3600);
        old_owner.bucket(old_owner.edge("in", "legacy", "198.18.0.99", "198.18.0.5", 9000), kT0, {.accepts = 2});
        HostDb new_owner(dir.file("new.db"), "new-01");
        new_owner.address("198.18.0.99", later, later + 3600);
        new_owner.bucket(new_owner.edge("in", "modern", "198.18.0.99", "198.18.0.5", 9000), later, {.accepts = 3});
        HostDb client(dir.file("client.db"), "cli-01");
        client.address("198.18.0.5", kT0, later + 3600);
        auto out = client.edge("out", "curl", "198.18.0.5", "198.18.0.99", 9000);
        client.bucket(out, kT0, {.connects = 2});
        client.bucket(out, later, {.connects = 3});
    }
    std::vector<std::string> dbs{dir.file("old.db"), dir.file("new.db"), dir.file("client.db")};
    auto both = render_json(dbs);
    CHECK(both["edges"].size() == 2);
    CHECK(find_edge(both, "cli-01/curl", "old-01/legacy")["connections"] == 2);
    CHECK(find_edge(both, "cli-01/curl", "new-01/modern")["connections"] == 3);

    auto recent = render_json(dbs, {"--since", "2025-11-26T01:30:00Z"});
    REQUIRE(recent["edges"].size() == 1);
    CHECK(recent["edges"][0]["target"] == "new-01/modern");
    CHECK(recent["edges"][0]["connections"] == 3);
    CHECK(recent["edges"][0]["disputed"] == false);
    CHECK(recent["window"]["since"] == "2025-11-26T01:30:00Z");
}

TEST_CASE("a client's address re-used by another client: the service's half is split by what each counted") {
    TempDir dir;
    const int64_t later = kT0 + 4200;
    {
        HostDb server(dir.file("srv.db"), "srv-01");
        server.address("198.18.0.1", kT0, later + 3600);
        auto in = server.edge("in", "nginx", "198.18.0.1", "198.18.0.2", 80);
        server.bucket(in, kT0, {.accepts = 10, .bytes_received = 1000});
        server.bucket(in, later, {.accepts = 20, .bytes_received = 2000});
        HostDb first(dir.file("a.db"), "cli-01");
        first.address("198.18.0.2", kT0, kT0 + 3600);
        first.bucket(first.edge("out", "curl", "198.18.0.2", "198.18.0.1", 80), kT0,
                     {.connects = 10, .bytes_sent = 1000});
        HostDb second(dir.file("b.db"), "cli-02");
        second.address("198.18.0.2", later, later + 3600);
        second.bucket(second.edge("out", "wget", "198.18.0.2", "198.18.0.1", 80), later,
                      {.connects = 20, .bytes_sent = 2000});
    }
    auto g = render_json({dir.file("srv.db"), dir.file("a.db"), dir.file("b.db")});
    CHECK(g["edges"].size() == 2);
    auto curl = find_edge(g, "cli-01/curl", "srv-01/nginx");
    CHECK(curl["connections"] == 10);
    CHECK(curl["bytes_sent"] == 1000);
    CHECK(curl["disputed"] == false);
    auto wget = find_edge(g, "cli-02/wget", "srv-01/nginx");
    CHECK(wget["connections"] == 20);
    CHECK(wget["bytes_sent"] == 2000);
    CHECK(wget["disputed"] == false);
}

TEST_CASE("a service's address moved to another host: each client process keeps its own connections") {
    TempDir dir;
    const int64_t later = kT0 + 4200;
    {
        HostDb client(dir.file("c.db"), "cli-01");
        client.address("198.18.0.9", kT0, later + 3600);
        client.bucket(client.edge("out", "alpha", "198.18.0.9", "198.18.0.5", 80), kT0, {.connects = 1});
        auto zeta = client.edge("out", "zeta", "198.18.0.9", "198.18.0.5", 80);
        client.bucket(zeta, kT0, {.connects = 500});
        client.bucket(zeta, later, {.connects = 500});
        HostDb old_host(dir.file("s1.db"), "srv-01");
        old_host.address("198.18.0.5", kT0, kT0 + 3600);
        old_host.bucket(old_host.edge("in", "web", "198.18.0.5", "198.18.0.9", 80), kT0, {.accepts = 501});
        HostDb new_host(dir.file("s2.db"), "srv-02");
        new_host.address("198.18.0.5", later, later + 3600);
        new_host.bucket(new_host.edge("in", "web", "198.18.0.5", "198.18.0.9", 80), later, {.accepts = 500});
    }
    std::vector<std::string> dbs{dir.file("c.db"), dir.file("s1.db"), dir.file("s2.db")};
    auto g = render_json(dbs);
    CHECK(g["edges"].size() == 3);
    CHECK(find_edge(g, "cli-01/alpha", "srv-01/web")["connections"] == 1);
    CHECK(find_edge(g, "cli-01/zeta", "srv-01/web")["connections"] == 500);
    CHECK(find_edge(g, "cli-01/zeta", "srv-02/web")["connections"] == 500);
    for (const auto& e : g["edges"]) CHECK(e["disputed"] == false);

    auto impact = run_depgraph({"impact", "srv-01", "--since", "2025-01-01", "--format", "json", "--db", dbs[0],
                                "--db", dbs[1], "--db", dbs[2]});
    INFO(impact.out);
    REQUIRE(impact.exit_code == 0);
    auto answer = impact.json();
    std::set<std::string> dependents;
    for (const auto& d : answer["dependents"]) dependents.insert(d["node"].get<std::string>());
    CHECK(dependents == std::set<std::string>{"cli-01/alpha", "cli-01/zeta"});
}

// Two pods on one node, each in its own namespace with its own address,
// both serving port 8080: the join used to key a service by host and port
// alone, and drew both clients calling the busier pod.
TEST_CASE("pods on one host serving one port on their own addresses: each client joins its own pod") {
    TempDir dir;
    constexpr int64_t kPodA = 4026532001, kPodB = 4026532002;
    {
        HostDb node(dir.file("node.db"), "node-01");
        node.address("198.18.0.2", kT0, kT0 + 3600);
        node.address("198.18.1.5", kT0, kT0 + 3600, kPodA);
        node.address("198.18.1.6", kT0, kT0 + 3600, kPodB);
        node.bucket(node.edge("in", "api", "198.18.1.5", "198.18.0.1", 8080, false, "", kPodA), kT0, {.accepts = 20});
        node.bucket(node.edge("in", "billing", "198.18.1.6", "198.18.0.1", 8080, false, "", kPodB), kT0,
                    {.accepts = 5});
        HostDb client(dir.file("client.db"), "cli-01");
        client.address("198.18.0.1", kT0, kT0 + 3600);
        client.bucket(client.edge("out", "frontend", "198.18.0.1", "198.18.1.5", 8080), kT0, {.connects = 20});
        client.bucket(client.edge("out", "worker", "198.18.0.1", "198.18.1.6", 8080), kT0, {.connects = 5});
    }
    auto g = render_json({dir.file("node.db"), dir.file("client.db")});
    CHECK(g["edges"].size() == 2);
    auto api = find_edge(g, "cli-01/frontend", "node-01/api");
    CHECK(api["connections"] == 20);
    CHECK(api["disputed"] == false);
    auto billing = find_edge(g, "cli-01/worker", "node-01/billing");
    CHECK(billing["connections"] == 5);
    CHECK(billing["disputed"] == false);
}

// Two containers on one host, each with an app and a redis on its own
// 127.0.0.1: loopback keeps an edge inside the host, and the namespace
// inside the container.
TEST_CASE("containers' own loopback: each app joins the redis in its own namespace") {
    TempDir dir;
    {
        HostDb host(dir.file("h.db"), "h-01");
        host.run("run-1", kT0, 0, kT0 + 3600);  // in the root namespace: the others are containers
        host.address("198.18.0.1", kT0, kT0 + 3600);
        for (auto [netns, cgroup, n] : {std::tuple{int64_t{4026532001}, "/system.slice/docker-aaaa.scope", 10},
                                        std::tuple{int64_t{4026532002}, "/system.slice/docker-bbbb.scope", 3}}) {
            host.bucket(host.edge("out", "app", "127.0.0.1", "127.0.0.1", 6379, true, cgroup, netns), kT0,
                        {.connects = n});
            host.bucket(host.edge("in", "redis-server", "127.0.0.1", "127.0.0.1", 6379, true, cgroup, netns), kT0,
                        {.accepts = n});
        }
    }
    auto g = render_json({dir.file("h.db")});
    CHECK(g["edges"].size() == 2);
    auto a = find_edge(g, "h-01/app (docker-aaaa.scope)", "h-01/redis-server (docker-aaaa.scope)");
    CHECK(a["connections"] == 10);
    CHECK(a["disputed"] == false);
    auto b = find_edge(g, "h-01/app (docker-bbbb.scope)", "h-01/redis-server (docker-bbbb.scope)");
    CHECK(b["connections"] == 3);
    CHECK(b["disputed"] == false);
}

// A client's host held an address long ago that a server holds now: a call
// to it is a call to the server, not to the client's own host.
TEST_CASE("an address the client's own host held before another took it joins its owner at the time") {
    TempDir dir;
    const int64_t long_ago = kT0 - 60 * 86400;
    {
        HostDb client(dir.file("a.db"), "a-01");
        client.address("198.18.0.50", long_ago, long_ago + 3600);
        client.address("198.18.0.1", long_ago, kT0 + 3600);
        client.bucket(client.edge("out", "curl", "198.18.0.1", "198.18.0.50", 80), kT0, {.connects = 5});
        HostDb server(dir.file("b.db"), "b-01");
        server.address("198.18.0.50", kT0 - 86400, kT0 + 3600);
        server.bucket(server.edge("in", "nginx", "198.18.0.50", "198.18.0.1", 80), kT0, {.accepts = 5});
    }
    auto g = render_json({dir.file("a.db"), dir.file("b.db")});
    REQUIRE(g["edges"].size() == 1);
    auto e = find_edge(g, "a-01/curl", "b-01/nginx");
    CHECK(e["connections"] == 5);
    CHECK(e["disputed"] == false);
}

// The client's agent ran only part of the time the server's did: the
// joined edge keeps the larger count, and the times either side saw it.
TEST_CASE("a joined edge is seen from the first to the last time either side saw it") {
    TempDir dir;
    const int64_t day = 86400;
    {
        HostDb client(dir.file("c.db"), "cli-01");
        client.address("198.18.0.1", kT0, kT0 + 4 * day);
        auto late = client.edge("out", "curl", "198.18.0.1", "198.18.0.2", 80);
        client.bucket(late, kT0 + day + 3600, {.connects = 5});
        auto early = client.edge("out", "wget", "198.18.0.1", "198.18.0.2", 81);
        client.bucket(early, kT0 + day + 3600, {.connects = 5});
        HostDb server(dir.file("s.db"), "srv-01");
        server.address("198.18.0.2", kT0, kT0 + 4 * day);
        // Port 80: the server also saw 40 more, two days after the client's agent stopped.
        auto in80 = server.edge("in", "nginx", "198.18.0.2", "198.18.0.1", 80);
        server.bucket(in80, kT0 + day + 3600, {.accepts = 5});
        server.bucket(in80, kT0 + 3 * day + 3600, {.accepts = 40});
        // Port 81: 50 more, a day before the client's agent started.
        auto in81 = server.edge("in", "nginx", "198.18.0.2", "198.18.0.1", 81);
        server.bucket(in81, kT0 + 3600, {.accepts = 50});
        server.bucket(in81, kT0 + day + 3600, {.accepts = 5});
    }
    auto g = render_json({dir.file("c.db"), dir.file("s.db")});
    REQUIRE(g["edges"].size() == 2);
    auto e80 = find_edge(g, "cli-01/curl", "srv-01/nginx");
    CHECK(e80["connections"] == 45);
    CHECK(e80["disputed"] == true);
    CHECK(e80["first_seen"] == "2025-11-27T01:00:00Z");
    CHECK(e80["last_seen"] == "2025-11-29T01:01:00Z");
    auto e81 = find_edge(g, "cli-01/wget", "srv-01/nginx");
    CHECK(e81["connections"] == 55);
    CHECK(e81["first_seen"] == "2025-11-26T01:00:00Z");
    CHECK(e81["last_seen"] == "2025-11-27T01:01:00Z");
}

TEST_CASE("group-by host and role fold nodes and sum their edges") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto hosts = render_json(dbs, {"--group-by", "host"});
    CHECK(find_node(hosts, "web-01")["process"] == "");
    CHECK(find_edge(hosts, "web-01", "web-01")["connections"] == 40);
    CHECK(find_edge(hosts, "web-01", "db-01")["connections"] == 10);

    auto roles = render_json(dbs, {"--group-by", "role"});
    auto web = find_node(roles, "web");
    CHECK(web["members"] == 2);
    CHECK(web["kind"] == "service");
    CHECK(web["ports"] == json::array({80, 8080}));
    auto to_db = find_edge(roles, "web", "db");
    CHECK(to_db["connections"] == 16);
    CHECK(to_db["failed"] == 2);
    CHECK(to_db["open"] == 2);
    CHECK(find_edge(roles, "batch", "db")["connections"] == 4);
    CHECK(roles["nodes"].size() == 7);  // web, db, cache, batch and 3 external
    CHECK(roles["edges"].size() == 7);
}

TEST_CASE("a roles file assigns roles by glob, first match first") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    // web-01, db-01 and cache-01 match a rule before the catch-all that batch-01 matches first.
    // Host names are case-blind: DB-* is db-01's rule.
    std::ofstream(dir.file("roles")) << "# role rules\nweb-0[12]  frontend\nDB-*  storage\ncache-*  storage\n"
                                        "*-01  other\n";
    auto g = render_json(dbs, {"--group-by", "role", "--roles", dir.file("roles")});
    CHECK(find_node(g, "frontend")["members"] == 2);
    CHECK(find_node(g, "other")["members"] == 1);
    CHECK(find_edge(g, "other", "storage")["connections"] == 4);  // batch-01's calls to db-01
    CHECK(find_node(g, "storage")["members"] == 2);
    CHECK(find_node(g, "storage")["ports"] == json::array({5432, 6379}));
    CHECK(find_edge(g, "frontend", "storage")["port"] == 5432);  // edges stay per port
    CHECK(find_edge(g, "frontend", "storage")["connections"] == 16);
    CHECK(g["edges"].size() == 7);

    // Without --group-by role a roles file changes no drawing: said, not ignored in silence.
    auto unused = run_depgraph({"render", "-o", "-", "--format", "json", "--db", dbs[0], "--roles", dir.file("roles")});
    CHECK(unused.exit_code == 0);
    CHECK(unused.err == "depgraph: warning: --roles only applies with --group-by role\n");

    std::ofstream(dir.file("bad-roles")) << "web-01\n";
    auto r = run_depgraph({"render", "-o", "-", "--format", "json", "--db", dbs[0], "--group-by", "role",
                           "--roles", dir.file("bad-roles")});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("bad-roles:1: expected 'PATTERN ROLE'") != std::string::npos);
}

TEST_CASE("filters: --min-connections counts attempts after grouping, --exclude drops nodes by glob") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto busy = render_json(dbs, {"--min-connections", "12"});
    // the external client's 40, the loopback's 40, redis's 12, and postgres's 10 for its 2 open connections
    CHECK(busy["edges"].size() == 4);
    CHECK(find_edge(busy, "web-01/app", "cache-01/redis").is_object());
    CHECK(find_edge(busy, "web-01/app", "db-01/postgres")["open"] == 2);
    CHECK(find_edge(busy, "web-02/app", "db-01/postgres").is_null());  // 8, none open
    auto roles = render_json(dbs, {"--group-by", "role", "--min-connections", "16"});
    CHECK(find_edge(roles, "web", "db")["connections"] == 16);

    auto no_db = render_json(dbs, {"--exclude", "db-*", "--exclude", "redis"});
    CHECK(find_node(no_db, "db-01/postgres").is_null());
    CHECK(find_node(no_db, "cache-01/redis").is_null());
    CHECK(find_node(no_db, "web-02/app").is_null());  // it only called db-01
    CHECK(no_db["edges"].size() == 3);
    // a node's id: web-02/app is neither a host nor a process name
    auto no_web2 = render_json(dbs, {"--exclude", "web-02/app"});
    CHECK(find_node(no_web2, "web-02/app").is_null());
    CHECK(no_web2["nodes"].size() == 8);
    CHECK(no_web2["edges"].size() == 7);

    auto until = render_json(dbs, {"--until", "2025-11-26T00:00:00Z"});
    CHECK(until["edges"].empty());
    CHECK(until["window"]["until"] == "2025-11-26T00:00:00Z");
}

// A node's label lists the ports of its edges in the graph drawn: a port
// whose edges a filter took away used to stay on it.
TEST_CASE("a service's ports are those of the edges left after the filters") {
    TempDir dir;
    {
        HostDb server(dir.file("s.db"), "s-01");
        server.address("198.18.0.2", kT0, kT0 + 600);
        server.bucket(server.edge("in", "nginx", "198.18.0.2", "198.18.0.1", 80), kT0, {.accepts = 20});
        server.bucket(server.edge("in", "nginx", "198.18.0.2", "198.18.0.1", 81), kT0, {.accepts = 2});
        HostDb client(dir.file("c.db"), "c-01");
        client.address("198.18.0.1", kT0, kT0 + 600);
        client.bucket(client.edge("out", "curl", "198.18.0.1", "198.18.0.2", 80), kT0, {.connects = 20});
        client.bucket(client.edge("out", "curl", "198.18.0.1", "198.18.0.2", 81), kT0, {.connects = 2});
    }
    std::vector<std::string> dbs{dir.file("s.db"), dir.file("c.db")};
    CHECK(find_node(render_json(dbs), "s-01/nginx")["ports"] == json::array({80, 81}));
    auto busy = render_json(dbs, {"--min-connections", "5"});
    CHECK(busy["edges"].size() == 1);
    CHECK(find_node(busy, "s-01/nginx")["ports"] == json::array({80}));
    CHECK(find_node(render_json(dbs, {"--group-by", "role", "--min-connections", "5"}), "s")["ports"] ==
          json::array({80}));
}

TEST_CASE("external addresses take their names from a hosts file, never from DNS") {
    auto names = depgraph::HostNames::parse(
        "# comment\n"
        "127.0.0.1\tlocalhost\n"
        "203.0.113.5  api.partner.example partner   # trailing comment\n"
        "203.0.113.5  second-line.example\n"
        "::ffff:203.0.113.6 mapped.example\n"
        "2001:db8:0:0::1 v6.example\n"
        "not-an-address nothing.example\n"
        "203.0.113.9\n");
    CHECK(names.name_of("203.0.113.5") == "api.partner.example");
    CHECK(names.name_of("203.0.113.6") == "mapped.example");
    CHECK(names.name_of("2001:db8::1") == "v6.example");
    CHECK(names.name_of("203.0.113.9").empty());
    CHECK(names.name_of("198.18.0.1").empty());

    depgraph::Graph graph;
    graph.node("203.0.113.5", depgraph::NodeKind::external, "203.0.113.5", "");
    graph.node("web-01/app", depgraph::NodeKind::client, "web-01", "app");
    graph.node("127.0.0.1", depgraph::NodeKind::external, "127.0.0.1", "");
    depgraph::name_external_nodes(graph, names);
    CHECK(graph.nodes[0].name == "api.partner.example");
    CHECK(graph.nodes[1].name.empty());  // only addresses no agent reports for
    CHECK(graph.nodes[2].name == "localhost");
    // a missing file names nothing
    CHECK(depgraph::HostNames::load("/nonexistent/hosts").name_of("127.0.0.1").empty());
}

namespace {

// The edge source -> target: its connections, whether disputed, and from when to when (on 2025-11-26) it was seen.
void check_edge(const json& g, const std::string& source, const std::string& target, int connections, bool disputed,
                const std::string& first_seen, const std::string& last_seen) {
    INFO(source << " -> " << target);
    auto e = find_edge(g, source, target);
    REQUIRE(e.is_object());
    CHECK(e["connections"] == connections);
    CHECK(e["disputed"] == disputed);
    CHECK(e["first_seen"] == "2025-11-26T" + first_seen + "Z");
    CHECK(e["last_seen"] == "2025-11-26T" + last_seen + "Z");
}

// cli-01/curl (198.18.70.100) calling 198.18.70.10:8080 in two minutes, 5 then 7, and x-01/python3 serving
// the first 5 while it held the address, from kT0 + 45 to its agent's last flush at kT0 + 47. With
// `y_agent`, y-01 took the address in the second minute and its agent counted the 7; without, a host with
// no agent served them.
std::vector<std::string> write_move(const TempDir& dir, bool y_agent) {
    std::vector<std::string> dbs{dir.file("cli.db"), dir.file("x.db")};
    HostDb client(dbs[0], "cli-01");
    client.address("198.18.70.100", kT0, kT0 + 3600);
    auto out = client.edge("out", "curl", "198.18.70.100", "198.18.70.10", 8080);
    client.bucket(out, kT0, {.connects = 5});
    client.bucket(out, kT0 + 60, {.connects = 7});
    HostDb x(dbs[1], "x-01");
    x.address("198.18.70.10", kT0 + 45, kT0 + 47);
    x.bucket(x.edge("in", "python3", "198.18.70.10", "198.18.70.100", 8080), kT0, {.accepts = 5});
    if (y_agent) {
        dbs.push_back(dir.file("y.db"));
        HostDb y(dbs[2], "y-01");
        y.address("198.18.70.10", kT0 + 63, kT0 + 110);
        y.bucket(y.edge("in", "python3", "198.18.70.10", "198.18.70.100", 8080), kT0 + 60, {.accepts = 7});
    }
    return dbs;
}

}  // namespace

// Both pieces of a split half used to keep the whole half's times (00:00-00:02).
TEST_CASE("a half split between an address's owners: each piece is seen when its owner saw it") {
    TempDir dir;
    auto g = render_json(write_move(dir, true));
    REQUIRE(g["edges"].size() == 2);
    check_edge(g, "cli-01/curl", "x-01/python3", 5, false, "00:00:00", "00:01:00");
    check_edge(g, "cli-01/curl", "y-01/python3", 7, false, "00:01:00", "00:02:00");
}

// Without y-01's agent, the 7 are not told apart from x-01 serving them while its own agent was down, the
// more common case, for which the rule holds: the larger count is kept and the edge marked
// (README, Known limits). Sending them to an external node would make a host whose agent died drop out of
// `impact` for every client that came after.
TEST_CASE("a half that outlasts its owner's records stays with the owner, the larger count kept and marked") {
    TempDir dir;
    auto g = render_json(write_move(dir, false));
    REQUIRE(g["edges"].size() == 1);
    check_edge(g, "cli-01/curl", "x-01/python3", 12, true, "00:00:00", "00:02:00");
}

// A DNAT rule switched from b1-01 to b2-01 after a minute; in the second,
// conntrack still held b1-01's 4 closed connections (flows 0, open 4). They
// drew 2 of the second minute's 6 calls to b1-01, and both backends' edges
// took the VIP edge's whole span.
TEST_CASE("a VIP switched to another backend: the old one's lingering entries attract no new connections") {
    TempDir dir;
    std::vector<std::string> dbs{dir.file("cli.db"), dir.file("b1.db"), dir.file("b2.db")};
    {
        HostDb client(dbs[0], "cli-01");
        client.address("198.18.70.100", kT0, kT0 + 3600);
        auto out = client.edge("out", "curl", "198.18.70.100", "198.18.71.1", 8080);
        client.bucket(out, kT0, {.connects = 4});
        client.bucket(out, kT0 + 60, {.connects = 6});
        client.translation(kT0, "198.18.70.100", "198.18.70.100", "198.18.71.1", "198.18.70.20", 8080, 4, 4);
        client.translation(kT0 + 60, "198.18.70.100", "198.18.70.100", "198.18.71.1", "198.18.70.20", 8080, 0, 4);
        client.translation(kT0 + 60, "198.18.70.100", "198.18.70.100", "198.18.71.1", "198.18.70.21", 8080, 6, 6);
        HostDb b1(dbs[1], "b1-01");
        b1.address("198.18.70.20", kT0, kT0 + 3600);
        b1.bucket(b1.edge("in", "python3", "198.18.70.20", "198.18.70.100", 8080), kT0, {.accepts = 4});
        HostDb b2(dbs[2], "b2-01");
        b2.address("198.18.70.21", kT0, kT0 + 3600);
        b2.bucket(b2.edge("in", "python3", "198.18.70.21", "198.18.70.100", 8080), kT0 + 60, {.accepts = 6});
    }
    auto g = render_json(dbs);
    REQUIRE(g["edges"].size() == 2);
    check_edge(g, "cli-01/curl", "b1-01/python3", 4, false, "00:00:00", "00:01:00");
    CHECK(find_edge(g, "cli-01/curl", "b1-01/python3")["via"] == json::array({"198.18.71.1:8080"}));
    check_edge(g, "cli-01/curl", "b2-01/python3", 6, false, "00:01:00", "00:02:00");

    auto later = render_json(dbs, {"--since", "2025-11-26T00:01:00Z"});
    REQUIRE(later["edges"].size() == 1);
    check_edge(later, "cli-01/curl", "b2-01/python3", 6, false, "00:01:00", "00:02:00");
    CHECK(find_edge(later, "cli-01/curl", "b2-01/python3")["via"] == json::array({"198.18.71.1:8080"}));
}

// web_01 and web.02 are both web: a host name's number goes with the separator before it.
TEST_CASE("default roles strip the trailing number after -, _ or .") {
    TempDir dir;
    std::vector<std::string> dbs;
    for (const char* host : {"web_01", "web.02"}) {
        dbs.push_back(dir.file(std::string(host) + ".db"));
        HostDb h(dbs.back(), host);
        h.bucket(h.edge("out", "curl", "198.18.9.1", "203.0.113.9", 443), kT0, {.connects = 1});
    }
    auto g = render_json(dbs, {"--group-by", "role"});
    CHECK(find_node(g, "web")["members"] == 2);
}
