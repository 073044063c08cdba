// One agent with --scope host on a machine whose "containers" are network
// namespaces: their connections are recorded under the machine's hostname,
// and the graph names each side after its container (the cgroup) or, with
// no cgroup of its own, after its namespace; never the bare process alone.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/agent_fixture.hpp"

using namespace depgraph;
using namespace depgraph::test;

TEST_CASE("--scope host: connections between containers are drawn between the containers") {
    constexpr int kConnections = 4;
    TestNetns web, db;
    TestNetns::link(web, "198.18.7.1/24", db, "198.18.7.2/24");
    struct stat web_ns {};
    REQUIRE(stat(web.path().c_str(), &web_ns) == 0);

    // The server runs in a cgroup of its own, as a container's processes do.
    TestCgroup unit("db");
    const std::string& container = unit.name();
    auto server = ChildProcess::fork_in(db.path(), "dg-server", [&] {
        unit.enter();
        return accept_and_close(9000);
    });

    TempDir dir;
    auto path = dir.db("box");
    // The agent itself stays in this (the machine's) namespace and traces all of them.
    auto agent = ChildProcess::exec_in("/proc/self/ns/net", {std::getenv("DEPGRAPH_AGENT"), "--db", path,
                                                              "--scope", "host", "--hostname", "box",
                                                              "--flush-interval", "1s"});
    wait_for_count(path, "SELECT count(*) FROM host_addresses WHERE addr = '198.18.7.2'", 1);

    Signal done;
    auto client = ChildProcess::fork_in(web.path(), "dg-client", [&] {
        auto target = socket_address("198.18.7.2", 9000);
        int made = 0;
        for (int i = 0; i < kConnections; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            made += connect(fd, target.get(), target.length) == 0;
            close(fd);
        }
        done.send();
        pause();  // stays, so that the agent records this namespace's address
        return made == kConnections ? 0 : 1;
    });
    REQUIRE(done.wait(20000));
    // The agent finds a namespace through its processes: the web one's
    // address is known once a flush after the client started has run.
    wait_for_count(path,
                   "SELECT count(*) FROM host_addresses WHERE addr = '198.18.7.1' AND netns = " +
                       std::to_string(web_ns.st_ino),
                   1);
    REQUIRE(agent.stop(SIGINT) == 0);

    auto rendered = run_captured({std::getenv("DEPGRAPH"), "render", "--db", path, "-o", "-", "--format", "json"});
    INFO(rendered.err);
    REQUIRE(rendered.exit_code == 0);
    auto graph = nlohmann::json::parse(rendered.out);
    std::string client_id = "box/dg-client (netns " + std::to_string(web_ns.st_ino) + ")";
    std::string server_id = "box/dg-server (" + container + ")";
    int matched = 0;
    for (const auto& e : graph["edges"]) {
        if (e["target"] != server_id) continue;
        matched++;
        CHECK(e["source"] == client_id);
        CHECK(e["port"] == 9000);
        CHECK(e["connections"] == kConnections);
        CHECK(e["disputed"] == false);
    }
    CHECK(matched == 1);
}
