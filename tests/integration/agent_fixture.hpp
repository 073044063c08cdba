// Agents as integration tests run them: one per test namespace, as a host
// of its own, writing to a database in a temporary directory that the test
// then queries. Header-only: each test binary has its own main.
#pragma once

#include <algorithm>
#include <fcntl.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "depgraph.skel.h"
#include "store/database.hpp"
#include "tests/integration/child_process.hpp"
#include "tests/integration/netns_fixture.hpp"

namespace depgraph::test {

// The first column of the first row of `sql`.
inline int64_t count(Database& db, const std::string& sql) {
    auto stmt = db.prepare(sql);
    REQUIRE(stmt.ok());
    REQUIRE(*stmt->step());
    return stmt->column_int(0);
}

// Removed with everything in it when the test ends.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char tmpl[] = "/tmp/depgraph-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string db(const std::string& host) const { return (path / (host + ".db")).string(); }
};

// A command (the agent with arguments of the test's own) in `ns`, started
// and not waited for; `stderr_path`, when given, receives what it logs.
inline ChildProcess launch_command(TestNetns& ns, std::vector<std::string> argv, const std::string& stderr_path) {
    return stderr_path.empty() ? ChildProcess::exec_in(ns.path(), argv)
                               : ChildProcess::fork_in(ns.path(), "dg-agent", [&] {
                                     int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
                                     if (fd < 0 || dup2(fd, 2) < 0) return 126;
                                     std::vector<char*> args;
                                     for (auto& a : argv) args.push_back(a.data());
                                     args.push_back(nullptr);
                                     execv(args[0], args.data());
                                     return 127;
                                 });
}

// One agent in `ns` with --scope netns, flushing every second unless
// `extra` says otherwise, started and not waited for. `stderr_path`, when
// given, receives what the agent logs.
inline ChildProcess launch_agent(TestNetns& ns, const std::string& host, const std::string& db,
                                 const std::vector<std::string>& extra = {}, const std::string& stderr_path = "") {
    std::vector<std::string> argv{std::getenv("DEPGRAPH_AGENT"), "--db", db, "--scope", "netns", "--hostname", host};
    if (std::find(extra.begin(), extra.end(), "--flush-interval") == extra.end()) {
        argv.insert(argv.end(), {"--flush-interval", "1s"});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return launch_command(ns, argv, stderr_path);
}

// Polls `condition` every 20 ms until it holds; false when it still does
// not after `timeout_ms`. For what a test cannot be told directly (a row the
// agent writes, a line it logs).
inline bool eventually(const std::function<bool()>& condition, int timeout_ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!condition()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        usleep(20000);
    }
    return true;
}

// count(sql) over the database at `path`; -1 while the agent has not created it yet.
inline int64_t count_in(const std::string& path, const std::string& sql) {
    auto db = Database::open_read_only(path);
    return db.ok() ? count(*db, sql) : -1;
}

// Waits until count(sql) over the database at `path` reaches `expected`
// (what the agent has written by then); REQUIREs that it does within
// `timeout_ms`, and says what it saw when not.
inline void wait_for_count(const std::string& path, const std::string& sql, int64_t expected,
                           int timeout_ms = 20000) {
    int64_t seen = -1;
    bool reached = eventually([&] { return (seen = count_in(path, sql)) >= expected; }, timeout_ms);
    INFO(sql << ": " << seen << " after " << timeout_ms << " ms, waiting for " << expected);
    REQUIRE(reached);
}

// Waits until the running agent has committed a flush with a time of at
// least `unix_s` (a scheduled flush records its tick, on the UTC second).
inline void wait_for_flush_at(const std::string& path, int64_t unix_s, int timeout_ms = 20000) {
    wait_for_count(path, "SELECT coalesce(max(last_report_at), -1) FROM agent_runs WHERE stopped_at IS NULL",
                   unix_s, timeout_ms);
}

// Waits until the agent writing to `db` has attached, snapshotted and
// written its first flush.
inline void wait_first_flush(const std::string& db) {
    wait_for_count(db, "SELECT count(*) FROM host_addresses", 1);
}

// How many times `text` occurs in the file at `path` (a log).
inline size_t occurrences_in(const std::string& path, const std::string& text) {
    std::ifstream in(path);
    std::string said((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t n = 0;
    for (auto at = said.find(text); at != std::string::npos; at = said.find(text, at + 1)) n++;
    return n;
}

// launch_agent, then wait_first_flush.
inline ChildProcess start_agent(TestNetns& ns, const std::string& host, const std::string& db,
                                const std::vector<std::string>& extra = {}, const std::string& stderr_path = "") {
    auto agent = launch_agent(ns, host, db, extra, stderr_path);
    wait_first_flush(db);
    return agent;
}

// One `depgraph-agent --once` in `ns`, run to its end; REQUIREs that it succeeds.
inline void run_agent_once(TestNetns& ns, const std::string& host, const std::string& db) {
    auto once = run_captured({std::getenv("DEPGRAPH_AGENT"), "--db", db, "--scope", "netns", "--hostname", host,
                              "--once"},
                             ns.path());
    INFO(once.err);
    REQUIRE(once.exit_code == 0);
}

// Waits until the agent with this pid holds a BPF link for each of its
// programs, that is, until they are all attached (the skeleton attaches one
// after the other: the first link alone is not enough to count every
// connection); false after at least 10 s without them.
inline bool wait_attached(pid_t agent) {
    namespace fs = std::filesystem;
    constexpr size_t kLinks = sizeof(depgraph_bpf::links) / sizeof(bpf_link*);
    for (int i = 0; i < 100000; i++) {
        std::error_code ec;
        size_t links = 0;
        for (const auto& fd : fs::directory_iterator("/proc/" + std::to_string(agent) + "/fd", ec)) {
            links += fs::read_symlink(fd.path(), ec).string() == "anon_inode:bpf_link";
        }
        if (links >= kLinks) return true;
        usleep(100);
    }
    return false;
}

// A server's body: listens on address:port (by default 0.0.0.0), says so
// on `listening` when given, accepts and closes, forever. `reuse_port`: the
// port may be shared with other listeners (SO_REUSEPORT).
inline int accept_and_close(uint16_t port, const std::string& address = "0.0.0.0", Signal* listening = nullptr,
                            bool reuse_port = false) {
    auto addr = socket_address(address, port);
    int ls = socket(addr.family(), SOCK_STREAM, 0);
    int on = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (reuse_port) setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
    if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 64) != 0) return 2;
    if (listening) listening->send();
    for (;;) {
        int fd = accept(ls, nullptr, nullptr);
        if (fd >= 0) close(fd);
    }
}

// A client "dg-dialler" in `ns` that connects `n` times to addr:port,
// holding each connection `hold_us` before closing it. Its exit code: 0
// when every connect succeeded, 1 when none did, 2 otherwise.
inline ChildProcess dial(TestNetns& ns, const std::string& addr, uint16_t port, int n, useconds_t hold_us = 0) {
    return ChildProcess::fork_in(ns.path(), "dg-dialler", [=] {
        auto target = socket_address(addr, port);
        int made = 0;
        for (int i = 0; i < n; i++) {
            int fd = socket(target.family(), SOCK_STREAM, 0);
            made += connect(fd, target.get(), target.length) == 0;
            usleep(hold_us);
            close(fd);
        }
        return made == n ? 0 : made == 0 ? 1 : 2;
    });
}

// A tmpfs of its own, mounted on `dir` and unmounted when the test ends.
struct TestMount {
    std::string dir;
    explicit TestMount(const std::string& d) : dir(d) {
        run_command({"mount", "-t", "tmpfs", "-o", "size=4m", "depgraph-test", dir});
    }
    ~TestMount() { (void)run_captured({"/bin/umount", dir}); }
    void read_only() { run_command({"mount", "-o", "remount,ro", dir}); }
};

// Runs the agent as the user nobody, with `args`, from a copy in `dir` that
// nobody may execute: the build tree can sit under /root (mode 700). `dir`
// is opened to everyone, so the agent could create its database there.
inline CommandOutput run_agent_as_nobody(const std::filesystem::path& dir, const std::vector<std::string>& args) {
    namespace fs = std::filesystem;
    fs::permissions(dir, fs::perms::all);
    auto copy = dir / "depgraph-agent";
    fs::copy_file(std::getenv("DEPGRAPH_AGENT"), copy, fs::copy_options::overwrite_existing);
    fs::permissions(copy, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    std::vector<std::string> argv{copy.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_captured(argv, "", 65534 /* nobody */);
}

}  // namespace depgraph::test
