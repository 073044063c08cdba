// churn: a loopback TCP connect/accept/close churn, for measuring what a tracer
// costs per connection. One listener on 127.0.0.1:PORT; for a fixed duration,
// worker threads connect, accept and close as fast as they can. Prints the
// exact number of successful connect() calls, so that a tracer's recorded
// count can be checked against it.
//
//   churn --port PORT [--seconds D] [--workers N] [--split]
//
// Two shapes (bench/churn/run.sh uses the default; see docs/benchmarks.md):
// - loop (default): each of N workers does connect -> accept -> close in one
//   thread. On loopback a blocking connect() completes the handshake in the
//   caller's own softirq, so the connection is already queued when accept()
//   runs: no cross-thread wake-up per connection.
// - split (--split): one connector thread and one acceptor thread, handing
//   connections over through the listen queue.
//
// Output, one line, machine-readable:
//   connects=N accepts=N failed=N seconds=S rate=R cpu_s=C
// where cpu_s is this process's user + system time (all threads), so that the
// caller can tell how much CPU other processes took during the run.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    int port = 0;
    double seconds = 5.0;
    int workers = 1;
    bool split = false;
};

struct WorkerCounts {
    // One cache line each: the workers must not share a line they write per connection.
    alignas(64) uint64_t connects = 0;
    uint64_t accepts = 0;
    uint64_t failed = 0;
};

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "churn: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

sockaddr_in loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

int make_listener(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("SO_REUSEADDR");
    sockaddr_in addr = loopback(port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind 127.0.0.1");
    // A deep queue: in split mode the connector may run ahead of the acceptor.
    if (listen(fd, 4096) != 0) die("listen");
    return fd;
}

// Closing the client first with SO_LINGER {on, 0} sends a RST and frees the
// socket at once (ESTABLISHED -> CLOSE, no FIN exchange): neither side enters
// TIME_WAIT, so tens of thousands of connections per second neither run out of
// ephemeral ports (a TIME_WAIT socket holds its 4-tuple for 60 s) nor hit
// tcp_max_tw_buckets. The accepted socket receives the RST and reaches CLOSE
// too, and close() on it then just frees it. Both ends of every connection are
// therefore closed, and every connection is one open and one close for a tracer.
void close_with_reset(int fd) {
    linger hard{1, 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard) != 0) die("SO_LINGER");
    if (close(fd) != 0) die("close client");
}

// Returns the connected socket, or -1 when connect() failed (counted, not fatal).
int connect_once(const sockaddr_in& server, WorkerCounts& counts) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, reinterpret_cast<const sockaddr*>(&server), sizeof server) != 0) {
        counts.failed++;
        close(fd);
        return -1;
    }
    counts.connects++;  // only a connect() that returned success counts
    return fd;
}

int accept_once(int listener, WorkerCounts& counts) {
    for (;;) {
        int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
            counts.accepts++;
            return fd;
        }
        if (errno != EINTR && errno != ECONNABORTED) die("accept");
    }
}

// Each worker accepts exactly once per successful connect of its own, so the
// number of workers blocked in accept() never exceeds the number of queued
// connections: a worker may take another worker's connection, but none waits
// forever, and when all have stopped every connection has been accepted.
void loop_worker(int listener, const sockaddr_in& server, Clock::time_point deadline, WorkerCounts& counts) {
    uint64_t n = 0;
    for (;;) {
        // Reading the clock every 64 connections keeps it off the hot path.
        if ((n++ & 63) == 0 && Clock::now() >= deadline) break;
        int client = connect_once(server, counts);
        if (client < 0) continue;
        int accepted = accept_once(listener, counts);
        close_with_reset(client);
        if (close(accepted) != 0) die("close accepted");
    }
}

void split_run(int listener, const sockaddr_in& server, Clock::time_point deadline, WorkerCounts& connector,
               WorkerCounts& acceptor) {
    // The connector announces how many it made once it stops; the acceptor
    // takes exactly that many, so none is left in the queue.
    std::atomic<uint64_t> total{UINT64_MAX};
    std::thread accept_thread([&] {
        while (acceptor.accepts < total.load(std::memory_order_acquire)) {
            int fd = accept_once(listener, acceptor);
            if (close(fd) != 0) die("close accepted");
        }
    });
    uint64_t n = 0;
    for (;;) {
        if ((n++ & 63) == 0 && Clock::now() >= deadline) break;
        int client = connect_once(server, connector);
        if (client >= 0) close_with_reset(client);
    }
    // If the acceptor is blocked with the queue already empty, this connection
    // wakes it; it is counted like every other.
    total.store(connector.connects + 1, std::memory_order_release);
    int last = connect_once(server, connector);
    if (last < 0) die("connect (final)");
    accept_thread.join();
    close_with_reset(last);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "churn: %s needs a value\n", arg.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--port") o.port = std::atoi(value());
        else if (arg == "--seconds") o.seconds = std::atof(value());
        else if (arg == "--workers") o.workers = std::atoi(value());
        else if (arg == "--split") o.split = true;
        else {
            std::fprintf(stderr, "usage: churn --port PORT [--seconds D] [--workers N] [--split]\n");
            std::exit(2);
        }
    }
    if (o.port <= 0 || o.port > 65535 || o.seconds <= 0 || o.workers < 1) {
        std::fprintf(stderr, "churn: --port 1..65535, --seconds > 0 and --workers >= 1 are required\n");
        std::exit(2);
    }
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    Options o = parse(argc, argv);
    int listener = make_listener(o.port);
    sockaddr_in server = loopback(o.port);

    auto start = Clock::now();
    auto deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
    std::vector<WorkerCounts> counts(o.split ? 2 : o.workers);
    if (o.split) {
        split_run(listener, server, deadline, counts[0], counts[1]);
    } else {
        std::vector<std::thread> threads;
        for (int w = 0; w < o.workers; w++)
            threads.emplace_back(loop_worker, listener, std::cref(server), deadline, std::ref(counts[w]));
        for (auto& t : threads) t.join();
    }
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    close(listener);

    uint64_t connects = 0, accepts = 0, failed = 0;
    for (const auto& c : counts) {
        connects += c.connects;
        accepts += c.accepts;
        failed += c.failed;
    }
    rusage usage{};
    if (getrusage(RUSAGE_SELF, &usage) != 0) die("getrusage");
    double cpu_s = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
                   usage.ru_stime.tv_usec / 1e6;
    std::printf("connects=%llu accepts=%llu failed=%llu seconds=%.3f rate=%.0f cpu_s=%.3f\n",
                static_cast<unsigned long long>(connects), static_cast<unsigned long long>(accepts),
                static_cast<unsigned long long>(failed), elapsed, connects / elapsed, cpu_s);
    if (accepts != connects) {
        std::fprintf(stderr, "churn: %llu connects but %llu accepts\n", static_cast<unsigned long long>(connects),
                     static_cast<unsigned long long>(accepts));
        return 1;
    }
    return 0;
}
