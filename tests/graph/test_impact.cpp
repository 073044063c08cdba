// impact and deps: transitive, with depth, evidence, cycles, and unknown targets; how targets and
// --exclude patterns name nodes.
#include <catch2/catch.hpp>

#include <tuple>

#include "tests/graph/fixture_db.hpp"
#include "tests/graph/small_fleet.hpp"
#include "tests/graph/svg.hpp"

using namespace depgraph::fixture;
using nlohmann::json;

namespace {

// cache-01/redis and, in the small fleet, what depends on it, sorted.
const std::vector<std::string> kCacheAndDependents{"198.18.0.77", "203.0.113.5", "cache-01/redis", "web-01/app",
                                                   "web-01/nginx"};

CliResult walk(const std::string& command, const std::string& target, const std::vector<std::string>& dbs,
               std::vector<std::string> extra = {}, const std::string& format = "json") {
    // the fixtures are in 2025: the default 30-day window would miss them
    std::vector<std::string> args{command, target, "--since", "2025-11-01", "--format", format};
    for (const auto& a : db_args(dbs)) args.push_back(a);
    for (const auto& a : extra) args.push_back(a);
    return run_depgraph(args);
}

// "node@depth" for each entry, in output order (depth, then node).
std::vector<std::string> listed(const json& doc, const char* key) {
    std::vector<std::string> out;
    for (const auto& d : doc[key]) out.push_back(d["node"].get<std::string>() + "@" + std::to_string(d["depth"].get<int>()));
    return out;
}

// `impact TARGET` matched exactly `matched` and listed exactly `dependents`.
void check_impact(const std::vector<std::string>& dbs, const std::string& target, const json& matched,
                  const std::vector<std::string>& dependents) {
    INFO(target);
    auto r = walk("impact", target, dbs);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.json()["matched"] == matched);
    CHECK(listed(r.json(), "dependents") == dependents);
}

}  // namespace

TEST_CASE("impact of a service port lists its clients, then their clients, with evidence") {
    TempDir dir;
    auto r = walk("impact", "db-01:5432", write_small_fleet(dir));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto doc = r.json();
    CHECK(doc["target"] == "db-01:5432");
    CHECK(doc["matched"] == json::array({"db-01/postgres"}));
    CHECK(doc["window"]["since"] == "2025-11-01T00:00:00Z");
    CHECK(listed(doc, "dependents") == std::vector<std::string>{"batch-01/(unknown)@1", "web-01/app@1",
                                                                "web-02/app@1", "web-01/nginx@2",
                                                                "203.0.113.5@3"});
    const auto& app = doc["dependents"][1];
    CHECK(app["host"] == "web-01");
    CHECK(app["process"] == "app");
    CHECK(app["port"] == 5432);
    CHECK(app["calls"] == json::array({"db-01/postgres"}));
    CHECK(app["connections"] == 10);
    CHECK(app["first_seen"] == "2025-11-26T00:00:00Z");
    CHECK(app["last_seen"] == "2025-11-26T00:01:00Z");
    const auto& nginx = doc["dependents"][3];
    CHECK(nginx["port"] == 8080);
    CHECK(nginx["calls"] == json::array({"web-01/app"}));
    CHECK(nginx["connections"] == 40);
}

// c-01/app calls s-01/a twice and s-01/b nine times: it depends on s-01 through both. Its evidence adds
// them up; the busier one is named first, and gives the port.
TEST_CASE("a dependent reached through two edges at one depth counts both, the busier one first") {
    TempDir dir;
    std::vector<std::string> dbs{dir.file("c-01.db"), dir.file("s-01.db")};
    {
        HostDb client(dbs[0], "c-01");
        client.address("198.18.8.1", kT0, kT0 + 3600);
        HostDb server(dbs[1], "s-01");
        server.address("198.18.8.2", kT0, kT0 + 3600);
        for (auto [process, port, n, minute] : {std::tuple{"a", 7000, 2, 1}, {"b", 7001, 9, 0}}) {
            client.bucket(client.edge("out", "app", "198.18.8.1", "198.18.8.2", port), kT0 + 60 * minute,
                          {.connects = n, .failed = 1});
            server.bucket(server.edge("in", process, "198.18.8.2", "198.18.8.1", port), kT0 + 60 * minute,
                          {.accepts = n});
        }
    }
    auto r = walk("impact", "s-01", dbs);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto doc = r.json();
    CHECK(doc["matched"] == json::array({"s-01/a", "s-01/b"}));
    REQUIRE(listed(doc, "dependents") == std::vector<std::string>{"c-01/app@1"});
    const auto& app = doc["dependents"][0];
    CHECK(app["calls"] == json::array({"s-01/b", "s-01/a"}));
    CHECK(app["port"] == 7001);
    CHECK(app["connections"] == 11);
    CHECK(app["failed"] == 2);
    CHECK(app["first_seen"] == "2025-11-26T00:00:00Z");
    CHECK(app["last_seen"] == "2025-11-26T00:02:00Z");
    auto table = walk("impact", "s-01", dbs, {}, "table");
    REQUIRE(table.exit_code == 0);
    CHECK(table.out ==
          "Who depends on s-01 (s-01/a, s-01/b), 2025-11-01T00:00:00Z to now:\n"
          "DEPTH  NODE      CALLS      PORT  CONNECTIONS  FAILED  OPEN  FIRST_SEEN            LAST_SEEN\n"
          "1      c-01/app  s-01/b +1  7001  11           2       0     2025-11-26T00:00:00Z  2025-11-26T00:02:00Z\n");
    auto nothing = walk("impact", "c-01", dbs, {}, "table");
    REQUIRE(nothing.exit_code == 0);
    CHECK(nothing.out == "Nothing depends on c-01 (c-01/app), 2025-11-01T00:00:00Z to now.\n");
    auto deps = walk("deps", "c-01/app", dbs, {}, "table");
    REQUIRE(deps.exit_code == 0);
    CHECK(deps.out.rfind("What c-01/app depends on, 2025-11-01T00:00:00Z to now:\nDEPTH", 0) == 0);
    auto none = walk("deps", "s-01/a", dbs, {}, "table");
    REQUIRE(none.exit_code == 0);
    CHECK(none.out == "s-01/a depends on nothing, 2025-11-01T00:00:00Z to now.\n");
}

TEST_CASE("a target's host is matched regardless of case, and its port must be one") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto upper = walk("impact", "DB-01:5432", dbs);
    INFO(upper.err);
    REQUIRE(upper.exit_code == 0);
    CHECK(upper.json()["matched"] == json::array({"db-01/postgres"}));
    for (const char* port : {"0", "65536", "abc", "+5432", ""}) {
        auto r = walk("impact", std::string("db-01:") + port, dbs);
        CHECK(r.exit_code == 1);
        CHECK(r.err == "depgraph: error: invalid port '" + std::string(port) + "' in 'db-01:" + port +
                           "': a port is 1 to 65535\n");
    }
    // --db takes one path: the target after it is still the target.
    std::vector<std::string> args{"impact", "--db", dbs[0]};
    for (size_t i = 1; i < dbs.size(); i++) args.insert(args.end(), {"--db", dbs[i]});
    args.insert(args.end(), {"db-01:5432", "--since", "2025-11-01", "--format", "json"});
    auto after_db = run_depgraph(args);
    INFO(after_db.err);
    REQUIRE(after_db.exit_code == 0);
    CHECK(after_db.json()["matched"] == json::array({"db-01/postgres"}));
}

TEST_CASE("impact --depth stops the walk; a port narrows only the first hop") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto one = walk("impact", "db-01", dbs, {"--depth", "1"});
    REQUIRE(one.exit_code == 0);
    CHECK(listed(one.json(), "dependents") ==
          std::vector<std::string>{"batch-01/(unknown)@1", "web-01/app@1", "web-02/app@1"});
    auto two = walk("impact", "db-01", dbs, {"--depth", "2"});  // 203.0.113.5, three levels up, is not reached
    REQUIRE(two.exit_code == 0);
    CHECK(listed(two.json(), "dependents") ==
          std::vector<std::string>{"batch-01/(unknown)@1", "web-01/app@1", "web-02/app@1", "web-01/nginx@2"});
    auto redis = walk("impact", "198.18.0.31:6379", dbs);
    REQUIRE(redis.exit_code == 0);
    CHECK(listed(redis.json(), "dependents") ==
          std::vector<std::string>{"198.18.0.77@1", "web-01/app@1", "web-01/nginx@2", "203.0.113.5@3"});
    auto by_process = walk("impact", "web-01/app", dbs);
    REQUIRE(by_process.exit_code == 0);
    CHECK(listed(by_process.json(), "dependents") == std::vector<std::string>{"web-01/nginx@1", "203.0.113.5@2"});
}

TEST_CASE("impact of a role, at role grouping, counts its members together") {
    TempDir dir;
    auto r = walk("impact", "db", write_small_fleet(dir), {"--group-by", "role"});
    REQUIRE(r.exit_code == 0);
    auto doc = r.json();
    CHECK(listed(doc, "dependents") == std::vector<std::string>{"batch@1", "web@1", "203.0.113.5@2"});
    CHECK(doc["dependents"][1]["connections"] == 16);
}

TEST_CASE("a cycle A -> B -> A terminates and lists each node once") {
    TempDir dir;
    auto dbs = write_cycle_fleet(dir);
    auto a = walk("impact", "a-01", dbs);
    REQUIRE(a.exit_code == 0);
    CHECK(listed(a.json(), "dependents") == std::vector<std::string>{"b-01/beta@1", "c-01/gamma@1"});
    auto b = walk("impact", "b-01/beta", dbs);
    REQUIRE(b.exit_code == 0);
    CHECK(listed(b.json(), "dependents") == std::vector<std::string>{"a-01/alpha@1", "c-01/gamma@2"});
    CHECK(b.json()["dependents"][0]["connections"] == 5);
}

TEST_CASE("deps walks the other way") {
    TempDir dir;
    auto r = walk("deps", "web-01/nginx", write_small_fleet(dir));
    REQUIRE(r.exit_code == 0);
    auto doc = r.json();
    CHECK(listed(doc, "dependencies") == std::vector<std::string>{"web-01/app@1", "93.184.216.34@2",
                                                                  "cache-01/redis@2", "db-01/postgres@2"});
    CHECK(doc["dependencies"][1]["failed"] == 1);
    CHECK(doc["dependencies"][2]["from"] == json::array({"web-01/app"}));
}

TEST_CASE("an unknown target is one error line naming the closest matches") {
    TempDir dir;
    auto r = walk("impact", "db-1", write_small_fleet(dir));
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("depgraph: error: no node matches 'db-1'", 0) == 0);
    CHECK(r.err.find("closest matches: db-01, db") != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

TEST_CASE("impact defaults to the last 30 days, as a table") {
    TempDir dir;
    // the fixture's traffic is from 2025: outside the default window
    auto r = run_depgraph({"impact", "db-01", "--db", write_small_fleet(dir)[2]});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("the graph is empty in this window") != std::string::npos);

    auto table = run_depgraph({"impact", "db-01", "--since", "2025-11-01", "--db", dir.file("db-01.db"), "--db",
                               dir.file("web-01.db")});
    REQUIRE(table.exit_code == 0);
    // Without web-02's and batch-01's files, their addresses are external clients.
    CHECK(table.out ==
          "Who depends on db-01 (db-01/postgres), 2025-11-01T00:00:00Z to now:\n"
          "DEPTH  NODE          CALLS           PORT  CONNECTIONS  FAILED  OPEN  FIRST_SEEN            LAST_SEEN\n"
          "1      198.18.0.12   db-01/postgres  5432  6            0       0     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n"
          "1      198.18.0.13   db-01/postgres  5432  4            0       0     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n"
          "1      web-01/app    db-01/postgres  5432  10           0       2     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n"
          "2      web-01/nginx  web-01/app      8080  40           0       0     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n"
          "3      203.0.113.5   web-01/nginx    80    40           0       0     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n");
}

TEST_CASE("impact with --until alone looks at the 30 days before it") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    for (const char* command : {"impact", "deps"}) {
        INFO(command);
        std::vector<std::string> args{command, "web-01", "--until", "2025-11-27", "--format", "json"};
        for (const auto& a : db_args(dbs)) args.push_back(a);
        auto r = run_depgraph(args);
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.json()["window"] == json{{"since", "2025-10-28T00:00:00Z"}, {"until", "2025-11-27T00:00:00Z"}});
    }
}

TEST_CASE("impact as svg and dot draws the subgraph with the target highlighted") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto dot = walk("impact", "cache-01", dbs, {}, "dot");
    REQUIRE(dot.exit_code == 0);
    CHECK(dot.out.find("gold") != std::string::npos);
    CHECK(dot.out.find("redis") != std::string::npos);
    CHECK(dot.out.find("nginx") != std::string::npos);
    CHECK(dot.out.find("postgres") == std::string::npos);  // not a dependent
    auto drawn = walk("impact", "cache-01", dbs, {}, "svg");
    REQUIRE(drawn.exit_code == 0);
    auto svg = parse_svg(drawn.out);
    CHECK(svg.nodes() == kCacheAndDependents);
    CHECK(svg.has_text("depgraph impact of cache-01: 2025-11-01T00:00:00Z to now"));
    for (const auto& node : kCacheAndDependents) {
        INFO(node);
        const auto& shape = svg.find("node", node).shape;
        if (node == "cache-01/redis") {
            CHECK(shape.at("fill") == "gold");
            CHECK(shape.at("stroke-width") == "3");
        } else {
            CHECK(shape.at("fill") != "gold");
            CHECK(shape.count("stroke-width") == 0);
        }
    }
}

TEST_CASE("without --format, impact writes what the output file's extension names") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto impact_to = [&](const std::string& file) {
        std::vector<std::string> args{"impact", "cache-01", "--since", "2025-11-01", "-o", dir.file(file)};
        for (const auto& a : db_args(dbs)) args.push_back(a);
        return run_depgraph(args);
    };
    REQUIRE(impact_to("impact.svg").exit_code == 0);
    CHECK(parse_svg(read_file(dir.file("impact.svg"))).nodes() == kCacheAndDependents);
    REQUIRE(impact_to("impact.gv").exit_code == 0);
    CHECK(read_file(dir.file("impact.gv")).rfind("digraph", 0) == 0);
    REQUIRE(impact_to("impact.json").exit_code == 0);
    CHECK(listed(json::parse(read_file(dir.file("impact.json"))), "dependents") ==
          std::vector<std::string>{"198.18.0.77@1", "web-01/app@1", "web-01/nginx@2", "203.0.113.5@3"});
    REQUIRE(impact_to("impact.txt").exit_code == 0);
    CHECK(read_file(dir.file("impact.txt")).find("\nDEPTH") != std::string::npos);
    auto png = impact_to("impact.png");  // impact draws svg or dot only
    CHECK(png.exit_code == 1);
    CHECK(png.err == "depgraph: error: " + dir.file("impact.png") +
                         ": this command does not write png; use .txt, .json, .svg, .dot/.gv, or --format\n");
    // --layout as render's: the engine named in the DOT, which `dot` then runs.
    std::vector<std::string> neato{"impact", "cache-01", "--since", "2025-11-01", "--layout", "neato", "-o",
                                   dir.file("neato.dot")};
    for (const auto& a : db_args(dbs)) neato.push_back(a);
    REQUIRE(run_depgraph(neato).exit_code == 0);
    CHECK(read_file(dir.file("neato.dot")).find("layout=neato") != std::string::npos);
    auto pdf = impact_to("impact.pdf");
    CHECK(pdf.exit_code == 1);
    CHECK(pdf.err == "depgraph: error: cannot tell the format from the extension of " + dir.file("impact.pdf") +
                         ": use .txt, .json, .svg, .dot/.gv, or --format\n");
}

TEST_CASE("an ADDRESS:PORT target names the address's owners within the window, not its earlier ones") {
    // 10.0.0.5 was old-web's until 90 days before kT0 (old-web has had 10.0.0.7 since), and new-web's
    // from then on. Both serve port 80 in the window: only new-web serves it on 10.0.0.5.
    constexpr int64_t kDay = 86400;
    TempDir dir;
    {
        HostDb h(dir.file("old-web.db"), "old-web");
        h.address("10.0.0.5", kT0 - 120 * kDay, kT0 - 90 * kDay);
        h.address("10.0.0.7", kT0 - 90 * kDay, kT0 + 600);
        h.bucket(h.edge("in", "apache", "10.0.0.7", "10.0.0.1", 80), kT0, {.accepts = 3});
    }
    {
        HostDb h(dir.file("new-web.db"), "new-web");
        h.address("10.0.0.5", kT0 - 89 * kDay, kT0 + 600);
        h.bucket(h.edge("in", "nginx", "10.0.0.5", "10.0.0.1", 80), kT0, {.accepts = 3});
    }
    {
        HostDb h(dir.file("client.db"), "client");
        h.address("10.0.0.1", kT0 - 120 * kDay, kT0 + 600);
        h.bucket(h.edge("out", "curl", "10.0.0.1", "10.0.0.7", 80), kT0, {.connects = 3});
        h.bucket(h.edge("out", "wget", "10.0.0.1", "10.0.0.5", 80), kT0, {.connects = 3});
    }
    std::vector<std::string> dbs{dir.file("old-web.db"), dir.file("new-web.db"), dir.file("client.db")};
    for (const char* target : {"10.0.0.5:80", "10.0.0.5"}) {
        check_impact(dbs, target, json::array({"new-web/nginx"}), {"client/wget@1"});
    }
    // A window that reaches back to old-web's time names both owners.
    std::vector<std::string> args{"impact", "10.0.0.5:80", "--since", "2025-07-01", "--format", "json"};
    for (const auto& a : db_args(dbs)) args.push_back(a);
    auto both = run_depgraph(args);
    REQUIRE(both.exit_code == 0);
    CHECK(both.json()["matched"] == json::array({"new-web/nginx", "old-web/apache"}));
}

TEST_CASE("an IPv6 target matches however the address is spelled, with or without a port") {
    // c6 (2001:db8::1) -> s6/nginx (2001:db8::2):443; c6 -> 2001:db8::99:5432, which no agent owns.
    TempDir dir;
    {
        HostDb h(dir.file("c6.db"), "c6");
        h.address("2001:db8::1", kT0, kT0 + 600);
        h.bucket(h.edge("out", "curl", "2001:db8::1", "2001:db8::2", 443), kT0, {.connects = 4});
        h.bucket(h.edge("out", "psql", "2001:db8::1", "2001:db8::99", 5432), kT0, {.connects = 2});
    }
    {
        HostDb h(dir.file("s6.db"), "s6");
        h.address("2001:db8::2", kT0, kT0 + 600);
        h.bucket(h.edge("in", "nginx", "2001:db8::2", "2001:db8::1", 443), kT0, {.accepts = 4});
    }
    std::vector<std::string> dbs{dir.file("c6.db"), dir.file("s6.db")};
    for (const char* target : {"[2001:db8::2]:443", "[2001:DB8::2]:443", "[2001:db8:0:0::2]:443", "[2001:db8::2]",
                               "2001:0db8::2"}) {
        check_impact(dbs, target, json::array({"s6/nginx"}), {"c6/curl@1"});
    }
    for (const char* target : {"[2001:DB8::99]:5432", "2001:db8:0::99"}) {
        check_impact(dbs, target, json::array({"2001:db8::99"}), {"c6/psql@1"});
    }
}

TEST_CASE("a mistyped HOST:PORT is matched by its host; a known host with another port names its ports") {
    // app-01/api calls postgres-01 .. postgres-15 on 5432; postgres-07 also serves 6432.
    TempDir dir;
    std::vector<std::string> dbs{dir.file("app-01.db")};
    HostDb app(dbs[0], "app-01");
    app.address("10.0.1.1", kT0, kT0 + 600);
    for (int i = 1; i <= 15; i++) {
        std::string number = (i < 10 ? "0" : "") + std::to_string(i), host = "postgres-" + number,
                    addr = "10.0.2." + std::to_string(i);
        dbs.push_back(dir.file(host + ".db"));
        HostDb db(dbs.back(), host);
        db.address(addr, kT0, kT0 + 600);
        for (int port : i == 7 ? std::vector{5432, 6432} : std::vector{5432}) {
            app.bucket(app.edge("out", "api", "10.0.1.1", addr, port), kT0, {.connects = 2});
            db.bucket(db.edge("in", "postgres", addr, "10.0.1.1", port), kT0, {.accepts = 2});
        }
    }
    auto error_of = [&](const std::string& target) {
        auto r = walk("impact", target, dbs);
        CHECK(r.exit_code == 1);
        return r.err;
    };
    CHECK(error_of("postgres01:5432") == "depgraph: error: no node matches 'postgres01:5432' from 2025-11-01T00:00:00Z to now; "
                                         "closest matches: postgres-01, postgres, postgres-02\n");
    CHECK(error_of("postgres-01:5433") ==
          "depgraph: error: no node matches 'postgres-01:5433' from 2025-11-01T00:00:00Z to now; postgres-01 serves port 5432\n");
    CHECK(error_of("postgres-07:5433") == "depgraph: error: no node matches 'postgres-07:5433' from 2025-11-01T00:00:00Z to now; "
                                          "postgres-07 serves ports 5432, 6432\n");
    CHECK(error_of("app-01:5432") ==
          "depgraph: error: no node matches 'app-01:5432' from 2025-11-01T00:00:00Z to now; app-01 serves no port\n");
    CHECK(error_of("10.0.2.1:5433") ==
          "depgraph: error: no node matches '10.0.2.1:5433' from 2025-11-01T00:00:00Z to now; 10.0.2.1 serves port 5432\n");
}

// The ids of render's JSON nodes, in order.
static std::vector<std::string> node_ids(const CliResult& r) {
    std::vector<std::string> ids;
    auto doc = r.json();
    for (const auto& n : doc["nodes"]) ids.push_back(n["id"]);
    return ids;
}

TEST_CASE("--exclude matches role names when grouping by role, and hosts and processes at every grouping") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    std::ofstream(dir.file("roles.txt")) << "d* database\n";
    auto render = [&](std::vector<std::string> extra) {
        std::vector<std::string> args{"render", "-o", "-", "--format", "json", "--since", "2025-11-01"};
        for (const auto& a : db_args(dbs)) args.push_back(a);
        for (const auto& a : extra) args.push_back(a);
        auto r = run_depgraph(args);
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        return node_ids(r);
    };
    const std::vector<std::string> without_database{"198.18.0.77", "203.0.113.5", "93.184.216.34", "cache", "web"};
    CHECK(render({"--group-by", "role", "--roles", dir.file("roles.txt"), "--exclude", "database"}) ==
          without_database);
    CHECK(render({"--group-by", "role", "--roles", dir.file("roles.txt"), "--exclude", "data*"}) == without_database);
    CHECK(render({"--group-by", "role", "--exclude", "web"}) ==
          std::vector<std::string>{"198.18.0.77", "batch", "cache", "db"});
    // The finer names still match when grouped: a host, a process.
    CHECK(render({"--group-by", "role", "--roles", dir.file("roles.txt"), "--exclude", "db-01"}) == without_database);
    CHECK(render({"--group-by", "host", "--exclude", "postgres"}) ==
          std::vector<std::string>{"198.18.0.77", "203.0.113.5", "93.184.216.34", "cache-01", "web-01"});
    // In any case, as targets are.
    CHECK(render({"--group-by", "host", "--exclude", "POSTGRES"}) ==
          std::vector<std::string>{"198.18.0.77", "203.0.113.5", "93.184.216.34", "cache-01", "web-01"});
    // A role is not a name at the other groupings: "web" is no host or process here.
    CHECK(render({"--group-by", "host", "--exclude", "web"}) ==
          std::vector<std::string>{"198.18.0.77", "203.0.113.5", "93.184.216.34", "batch-01", "cache-01", "db-01",
                                   "web-01", "web-02"});
}

TEST_CASE("an external address named in /etc/hosts is a target, a suggestion and an exclude by that name") {
    TempDir dir;
    {
        HostDb h(dir.file("c1.db"), "c1");
        h.address("10.0.0.1", kT0, kT0 + 600);
        h.bucket(h.edge("out", "app", "10.0.0.1", "10.0.0.99", 5432), kT0, {.connects = 4});
        h.bucket(h.edge("out", "app", "10.0.0.1", "10.0.0.98", 443), kT0, {.connects = 1});
    }
    std::ofstream(dir.file("hosts")) << "127.0.0.1 localhost\n10.0.0.99 payments-db\n";
    // depgraph reads names from /etc/hosts only: it runs in a mount namespace of its own with the
    // test's file bind-mounted there, so the machine's /etc/hosts is never touched. Root needs no
    // user namespace for that; anyone else is root in one of their own.
    std::vector<std::string> with_hosts{"unshare", "--mount"};
    if (geteuid() != 0) with_hosts.push_back("--map-root-user");
    for (const char* s : {"sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""}) with_hosts.push_back(s);
    with_hosts.push_back(dir.file("hosts"));
    auto depgraph = [&](std::vector<std::string> args) {
        args.insert(args.end(), {"--db", dir.file("c1.db"), "--since", "2025-11-01", "--format", "json"});
        return run_depgraph(args, with_hosts);
    };

    auto whole = depgraph({"render", "-o", "-"});
    INFO(whole.err);
    REQUIRE(whole.exit_code == 0);
    REQUIRE(find_node(whole.json(), "10.0.0.99")["name"] == "payments-db");  // the bind mount took

    for (const char* target : {"payments-db:5432", "payments-db"}) {
        INFO(target);
        auto r = depgraph({"impact", target});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.json()["matched"] == json::array({"10.0.0.99"}));
        CHECK(listed(r.json(), "dependents") == std::vector<std::string>{"c1/app@1"});
    }
    auto grouped = depgraph({"impact", "payments-db", "--group-by", "role"});
    INFO(grouped.err);
    REQUIRE(grouped.exit_code == 0);
    CHECK(listed(grouped.json(), "dependents") == std::vector<std::string>{"c@1"});
    auto typo = depgraph({"impact", "payment-db:5432"});
    CHECK(typo.exit_code == 1);
    CHECK(typo.err == "depgraph: error: no node matches 'payment-db:5432' from 2025-11-01T00:00:00Z to now; "
                      "closest matches: payments-db, 10.0.0.98, 10.0.0.99\n");
    auto excluded = depgraph({"render", "-o", "-", "--exclude", "payments-*"});
    INFO(excluded.err);
    REQUIRE(excluded.exit_code == 0);
    CHECK(node_ids(excluded) == std::vector<std::string>{"10.0.0.98", "c1/app"});
    // Tables name the address as the drawing does.
    auto table = run_depgraph({"deps", "c1/app", "--db", dir.file("c1.db"), "--since", "2025-11-01"}, with_hosts);
    INFO(table.err);
    REQUIRE(table.exit_code == 0);
    CHECK(table.out.find("\n1      10.0.0.99 (payments-db)  c1/app  5432  4 ") != std::string::npos);
}

TEST_CASE("a target that only the filters leave out is named as such, not as unknown") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto error_of = [&](const std::string& target, std::vector<std::string> filters) {
        auto r = walk("impact", target, dbs, std::move(filters));
        CHECK(r.exit_code == 1);
        CHECK(r.out.empty());
        return r.err;
    };
    // db-01/postgres's edges carry 10 (with 2 open, so kept whatever the count), 8 and 4 connection attempts.
    CHECK(error_of("db-01:5432", {"--exclude", "web-01", "--min-connections", "100"}) ==
          "depgraph: error: no node matches 'db-01:5432' once filtered (--exclude web-01, --min-connections 100); "
          "without the filters it matches db-01/postgres\n");
    CHECK(error_of("db-01", {"--exclude", "postgres", "--no-external"}) ==
          "depgraph: error: no node matches 'db-01' once filtered (--exclude postgres, --no-external); "
          "without the filters it matches db-01/postgres\n");
    CHECK(error_of("198.18.0.77", {"--no-external"}) ==
          "depgraph: error: no node matches '198.18.0.77' once filtered (--no-external); "
          "without the filters it matches 198.18.0.77\n");
    // A node the filters keep, for its other edges, but with none left on the port asked for.
    CHECK(error_of("web-01/app:8080", {"--exclude", "nginx"}) ==
          "depgraph: error: no node matches 'web-01/app:8080' once filtered (--exclude nginx); "
          "without the filters it matches web-01/app\n");
    // Unknown even without the filters: suggestions from the whole graph, not from what the filters left.
    CHECK(error_of("db-1", {"--min-connections", "100"}) ==
          "depgraph: error: no node matches 'db-1' from 2025-11-01T00:00:00Z to now; closest matches: db-01, db, web-01\n");
    // Still there once filtered: answered as usual.
    auto kept = walk("impact", "db-01:5432", dbs, {"--min-connections", "9"});
    REQUIRE(kept.exit_code == 0);
    CHECK(listed(kept.json(), "dependents") ==
          std::vector<std::string>{"web-01/app@1", "web-01/nginx@2", "203.0.113.5@3"});
}

// 198.18.8.9 has no agent: it calls s-01/web, and c-01/app calls it on 9999. Whether the program that
// serves 9999 is the one that calls s-01 is unknown, so c-01/app is listed, and marked as such.
TEST_CASE("a dependent reached only through an address no agent reports for is marked") {
    TempDir dir;
    std::vector<std::string> dbs{dir.file("c-01.db"), dir.file("s-01.db")};
    {
        HostDb client(dbs[0], "c-01");
        client.address("198.18.8.1", kT0, kT0 + 3600);
        client.bucket(client.edge("out", "app", "198.18.8.1", "198.18.8.9", 9999), kT0, {.connects = 3});
        HostDb server(dbs[1], "s-01");
        server.address("198.18.8.2", kT0, kT0 + 3600);
        server.bucket(server.edge("in", "web", "198.18.8.2", "198.18.8.9", 80), kT0, {.accepts = 5});
        server.bucket(server.edge("in", "web", "198.18.8.2", "198.18.8.9", 81), kT0, {.accepts = 2});
    }
    auto r = walk("impact", "s-01", dbs);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto doc = r.json();
    REQUIRE(listed(doc, "dependents") == std::vector<std::string>{"198.18.8.9@1", "c-01/app@2"});
    CHECK(doc["dependents"][0]["through_external"] == false);
    CHECK(doc["dependents"][0]["calls"] == json::array({"s-01/web"}));  // one node on two ports: listed once
    CHECK(doc["dependents"][0]["connections"] == 7);
    CHECK(doc["dependents"][1]["through_external"] == true);
    CHECK(doc["left_out_by_filters"] == 0);

    auto table = walk("impact", "s-01", dbs, {}, "table");
    REQUIRE(table.exit_code == 0);
    CHECK(table.out ==
          "Who depends on s-01 (s-01/web), 2025-11-01T00:00:00Z to now:\n"
          "DEPTH  NODE        CALLS       PORT  CONNECTIONS  FAILED  OPEN  FIRST_SEEN            LAST_SEEN\n"
          "1      198.18.8.9  s-01/web    80    7            0       0     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n"
          "2*     c-01/app    198.18.8.9  9999  3            0       0     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n"
          "* reached only through an address no agent reports for: what runs there is unknown, so it may not "
          "depend on s-01 at all\n");
    // The other way round, the doubt is the target's.
    auto deps = walk("deps", "c-01/app", dbs, {}, "table");
    REQUIRE(deps.exit_code == 0);
    CHECK(deps.out.find("\n2*     s-01/web ") != std::string::npos);
    CHECK(deps.out.find("\n* reached only through an address no agent reports for: what runs there is unknown, so "
                        "c-01/app may not depend on it at all\n") != std::string::npos);

    // Without c-01, the answer says what the filter hid.
    auto filtered = walk("impact", "s-01", dbs, {"--exclude", "c-0*"}, "table");
    REQUIRE(filtered.exit_code == 0);
    CHECK(filtered.out ==
          "Who depends on s-01 (s-01/web), 2025-11-01T00:00:00Z to now (--exclude c-0*):\n"
          "DEPTH  NODE        CALLS     PORT  CONNECTIONS  FAILED  OPEN  FIRST_SEEN            LAST_SEEN\n"
          "1      198.18.8.9  s-01/web  80    7            0       0     2025-11-26T00:00:00Z  2025-11-26T00:01:00Z\n"
          "The filters left out 1 more node that the whole graph lists here.\n");
    auto filtered_json = walk("impact", "s-01", dbs, {"--exclude", "c-0*"});
    REQUIRE(filtered_json.exit_code == 0);
    CHECK(listed(filtered_json.json(), "dependents") == std::vector<std::string>{"198.18.8.9@1"});
    CHECK(filtered_json.json()["left_out_by_filters"] == 1);
}

// c-01/app reaches s-01 in two hops through 198.18.8.9, which no agent reports for, and in three through
// m-01 and m-02, which have agents: it depends on s-01 whatever runs at 198.18.8.9, and is not marked.
TEST_CASE("a dependent also reached through agents alone, however longer the way, is not marked") {
    TempDir dir;
    std::vector<std::string> dbs{dir.file("c-01.db"), dir.file("s-01.db"), dir.file("m-01.db"), dir.file("m-02.db")};
    {
        HostDb client(dbs[0], "c-01"), server(dbs[1], "s-01"), m1(dbs[2], "m-01"), m2(dbs[3], "m-02");
        client.address("198.18.8.1", kT0, kT0 + 3600);
        server.address("198.18.8.2", kT0, kT0 + 3600);
        m1.address("198.18.8.3", kT0, kT0 + 3600);
        m2.address("198.18.8.4", kT0, kT0 + 3600);
        client.bucket(client.edge("out", "app", "198.18.8.1", "198.18.8.9", 9999), kT0, {.connects = 3});
        server.bucket(server.edge("in", "web", "198.18.8.2", "198.18.8.9", 80), kT0, {.accepts = 5});
        // c-01 -> m-01:7000 -> m-02:7001 -> s-01:80
        client.bucket(client.edge("out", "app", "198.18.8.1", "198.18.8.3", 7000), kT0, {.connects = 2});
        m1.bucket(m1.edge("in", "a", "198.18.8.3", "198.18.8.1", 7000), kT0, {.accepts = 2});
        m1.bucket(m1.edge("out", "a", "198.18.8.3", "198.18.8.4", 7001), kT0, {.connects = 2});
        m2.bucket(m2.edge("in", "b", "198.18.8.4", "198.18.8.3", 7001), kT0, {.accepts = 2});
        m2.bucket(m2.edge("out", "b", "198.18.8.4", "198.18.8.2", 80), kT0, {.connects = 2});
        server.bucket(server.edge("in", "web", "198.18.8.2", "198.18.8.4", 80), kT0, {.accepts = 2});
    }
    auto r = walk("impact", "s-01", dbs);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto doc = r.json();
    REQUIRE(listed(doc, "dependents") ==
            std::vector<std::string>{"198.18.8.9@1", "m-02/b@1", "c-01/app@2", "m-01/a@2"});
    for (const auto& d : doc["dependents"]) {
        INFO(d["node"]);
        CHECK(d["through_external"] == false);
    }
    // Without the way through agents it is marked: the mark is about c-01's only way, not its shortest.
    auto short_only = walk("impact", "s-01", dbs, {"--depth", "2", "--exclude", "m-01"});
    REQUIRE(short_only.exit_code == 0);
    REQUIRE(listed(short_only.json(), "dependents") ==
            std::vector<std::string>{"198.18.8.9@1", "m-02/b@1", "c-01/app@2"});
    CHECK(short_only.json()["dependents"][2]["through_external"] == true);
}
