// hosts: when each host's agent ran and did not, and two agents under one host name.
#include <catch2/catch.hpp>

#include <sstream>

#include "common/time.hpp"
#include "tests/graph/fixture_db.hpp"
#include "tests/graph/small_fleet.hpp"

using namespace depgraph::fixture;

TEST_CASE("hosts warns once per host when two agents in different network namespaces recorded its name at once") {
    TempDir dir;
    // Two `--scope netns` agents without --hostname on one machine: both record "box".
    {
        HostDb h(dir.file("ns-a.db"), "box");
        h.run("run-a", kT0, 0, kT0 + 600, 4026532001);
    }
    {
        HostDb h(dir.file("ns-b.db"), "box");
        h.run("run-b", kT0 + 60, kT0 + 300, kT0 + 300, 4026532002);
        h.run("run-b2", kT0 + 400, 0, kT0 + 600, 4026532002);
    }
    // One agent after another, each in a new namespace (a container restarted): never at once. The
    // first died; its last report says until when it ran.
    {
        HostDb h(dir.file("web.db"), "web-01");
        h.run("run-1", kT0, 0, kT0 + 100, 4026532003);
        h.run("run-2", kT0 + 130, kT0 + 200, kT0 + 200, 4026532004);
        h.run("run-3", kT0 + 200, 0, kT0 + 600, 4026532005);
    }
    for (const char* format : {"table", "json"}) {
        INFO(format);
        auto r = run_depgraph({"hosts", "--format", format, "--db", dir.file("ns-a.db"), "--db", dir.file("ns-b.db"),
                               "--db", dir.file("web.db")});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(r.err == "depgraph: warning: host box: two agents recorded under one host name at once (network "
                       "namespaces 4026532001 and 4026532002, from " + depgraph::format_iso8601(kT0 + 60) +
                       "), so their edges are one host's: give each agent --hostname NAME\n");
    }
}

// Each row whole (HOST on every one, for grep and sort), and when the agent was not running between runs.
TEST_CASE("hosts lists each run and each time between runs when the agent was not running, the host on every row") {
    TempDir dir;
    {
        HostDb h(dir.file("web.db"), "web-01");
        h.run("run-1", kT0, kT0 + 100, kT0 + 100);
        h.run("run-2", kT0 + 160, 0, kT0 + 300);        // died: its last report says until when it ran
        h.run("run-3", kT0 + 400, kT0 + 500, kT0 + 500);
        h.run("run-4", kT0 + 500, 0, kT0 + 600);        // restarted in the same second: no gap
        h.bucket(h.edge("out", "app", "198.18.7.1", "198.18.7.2", 80), kT0 + 60, {.connects = 1});
        h.loss("run-2", kT0 + 180, "ring_lost", 2);
    }
    auto at = [](int64_t t) { return depgraph::format_iso8601(t); };
    auto r = run_depgraph({"hosts", "--db", dir.file("web.db")});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    std::vector<std::vector<std::string>> rows;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
        std::vector<std::string> cells;
        std::istringstream words(line);
        for (std::string word; words >> word;) cells.push_back(word);
        rows.push_back(cells);
    }
    using Row = std::vector<std::string>;
    CHECK(rows == std::vector<Row>{
        {"HOST", "AGENT", "FROM", "UNTIL", "LAST_REPORT", "VERSION", "EDGES", "LOSSES"},
        {"web-01", "running", at(kT0), at(kT0 + 100), at(kT0 + 100), "0.1.0", "1", "ring_lost=2"},
        {"web-01", "NOT", "RUNNING", at(kT0 + 100), at(kT0 + 160), "-", "-"},
        {"web-01", "running", at(kT0 + 160), "not", "recorded", at(kT0 + 300), "0.1.0"},
        {"web-01", "NOT", "RUNNING", at(kT0 + 300), at(kT0 + 400), "-", "-"},
        {"web-01", "running", at(kT0 + 400), at(kT0 + 500), at(kT0 + 500), "0.1.0"},
        {"web-01", "running", at(kT0 + 500), "not", "recorded", at(kT0 + 600), "0.1.0"},
    });

    auto hosts = run_depgraph({"hosts", "--format", "json", "--db", dir.file("web.db")}).json();
    REQUIRE(hosts.size() == 1);
    CHECK(hosts[0]["not_running"] == nlohmann::json::parse(R"([
        {"from": ")" + at(kT0 + 100) + R"(", "until": ")" + at(kT0 + 160) + R"("},
        {"from": ")" + at(kT0 + 300) + R"(", "until": ")" + at(kT0 + 400) + R"("}])"));
    REQUIRE(hosts[0]["runs"].size() == 4);
    CHECK(hosts[0]["runs"][0]["kernel"] == "6.1.0");
    CHECK(hosts[0]["runs"][0]["scope"] == "netns");
    CHECK(hosts[0]["runs"][0]["netns"] == kRootNetns);
}
