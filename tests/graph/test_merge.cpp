// merge: one database from many, idempotent, and nothing but merge writes.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <thread>

#include "common/time.hpp"
#include "store/rollup.hpp"
#include "tests/graph/bucket_sums.hpp"
#include "tests/graph/fixture_db.hpp"
#include "tests/graph/small_fleet.hpp"

using namespace depgraph::fixture;
using nlohmann::json;

namespace {

// What `command` prints as JSON about `dbs`.
json json_of(std::vector<std::string> command, const std::vector<std::string>& dbs) {
    command.push_back("--format");
    command.push_back("json");
    for (const auto& a : db_args(dbs)) command.push_back(a);
    auto r = run_depgraph(command);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.json();
}

json edges_of(const std::vector<std::string>& dbs) { return json_of({"edges"}, dbs); }
json graph_of(const std::vector<std::string>& dbs) { return json_of({"render", "-o", "-"}, dbs); }
json hosts_of(const std::vector<std::string>& dbs) { return json_of({"hosts"}, dbs); }

CliResult merge(const std::string& output, const std::vector<std::string>& inputs) {
    std::vector<std::string> args{"merge", "-o", output};
    args.insert(args.end(), inputs.begin(), inputs.end());
    return run_depgraph(args);
}

// A host's database big enough that merging it takes a while (seconds):
// written once, by SQL (through the fixture it takes longer), copied into `dir`.
std::string write_big(const TempDir& dir) {
    static TempDir once;
    static std::string written = [] {
        auto path = once.file("big.db");
        HostDb h(path, "h-big");
        h.run("run-big", kT0, 0, kT0 + 86400);
        h.begin();
        for (int e = 0; e < 4000; e++) {
            h.edge("out", "app", "198.18.0.1", "198.18." + std::to_string(e / 250) + "." + std::to_string(e % 250), 80);
        }
        h.commit();
        REQUIRE(h.database().exec(
            "WITH RECURSIVE b(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM b WHERE n < 149) "
            "INSERT INTO edge_buckets SELECT edge_id, " + std::to_string(kT0) + " + 60 * n, 60, 1, 0, 0, 0, 0, 0, 0, 0, 0 "
            "FROM edges, b"));
        const depgraph::EdgeDayRange all{};
        REQUIRE(depgraph::rebuild_edge_days(h.database(), {&all, 1}));
        return path;
    }();
    std::filesystem::copy_file(written, dir.file("big.db"));
    return dir.file("big.db");
}

// `depgraph merge -o output input` started in the background, its stderr to
// `err`; with `ignoring`, that signal ignored, as a shell's background job ignores SIGINT.
pid_t start_merge(const std::string& output, const std::string& input, const std::string& err, int ignoring = 0) {
    const char* binary = std::getenv("DEPGRAPH");
    REQUIRE(binary);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (ignoring) ::signal(ignoring, SIG_IGN);
        int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, STDERR_FILENO);
        ::execl(binary, "depgraph", "merge", "-o", output.c_str(), input.c_str(), nullptr);
        ::_exit(127);
    }
    return pid;
}

// The files in `dir` whose names contain `part`.
std::vector<std::string> files_named(const TempDir& dir, const std::string& part) {
    std::vector<std::string> names;
    for (const auto& f : std::filesystem::directory_iterator(dir.path)) {
        if (f.path().filename().string().find(part) != std::string::npos) names.push_back(f.path().filename());
    }
    return names;
}

// Waits until `dir` holds a file named with `part` (the merge is under way).
void wait_for(const TempDir& dir, const std::string& part) {
    for (int i = 0; i < 2000 && files_named(dir, part).empty(); i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE_FALSE(files_named(dir, part).empty());
}

}  // namespace

TEST_CASE("a merge into a new output killed part way leaves no output, and on SIGINT or SIGTERM nothing at all") {
    TempDir dir;
    auto big = write_big(dir);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGKILL}) {
        INFO(strsignal(sig));
        auto fleet = dir.file("fleet.db");
        pid_t pid = start_merge(fleet, big, dir.file("merge.err"));
        wait_for(dir, "fleet.db");  // its temporary file, or (before it had one) the output itself
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        REQUIRE(kill(pid, sig) == 0);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFSIGNALED(status));  // still merging when killed: else the input is too small to test this
        CHECK(WTERMSIG(status) == sig);
        // After SIGKILL only a temporary file may be left, named for what it is.
        for (const auto& name : files_named(dir, "fleet.db")) {
            INFO(name);
            CHECK(sig == SIGKILL);
            CHECK(name.rfind(".fleet.db.merging-", 0) == 0);
        }
        CHECK_FALSE(std::filesystem::exists(fleet));
        for (const auto& name : files_named(dir, "fleet.db")) std::filesystem::remove(dir.file(name));
    }
    // A signal it was started to ignore stays ignored: the merge goes on to the end.
    auto fleet = dir.file("fleet.db");
    pid_t pid = start_merge(fleet, big, dir.file("merge.err"), SIGINT);
    wait_for(dir, "fleet.db");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    REQUIRE(kill(pid, SIGINT) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(std::filesystem::exists(fleet));
}

TEST_CASE("of two merges into the same new output, the later to finish keeps the other's result and says so") {
    TempDir dir;
    auto big = write_big(dir);
    auto dbs = write_small_fleet(dir);
    auto fleet = dir.file("fleet.db");
    pid_t pid = start_merge(fleet, big, dir.file("big.err"));
    wait_for(dir, "fleet.db");
    auto quick = merge(fleet, {dbs[0]});
    INFO(quick.err);
    CHECK(quick.exit_code == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 1);
    CHECK(read_file(dir.file("big.err")) ==
          "depgraph: error: cannot merge into " + fleet +
              ": it was created by another process during the merge; it is left as it is: merge into it again to "
              "add these inputs\n");
    CHECK(edges_of({fleet}) == edges_of({dbs[0]}));
    CHECK(files_named(dir, ".merging-").empty());
}

TEST_CASE("merge refuses an output that is not a regular file, and names its output when it cannot write it") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    std::filesystem::create_directory(dir.file("adir"));
    REQUIRE(mkfifo(dir.file("fifo").c_str(), 0644) == 0);
    std::vector<std::pair<std::string, std::string>> outputs = {
        {dir.file("adir"), "a directory"}, {dir.file("fifo"), "not a regular file"}, {"/dev/null", "not a regular file"}};
    // A block device (one no loop device is attached to): root only.
    if (mknod(dir.file("blockdev").c_str(), S_IFBLK | 0600, makedev(7, 250)) == 0) {
        outputs.emplace_back(dir.file("blockdev"), "not a regular file");
    }
    for (const auto& [output, what] : outputs) {
        auto r = merge(output, {dbs[0]});
        CHECK(r.exit_code == 1);
        CHECK(r.err == "depgraph: error: cannot merge into " + output + ": it is " + what +
                           "; give a database file's name\n");
    }
    CHECK_FALSE(std::filesystem::exists("/dev/null-journal"));
    CHECK_FALSE(std::filesystem::exists("/dev/null-wal"));
    CHECK(std::filesystem::is_empty(dir.file("adir")));

    // A file size limit stands in for a full disk: the write fails part way.
    auto big = write_big(dir);
    auto fleet = dir.file("fleet.db");
    auto full = run_depgraph({"merge", "-o", fleet, big}, {"sh", "-c", "ulimit -f 2048; trap '' XFSZ; exec \"$0\" \"$@\""});
    CHECK(full.exit_code == 1);
    CHECK(full.err.rfind("depgraph: error: cannot write " + fleet + ": ", 0) == 0);
    CHECK(files_named(dir, "fleet.db").empty());
}

TEST_CASE("a merged database holds the same edges and graph as its inputs") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto r = merge(dir.file("fleet.db"), dbs);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err == "merged 5 databases into " + dir.file("fleet.db") +
                       ", which holds 12 edges in 12 bucket rows (new: 12 edges, 12 bucket rows)\n");
    CHECK(edges_of({dir.file("fleet.db")}) == edges_of(dbs));
    CHECK(graph_of({dir.file("fleet.db")}) == graph_of(dbs));
}

TEST_CASE("merging the same databases again, or one twice, doubles nothing") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    REQUIRE(merge(dir.file("fleet.db"), dbs).exit_code == 0);
    auto once = edges_of({dir.file("fleet.db")});
    auto single = merge(dir.file("one.db"), {dbs[0]});
    REQUIRE(single.exit_code == 0);
    CHECK(single.err.rfind("merged 1 database into ", 0) == 0);
    REQUIRE(merge(dir.file("fleet.db"), dbs).exit_code == 0);
    REQUIRE(merge(dir.file("fleet.db"), {dbs[0], dbs[0]}).exit_code == 0);
    CHECK(edges_of({dir.file("fleet.db")}) == once);
    // a merged file merged into another, plus one of its own inputs
    REQUIRE(merge(dir.file("again.db"), {dir.file("fleet.db"), dbs[2]}).exit_code == 0);
    CHECK(edges_of({dir.file("again.db")}) == once);
    // reading a merged file next to one of its inputs counts each edge once too
    CHECK(edges_of({dir.file("fleet.db"), dbs[0]}) == once);
    CHECK(hosts_of({dir.file("again.db")}).size() == 5);
}

TEST_CASE("hosts over several files counts each edge, run and loss once, as hosts on their merge does") {
    TempDir dir;
    const int64_t day = depgraph::kSecondsPerDay;
    // h-01's database was replaced: old.db holds its first run and edges a, b; new.db its second run and b, c.
    {
        HostDb h(dir.file("old.db"), "h-01");
        h.run("run-old", kT0, kT0 + day, kT0 + day);
        for (const char* process : {"a", "b"}) {
            h.bucket(h.edge("out", process, "198.18.7.1", "198.18.7.9", 80), kT0 + 60, {.connects = 1});
        }
        h.loss("run-old", kT0 + 60, "edge_map_full", 5);
    }
    {
        HostDb h(dir.file("new.db"), "h-01");
        h.run("run-new", kT0 + 2 * day, 0, kT0 + 3 * day);
        for (const char* process : {"b", "c"}) {
            h.bucket(h.edge("out", process, "198.18.7.1", "198.18.7.9", 80), kT0 + 2 * day + 60, {.connects = 1});
        }
        h.loss("run-new", kT0 + 2 * day + 60, "edge_map_full", 7);
    }
    // h-02's run, in a copy taken after its last flush but before the stop was written (early.db), and as it
    // ended (live.db); fleet.db merges the copy with old.db.
    for (auto [file, stopped] : {std::pair{"early.db", int64_t{0}}, {"live.db", kT0 + 600}}) {
        HostDb h(dir.file(file), "h-02");
        h.run("run-live", kT0, stopped, kT0 + 600);
        h.bucket(h.edge("in", "nginx", "198.18.7.2", "198.18.7.1", 80), kT0 + 60, {.accepts = 1});
        h.bucket(h.edge("in", "nginx", "198.18.7.2", "198.18.7.3", 80), kT0 + 540, {.accepts = 1});
        h.loss("run-live", kT0 + 60, "ring_lost", 2);
        h.loss("run-live", kT0 + 540, "ring_lost", 3);
    }
    REQUIRE(merge(dir.file("fleet.db"), {dir.file("early.db"), dir.file("old.db")}).exit_code == 0);
    std::vector<std::string> files{dir.file("fleet.db"), dir.file("live.db"), dir.file("new.db")};

    auto hosts = hosts_of(files);
    REQUIRE(hosts.size() == 2);
    auto at = [](int64_t t) { return depgraph::format_iso8601(t); };
    CHECK(hosts[0]["host"] == "h-01");
    CHECK(hosts[0]["edges"] == 3);  // a, b, c: b is in both files
    CHECK(hosts[0]["losses"] == json{{"edge_map_full", 5 + 7}});
    CHECK(hosts[0]["last_report_at"] == at(kT0 + 3 * day));
    REQUIRE(hosts[0]["runs"].size() == 2);
    CHECK(hosts[0]["runs"][0]["stopped_at"] == at(kT0 + day));
    CHECK(hosts[0]["runs"][1]["stopped_at"] == nullptr);
    CHECK(hosts[0]["not_running"] == json::array({{{"from", at(kT0 + day)}, {"until", at(kT0 + 2 * day)}}}));
    CHECK(hosts[1]["host"] == "h-02");
    CHECK(hosts[1]["edges"] == 2);
    CHECK(hosts[1]["losses"] == json{{"ring_lost", 2 + 3}});  // each bucket's loss once, though in two files
    REQUIRE(hosts[1]["runs"].size() == 1);
    CHECK(hosts[1]["not_running"].empty());
    CHECK(hosts[1]["runs"][0]["stopped_at"] == at(kT0 + 600));  // the copy's missing stop does not undo it
    CHECK(hosts[1]["last_report_at"] == at(kT0 + 600));

    REQUIRE(merge(dir.file("all.db"), files).exit_code == 0);
    CHECK(hosts_of({dir.file("all.db")}) == hosts);
}

// A copy of a host's file taken mid-run (early.db) and the file as the run ended (live.db): the copy's run
// has no stop and an earlier last report, its address an earlier last_seen, its bucket's NAT translation
// fewer flows so far (3 of the 5 that went to 198.18.7.2; the one to 198.18.7.3 came later). Whichever order
// they come in, and a file merged with itself, give live.db again: each row once, with the later of its times
// and the larger of its counts.
TEST_CASE("a host's file merged with an older copy of itself, in either order, or with itself, is the newer file") {
    TempDir dir;
    auto live = dir.file("live.db"), early = dir.file("early.db");
    for (auto [path, now] : {std::pair{live, kT0 + 600}, {early, kT0 + 300}}) {
        HostDb h(path, "h-01");
        h.run("run-1", kT0, path == live ? now : 0, now);
        h.address("198.18.7.1", kT0, now);
        h.loss("run-1", kT0 + 60, "ring_lost", 2);
        h.translation(kT0 + 60, "198.18.7.1", "198.18.7.1", "198.18.5.5", "198.18.7.2", 80, path == live ? 5 : 3, 1);
        if (path == live) h.translation(kT0 + 60, "198.18.7.1", "198.18.7.1", "198.18.5.5", "198.18.7.3", 80, 1);
        h.bucket(h.edge("out", "curl", "198.18.7.1", "198.18.5.5", 80), kT0 + 60,
                 {.connects = path == live ? 6 : 4});
    }
    const char* kTables[] = {"agent_runs", "host_addresses", "losses", "nat_translations"};
    auto at = [](int64_t t) { return depgraph::format_iso8601(t); };
    json run = {{"run_id", "run-1"}, {"version", "0.1.0"}, {"kernel", "6.1.0"}, {"scope", "netns"},
                {"netns", kRootNetns}, {"started_at", at(kT0)}, {"stopped_at", at(kT0 + 600)},
                {"last_report_at", at(kT0 + 600)}};
    json host = {{"host", "h-01"}, {"edges", 1}, {"losses", {{"ring_lost", 2}}}, {"last_report_at", at(kT0 + 600)},
                 {"runs", json::array({run})}, {"not_running", json::array()}};
    const json expected = json::array({host});
    CHECK(hosts_of({live}) == expected);
    auto translations = table_rows(live, "nat_translations");
    REQUIRE(translations.size() == 2);
    CHECK(translations[0].ends_with(" 80 '198.18.7.2' 80 5 1"));  // 5 flows, 1 open
    // The 6 connections to 198.18.5.5:80 went 5 to one server and 1 to the other.
    const json graph = graph_of({live});
    CHECK(find_edge(graph, "h-01/curl", "198.18.7.2")["connections"] == 5);
    CHECK(find_edge(graph, "h-01/curl", "198.18.7.3")["connections"] == 1);

    int n = 0;
    for (const auto& inputs : {std::vector{live, early}, {early, live}, {live, live}}) {
        auto merged = dir.file("merged-" + std::to_string(n++) + ".db");
        INFO(merged);
        REQUIRE(merge(merged, inputs).exit_code == 0);
        for (const char* table : kTables) {
            INFO(table);
            CHECK(table_rows(merged, table) == table_rows(live, table));
        }
        CHECK(hosts_of({merged}) == expected);
        // hosts and render on the files themselves combine them as the merge does
        CHECK(hosts_of(inputs) == expected);
        CHECK(graph_of(inputs) == graph);
        CHECK(graph_of({merged}) == graph);
    }
    // the merged file merged again with one of its parts
    REQUIRE(merge(dir.file("again.db"), {dir.file("merged-0.db"), early}).exit_code == 0);
    for (const char* table : kTables) CHECK(table_rows(dir.file("again.db"), table) == table_rows(live, table));
    CHECK(hosts_of({dir.file("merged-0.db"), early}) == expected);
}

TEST_CASE("merge says what its output holds and what the merge added, not the rows it read") {
    TempDir dir;
    auto path = dir.file("h.db"), twice = dir.file("twice.db");
    int64_t edge = 0;
    {
        HostDb h(path, "h-01");
        edge = h.edge("out", "app", "198.18.0.1", "198.18.0.2", 80);
        h.bucket(edge, kT0, {.connects = 1});
        h.bucket(edge, kT0 + 60, {.connects = 1});
        h.bucket(h.edge("out", "app", "198.18.0.1", "198.18.0.3", 80), kT0, {.connects = 1});
    }
    // 2 edges and 3 buckets, read twice: the output holds each once.
    auto r = merge(twice, {path, path});
    REQUIRE(r.exit_code == 0);
    CHECK(r.err == "merged 2 databases into " + twice +
                   ", which holds 2 edges in 3 bucket rows (new: 2 edges, 3 bucket rows)\n");
    r = merge(twice, {path});
    REQUIRE(r.exit_code == 0);
    CHECK(r.err == "merged 1 database into " + twice +
                   ", which holds 2 edges in 3 bucket rows (new: 0 edges, 0 bucket rows)\n");
    {
        HostDb h(path, "h-01");
        h.bucket(edge, kT0 + 120, {.connects = 1});
    }
    r = merge(twice, {path});
    REQUIRE(r.exit_code == 0);
    CHECK(r.err == "merged 1 database into " + twice +
                   ", which holds 2 edges in 4 bucket rows (new: 0 edges, 1 bucket row)\n");
}

TEST_CASE("a later bucket of an edge already merged adds to it; the same bucket does not") {
    TempDir dir;
    auto path = dir.file("h.db");
    int64_t edge = 0;
    {
        HostDb h(path, "h-01");
        edge = h.edge("out", "app", "198.18.0.1", "198.18.0.2", 80);
        h.bucket(edge, kT0, {.connects = 2});
    }
    REQUIRE(merge(dir.file("fleet.db"), {path}).exit_code == 0);
    {
        HostDb h(path, "h-01");
        h.bucket(edge, kT0 + 60, {.connects = 3});
    }
    REQUIRE(merge(dir.file("fleet.db"), {path}).exit_code == 0);
    auto edges = edges_of({dir.file("fleet.db")});
    REQUIRE(edges.size() == 1);
    CHECK(edges[0]["connects"] == 5);
}

TEST_CASE("merge rebuilds the daily rollup of each day it touched from the merged buckets") {
    TempDir dir;
    const int64_t day = depgraph::kSecondsPerDay;
    auto live = dir.file("live.db"), old = dir.file("old.db"), fleet = dir.file("fleet.db");
    int64_t edge = 0;
    {
        HostDb h(live, "h-01");
        edge = h.edge("out", "app", "198.18.0.1", "198.18.0.2", 80);
        h.bucket(edge, kT0 + 60, {.connects = 1, .open = 1});
        h.bucket(edge, kT0 + day + 60, {.connects = 2, .open = 2});
        h.bucket(h.edge("out", "app", "198.18.0.1", "198.18.0.3", 80), kT0 + 60, {.connects = 4});
    }
    // An older copy of the same host's file: a day's rollup counts a bucket
    // once even when two inputs hold it, and with the larger of its counts.
    std::filesystem::copy_file(live, old);
    {
        HostDb h(live, "h-01");
        REQUIRE(h.database().exec("UPDATE edge_buckets SET connects = connects + 3 WHERE bucket_start = " +
                                  std::to_string(kT0 + day + 60) + "; UPDATE edge_days SET connects = connects + 3 "
                                  "WHERE day_start = " + std::to_string(kT0 + day)));
        h.bucket(edge, kT0 + day + 120, {.connects = 7, .open = 0});
    }
    REQUIRE(merge(fleet, {old}).exit_code == 0);
    CHECK(days_as_stored(fleet) == days_from_buckets(fleet));
    REQUIRE(merge(fleet, {live, old}).exit_code == 0);
    auto rebuilt = days_as_stored(fleet);
    CHECK(rebuilt == days_from_buckets(fleet));
    CHECK(rebuilt.size() == 3);
    // the second day of the first edge: its two buckets, 5 + 7, and the gauge of the later one
    auto second_day = depgraph::load_records({fleet}, {kT0 + day, kT0 + 2 * day});
    REQUIRE(second_day);
    REQUIRE(second_day->edges.size() == 1);
    CHECK(second_day->edges[0].connects == 12);
    CHECK(second_day->edges[0].open == 0);
    CHECK(second_day->edges[0].last_seen == kT0 + day + 180);
    REQUIRE(merge(fleet, {live}).exit_code == 0);
    CHECK(days_as_stored(fleet) == rebuilt);
}

TEST_CASE("merge refuses its output as an input, and a bad input leaves no output") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    REQUIRE(merge(dir.file("fleet.db"), dbs).exit_code == 0);
    auto self = merge(dir.file("fleet.db"), {dir.file("fleet.db")});
    CHECK(self.exit_code == 1);
    CHECK(self.err.rfind("depgraph: error: cannot merge", 0) == 0);

    std::ofstream(dir.file("junk.db")) << "junk that is not a database, long enough to fill a header of sqlite";
    auto bad = merge(dir.file("new.db"), {dbs[0], dir.file("junk.db")});
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("junk.db is not a depgraph database") != std::string::npos);
    struct stat st {};
    CHECK(stat(dir.file("new.db").c_str(), &st) != 0);
}

TEST_CASE("a merge that fails part way removes the output it created, and only that") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    // Header and size intact, pages after the first half damaged: found only once the merge reads them.
    auto damaged = dir.file("damaged.db");
    {
        auto bytes = read_file(dbs[0]);
        std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2), bytes.end(), '\xff');
        std::ofstream(damaged, std::ios::binary) << bytes;
    }
    auto failed = merge(dir.file("new.db"), {dbs[1], damaged});
    CHECK(failed.exit_code == 1);
    CHECK(failed.err ==
          "depgraph: error: cannot prepare query on " + damaged + ": database disk image is malformed\n");
    for (const char* suffix : {"", "-wal", "-shm"}) CHECK_FALSE(std::filesystem::exists(dir.file("new.db") + suffix));

    REQUIRE(merge(dir.file("fleet.db"), {dbs[1]}).exit_code == 0);
    auto before = edges_of({dir.file("fleet.db")});
    CHECK(merge(dir.file("fleet.db"), {dbs[2], damaged}).exit_code == 1);
    CHECK(edges_of({dir.file("fleet.db")}) == before);
}

TEST_CASE("merge refuses an empty output or input path") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    auto no_output = merge("", dbs);
    CHECK(no_output.exit_code == 2);
    CHECK(no_output.err == "depgraph: error: --output: expected a path, not an empty string\n");
    auto no_input = merge(dir.file("fleet.db"), {dbs[0], ""});
    CHECK(no_input.exit_code == 2);
    CHECK(no_input.err == "depgraph: error: inputs: expected a path, not an empty string\n");
    CHECK_FALSE(std::filesystem::exists(dir.file("fleet.db")));
}

TEST_CASE("reading commands never write to their databases") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    for (const auto& db : dbs) chmod(db.c_str(), 0444);
    chmod(dir.path.c_str(), 0555);
    // root ignores permissions: compare the bytes instead
    auto before = read_file(dbs[0]);
    for (std::vector<std::string> args : {std::vector<std::string>{"edges"}, {"hosts"},
                                          {"render", "-o", "-", "--format", "json"},
                                          {"impact", "db-01", "--since", "2025-01-01"}}) {
        for (const auto& a : db_args(dbs)) args.push_back(a);
        CHECK(run_depgraph(args).exit_code == 0);
    }
    CHECK(read_file(dbs[0]) == before);
    chmod(dir.path.c_str(), 0755);
}

// Every counter, refused included, survives a re-merge undoubled.
TEST_CASE("re-merging a database doubles no failed or refused count") {
    TempDir dir;
    auto path = dir.file("h.db");
    {
        HostDb h(path, "h-01");
        h.run("run-1", kT0, 0, kT0 + 60);
        h.bucket(h.edge("out", "app", "198.18.0.1", "198.18.0.2", 80), kT0, {.failed = 3, .refused = 2});
    }
    REQUIRE(merge(dir.file("fleet.db"), {path}).exit_code == 0);
    REQUIRE(merge(dir.file("fleet.db"), {path}).exit_code == 0);
    auto edges = edges_of({dir.file("fleet.db")});
    REQUIRE(edges.size() == 1);
    CHECK(edges[0]["failed"] == 3);
    CHECK(edges[0]["refused"] == 2);
}
