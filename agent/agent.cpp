#include "agent/agent.hpp"

#include <netinet/tcp.h>
#include <signal.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include "agent/edge_store.hpp"
#include "agent/netns.hpp"
#include "agent/process_table.hpp"
#include "agent/sock_diag.hpp"
#include "agent/tracer.hpp"
#include "common/address.hpp"
#include "common/time.hpp"
#include "version.h"

namespace depgraph {
namespace {

constexpr const char* kUnknownProcess = "?";

uint64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string random_run_id() {
    std::ifstream in("/proc/sys/kernel/random/uuid");
    std::string id;
    std::getline(in, id);
    return id;
}

std::string kernel_release() {
    utsname u{};
    return uname(&u) == 0 ? u.release : "";
}

Result<std::string> host_name(const AgentOptions& options) {
    if (!options.hostname.empty()) return options.hostname;
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return errno_error("cannot read the hostname", errno);
    return std::string(buf);
}

dg_process to_bpf_process(const ProcessIdentity& p) {
    dg_process out{};
    std::strncpy(out.comm, p.comm.c_str(), sizeof out.comm - 1);
    out.cgroup_id = p.cgroup_id;
    return out;
}

class Agent {
public:
    Agent(const AgentOptions& options, Tracer tracer, EdgeStore store, std::string host, uint32_t own_netns)
        : options_(options), tracer_(std::move(tracer)), store_(std::move(store)), host_(std::move(host)),
          own_netns_(own_netns) {}

    Status start(int64_t now) {
        AgentRun run{random_run_id(), host_, now, DEPGRAPH_VERSION, kernel_release(),
                     options_.scope == Scope::host ? "host" : "netns", own_netns_};
        if (auto s = store_.begin_run(run); !s) return s;
        return snapshot();
    }

    Status flush(int64_t now) {
        auto samples = tracer_.drain();
        if (!samples) return samples.error();
        Flush f;
        f.now = now;
        f.bucket_seconds = options_.bucket_s;
        // The data drained at `now` happened in (previous flush, now]; a flush
        // on a bucket boundary belongs to the bucket that just ended.
        f.bucket_start = ((now - 1) / options_.bucket_s) * options_.bucket_s;
        bool listeners_refreshed = false;
        for (const auto& s : *samples) {
            auto edge = identity(s.key, listeners_refreshed);
            EdgeCounts& c = f.edges[edge];
            c.connects += s.counters.connects;
            c.failed += s.counters.failed;
            c.refused += s.counters.refused;
            c.accepts += s.counters.accepts;
            c.closes += s.counters.closes;
            c.bytes_sent += s.counters.bytes_sent;
            c.bytes_received += s.counters.bytes_received;
            c.lifetime_ns += s.counters.lifetime_ns;
        }
        for (auto& [edge, c] : f.edges) {
            open_[edge] += static_cast<int64_t>(c.connects + c.accepts) - static_cast<int64_t>(c.closes);
        }
        // A connection that stays open shows in every bucket it is open in.
        for (auto it = open_.begin(); it != open_.end();) {
            if (it->second > 0) f.edges[it->first].open = it->second;
            it = it->second > 0 ? std::next(it) : open_.erase(it);
        }
        auto losses = tracer_.losses();
        if (!losses) return losses.error();
        for (size_t i = 0; i < losses->size(); i++) f.loss_deltas[i] = (*losses)[i] - reported_losses_[i];
        // Addresses that cannot be read this time are taken as unchanged, not
        // as gone: a gap would split the host's ownership of them in two.
        if (auto current = addresses(); current) addresses_ = std::move(*current);
        f.addresses = addresses_;
        if (auto s = store_.write(f); !s) return s;
        reported_losses_ = *losses;
        return ok_status();
    }

    Status stop(int64_t now) {
        if (auto s = flush(now); !s) return s;
        return store_.end_run(now);
    }

private:
    struct ListenerKey {
        uint32_t netns;
        uint16_t port;
        bool operator<(const ListenerKey& o) const { return std::tie(netns, port) < std::tie(o.netns, o.port); }
    };

    std::vector<NetnsRef> namespaces() const {
        if (options_.scope == Scope::netns) return {NetnsRef{own_netns_, "/proc/thread-self/ns/net"}};
        return all_netns();
    }

    // Calls `work(netns inode)` inside each traced namespace.
    Status for_each_netns(const std::function<Status(uint32_t)>& work) const {
        for (const auto& ns : namespaces()) {
            if (ns.inode == own_netns_) {
                if (auto s = work(ns.inode); !s) return s;
                continue;
            }
            // A namespace may vanish between listing and entering it: not an error.
            (void)in_netns(ns.path, [&] { return work(ns.inode); });
        }
        return ok_status();
    }

    // Listeners and open connections that predate the tracepoints. The
    // tracepoints are attached first, so nothing opened since is missed; a
    // socket the programs already know is not counted again.
    Status snapshot() {
        auto owners = socket_owners();
        uint64_t now_ns = monotonic_ns();
        return for_each_netns([&](uint32_t netns) -> Status {
            auto sockets = dump_tcp_sockets((1u << TCP_LISTEN) | (1u << TCP_ESTABLISHED));
            if (!sockets) return sockets.error();
            for (const auto& s : *sockets) {
                if (s.state == TCP_LISTEN) remember_listener(netns, s, owners);
            }
            for (const auto& s : *sockets) {
                if (s.state != TCP_ESTABLISHED) continue;
                if (auto r = seed_connection(netns, s, owners, now_ns); !r) return r;
            }
            return ok_status();
        });
    }

    void remember_listener(uint32_t netns, const TcpSocket& s,
                           const std::unordered_map<uint64_t, ProcessIdentity>& owners) {
        auto owner = owners.find(s.inode);
        if (owner == owners.end()) return;
        listeners_[{netns, s.local_port}] = owner->second.comm;
        (void)tracer_.seed_listener(dg_listener_key{netns, s.local_port, 0}, to_bpf_process(owner->second));
    }

    Status seed_connection(uint32_t netns, const TcpSocket& s,
                           const std::unordered_map<uint64_t, ProcessIdentity>& owners, uint64_t now_ns) {
        dg_sock_info info{};
        // Direction from "the local port is a listener", never from port numbers.
        bool incoming = listeners_.count({netns, s.local_port}) > 0;
        info.edge.direction = incoming ? DG_DIR_IN : DG_DIR_OUT;
        info.edge.service_port = incoming ? s.local_port : s.remote_port;
        info.edge.netns_ino = netns;
        info.edge.family = static_cast<uint8_t>(s.family);
        std::memcpy(info.edge.local_addr, s.local.data(), 16);
        std::memcpy(info.edge.remote_addr, s.remote.data(), 16);
        if (auto owner = owners.find(s.inode); owner != owners.end()) {
            info.edge.process = to_bpf_process(owner->second);
        } else if (incoming) {
            std::strncpy(info.edge.process.comm, listeners_[{netns, s.local_port}].c_str(), DG_COMM_LEN - 1);
        }
        info.start_ns = now_ns;
        info.state = DG_SOCK_OPEN;
        auto seeded = tracer_.seed_socket(s.cookie, info);
        if (!seeded) return seeded.error();
        if (*seeded) open_[identity_of_known(info.edge)] += 1;
        return ok_status();
    }

    EdgeIdentity identity_of_known(const dg_edge_key& key) {
        EdgeIdentity e;
        e.direction = key.direction == DG_DIR_IN ? "in" : "out";
        e.netns = key.netns_ino;
        e.process = std::string(key.process.comm, strnlen(key.process.comm, DG_COMM_LEN));
        e.cgroup = cgroups_.path_of(key.process.cgroup_id);
        e.local_addr = format_address(key.family, key.local_addr);
        e.remote_addr = format_address(key.family, key.remote_addr);
        e.port = key.service_port;
        return e;
    }

    // An accept on a listener from before tracing has no name in the kernel:
    // name it from the sock_diag listener table, refreshed once per flush.
    EdgeIdentity identity(const dg_edge_key& key, bool& listeners_refreshed) {
        EdgeIdentity e = identity_of_known(key);
        if (!e.process.empty()) return e;
        auto name = listeners_.find({key.netns_ino, key.service_port});
        if (name == listeners_.end() && key.direction == DG_DIR_IN && !listeners_refreshed) {
            listeners_refreshed = true;
            refresh_listeners();
            name = listeners_.find({key.netns_ino, key.service_port});
        }
        e.process = name != listeners_.end() && key.direction == DG_DIR_IN ? name->second : kUnknownProcess;
        return e;
    }

    void refresh_listeners() {
        auto owners = socket_owners();
        (void)for_each_netns([&](uint32_t netns) -> Status {
            auto sockets = dump_tcp_sockets(1u << TCP_LISTEN);
            if (!sockets) return sockets.error();
            for (const auto& s : *sockets) remember_listener(netns, s, owners);
            return ok_status();
        });
    }

    Result<std::vector<HostAddress>> addresses() const {
        std::vector<HostAddress> out;
        auto s = for_each_netns([&](uint32_t netns) -> Status {
            auto found = try_local_addresses();
            if (!found) return found.error();
            for (auto& a : *found) out.push_back({netns, std::move(a)});
            return ok_status();
        });
        if (!s) return s.error();
        return out;
    }

    AgentOptions options_;
    Tracer tracer_;
    EdgeStore store_;
    std::string host_;
    uint32_t own_netns_;
    CgroupPaths cgroups_;
    std::map<ListenerKey, std::string> listeners_;
    std::map<EdgeIdentity, int64_t> open_;  // open connections per edge, across flushes
    LossCounters reported_losses_{};
    std::vector<HostAddress> addresses_;  // as last read
};

// Waits until the next multiple of `interval` on the UTC clock, so flushes
// fall on bucket boundaries. Returns the scheduled tick, or 0 on a stop signal.
int64_t wait_for_tick(int64_t interval, const sigset_t& stop_signals) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t tick = (now.tv_sec / interval + 1) * interval;
    for (;;) {
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t left_ns = (tick - now.tv_sec) * 1000000000ll - now.tv_nsec;
        if (left_ns <= 0) return tick;
        timespec timeout{static_cast<time_t>(left_ns / 1000000000ll), static_cast<long>(left_ns % 1000000000ll)};
        int sig = sigtimedwait(&stop_signals, nullptr, &timeout);
        if (sig > 0) return 0;
    }
}

}  // namespace

Status run_agent(const AgentOptions& options) {
    if (options.flush_interval_s <= 0 || options.bucket_s <= 0 || options.bucket_s % options.flush_interval_s != 0) {
        return Error{"--bucket must be a whole multiple of --flush-interval (got " +
                     std::to_string(options.bucket_s) + "s and " + std::to_string(options.flush_interval_s) + "s)"};
    }
    auto host = host_name(options);
    if (!host) return host.error();
    auto own_netns = current_netns_inode();
    if (!own_netns) return own_netns.error();
    set_libbpf_verbose(options.verbose);
    // Attach before anything else: a database is only created once tracing works.
    auto tracer = Tracer::start(options.scope == Scope::netns ? *own_netns : 0);
    if (!tracer) return tracer.error();
    auto store = EdgeStore::open(options.db_path);
    if (!store) return store.error();

    Agent agent(options, std::move(*tracer), std::move(*store), *host, *own_netns);
    if (auto s = agent.start(unix_now()); !s) return s;
    if (options.verbose) std::fprintf(stderr, "depgraph-agent: tracing, writing to %s\n", options.db_path.c_str());
    if (options.once) return agent.stop(unix_now());

    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    for (;;) {
        int64_t tick = wait_for_tick(options.flush_interval_s, stop_signals);
        if (tick == 0) return agent.stop(unix_now());
        if (auto s = agent.flush(tick); !s) return s;
    }
}

}  // namespace depgraph
