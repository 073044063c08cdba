// `depgraph edges`: the agent's integration tests read their counts through it.
#include <catch2/catch.hpp>

#include "tests/graph/cli_runner.hpp"
#include "tests/graph/fixture_db.hpp"

using namespace depgraph::fixture;

namespace {

// web-01 calls db-01:5432 from two buckets; db-01 accepted them.
void write_pair(const TempDir& dir) {
    HostDb web(dir.file("web.db"), "web-01");
    web.run("run-web", kT0, 0, kT0 + 600);
    web.address("198.18.0.1", kT0, kT0 + 600);
    auto out = web.edge("out", "app", "198.18.0.1", "198.18.0.2", 5432);
    web.bucket(out, kT0, {.connects = 3, .failed = 1, .refused = 1, .closes = 2, .bytes_sent = 100,
                          .bytes_received = 1000, .open = 1});
    web.bucket(out, kT0 + 60, {.connects = 2, .closes = 3, .bytes_sent = 50, .bytes_received = 500, .open = 0});
    web.bucket(out, kT0 + 86400, {.connects = 7, .closes = 7, .open = 4});

    HostDb db(dir.file("db.db"), "db-01");
    db.run("run-db", kT0, 0, kT0 + 600);
    db.address("198.18.0.2", kT0, kT0 + 600);
    auto in = db.edge("in", "postgres", "198.18.0.2", "198.18.0.1", 5432);
    db.bucket(in, kT0, {.accepts = 2, .closes = 2, .bytes_sent = 1000, .bytes_received = 100, .open = 1});
}

}  // namespace

TEST_CASE("edges --format json sums counters per edge and takes open from the latest bucket") {
    TempDir dir;
    write_pair(dir);
    auto r = run_depgraph({"edges", "--db", dir.file("web.db"), "--db", dir.file("db.db"), "--format", "json",
                           "--until", "2025-11-26T12:00:00Z"});
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    auto edges = r.json();
    REQUIRE(edges.size() == 2);
    const auto& db = edges[0];  // sorted by host
    CHECK(db["host"] == "db-01");
    CHECK(db["direction"] == "in");
    CHECK(db["process"] == "postgres");
    CHECK(db["accepts"] == 2);
    CHECK(db["open"] == 1);
    const auto& web = edges[1];
    CHECK(web["host"] == "web-01");
    CHECK(web["direction"] == "out");
    CHECK(web["process"] == "app");
    CHECK(web["local_addr"] == "198.18.0.1");
    CHECK(web["remote_addr"] == "198.18.0.2");
    CHECK(web["port"] == 5432);
    CHECK(web["connects"] == 5);
    CHECK(web["failed"] == 1);
    CHECK(web["refused"] == 1);
    CHECK(web["accepts"] == 0);
    CHECK(web["closes"] == 5);
    CHECK(web["bytes_sent"] == 150);
    CHECK(web["bytes_received"] == 1500);
    CHECK(web["open"] == 0);
    CHECK(web["loopback"] == false);
    CHECK(web["netns"] == 4026531840LL);
    CHECK(web["cgroup"] == "");
    CHECK(web["first_seen"] == "2025-11-26T00:00:00Z");
    CHECK(web["last_seen"] == "2025-11-26T00:02:00Z");
}

TEST_CASE("edges without a window counts everything; --since limits it") {
    TempDir dir;
    write_pair(dir);
    auto all = run_depgraph({"edges", "--db", dir.file("web.db"), "--format", "json"});
    REQUIRE(all.exit_code == 0);
    REQUIRE(all.json().size() == 1);
    CHECK(all.json()[0]["connects"] == 12);
    CHECK(all.json()[0]["open"] == 4);
    CHECK(all.json()[0]["last_seen"] == "2025-11-27T00:01:00Z");

    auto late = run_depgraph({"edges", "--db", dir.file("web.db"), "--format", "json", "--since",
                              "2025-11-26T00:01:00Z"});
    REQUIRE(late.exit_code == 0);
    CHECK(late.json()[0]["connects"] == 9);
    CHECK(late.json()[0]["first_seen"] == "2025-11-26T00:01:00Z");

    auto none = run_depgraph({"edges", "--db", dir.file("web.db"), "--format", "json", "--since", "1h"});
    REQUIRE(none.exit_code == 0);
    CHECK(none.json().empty());
    // A table of nothing is said in words, not as a header alone.
    auto empty_table = run_depgraph({"edges", "--db", dir.file("web.db"), "--since", "2025-12-01", "--until",
                                     "2025-12-02"});
    REQUIRE(empty_table.exit_code == 0);
    CHECK(empty_table.out == "No edges recorded from 2025-12-01T00:00:00Z to 2025-12-02T00:00:00Z.\n");
}

TEST_CASE("edges given the same database twice does not double any count") {
    TempDir dir;
    write_pair(dir);
    auto r = run_depgraph({"edges", "--db", dir.file("web.db"), "--db", dir.file("web.db"), "--format", "json"});
    REQUIRE(r.exit_code == 0);
    REQUIRE(r.json().size() == 1);
    CHECK(r.json()[0]["connects"] == 12);
}

TEST_CASE("edges as a table escapes control characters in process names") {
    TempDir dir;
    {
        HostDb host(dir.file("h.db"), "evil\x1b[31mhost");
        auto e = host.edge("out", "a\nb\x07\x7f", "198.18.0.1", "198.18.0.9", 80);
        host.bucket(e, kT0, {.connects = 1});
    }
    auto r = run_depgraph({"edges", "--db", dir.file("h.db")});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find('\x1b') == std::string::npos);
    CHECK(r.out.find('\x07') == std::string::npos);
    CHECK(r.out.find('\x7f') == std::string::npos);
    CHECK(r.out.find("evil\\x1b[31mhost") != std::string::npos);
    CHECK(r.out.find("a\\nb\\x07\\x7f") != std::string::npos);
    CHECK(r.out.rfind("HOST", 0) == 0);
}

TEST_CASE("edges refuses a missing or foreign database with one error line") {
    TempDir dir;
    std::ofstream(dir.file("text.db")) << "hello, this is not sqlite at all, just text in a file\n";
    for (const auto& path : {dir.file("missing.db"), dir.file("text.db")}) {
        auto r = run_depgraph({"edges", "--db", path});
        CHECK(r.exit_code == 1);
        CHECK(r.out.empty());
        CHECK(r.err.rfind("depgraph: error: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
    auto usage = run_depgraph({"edges", "--format", "yaml"});
    CHECK(usage.exit_code == 2);
    CHECK(usage.err.rfind("depgraph: error: ", 0) == 0);
}
