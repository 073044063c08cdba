#include "agent/agent.hpp"

#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <algorithm>
#include <map>
#include <set>
#include <optional>

#include "agent/conntrack.hpp"
#include "agent/conntrack_edges.hpp"
#include "agent/edge_store.hpp"
#include "agent/listener_table.hpp"
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

// The inode of a namespace link such as /proc/self/ns/uts; nullopt when it
// cannot be read (another user's process, without CAP_SYS_PTRACE).
std::optional<ino_t> namespace_inode(const char* path) {
    struct stat st {};
    if (::stat(path, &st) != 0) return std::nullopt;
    return st.st_ino;
}

// Whether the agent has the machine's own host name: a namespace made with
// `ip netns` keeps the kernel's first UTS namespace (fixed inode
// PROC_UTS_INIT_INO), and so the machine's name. A container with a UTS
// namespace of its own has a name of its own, whatever its PID 1 shares.
bool shares_init_uts() {
    constexpr ino_t kInitUtsInode = 0xEFFFFFFEu;
    return namespace_inode("/proc/self/ns/uts") == kInitUtsInode;
}

dg_process to_bpf_process(const ProcessIdentity& p) {
    dg_process out{};
    std::strncpy(out.comm, p.comm.c_str(), sizeof out.comm - 1);
    out.cgroup_id = p.cgroup_id;
    return out;
}

// The agent drains edges from exactly one of these: the BPF programs'
// counters, or conntrack's flows. Both give EdgeSamples, so all that
// follows the drain is one code path.
struct EdgeSources {
    std::optional<Tracer> tracer;
    std::optional<ConntrackEdgeSource> conntrack;
};

class Agent {
public:
    Agent(const AgentOptions& options, EdgeSources sources, EdgeStore store, std::string host, uint32_t own_netns)
        : options_(options), tracer_(std::move(sources.tracer)), conntrack_edges_(std::move(sources.conntrack)),
          store_(std::move(store)), host_(std::move(host)), own_netns_(own_netns) {}

    Status start(int64_t now) {
        AgentRun run{random_run_id(), host_, now, DEPGRAPH_VERSION, kernel_release(),
                     options_.scope == Scope::host ? "host" : "netns", own_netns_,
                     conntrack_edges_ ? "conntrack" : "ebpf"};
        auto begun = store_.begin_run(run);
        if (!begun) return begun.error();
        note_written(*begun);
        auto was_open = store_.open_edges_of_host(host_);
        if (!was_open) return was_open.error();
        was_open_ = std::move(*was_open);
        spaces_ = namespaces();
        (void)refresh_addresses();  // unreadable: read again at each flush
        // Subscribed before the snapshot, so that a connection opened in
        // between is in both and seeded once, not missed.
        if (auto s = watch_conntrack(); !s) return s;
        return snapshot();
    }

    // `final`: the last flush of the run, when nothing may stay pending.
    Status flush(int64_t now, bool final = false) {
        auto samples = drain();
        if (!samples) return samples.error();
        // Listed once per flush: every pass below (listeners, addresses,
        // conntrack) walks the same namespaces without rescanning /proc.
        spaces_ = namespaces();
        unreachable_.clear();
        Flush f;
        f.now = now;
        f.bucket_seconds = options_.bucket_s;
        // The data drained at `now` happened since the previous flush. A
        // scheduled flush runs at a tick: on a bucket boundary, its data is
        // the bucket's that just ended. The last one (a stop, --once) runs
        // between ticks, so its data is in the bucket `now` is in.
        f.bucket_start = ((final ? now : now - 1) / options_.bucket_s) * options_.bucket_s;
        if (!final) note_late_ticks(now, f);
        bool listeners_refreshed = false;
        for (const auto& s : *samples) {
            auto edge = identity(s.key, listeners_refreshed);
            f.edges[edge].sums += s.counters;
        }
        if (tracer_) {
            // Read from the programs' sockets at each flush, not carried as
            // connects + accepts - closes: a close whose count was lost (a
            // full edge map) or drained a flush before its accept (another
            // CPU's cache) would throw that off for good.
            auto open = tracer_->open_connections();
            if (!open) return open.error();
            auto before = std::move(open_);
            open_.clear();
            for (const auto& [key, n] : *open) open_[identity(key, listeners_refreshed)] += n;
            // An edge whose last connection closed unseen gets its gauge set back to 0.
            for (const auto& [edge, n] : before) {
                if (!open_.count(edge)) f.edges.try_emplace(edge);
            }
        } else {
            for (auto& [edge, c] : f.edges) {
                open_[edge] += static_cast<int64_t>(c.sums.connects + c.sums.accepts) - static_cast<int64_t>(c.sums.closes);
            }
        }
        // A connection that stays open shows in every bucket it is open in.
        for (auto it = open_.begin(); it != open_.end();) {
            if (it->second > 0) f.edges[it->first].open = it->second;
            it = it->second > 0 ? std::next(it) : open_.erase(it);
        }
        // What an earlier run last saw open and is not open now closed while
        // no agent ran: nobody else will set its gauge back to 0.
        for (const auto& edge : was_open_) f.edges.try_emplace(edge);
        was_open_.clear();
        (void)refresh_addresses();  // unreadable: taken as unchanged
        // Namespaces come and go under --scope host.
        if (auto s = watch_conntrack(); !s) return s;
        f.translations = take_translations();
        uint64_t enobufs = 0;
        for (const auto& w : ct_watches_) enobufs += w.events.enobufs();
        f.loss_deltas["conntrack_enobufs"] = enobufs - reported_enobufs_;
        f.loss_deltas["netns_unreachable"] = unreachable_.size();
        auto losses = tracer_ ? tracer_->losses() : Result<LossCounters>(LossCounters{});
        if (!losses) return losses.error();
        for (size_t i = 0; i < losses->size(); i++) f.loss_deltas[kLossNames[i]] = (*losses)[i] - reported_losses_[i];
        f.addresses = addresses_;
        // From here on `f` holds these counts until they are written.
        reported_losses_ = *losses;
        reported_enobufs_ = enobufs;
        keep_unwritten(std::move(f));
        return write_unwritten();
    }

    // File descriptors that have conntrack events to read.
    std::vector<int> event_fds() const {
        std::vector<int> fds;
        for (const auto& w : ct_watches_) fds.push_back(w.events.fd());
        return fds;
    }

    // One subscription per namespace feeds both the NAT translations and,
    // with --source conntrack, the edges.
    void read_conntrack_events() {
        const auto now = ConntrackEdgeSource::Clock::now();
        for (auto& w : ct_watches_) {
            auto flows = w.events.read_available();
            if (flows) {
                for (const auto& flow : *flows) note_flow(w, flow);
                if (conntrack_edges_) in_namespace(w, [&] { conntrack_edges_->note_events(w.netns, *flows, now); });
            } else if (options_.verbose) {
                std::fprintf(stderr, "depgraph-agent: conntrack: %s\n", flows.error().message.c_str());
            }
            // Events were dropped: the table itself says what is open now.
            if (!w.events.resync_due()) continue;
            auto table = w.events.resync();
            if (!table || !*table) continue;
            std::map<uint64_t, NatTranslation> current;
            for (const auto& flow : **table) {
                if (!flow.dnat() && !flow.snat()) continue;
                auto t = translation_of(w.netns, flow);
                // Flows that began while events were lost still began.
                if (!w.open_flows.count(flow.id)) pending_flows_[t]++;
                current.emplace(flow.id, std::move(t));
            }
            w.open_flows = std::move(current);
            if (conntrack_edges_) in_namespace(w, [&] { conntrack_edges_->note_resync(w.netns, **table, now); });
        }
    }

    // A database that stays locked or full gets this long after a stop
    // signal before the counts still unwritten are given up. The systemd
    // unit (examples/) waits longer before it kills the agent: TimeoutStopSec.
    static constexpr int64_t kStopPatienceS = 60;

    Status stop(int64_t now) {
        if (auto s = flush(now, true); !s) return s;
        const int64_t deadline = unix_now() + kStopPatienceS;
        // A full disk fails at once, unlike a lock: wait a second between tries.
        while (!unwritten_.empty() && unix_now() < deadline) {
            if (auto s = write_unwritten(); !s) return s;
            if (!unwritten_.empty()) sleep(1);
        }
        if (!unwritten_.empty()) {
            return Error{"database " + options_.db_path + " " + why_unwritable() + ": the counts of its last " +
                         std::to_string(unwritten_.size()) + " bucket(s) were not written"};
        }
        for (;;) {
            auto ended = store_.end_run(now);
            if (!ended) return ended.error();
            note_written(*ended);
            if (*ended == Written::yes) return ok_status();
            if (unix_now() >= deadline) {
                return Error{"database " + options_.db_path + " " + why_unwritable() + ": the run's end was not recorded"};
            }
            sleep(1);
        }
    }

private:
    // Another process holding the write lock past the busy timeout, or a
    // full file system or quota, is transient (a backup, an sqlite3 shell, a
    // log that gets rotated): the flush stays in memory, in order, and is
    // written at the next flush. Flushes of one bucket are merged, so memory
    // grows with the buckets the trouble spans, not the flushes.
    void keep_unwritten(Flush f) {
        if (!unwritten_.empty() && unwritten_.back().bucket_start == f.bucket_start) {
            unwritten_.back().absorb(f);
        } else {
            unwritten_.push_back(std::move(f));
        }
        // Past the bound the oldest bucket is given up, and that is counted,
        // under the trouble that made it wait.
        const char* dropped = unwritable_ == Written::full ? "db_full_rows_dropped" : "db_locked_rows_dropped";
        size_t rows = 0;
        for (const auto& u : unwritten_) rows += u.rows();
        while (rows > kMaxUnwrittenRows && unwritten_.size() > 1) {
            rows -= unwritten_.front().rows();
            unwritten_[1].loss_deltas[dropped] += unwritten_.front().rows();
            unwritten_.erase(unwritten_.begin());
        }
    }

    Status write_unwritten() {
        while (!unwritten_.empty()) {
            auto written = store_.write(unwritten_.front());
            if (!written) return written.error();
            if (*written != Written::yes) {
                note_written(*written);
                return ok_status();
            }
            unwritten_.erase(unwritten_.begin());
        }
        note_written(Written::yes);
        return ok_status();
    }

    // A flush that took longer than the interval (writing many new edges
    // does) makes the next tick come later: that drain covers several
    // intervals, more than the edge map is sized for. The ticks skipped are
    // counted (`flush_late`), and said once.
    void note_late_ticks(int64_t tick, Flush& f) {
        if (last_tick_ != 0 && tick - last_tick_ > options_.flush_interval_s) {
            f.loss_deltas["flush_late"] += static_cast<uint64_t>((tick - last_tick_) / options_.flush_interval_s - 1);
            if (!said_late_) {
                std::fprintf(stderr, "depgraph-agent: a flush took longer than the flush interval (%llds): the next "
                             "drains several intervals at once (counted as flush_late in losses)\n",
                             static_cast<long long>(options_.flush_interval_s));
            }
            said_late_ = true;
        }
        last_tick_ = tick;
    }

    // Says once when writes start failing, and why, and once when they land again.
    void note_written(Written w) {
        if (w == unwritable_) return;
        const char* path = options_.db_path.c_str();
        if (w == Written::busy) {
            std::fprintf(stderr, "depgraph-agent: database %s is locked by another writer: keeping the counts in "
                         "memory and trying again at each flush\n", path);
        } else if (w == Written::full) {
            std::fprintf(stderr, "depgraph-agent: database %s is on a full file system (or over its quota): keeping "
                         "the counts in memory and trying again at each flush\n", path);
        } else {
            std::fprintf(stderr, "depgraph-agent: database %s is writable again\n", path);
        }
        unwritable_ = w;
    }

    std::string why_unwritable() const {
        return unwritable_ == Written::full ? "stayed full" : "stayed locked by another writer";
    }

    Result<std::vector<EdgeSample>> drain() {
        if (tracer_) return tracer_->drain();
        read_conntrack_events();  // what is queued happened before this flush
        const auto now = ConntrackEdgeSource::Clock::now();
        for (const auto& w : ct_watches_) in_namespace(w, [&] { conntrack_edges_->attribute_pending(w.netns, now); });
        return conntrack_edges_->drain();
    }

    // Addresses that cannot be read are taken as unchanged, not as gone: a
    // gap would split the host's ownership of them in two.
    Status refresh_addresses() {
        auto current = addresses();
        if (!current) return current.error();
        addresses_ = std::move(*current);
        if (conntrack_edges_) conntrack_edges_->set_addresses(addresses_);
        return ok_status();
    }

    std::vector<NetnsRef> namespaces() const {
        if (options_.scope == Scope::netns) return {NetnsRef{own_netns_, {"/proc/thread-self/ns/net"}}};
        return all_netns();
    }

    // Calls `work(netns inode)` inside each traced namespace of this flush.
    Status for_each_netns(const std::function<Status(uint32_t)>& work) const {
        for (const auto& ns : spaces_) {
            if (ns.inode == own_netns_) {
                if (auto s = work(ns.inode); !s) return s;
                continue;
            }
            auto entered = in_netns(ns, [&] { return work(ns.inode); });
            // A namespace whose processes all exited between listing and
            // entering it has nothing left to read: no loss. One we cannot
            // enter (setns needs CAP_SYS_ADMIN) is counted and said once,
            // never skipped in silence.
            if (!entered) {
                unreachable_.insert(ns.inode);
                if (warned_netns_.insert(ns.inode).second) {
                    std::fprintf(stderr, "depgraph-agent: network namespace %u is not traced: %s\n", ns.inode,
                                 entered.error().message.c_str());
                }
            }
        }
        return ok_status();
    }

    // Listeners and open connections that predate the tracepoints. The
    // tracepoints are attached first, so nothing opened since is missed; a
    // socket the programs already know is not counted again.
    Status snapshot() {
        auto owners = socket_owners();
        uint64_t now_ns = monotonic_ns();
        struct OpenConnections {
            uint32_t netns;
            PortRange ephemeral;
            std::vector<TcpSocket> sockets;
        };
        std::vector<OpenConnections> open_connections;
        auto dumped = for_each_netns([&](uint32_t netns) -> Status {
            auto sockets = dump_tcp_sockets((1u << TCP_LISTEN) | kOpenStates);
            if (!sockets) return sockets.error();
            for (const auto& s : *sockets) {
                if (s.state == TCP_LISTEN) remember_listener(netns, s, owners);
            }
            std::erase_if(*sockets, [](const TcpSocket& s) { return !(kOpenStates & (1u << s.state)); });
            open_connections.push_back({netns, local_port_range(), std::move(*sockets)});
            return ok_status();
        });
        if (!dumped) return dumped;
        // What the programs hold is read after every dump: a connection in a
        // dump that opened after attach is then already there.
        if (tracer_) {
            if (auto noted = tracer_->note_traced_sockets(); !noted) return noted;
        }
        for (const auto& [netns, ephemeral, sockets] : open_connections) {
            for (const auto& s : sockets) {
                if (auto r = seed_connection(netns, s, ephemeral, owners, now_ns); !r) return r;
            }
        }
        if (tracer_) tracer_->end_seeding();
        return ok_status();
    }

    void remember_listener(uint32_t netns, const TcpSocket& s,
                           const std::unordered_map<uint64_t, ProcessIdentity>& owners) {
        auto owner = owners.find(s.inode);
        // An owner we cannot see (no access to its /proc entries) still makes
        // the port a listener: its connections are incoming, not outgoing
        // ones to a client's ephemeral port.
        auto key = listener_key(netns, s.family, s.local.data(), s.local_port);
        if (owner == owners.end()) {
            listeners_.try_emplace(key, kUnknownProcess);
            return;
        }
        listeners_.set(key, owner->second.comm);
        if (tracer_) {
            dg_listener listener{};
            listener.owner = to_bpf_process(owner->second);
            listener.tgid = static_cast<uint32_t>(owner->second.pid);
            (void)tracer_->seed_listener(key, listener);
        }
    }

    Status seed_connection(uint32_t netns, const TcpSocket& s, PortRange ephemeral,
                           const std::unordered_map<uint64_t, ProcessIdentity>& owners, uint64_t now_ns) {
        dg_sock_info info{};
        // Direction from "the local port is a listener", not from port
        // numbers. A connection accepted on a listener that has closed since
        // (a server draining after closing its listening socket) has none;
        // then, and only then, the ports decide: a local port outside the
        // namespace's ephemeral range with the peer's inside it is a
        // server's. Anything else stays outgoing, as the connecting side
        // most often is; taking it as incoming would make a service of
        // the local, usually ephemeral, port.
        const std::string* listener = listeners_.find(netns, s.family, s.local.data(), s.local_port);
        bool incoming = listener != nullptr ||
                        (!ephemeral.contains(s.local_port) && ephemeral.contains(s.remote_port));
        info.edge.direction = incoming ? DG_DIR_IN : DG_DIR_OUT;
        info.edge.service_port = incoming ? s.local_port : s.remote_port;
        info.edge.netns_ino = netns;
        info.edge.family = static_cast<uint8_t>(s.family);
        std::memcpy(info.edge.local_addr, s.local.data(), 16);
        std::memcpy(info.edge.remote_addr, s.remote.data(), 16);
        if (auto owner = owners.find(s.inode); owner != owners.end()) {
            info.edge.process = to_bpf_process(owner->second);
        } else if (listener) {
            std::strncpy(info.edge.process.comm, listener->c_str(), DG_COMM_LEN - 1);
        }
        info.start = now_ns;
        info.seeded = 1;
        info.state = DG_SOCK_OPEN;
        if (conntrack_edges_) {
            if (conntrack_edges_->seed_open(netns, s, incoming, info.edge.process)) {
                open_[identity_of_known(info.edge)] += 1;
            }
            return ok_status();
        }
        auto seeded = tracer_->seed_socket(s.cookie, info);
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

    // An accept with no name in the kernel came through a listener the
    // programs do not hold: one from before tracing not yet seeded, or one
    // left on a port that others shared (SO_REUSEPORT) and closed, which
    // took the programs' entry with them. Named from a sock_diag listing of
    // the listeners, taken at most once per flush: the table from an
    // earlier listing may name a server that has gone since.
    EdgeIdentity identity(const dg_edge_key& key, bool& listeners_refreshed) {
        EdgeIdentity e = identity_of_known(key);
        if (!e.process.empty()) return e;
        if (key.direction != DG_DIR_IN) {
            e.process = kUnknownProcess;
            return e;
        }
        if (!listeners_refreshed) {
            listeners_refreshed = true;
            refresh_listeners();
        }
        const std::string* found = listeners_.find(key.netns_ino, key.family, key.local_addr, key.service_port);
        e.process = found ? *found : kUnknownProcess;
        return e;
    }

    // Replaces the table with the listeners open now (and gives the programs
    // back an entry they lost); an unreadable namespace keeps the old table.
    void refresh_listeners() {
        auto owners = socket_owners();
        auto before = std::move(listeners_);
        listeners_.clear();
        auto listed = for_each_netns([&](uint32_t netns) -> Status {
            auto sockets = dump_tcp_sockets(1u << TCP_LISTEN);
            if (!sockets) return sockets.error();
            for (const auto& s : *sockets) remember_listener(netns, s, owners);
            return ok_status();
        });
        if (!listed) listeners_ = std::move(before);
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

    // One conntrack subscription per traced namespace, and the translated
    // flows open in it, by conntrack id. `netns_fd` keeps a way into the
    // namespace for sock_diag lookups: the /proc/PID path it was found by
    // dies with that process.
    struct ConntrackWatch {
        uint32_t netns;
        UniqueFd netns_fd;
        ConntrackEvents events;
        std::map<uint64_t, NatTranslation> open_flows;
    };

    // Runs `work` inside the watch's namespace. Should that fail, the work
    // is skipped: in another namespace its lookups would find other sockets.
    void in_namespace(const ConntrackWatch& w, const std::function<void()>& work) const {
        if (w.netns == own_netns_) return work();
        auto entered = in_netns("/proc/self/fd/" + std::to_string(w.netns_fd.get()), [&] {
            work();
            return ok_status();
        });
        if (!entered && options_.verbose) {
            std::fprintf(stderr, "depgraph-agent: netns %u: %s\n", w.netns, entered.error().message.c_str());
        }
    }

    static NatTranslation translation_of(uint32_t netns, const ConntrackFlow& flow) {
        return NatTranslation{netns,
                              format_address(flow.family, flow.orig_src.data()),
                              format_address(flow.family, flow.reply_dst.data()),
                              format_address(flow.family, flow.orig_dst.data()),
                              flow.orig_dport,
                              format_address(flow.family, flow.reply_src.data()),
                              flow.reply_sport};
    }

    void note_flow(ConntrackWatch& w, const ConntrackFlow& flow) {
        if (!flow.dnat() && !flow.snat()) return;  // no NAT, nothing to remember
        if (flow.destroyed) {
            w.open_flows.erase(flow.id);
            return;
        }
        auto t = translation_of(w.netns, flow);
        if (w.open_flows.emplace(flow.id, t).second) pending_flows_[t]++;
    }

    // With --source conntrack, a namespace where no rule uses conntrack
    // yields no edges at all: say so once, rather than record nothing.
    void check_tracking(uint32_t netns, std::vector<ConntrackFlow>& table) {
        if (!table.empty()) return;
        auto tracks = conntrack_tracks_connections();
        if (!tracks) {
            if (options_.verbose) {
                std::fprintf(stderr, "depgraph-agent: netns %u: cannot tell whether conntrack tracks connections: %s\n",
                             netns, tracks.error().message.c_str());
            }
            return;
        }
        if (!*tracks) {
            std::fprintf(stderr, "depgraph-agent: netns %u: conntrack tracks no connections here, so --source "
                                 "conntrack records no edges from it: add a firewall rule that uses conntrack "
                                 "(e.g. an nft rule with `ct state established,related accept`)\n", netns);
            return;
        }
        // The probe's own flow is in the table now: taken as one that was
        // open before the agent, it is never counted.
        if (auto again = dump_conntrack(); again) table = std::move(*again);
    }

    // Subscribes first, then dumps, so that no flow falls between the two;
    // a flow seen by both is one entry (by id). Without conntrack over
    // netlink, NAT is not followed; with --source conntrack that is an error.
    Status watch_conntrack() {
        if (!conntrack_available_) return ok_status();
        std::vector<uint32_t> live;
        std::optional<Error> unavailable;
        (void)for_each_netns([&](uint32_t netns) -> Status {
            live.push_back(netns);
            for (const auto& w : ct_watches_) {
                if (w.netns == netns) return ok_status();
            }
            ConntrackEvents::Options ct_options;
            ct_options.receive_buffer_bytes = options_.netlink_buffer_bytes;
            auto events = ConntrackEvents::open(ct_options);
            if (!events) return note_conntrack_unavailable(events.error(), unavailable);
            auto table = dump_conntrack();
            if (!table) return note_conntrack_unavailable(table.error(), unavailable);
            UniqueFd netns_fd(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
            if (!netns_fd.valid()) return errno_error("cannot open network namespace " + std::to_string(netns), errno);
            if (conntrack_edges_) {
                check_tracking(netns, *table);
                conntrack_edges_->note_table_at_start(netns, *table);
            }
            ConntrackWatch w{netns, std::move(netns_fd), std::move(*events), {}};
            for (const auto& flow : *table) {
                if (flow.dnat() || flow.snat()) w.open_flows.emplace(flow.id, translation_of(netns, flow));
            }
            ct_watches_.push_back(std::move(w));
            return ok_status();
        });
        if (unavailable && conntrack_edges_) return Error{"--source conntrack: " + unavailable->message};
        // A namespace that is gone: its socket would keep it alive.
        for (auto it = ct_watches_.begin(); it != ct_watches_.end();) {
            bool gone = std::find(live.begin(), live.end(), it->netns) == live.end();
            if (gone) {
                reported_enobufs_ -= it->events.enobufs();
                if (conntrack_edges_) conntrack_edges_->forget(it->netns);
            }
            it = gone ? ct_watches_.erase(it) : std::next(it);
        }
        return ok_status();
    }

    Status note_conntrack_unavailable(const Error& e, std::optional<Error>& unavailable) {
        if (is_conntrack_unavailable(e)) {
            conntrack_available_ = false;
            unavailable = e;
            // With --source conntrack this is the run's one-line error instead.
            if (!conntrack_edges_) {
                std::fprintf(stderr, "depgraph-agent: no conntrack over netlink in this kernel (%s): "
                                     "NAT will not be followed\n", e.message.c_str());
            }
        }
        return e;
    }

    std::map<NatTranslation, NatCounts> take_translations() {
        std::map<NatTranslation, NatCounts> out;
        for (const auto& w : ct_watches_) {
            for (const auto& [id, t] : w.open_flows) out[t].open++;
        }
        for (const auto& [t, n] : pending_flows_) out[t].flows += n;
        pending_flows_.clear();
        return out;
    }

    AgentOptions options_;
    std::optional<Tracer> tracer_;                   // --source ebpf
    std::optional<ConntrackEdgeSource> conntrack_edges_;  // --source conntrack
    EdgeStore store_;
    std::string host_;
    uint32_t own_netns_;
    CgroupPaths cgroups_;
    ListenerTable<std::string> listeners_;
    std::map<EdgeIdentity, int64_t> open_;  // open connections per edge, across flushes
    std::vector<EdgeIdentity> was_open_;    // open at an earlier run's last flush; until this run's first
    LossCounters reported_losses_{};
    std::vector<HostAddress> addresses_;  // as last read
    std::vector<ConntrackWatch> ct_watches_;
    bool conntrack_available_ = true;
    std::map<NatTranslation, uint64_t> pending_flows_;  // translated flows begun since the last flush
    uint64_t reported_enobufs_ = 0;
    // About 16 flushes' worth of full edge maps.
    static constexpr size_t kMaxUnwrittenRows = size_t{16} * 16384;
    std::vector<Flush> unwritten_;  // oldest first: what a locked or full database has not taken yet
    Written unwritable_ = Written::yes;  // why the last write failed, as said on stderr; yes: it did not
    int64_t last_tick_ = 0;              // of the last scheduled flush
    bool said_late_ = false;
    std::vector<NetnsRef> spaces_;            // the traced namespaces, as listed at this flush
    mutable std::set<uint32_t> unreachable_;  // of those, the ones that could not be entered
    mutable std::set<uint32_t> warned_netns_;
};

// Waits until the next multiple of `interval` on the UTC clock, so flushes
// fall on bucket boundaries, reading conntrack events meanwhile. Returns the
// scheduled tick, or 0 when a stop signal arrived.
int64_t wait_for_tick(Agent& agent, int64_t interval, int signal_fd) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t tick = (now.tv_sec / interval + 1) * interval;
    for (;;) {
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t left_ms = (tick - now.tv_sec) * 1000 - now.tv_nsec / 1000000;
        if (left_ms <= 0) return tick;
        std::vector<pollfd> fds{{signal_fd, POLLIN, 0}};
        for (int fd : agent.event_fds()) fds.push_back({fd, POLLIN, 0});
        if (poll(fds.data(), fds.size(), static_cast<int>(left_ms)) <= 0) continue;
        if (fds[0].revents & POLLIN) return 0;
        agent.read_conntrack_events();
    }
}

}  // namespace

sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
    return set;
}

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
    EdgeSources sources;
    if (options.source == EdgeSourceKind::ebpf) {
        auto tracer = Tracer::start(options.scope == Scope::netns ? *own_netns : 0);
        if (!tracer) return tracer.error();  // which says whether --source conntrack would do
        sources.tracer.emplace(std::move(*tracer));
    } else {
        // Checked before the database is created, as the BPF load is.
        if (auto events = ConntrackEvents::open(); !events) return Error{"--source conntrack: " + events.error().message};
        sources.conntrack.emplace();
    }
    auto store = EdgeStore::open(options.db_path);
    if (!store) return store.error();

    Agent agent(options, std::move(sources), std::move(*store), *host, *own_netns);
    if (auto s = agent.start(unix_now()); !s) return s;
    // Said once tracing works, so that a failure stays one line. A warning, not
    // a refusal: one --scope netns agent on a machine is fine.
    if (options.scope == Scope::netns && options.hostname.empty() && shares_init_uts()) {
        std::fprintf(stderr, "depgraph-agent: warning: --scope netns without --hostname records this machine's "
                             "host name, \"%s\": agents in its other network namespaces record the same name and "
                             "their edges merge into one host; give each one --hostname NAME\n", host->c_str());
    }
    if (options.verbose) std::fprintf(stderr, "depgraph-agent: tracing, writing to %s\n", options.db_path.c_str());
    if (options.once) return agent.stop(unix_now());

    sigset_t stopping = stop_signals();
    UniqueFd signal_fd(signalfd(-1, &stopping, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signal_fd.valid()) return errno_error("cannot watch for SIGINT, SIGTERM and SIGHUP", errno);
    for (;;) {
        int64_t tick = wait_for_tick(agent, options.flush_interval_s, signal_fd.get());
        if (tick == 0) return agent.stop(unix_now());
        if (auto s = agent.flush(tick); !s) return s;
    }
}

}  // namespace depgraph
