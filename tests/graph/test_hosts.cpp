// hosts: when each host's agent ran and did not, and two agents under one host name.
#include <catch2/catch.hpp>

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
