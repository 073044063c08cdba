// Two network namespaces as two hosts, one agent each with --scope netns.
// A client makes exactly N connections to a server, M to a closed port, one
// over IPv6, and holds one that was open before the agents started; each
// agent's database must show exactly that, and nothing from elsewhere.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "agent/process_table.hpp"
#include "agent/edge_abi.hpp"
#include "store/database.hpp"
#include "tests/integration/agent_fixture.hpp"
#include "tests/integration/child_process.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace depgraph;
using namespace depgraph::test;

namespace {

constexpr int kConnections = 7;        // N
constexpr int kRefused = 3;            // M
constexpr int kRequestBytes = 1000;
constexpr int kResponseBytes = 500;
constexpr uint16_t kServicePort = 8080;
constexpr uint16_t kClosedPort = 9090;

int connect_to(const std::string& addr, uint16_t port) {
    auto sa = socket_address(addr, port);
    int fd = socket(sa.family(), SOCK_STREAM, 0);
    if (connect(fd, sa.get(), sa.length) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool send_bytes(int fd, int n) {
    std::string buf(static_cast<size_t>(n), 'x');
    return send(fd, buf.data(), buf.size(), MSG_NOSIGNAL) == n;
}

// Closes our side, then waits for the server's: once the peer's FIN is in,
// the kernel has taken the socket to CLOSE, and the agent counted the close.
void finish(int fd) {
    shutdown(fd, SHUT_WR);
    char c;
    while (recv(fd, &c, 1, 0) > 0) {
    }
    close(fd);
}

bool recv_bytes(int fd, int n) {
    char buf[4096];
    while (n > 0) {
        ssize_t r = recv(fd, buf, std::min<size_t>(sizeof buf, static_cast<size_t>(n)), 0);
        if (r <= 0) return false;
        n -= static_cast<int>(r);
    }
    return true;
}

// Dual-stack listener on [::]:port, so IPv4 clients arrive as ::ffff:a.b.c.d
// and the agent has to normalise them. One thread per connection.
int serve() {
    int ls = socket(AF_INET6, SOCK_STREAM, 0);
    int off = 0, on = 1;
    setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(kServicePort);
    sin6.sin6_addr = in6addr_any;
    if (bind(ls, reinterpret_cast<sockaddr*>(&sin6), sizeof sin6) != 0 || listen(ls, 64) != 0) return 2;
    for (;;) {
        int fd = accept(ls, nullptr, nullptr);
        if (fd < 0) continue;
        std::thread([fd] {
            if (recv_bytes(fd, kRequestBytes)) send_bytes(fd, kResponseBytes);
            char c;
            while (recv(fd, &c, 1, 0) > 0) {
            }
            close(fd);
        }).detach();
    }
}

struct EdgeTotals {
    int64_t rows = 0, connects = 0, failed = 0, refused = 0, accepts = 0, closes = 0;
    int64_t bytes_sent = 0, bytes_received = 0, open = 0, lifetime_ns = 0;
};

// Counters of one edge summed over its buckets; `open` from its latest bucket.
EdgeTotals totals(Database& db, const std::string& direction, const std::string& process,
                  const std::string& local_addr, const std::string& remote_addr, int port) {
    auto stmt = db.prepare(
        "SELECT count(DISTINCT e.edge_id), sum(connects), sum(failed), sum(refused), sum(accepts), sum(closes), "
        "sum(bytes_sent), sum(bytes_received), sum(lifetime_ns), "
        "(SELECT open FROM edge_buckets b2 WHERE b2.edge_id = e.edge_id ORDER BY bucket_start DESC LIMIT 1) "
        "FROM edges e JOIN edge_buckets b USING (edge_id) "
        "WHERE direction = ? AND process = ? AND local_addr = ? AND remote_addr = ? AND port = ?");
    REQUIRE(stmt.ok());
    stmt->bind(1, direction).bind(2, process).bind(3, local_addr).bind(4, remote_addr).bind(5, int64_t{port});
    REQUIRE(*stmt->step());
    EdgeTotals t;
    int64_t* fields[] = {&t.rows,       &t.connects,       &t.failed,      &t.refused, &t.accepts,
                         &t.closes,     &t.bytes_sent,     &t.bytes_received, &t.lifetime_ns, &t.open};
    for (int i = 0; i < 10; i++) *fields[i] = stmt->column_int(i);
    return t;
}


}  // namespace

TEST_CASE("two agents in two namespaces record exact connection counts") {
    const char* agent_bin = std::getenv("DEPGRAPH_AGENT");
    REQUIRE(agent_bin != nullptr);

    TestNetns host_a, host_b;
    auto [if_a, if_b] = TestNetns::link(host_a, "198.18.0.1/24", host_b, "198.18.0.2/24");
    // 2001:2::/48 is IPv6's benchmarking range, the counterpart of 198.18.0.0/15.
    // nodad: usable at once, without waiting for duplicate address detection.
    host_a.ip({"addr", "add", "2001:2::1/64", "dev", if_a, "nodad"});
    host_b.ip({"addr", "add", "2001:2::2/64", "dev", if_b, "nodad"});

    char tmpl[] = "/tmp/depgraph-agent-test-XXXXXX";
    std::filesystem::path dir = mkdtemp(tmpl);
    struct RemoveDir {
        std::filesystem::path p;
        ~RemoveDir() { std::filesystem::remove_all(p); }
    } remove_dir{dir};
    std::string db_a = (dir / "a.db").string(), db_b = (dir / "b.db").string();

    // The server runs in a cgroup of its own (a stand-in for a systemd unit
    // or a container), which its edges must carry. Declared before the
    // server, so it is removed after the server is gone.
    TestCgroup unit("unit");
    const std::string& cgroup = unit.path();

    auto server = ChildProcess::fork_in(host_b.path(), "dg-server", [&] {
        unit.enter();
        return serve();
    });

    Signal held, go, done;
    auto client = ChildProcess::fork_in(host_a.path(), "dg-client", [&] {
        int pre = -1;
        for (int i = 0; i < 200 && pre < 0; i++) {
            pre = connect_to("198.18.0.2", kServicePort);
            if (pre < 0) usleep(10000);
        }
        if (pre < 0) return 3;
        held.send();
        if (!go.wait(30000)) return 4;
        int made = 0;
        // From a worker thread with its own name: the edge must still carry
        // the thread-group leader's name.
        std::thread worker([&] {
            prctl(PR_SET_NAME, "dg-worker");
            for (int i = 0; i < kConnections; i++) {
                int fd = connect_to("198.18.0.2", kServicePort);
                if (fd < 0) continue;
                if (send_bytes(fd, kRequestBytes) && recv_bytes(fd, kResponseBytes)) made++;
                finish(fd);
            }
        });
        worker.join();
        // A host that never answers: the connect fails without a RST, so it
        // counts as failed but not as refused.
        bool unanswered_failed = connect_to("198.18.0.3", kServicePort) < 0;
        int refused = 0;
        for (int i = 0; i < kRefused; i++) refused += connect_to("198.18.0.2", kClosedPort) < 0;
        int v6 = connect_to("2001:2::2", kServicePort);
        bool v6_ok = v6 >= 0 && send_bytes(v6, kRequestBytes) && recv_bytes(v6, kResponseBytes);
        finish(v6);
        done.send();
        pause();  // keeps the pre-existing connection open until the test ends
        return made == kConnections && refused == kRefused && v6_ok && unanswered_failed ? 0 : 5;
    });
    REQUIRE(held.wait(10000));

    auto start_agent = [&](TestNetns& ns, const std::string& host, const std::string& db) {
        return ChildProcess::exec_in(ns.path(), {agent_bin, "--db", db, "--scope", "netns", "--hostname", host,
                                                 "--flush-interval", "1s", "--bucket", "60s"});
    };
    auto agent_a = start_agent(host_a, "host-a", db_a);
    auto agent_b = start_agent(host_b, "host-b", db_b);
    // Attached and snapshotted once the first flush has written the host's addresses.
    auto first_flush_done = [](const std::string& path) {
        auto db = Database::open_read_only(path);
        return db.ok() && count(*db, "SELECT count(*) FROM host_addresses") > 0;
    };
    for (int i = 0; i < 100 && !(first_flush_done(db_a) && first_flush_done(db_b)); i++) usleep(100000);
    REQUIRE(first_flush_done(db_a));
    REQUIRE(first_flush_done(db_b));

    go.send();
    REQUIRE(done.wait(30000));
    REQUIRE(agent_a.stop(SIGINT) == 0);
    REQUIRE(agent_b.stop(SIGINT) == 0);

    auto a = Database::open_read_only(db_a);
    auto b = Database::open_read_only(db_b);
    REQUIRE(a.ok());
    REQUIRE(b.ok());

    {  // the client's side
        auto out = totals(*a, "out", "dg-client", "198.18.0.1", "198.18.0.2", kServicePort);
        CHECK(out.rows == 1);
        CHECK(out.connects == kConnections);
        CHECK(out.failed == 0);
        CHECK(out.closes == kConnections);
        CHECK(out.open == 1);  // the connection held from before the agent started
        // bytes_acked counts the FIN too: up to 2 bytes per connection over the payload.
        CHECK(out.bytes_sent >= kConnections * kRequestBytes);
        CHECK(out.bytes_sent <= kConnections * (kRequestBytes + 2));
        CHECK(out.bytes_received >= kConnections * kResponseBytes);
        CHECK(out.bytes_received <= kConnections * (kResponseBytes + 2));

        auto refused = totals(*a, "out", "dg-client", "198.18.0.1", "198.18.0.2", kClosedPort);
        CHECK(refused.failed == kRefused);
        CHECK(refused.refused == kRefused);
        CHECK(refused.connects == 0);

        auto v6 = totals(*a, "out", "dg-client", "2001:2::1", "2001:2::2", kServicePort);
        CHECK(v6.connects == 1);
        CHECK(v6.closes == 1);

        auto unanswered = totals(*a, "out", "dg-client", "198.18.0.1", "198.18.0.3", kServicePort);
        CHECK(unanswered.failed == 1);
        CHECK(unanswered.refused == 0);

        // Exactly those four edges; nothing of host B's or the machine's own traffic.
        CHECK(count(*a, "SELECT count(*) FROM edges") == 4);
        CHECK(count(*a, "SELECT count(*) FROM edges WHERE host != 'host-a'") == 0);
        CHECK(count(*a, "SELECT count(DISTINCT netns) FROM edges") == 1);
        CHECK(count(*a, "SELECT count(*) FROM agent_runs WHERE stopped_at IS NOT NULL") == 1);
        // The per-day rollup holds the same sums as the buckets.
        for (const char* counter : {"connects", "failed", "refused", "closes", "bytes_sent", "bytes_received"}) {
            INFO(counter);
            CHECK(count(*a, std::string("SELECT sum(") + counter + ") FROM edge_days") ==
                  count(*a, std::string("SELECT sum(") + counter + ") FROM edge_buckets"));
        }
        CHECK(count(*a, "SELECT count(*) FROM host_addresses WHERE addr = '198.18.0.1'") == 1);
    }

    {  // what `depgraph edges --format json` reports for the client's edge
        auto listed = run_captured({std::getenv("DEPGRAPH"), "edges", "--db", db_a, "--format", "json"});
        REQUIRE(listed.exit_code == 0);
        auto json = nlohmann::json::parse(listed.out);
        REQUIRE(json.is_array());
        CHECK(json.size() == 4);
        int matched = 0;
        for (const auto& e : json) {
            if (e["remote_addr"] != "198.18.0.2" || e["port"] != kServicePort) continue;
            matched++;
            CHECK(e["host"] == "host-a");
            CHECK(e["direction"] == "out");
            CHECK(e["process"] == "dg-client");
            CHECK(e["connects"] == kConnections);
            CHECK(e["failed"] == 0);
            CHECK(e["open"] == 1);
        }
        CHECK(matched == 1);
    }

    {  // the server's side
        auto in = totals(*b, "in", "dg-server", "198.18.0.2", "198.18.0.1", kServicePort);
        CHECK(in.rows == 1);
        CHECK(in.accepts == kConnections);
        CHECK(in.connects == 0);
        CHECK(in.closes == kConnections);
        CHECK(in.open == 1);
        CHECK(in.bytes_received >= kConnections * kRequestBytes);
        CHECK(in.bytes_received <= kConnections * (kRequestBytes + 2));

        auto v6 = totals(*b, "in", "dg-server", "2001:2::2", "2001:2::1", kServicePort);
        CHECK(v6.accepts == 1);

        CHECK(count(*b, "SELECT count(*) FROM edges") == 2);
        CHECK(count(*b, "SELECT count(*) FROM edges WHERE cgroup = '" + cgroup + "'") == 2);
        CHECK(count(*b, "SELECT count(*) FROM edges WHERE port = 9090 OR direction = 'out'") == 0);
        CHECK(count(*b, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter <> 'flush_late'") == 0);
    }
}

// Each socket's state goes to a slot of a 65,536-slot array chosen by the
// socket's address, or to a hash when another live socket holds that slot.
// 2,500 connections held open at once (fewer where the limit on open files is
// lower) are 5,000 sockets: some two hundred of them share a slot with
// another, and go to the hash. The churn that follows runs while they are
// held. Nothing may be lost or counted twice either way.
TEST_CASE("thousands of connections held open while others churn: every count exact") {
    constexpr int kChurn = 20000;
    constexpr uint16_t kPort = 8081;
    // Two descriptors per held connection. Even 1,000 held connections put
    // some thirty sockets in the hash.
    rlimit files{};
    getrlimit(RLIMIT_NOFILE, &files);
    const int to_hold = static_cast<int>(std::min<rlim_t>(2500, (files.rlim_max - 64) / 2));
    INFO("the hard limit on open files (" << files.rlim_max << ") must allow 2,064");
    REQUIRE(to_hold >= 1000);
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host");

    auto agent = start_agent(host, "host", db);
    Signal go, done;
    // Connects and accepts in one loop, as bench/churn does: with a separate
    // server process, a full accept queue would drop SYNs and stall for seconds.
    auto peer = ChildProcess::fork_in(host.path(), "dg-peer", [&] {
        files.rlim_cur = files.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &files) != 0) return 6;
        auto addr = socket_address("127.0.0.1", kPort);
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 64) != 0) return 2;
        if (!go.wait(30000)) return 4;
        // A RST on close (linger 0) leaves no TIME_WAIT: so many connections
        // from one address would run out of ephemeral ports otherwise.
        linger rst{1, 0};
        auto close_both = [&](int fd, int accepted) {
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
            close(fd);
            close(accepted);
        };
        std::vector<std::pair<int, int>> held;
        for (int i = 0; i < to_hold; i++) {
            int fd = connect_to("127.0.0.1", kPort);
            int accepted = fd < 0 ? -1 : accept(ls, nullptr, nullptr);
            if (accepted < 0) return 3;
            held.emplace_back(fd, accepted);
        }
        int made = 0;
        for (int i = 0; i < kChurn; i++) {
            int fd = connect_to("127.0.0.1", kPort);
            if (fd < 0) continue;
            close_both(fd, accept(ls, nullptr, nullptr));
            made++;
        }
        for (auto [fd, accepted] : held) close_both(fd, accepted);
        done.send();
        pause();
        return made == kChurn ? 0 : 5;
    });
    go.send();
    REQUIRE(done.wait(120000));
    REQUIRE(agent.stop(SIGINT) == 0);

    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    auto out = totals(*d, "out", "dg-peer", "127.0.0.1", "127.0.0.1", kPort);
    CHECK(out.connects == to_hold + kChurn);
    CHECK(out.closes == to_hold + kChurn);
    CHECK(out.failed == 0);
    CHECK(out.open == 0);
    auto in = totals(*d, "in", "dg-peer", "127.0.0.1", "127.0.0.1", kPort);
    CHECK(in.accepts == to_hold + kChurn);
    CHECK(in.closes == to_hold + kChurn);
    CHECK(in.open == 0);
    CHECK(count(*d, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter <> 'flush_late'") == 0);
}

// Lifetimes are counted in jiffies: exact to one tick (at most 10 ms).
TEST_CASE("a connection's lifetime is its time open, also for one that was open before the agent started") {
    constexpr uint16_t kNewPort = 8082, kOldPort = 8083;
    constexpr int64_t kHoldMs = 1500, kTickNs = 10'000'000;
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host");
    Signal ready, go, done;
    auto peer = ChildProcess::fork_in(host.path(), "dg-peer", [&] {
        auto pair = [](uint16_t port, int& ours, int& theirs) {
            auto addr = socket_address("127.0.0.1", port);
            int ls = socket(AF_INET, SOCK_STREAM, 0);
            if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 4) != 0) return false;
            ours = connect_to("127.0.0.1", port);
            theirs = accept(ls, nullptr, nullptr);
            return ours >= 0 && theirs >= 0;
        };
        int old_ours = -1, old_theirs = -1, new_ours = -1, new_theirs = -1;
        if (!pair(kOldPort, old_ours, old_theirs)) return 2;
        ready.send();
        if (!go.wait(30000)) return 3;
        if (!pair(kNewPort, new_ours, new_theirs)) return 4;
        usleep(kHoldMs * 1000);
        for (int fd : {new_ours, new_theirs, old_ours, old_theirs}) close(fd);
        done.send();
        pause();
        return 0;
    });
    REQUIRE(ready.wait(10000));
    auto agent_started = std::chrono::steady_clock::now();
    auto agent = start_agent(host, "host", db);
    auto go_sent = std::chrono::steady_clock::now();
    go.send();
    REQUIRE(done.wait(30000));
    auto old_closed = std::chrono::steady_clock::now();
    // The new connection was opened after `go` and closed before `done`: its
    // lifetime is at most that (plus a tick, for the jiffies), however long
    // a loaded machine let the peer oversleep.
    const int64_t fresh_at_most = std::chrono::nanoseconds(old_closed - go_sent).count() + kTickNs;
    REQUIRE(agent.stop(SIGINT) == 0);

    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    for (const char* direction : {"out", "in"}) {
        INFO(direction);
        auto fresh = totals(*d, direction, "dg-peer", "127.0.0.1", "127.0.0.1", kNewPort);
        CHECK(fresh.closes == 1);
        CHECK(fresh.lifetime_ns >= kHoldMs * 1'000'000 - kTickNs);
        CHECK(fresh.lifetime_ns <= fresh_at_most);
        // Seeded at the agent's start: counted from then, on the precise clock.
        auto old = totals(*d, direction, "dg-peer", "127.0.0.1", "127.0.0.1", kOldPort);
        CHECK(old.closes == 1);
        CHECK(old.lifetime_ns >= kHoldMs * 1'000'000);
        CHECK(old.lifetime_ns <= std::chrono::nanoseconds(old_closed - agent_started).count());
    }
}

// Each CPU counts its busiest edges in a cache of DG_EDGE_CACHE_SLOTS entries
// and moves an entry to the edge map when another edge needs its place: with
// twice as many edges as entries, taken in turn, that happens all the time.
TEST_CASE("sixteen edges taking turns in an eight-entry cache: every count exact") {
    constexpr int kPorts = 16, kRounds = 50;
    constexpr uint16_t kFirstPort = 9100;
    static_assert(kPorts == 2 * DG_EDGE_CACHE_SLOTS);
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host");
    auto agent = start_agent(host, "host", db);
    Signal done;
    auto peer = ChildProcess::fork_in(host.path(), "dg-peer", [&] {
        std::vector<int> listeners;
        for (int p = 0; p < kPorts; p++) {
            auto addr = socket_address("127.0.0.1", static_cast<uint16_t>(kFirstPort + p));
            int ls = socket(AF_INET, SOCK_STREAM, 0);
            if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 4) != 0) return 2;
            listeners.push_back(ls);
        }
        linger rst{1, 0};
        for (int r = 0; r < kRounds; r++) {
            for (int p = 0; p < kPorts; p++) {
                int fd = connect_to("127.0.0.1", static_cast<uint16_t>(kFirstPort + p));
                int accepted = accept(listeners[static_cast<size_t>(p)], nullptr, nullptr);
                if (fd < 0 || accepted < 0) return 3;
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
                close(fd);
                close(accepted);
            }
        }
        done.send();
        pause();
        return 0;
    });
    REQUIRE(done.wait(60000));
    REQUIRE(agent.stop(SIGINT) == 0);

    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    for (int p = 0; p < kPorts; p++) {
        INFO("port " << kFirstPort + p);
        auto out = totals(*d, "out", "dg-peer", "127.0.0.1", "127.0.0.1", kFirstPort + p);
        CHECK(out.connects == kRounds);
        CHECK(out.closes == kRounds);
        auto in = totals(*d, "in", "dg-peer", "127.0.0.1", "127.0.0.1", kFirstPort + p);
        CHECK(in.accepts == kRounds);
        CHECK(in.closes == kRounds);
    }
    CHECK(count(*d, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter <> 'flush_late'") == 0);
}

namespace {

// Another process that holds the database's write lock (BEGIN IMMEDIATE), as
// a backup or an sqlite3 shell can: from when `locked` fires until `release`
// arrives.
ChildProcess hold_write_lock(const std::string& db, Signal& locked, Signal& release) {
    return ChildProcess::fork_in("/proc/self/ns/net", "dg-locker", [&db, &locked, &release] {
        auto d = Database::open_for_write(db);
        if (!d || !d->exec("BEGIN IMMEDIATE")) return 2;
        locked.send();
        return release.wait(120000) ? 0 : 3;
    });
}

}  // namespace

// The agent's busy timeout is 5 s: a lock held longer used to end the agent
// and lose the counts it had drained. Each lock here is held until the agent
// says the database is locked, which it does once a write has waited out the
// busy timeout: longer than that by construction, however slow the machine.
TEST_CASE("a database locked by another writer for longer than the busy timeout loses no counts") {
    constexpr uint16_t kPort = 8084;
    constexpr int kSaidWithinMs = 30000;  // the busy timeout, and then some
    const std::string kLocked = "is locked by another writer", kWritable = "is writable again";
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host"), log = (dir.path / "agent.err").string();
    auto server = ChildProcess::fork_in(host.path(), "dg-server", [] { return accept_and_close(kPort); });
    auto agent = start_agent(host, "host", db, {}, log);
    auto connects = [&] {
        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        return totals(*d, "out", "dg-dialler", "127.0.0.1", "127.0.0.1", kPort).connects;
    };
    auto said = [&](const std::string& text, size_t times) {
        return eventually([&] { return occurrences_in(log, text) >= times; }, kSaidWithinMs);
    };

    {  // while running: the counts wait in memory and land once the lock is gone
        Signal locked, release;
        auto locker = hold_write_lock(db, locked, release);
        REQUIRE(locked.wait(5000));
        REQUIRE(dial(host, "127.0.0.1", kPort, 5).wait_exit(10000) == 0);
        REQUIRE(said(kLocked, 1));
        release.send();
        REQUIRE(locker.wait_exit(5000) == 0);
        // Said once the kept counts are written: the agent is no longer waiting for the lock.
        REQUIRE(said(kWritable, 1));
        CHECK(connects() == 5);
        CHECK(kill(agent.pid(), 0) == 0);
    }
    {  // at stop: the last flush waits for the lock instead of giving up
        Signal locked, release;
        auto locker = hold_write_lock(db, locked, release);
        REQUIRE(locked.wait(5000));
        REQUIRE(dial(host, "127.0.0.1", kPort, 3).wait_exit(10000) == 0);
        REQUIRE(kill(agent.pid(), SIGTERM) == 0);
        REQUIRE(said(kLocked, 2));
        release.send();
        REQUIRE(locker.wait_exit(5000) == 0);
        REQUIRE(agent.wait_exit(20000) == 0);
    }
    CHECK(connects() == 8);
    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    CHECK(count(*d, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter <> 'flush_late'") == 0);
    // A write that waited out the busy timeout made its flush late, by more
    // than the 1 s interval: the ticks it skipped are counted, and said once.
    CHECK(count(*d, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter = 'flush_late'") >= 1);
    CHECK(count(*d, "SELECT count(*) FROM agent_runs WHERE stopped_at IS NOT NULL") == 1);
    std::ifstream in(log);
    INFO(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
    CHECK(occurrences_in(log, "took longer than the flush interval") == 1);
    // Once per time the lock outlasted the busy timeout, not once per flush.
    CHECK(occurrences_in(log, kLocked) == 2);
    CHECK(occurrences_in(log, kWritable) == 2);
    CHECK(occurrences_in(log, "error") == 0);
}

// A stop just after a bucket boundary used to write its counts into the
// bucket before, over that bucket's open gauge. "Just after" is within the
// boundary's own second: each round waits for the scheduled flush at a
// boundary T, connects and stops. A round whose stop came later than T's
// second proves less, and one that came past the next boundary nothing (a
// scheduled flush may have taken the counts): on a busy machine, try again.
TEST_CASE("the last flush on stop writes into the bucket it falls in") {
    constexpr uint16_t kPort = 8085;
    constexpr int64_t kBucket = 2;  // short, so that a round lasts little; a multiple of the 1 s flush
    constexpr int kRounds = 5;
    TestNetns host;
    TempDir dir;
    auto server = ChildProcess::fork_in(host.path(), "dg-server", [] { return accept_and_close(kPort); });
    bool stopped_in_boundary_second = false;
    std::string stops;  // each round's stop, in seconds after its boundary
    for (int round = 0; round < kRounds && !stopped_in_boundary_second; round++) {
        std::string db = dir.db("host-" + std::to_string(round));
        auto agent = start_agent(host, "host", db, {"--bucket", std::to_string(kBucket) + "s"});
        auto now = std::chrono::duration_cast<std::chrono::seconds>(
            std::chrono::system_clock::now().time_since_epoch()).count();
        const int64_t boundary = (now / kBucket + 1) * kBucket;
        wait_for_flush_at(db, boundary);
        REQUIRE(dial(host, "127.0.0.1", kPort, 3).wait_exit(5000) == 0);
        REQUIRE(agent.stop(SIGTERM) == 0);

        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        // The stop's time, as the agent took it for its last flush.
        const int64_t stopped_at = count(*d, "SELECT stopped_at FROM agent_runs");
        stops += " " + std::to_string(stopped_at - boundary);
        INFO("the stop came in second " << stopped_at - boundary << " after the boundary");
        if (stopped_at >= boundary + kBucket) continue;
        auto rows = d->prepare(
            "SELECT bucket_start, connects FROM edges JOIN edge_buckets USING (edge_id) "
            "WHERE direction = 'out' AND port = ? ORDER BY bucket_start");
        REQUIRE(rows.ok());
        rows->bind(1, int64_t{kPort});
        std::vector<std::pair<int64_t, int64_t>> buckets;
        while (*rows->step()) buckets.emplace_back(rows->column_int(0), rows->column_int(1));
        CHECK(buckets == std::vector<std::pair<int64_t, int64_t>>{{boundary, 3}});
        stopped_in_boundary_second = stopped_at == boundary;
    }
    INFO("the stops came in these seconds after their boundaries:" << stops);
    CHECK(stopped_in_boundary_second);
}

// A connection open when one agent stops and closed before the next starts:
// the next run is the only one that can say it is gone.
TEST_CASE("a connection that closed between two runs is not open in the next run") {
    constexpr uint16_t kPort = 8086;
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host");
    Signal held, release, released;
    auto peer = ChildProcess::fork_in(host.path(), "dg-peer", [&] {
        auto addr = socket_address("127.0.0.1", kPort);
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 4) != 0) return 2;
        int ours = connect_to("127.0.0.1", kPort), theirs = accept(ls, nullptr, nullptr);
        if (ours < 0 || theirs < 0) return 3;
        held.send();
        if (!release.wait(30000)) return 4;
        close(ours);
        close(theirs);
        released.send();
        pause();
        return 0;
    });
    REQUIRE(held.wait(5000));
    auto open_now = [&](const char* direction) {
        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        return totals(*d, direction, "dg-peer", "127.0.0.1", "127.0.0.1", kPort).open;
    };
    {
        auto agent = start_agent(host, "host", db);
        CHECK(open_now("out") == 1);
        CHECK(open_now("in") == 1);
        REQUIRE(agent.stop(SIGTERM) == 0);
    }
    release.send();
    REQUIRE(released.wait(5000));
    run_agent_once(host, "host", db);
    CHECK(open_now("out") == 0);
    CHECK(open_now("in") == 0);
}

// The agent seeds the connections of its start-up dump a moment after the
// dump: one that closed in that moment used to be seeded anyway, and stayed
// open in every bucket after. Churn that starts as the programs attach puts
// connections in the dump that are gone a few microseconds later, in every
// round.
TEST_CASE("connections that close while the agent starts are not left open") {
    constexpr uint16_t kPort = 8087;
    constexpr int kRounds = 5;
    TestNetns host;
    TempDir dir;
    for (int round = 0; round < kRounds; round++) {
        INFO("round " << round);
        std::string db = dir.db("host-" + std::to_string(round));
        Signal go, stop, done;
        auto peer = ChildProcess::fork_in(host.path(), "dg-peer", [&] {
            auto addr = socket_address("127.0.0.1", kPort);
            int ls = socket(AF_INET, SOCK_STREAM, 0);
            int on = 1;
            setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
            if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 64) != 0) return 2;
            if (!go.wait(30000)) return 3;
            // Linger 0: no TIME_WAIT, so the ephemeral ports last.
            linger rst{1, 0};
            int64_t made = 0;
            while (!stop.wait(0)) {
                int fd = connect_to("127.0.0.1", kPort);
                int accepted = fd < 0 ? -1 : accept(ls, nullptr, nullptr);
                if (accepted < 0) return 4;
                setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
                close(fd);
                close(accepted);
                made++;
            }
            close(ls);
            done.send(made);
            pause();
            return 0;
        });
        auto agent = launch_agent(host, "host", db);
        REQUIRE(wait_attached(agent.pid()));
        go.send();
        wait_first_flush(db);
        stop.send();
        auto made = done.receive(10000);
        REQUIRE(made);
        REQUIRE(*made > 0);
        REQUIRE(agent.stop(SIGTERM) == 0);

        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        // Every connection was made after the programs attached: each is counted.
        auto out = totals(*d, "out", "dg-peer", "127.0.0.1", "127.0.0.1", kPort);
        auto in = totals(*d, "in", "dg-peer", "127.0.0.1", "127.0.0.1", kPort);
        CHECK(out.connects == *made);
        CHECK(out.closes == *made);
        CHECK(in.accepts == *made);
        CHECK(in.closes == *made);
        CHECK(out.open == 0);
        CHECK(in.open == 0);
        CHECK(count(*d, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter <> 'flush_late'") == 0);
    }
}

// Listeners used to be keyed by (netns, port) alone: of two processes on one
// port, the one that listened last took the other's accepts, and closing
// either listener forgot both. Both ways the agent learns of a listener: the
// programs see it listen, or the start-up snapshot finds it.
TEST_CASE("two processes listening on one port on different addresses each get their own accepts") {
    constexpr uint16_t kPort = 8088;
    for (bool before_agent : {true, false}) {
        INFO((before_agent ? "listening before the agent started" : "listening after the agent started"));
        TestNetns host;
        host.ip({"addr", "add", "198.18.0.2/32", "dev", "lo"});
        TempDir dir;
        std::string db = dir.db("host");
        std::optional<ChildProcess> agent;
        if (!before_agent) agent.emplace(start_agent(host, "host", db));
        // The sidecar listens first: the last listener used to win.
        Signal sidecar_listening, appsrv_listening;
        auto sidecar = ChildProcess::fork_in(host.path(), "dg-sidecar",
                                             [&] { return accept_and_close(kPort, "127.0.0.1", &sidecar_listening); });
        REQUIRE(sidecar_listening.wait(5000));
        auto appsrv = ChildProcess::fork_in(host.path(), "dg-appsrv",
                                            [&] { return accept_and_close(kPort, "198.18.0.2", &appsrv_listening); });
        REQUIRE(appsrv_listening.wait(5000));
        if (before_agent) agent.emplace(start_agent(host, "host", db));

        REQUIRE(dial(host, "127.0.0.1", kPort, 4).wait_exit(10000) == 0);
        REQUIRE(dial(host, "198.18.0.2", kPort, 2).wait_exit(10000) == 0);
        REQUIRE(agent->stop(SIGTERM) == 0);

        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        CHECK(totals(*d, "in", "dg-sidecar", "127.0.0.1", "127.0.0.1", kPort).accepts == 4);
        CHECK(totals(*d, "in", "dg-appsrv", "198.18.0.2", "198.18.0.2", kPort).accepts == 2);
        CHECK(count(*d, "SELECT count(*) FROM edges WHERE direction = 'in'") == 2);
    }
}

// A server that closes its listening socket and drains the connections it
// has: one still open when the agent starts has no listener to say it was
// accepted, and used to be recorded as outgoing, to a "service" on the
// client's ephemeral port.
TEST_CASE("an accepted connection whose listener has closed is incoming on the server's port") {
    constexpr uint16_t kPort = 8089;
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host");
    Signal draining;
    auto server = ChildProcess::fork_in(host.path(), "dg-server", [&] {
        auto addr = socket_address("127.0.0.1", kPort);
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 4) != 0) return 2;
        int accepted = accept(ls, nullptr, nullptr);
        close(ls);
        draining.send();
        pause();  // holds the accepted connection
        return accepted >= 0 ? 0 : 3;
    });
    auto client = ChildProcess::fork_in(host.path(), "dg-client", [&] {
        int fd = -1;
        for (int i = 0; i < 200 && fd < 0; i++) {
            fd = connect_to("127.0.0.1", kPort);
            if (fd < 0) usleep(10000);
        }
        pause();
        return fd >= 0 ? 0 : 2;
    });
    REQUIRE(draining.wait(5000));
    run_agent_once(host, "host", db);

    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    CHECK(totals(*d, "in", "dg-server", "127.0.0.1", "127.0.0.1", kPort).open == 1);
    CHECK(totals(*d, "out", "dg-client", "127.0.0.1", "127.0.0.1", kPort).open == 1);
    CHECK(count(*d, "SELECT count(*) FROM edges") == 2);
    CHECK(count(*d, "SELECT count(*) FROM edges WHERE port != " + std::to_string(kPort)) == 0);
}

// Listeners that share a port (SO_REUSEPORT, as nginx's workers or a server
// handing over to its next version do) are one entry to the programs:
// closing one forgets the port, and the accepts of the one left carry no
// name. The agent names them from sock_diag, and used to keep every
// listener it had ever seen there: a name from a server long gone won.
TEST_CASE("accepts on a port that another listener shared and left are named after the one left") {
    constexpr uint16_t kPort = 8090;
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host");
    Signal old_listening, alpha_listening, beta_listening;
    std::optional<ChildProcess> old_server = ChildProcess::fork_in(
        host.path(), "dg-old", [&] { return accept_and_close(kPort, "127.0.0.1", &old_listening); });
    REQUIRE(old_listening.wait(5000));
    auto agent = start_agent(host, "host", db);
    old_server.reset();

    auto alpha = ChildProcess::fork_in(
        host.path(), "dg-alpha", [&] { return accept_and_close(kPort, "127.0.0.1", &alpha_listening, true); });
    REQUIRE(alpha_listening.wait(5000));
    std::optional<ChildProcess> beta = ChildProcess::fork_in(
        host.path(), "dg-beta", [&] { return accept_and_close(kPort, "127.0.0.1", &beta_listening, true); });
    REQUIRE(beta_listening.wait(5000));
    beta.reset();

    REQUIRE(dial(host, "127.0.0.1", kPort, 5).wait_exit(10000) == 0);
    REQUIRE(agent.stop(SIGTERM) == 0);

    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    CHECK(totals(*d, "in", "dg-alpha", "127.0.0.1", "127.0.0.1", kPort).accepts == 5);
    CHECK(count(*d, "SELECT count(*) FROM edges WHERE direction = 'in'") == 1);
}

// Each signal that stops the agent writes what is still in the kernel and
// records the stop. SIGHUP (a closed terminal or ssh session) used to kill it
// with its counts still in the kernel.
TEST_CASE("SIGINT, SIGTERM and SIGHUP each stop the agent after writing what the kernel holds") {
    constexpr uint16_t kPort = 8091;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
        INFO("signal " << sig);
        TestNetns host;
        TempDir dir;
        std::string db = dir.db("host");
        auto server = ChildProcess::fork_in(host.path(), "dg-server", [] { return accept_and_close(kPort); });
        // No scheduled flush before the signal: what is written, the stop wrote.
        auto agent = launch_agent(host, "host", db, {"--flush-interval", "1h", "--bucket", "1h"});
        REQUIRE(wait_attached(agent.pid()));
        REQUIRE(dial(host, "127.0.0.1", kPort, 5).wait_exit(5000) == 0);
        REQUIRE(agent.stop(sig) == 0);

        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        CHECK(totals(*d, "out", "dg-dialler", "127.0.0.1", "127.0.0.1", kPort).connects == 5);
        CHECK(totals(*d, "in", "dg-server", "127.0.0.1", "127.0.0.1", kPort).accepts == 5);
        CHECK(count(*d, "SELECT count(*) FROM agent_runs WHERE stopped_at IS NOT NULL") == 1);
    }
}

// A connection one side has shut down and the other not yet (FIN_WAIT2 on
// one end, CLOSE_WAIT on the other) is still open: the start-up snapshot
// used to take only ESTABLISHED ones, so these were on no edge, and their
// closes were counted as closes of sockets the agent did not know.
TEST_CASE("connections half closed when the agent starts are open until they close") {
    constexpr uint16_t kPort = 8092, kCloserPort = 8093;
    constexpr int kConnections = 3, kBytes = 100;
    TestNetns host;
    TempDir dir;
    std::string db = dir.db("host");
    Signal listening, half_closed, release, released;
    auto server = ChildProcess::fork_in(host.path(), "dg-server", [&] {
        auto addr = socket_address("127.0.0.1", kPort);
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 8) != 0) return 2;
        listening.send();
        std::vector<int> fds;
        for (int i = 0; i < kConnections; i++) {
            int fd = accept(ls, nullptr, nullptr);
            if (fd < 0 || !send_bytes(fd, kBytes)) return 3;
            // Our FIN, the socket kept: ours goes to FIN_WAIT2, the client's to CLOSE_WAIT.
            shutdown(fd, SHUT_WR);
            fds.push_back(fd);
        }
        for (int fd : fds) finish(fd);  // waits for the client's FIN
        pause();
        return 0;
    });
    REQUIRE(listening.wait(5000));
    // One that closes outright: its end of the connection becomes a TIME_WAIT
    // socket at once, in the FIN_WAIT2 substate, and is closed.
    Signal closer_listening;
    auto closer = ChildProcess::fork_in(host.path(), "dg-closer", [&] {
        auto addr = socket_address("127.0.0.1", kCloserPort);
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 8) != 0) return 2;
        closer_listening.send();
        int fd = accept(ls, nullptr, nullptr);
        if (fd < 0 || !send_bytes(fd, kBytes)) return 3;
        close(fd);
        pause();
        return 0;
    });
    REQUIRE(closer_listening.wait(5000));
    auto client = ChildProcess::fork_in(host.path(), "dg-client", [&] {
        std::vector<int> fds;
        for (int i = 0; i <= kConnections; i++) {
            int fd = connect_to("127.0.0.1", i < kConnections ? kPort : kCloserPort);
            if (fd < 0 || !recv_bytes(fd, kBytes)) return 2;
            char c;
            if (recv(fd, &c, 1, 0) != 0) return 3;  // the server's FIN is in
            fds.push_back(fd);
        }
        half_closed.send();
        if (!release.wait(30000)) return 4;
        for (int fd : fds) close(fd);
        released.send();
        pause();
        return 0;
    });
    REQUIRE(half_closed.wait(10000));
    auto agent = start_agent(host, "host", db);
    {
        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        CHECK(totals(*d, "out", "dg-client", "127.0.0.1", "127.0.0.1", kPort).open == kConnections);
        CHECK(totals(*d, "in", "dg-server", "127.0.0.1", "127.0.0.1", kPort).open == kConnections);
        CHECK(totals(*d, "out", "dg-client", "127.0.0.1", "127.0.0.1", kCloserPort).open == 1);
    }
    release.send();
    REQUIRE(released.wait(10000));
    REQUIRE(agent.stop(SIGTERM) == 0);

    auto d = Database::open_read_only(db);
    REQUIRE(d.ok());
    for (const char* side : {"out", "in"}) {
        INFO(side);
        auto t = totals(*d, side, std::string(side) == "out" ? "dg-client" : "dg-server", "127.0.0.1", "127.0.0.1",
                        kPort);
        CHECK(t.connects == 0);
        CHECK(t.accepts == 0);
        CHECK(t.closes == kConnections);
        CHECK(t.open == 0);
    }
    auto client_side = totals(*d, "out", "dg-client", "127.0.0.1", "127.0.0.1", kPort);
    // A FIN counts as a byte of sequence space: a byte or so over the payload.
    CHECK(client_side.bytes_received >= kConnections * kBytes);
    CHECK(client_side.bytes_received <= kConnections * (kBytes + 1));
    auto closed_early = totals(*d, "out", "dg-client", "127.0.0.1", "127.0.0.1", kCloserPort);
    CHECK(closed_early.closes == 1);
    CHECK(closed_early.open == 0);
    CHECK(count(*d, "SELECT count(*) FROM edges") == 3);  // no incoming one on the closed port
    CHECK(count(*d, "SELECT coalesce(sum(value), 0) FROM losses WHERE counter = 'close_of_unknown_socket'") == 0);
}

// A server that listens and then runs another program on the same socket
// (an exec after listen, as a supervisor handing over does) accepts under its
// new name, whether the agent saw it listen or found it at start. The
// programs used to keep the name from the moment of listen().
TEST_CASE("a listener that execs another program accepts under the new name") {
    constexpr uint16_t kPort = 8094;
    for (bool agent_first : {true, false}) {
        INFO((agent_first ? "the agent saw it listen" : "the agent started after the exec"));
        TestNetns host;
        TempDir dir;
        std::string db = dir.db("host");
        std::optional<ChildProcess> agent;
        if (agent_first) agent.emplace(start_agent(host, "host", db));
        auto server = ChildProcess::fork_in(host.path(), "dg-prelisten", [] {
            auto addr = socket_address("127.0.0.1", kPort);
            int ls = socket(AF_INET, SOCK_STREAM, 0);
            if (bind(ls, addr.get(), addr.length) != 0 || listen(ls, 8) != 0 || dup2(ls, 3) != 3) return 2;
            execlp("python3", "python3", "-c",
                   "import socket\n"
                   "s = socket.socket(fileno=3)\n"
                   "while True: s.accept()[0].close()\n",
                   nullptr);
            return 127;
        });
        auto comm_path = "/proc/" + std::to_string(server.pid()) + "/comm";
        auto comm = [&] {
            std::ifstream f(comm_path);
            std::string name;
            std::getline(f, name);
            return name;
        };
        for (int i = 0; i < 500 && comm() != "python3"; i++) usleep(10000);
        REQUIRE(comm() == "python3");
        if (!agent_first) agent.emplace(start_agent(host, "host", db));

        REQUIRE(dial(host, "127.0.0.1", kPort, 3).wait_exit(10000) == 0);
        REQUIRE(agent->stop(SIGTERM) == 0);
        auto d = Database::open_read_only(db);
        REQUIRE(d.ok());
        CHECK(totals(*d, "in", "python3", "127.0.0.1", "127.0.0.1", kPort).accepts == 3);
        CHECK(count(*d, "SELECT count(*) FROM edges WHERE direction = 'in'") == 1);
    }
}
