// Bad input and failure: each gets one clear line on stderr, a non-zero
// exit, and no database is created or changed.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "store/database.hpp"
#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/child_process.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace depgraph;
using namespace depgraph::test;
namespace fs = std::filesystem;

namespace {

CommandOutput run_agent(const std::vector<std::string>& args, uid_t uid = 0, const std::string& netns_path = "") {
    std::vector<std::string> argv{std::getenv("DEPGRAPH_AGENT")};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_captured(argv, netns_path, uid);
}

bool is_one_line(const std::string& text) {
    return !text.empty() && text.back() == '\n' && text.find('\n') == text.size() - 1;
}


}  // namespace

TEST_CASE("a file that is not a depgraph database is refused and left as it was") {
    TempDir dir;
    auto path = (dir.path / "notes.db").string();
    std::ofstream(path) << "these are someone's notes, not a database\n";
    auto before = fs::file_size(path);
    auto out = run_agent({"--db", path, "--once"});
    CHECK(out.exit_code == 1);
    CHECK(is_one_line(out.err));
    CHECK(out.err.find("is not a depgraph database") != std::string::npos);
    CHECK(fs::file_size(path) == before);
    CHECK_FALSE(fs::exists(path + "-wal"));
}

TEST_CASE("an unwritable database path is refused") {
    TempDir dir;
    auto blocker = dir.path / "file";
    std::ofstream(blocker) << "x";
    auto out = run_agent({"--db", (blocker / "depgraph.db").string(), "--once"});
    CHECK(out.exit_code == 1);
    CHECK(is_one_line(out.err));
    CHECK(out.err.find("cannot") != std::string::npos);
}

TEST_CASE("without privileges the agent says what it needs and writes nothing") {
    TempDir dir;
    auto path = (dir.path / "depgraph.db").string();
    auto out = run_agent_as_nobody(dir.path, {"--db", path, "--once"});
    CHECK(out.exit_code == 1);
    CHECK(is_one_line(out.err));
    CHECK(out.err.find("CAP_BPF") != std::string::npos);
    CHECK_FALSE(fs::exists(path));
}

TEST_CASE("bad arguments are usage errors on one line") {
    for (auto args : std::vector<std::vector<std::string>>{{"--flush-interval", "7x"},
                                                           {"--bucket", "0s"},
                                                           {"--scope", "galaxy"},
                                                           {"--no-such-flag"}}) {
        auto out = run_agent(args);
        INFO(out.err);
        CHECK(out.exit_code == 2);
        CHECK(is_one_line(out.err));
        CHECK(out.err.rfind("depgraph-agent: error: ", 0) == 0);
    }
    auto out = run_agent({"--bucket", "45s", "--flush-interval", "10s", "--once"});
    CHECK(out.exit_code == 1);
    CHECK(out.err.find("multiple of --flush-interval") != std::string::npos);
}

TEST_CASE("--once records what is open at that moment, from both ends, and exits") {
    TempDir dir;
    auto path = (dir.path / "once.db").string();
    TestNetns ns;
    Signal ready;
    // A listener and one connection to it over loopback, held open.
    auto holder = ChildProcess::fork_in(ns.path(), "dg-holder", [&] {
        auto addr = socket_address("127.0.0.1", 7000);
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 4) != 0) return 2;
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, addr.get(), addr.length) != 0 || accept(ls, nullptr, nullptr) < 0) return 3;
        ready.send();
        pause();
        return 0;
    });
    REQUIRE(ready.wait(5000));
    auto out = run_agent({"--db", path, "--once", "--scope", "netns", "--hostname", "solo"}, 0, ns.path());
    INFO(out.err);
    REQUIRE(out.exit_code == 0);
    auto db = Database::open_read_only(path);
    REQUIRE(db.ok());
    auto edges = db->prepare(
        "SELECT direction, process, port, connects + accepts, open FROM edges JOIN edge_buckets USING (edge_id) "
        "ORDER BY direction");
    REQUIRE(edges.ok());
    std::vector<std::string> rows;
    while (*edges->step()) {
        rows.push_back(edges->column_text(0) + " " + edges->column_text(1) + " " + edges->column_text(2) + " " +
                       edges->column_text(3) + " " + edges->column_text(4));
    }
    // Open before the agent started: no connect or accept counted, one open each way.
    CHECK(rows == std::vector<std::string>{"in dg-holder 7000 0 1", "out dg-holder 7000 0 1"});
    auto runs = db->prepare("SELECT count(*) FROM agent_runs WHERE host = 'solo' AND stopped_at IS NOT NULL");
    REQUIRE(*runs->step());
    CHECK(runs->column_int(0) == 1);
}

// Namespaces made with `ip netns` (as TestNetns makes them) keep the machine's
// UTS namespace, so every --scope netns agent in them records the machine's
// host name, and `depgraph` reads them as one host.
TEST_CASE("--scope netns without --hostname warns that agents in other namespaces record the same host name") {
    TempDir dir;
    TestNetns ns;
    const std::string advice = "give each one --hostname NAME";
    auto out = run_agent({"--db", dir.db("a"), "--once", "--scope", "netns"}, 0, ns.path());
    INFO(out.err);
    CHECK(out.exit_code == 0);
    char machine[256] = {};
    REQUIRE(gethostname(machine, sizeof machine - 1) == 0);
    CHECK(out.err.find("depgraph-agent: warning: --scope netns without --hostname records this machine's host "
                       "name, \"" + std::string(machine) + "\": agents in its other network namespaces record the "
                       "same name and their edges merge into one host; " + advice + "\n") != std::string::npos);
    // Named, or in a UTS namespace of its own (a container with its own host name): nothing to say.
    auto named = run_agent({"--db", dir.db("b"), "--once", "--scope", "netns", "--hostname", "b"}, 0, ns.path());
    auto own_uts = run_captured({"/usr/bin/unshare", "--uts", std::getenv("DEPGRAPH_AGENT"), "--db", dir.db("c"),
                                 "--once", "--scope", "netns"},
                                ns.path());
    // A container: its own PID namespace too, so its PID 1 shares its host name.
    auto container = run_captured({"/usr/bin/unshare", "--uts", "--pid", "--fork", "--mount", "--mount-proc",
                                   std::getenv("DEPGRAPH_AGENT"), "--db", dir.db("d"), "--once", "--scope", "netns"},
                                  ns.path());
    for (const auto& quiet : {named, own_uts, container}) {
        INFO(quiet.err);
        CHECK(quiet.exit_code == 0);
        CHECK(quiet.err.find(advice) == std::string::npos);
    }
}

// An unset variable in a unit file gives --db "": SQLite would take that, and
// ":memory:" or a "file:" URI, as somewhere that is gone at exit.
TEST_CASE("a database name that is not a file is refused") {
    TestNetns ns;
    for (std::string name : {"", ":memory:", "file:depgraph.db?mode=memory"}) {
        auto out = run_agent({"--db", name, "--once", "--scope", "netns"}, 0, ns.path());
        INFO("--db '" << name << "': " << out.err);
        CHECK(out.exit_code == (name.empty() ? 2 : 1));  // an empty path is a usage error, as for every path option
        CHECK(is_one_line(out.err));
        CHECK(out.err.find("depgraph-agent: error: ") == 0);
    }
}

TEST_CASE("a database on a read-only file system is named as such, not as a foreign file") {
    TempDir dir;
    TestMount mount(dir.path.string());
    auto existing = (dir.path / "a.db").string(), missing = (dir.path / "b.db").string();
    REQUIRE(Database::open_for_write(existing).ok());
    mount.read_only();
    TestNetns ns;
    for (const auto& path : {existing, missing}) {
        auto out = run_agent({"--db", path, "--once", "--scope", "netns"}, 0, ns.path());
        INFO(out.err);
        CHECK(out.exit_code == 1);
        CHECK(is_one_line(out.err));
        CHECK(out.err.find("Read-only file system") != std::string::npos);
        CHECK(out.err.find("not a depgraph database") == std::string::npos);
    }
}

TEST_CASE("a second agent on the same database is refused, and the lock goes when the first dies") {
    constexpr uint16_t kPort = 7001;
    TempDir dir;
    auto path = dir.db("host");
    TestNetns ns;
    auto server = ChildProcess::fork_in(ns.path(), "dg-server", [] { return accept_and_close(kPort); });
    auto first = start_agent(ns, "host", path);

    auto second = run_agent({"--db", path, "--once", "--scope", "netns", "--hostname", "host"}, 0, ns.path());
    INFO(second.err);
    CHECK(second.exit_code == 1);
    CHECK(is_one_line(second.err));
    CHECK(second.err.find("another depgraph-agent is already writing to " + path) != std::string::npos);

    // Counted once, by the first agent alone.
    REQUIRE(dial(ns, "127.0.0.1", kPort, 10).wait_exit(10000) == 0);
    const std::string connects = "SELECT coalesce(sum(connects), 0) FROM edge_buckets";
    wait_for_count(path, connects, 10);
    // One more flush, for anything counted late.
    wait_for_flush_at(path, count_in(path, "SELECT max(last_report_at) FROM agent_runs WHERE stopped_at IS NULL") + 1);
    CHECK(count_in(path, connects) == 10);
    REQUIRE(first.stop(SIGKILL) == -1);
    // The kernel released the lock with the killed process: a new agent runs.
    auto third = run_agent({"--db", path, "--once", "--scope", "netns", "--hostname", "host"}, 0, ns.path());
    INFO(third.err);
    CHECK(third.exit_code == 0);
    auto db = Database::open_read_only(path);
    REQUIRE(db.ok());
    CHECK(count(*db, "SELECT count(*) FROM agent_runs") == 2);
    CHECK(count(*db, "SELECT count(*) FROM agent_runs WHERE stopped_at IS NOT NULL") == 1);
}
