// The agent's life: attach, snapshot what was already open, then flush the
// kernel's edge counters into the store every interval until told to stop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <signal.h>
#include <string>

#include "common/result.hpp"

namespace depgraph {

enum class Scope { host, netns };

// What the agent builds edges from: the BPF programs (and conntrack for NAT),
// or, where those cannot load, conntrack events and sock_diag snapshots.
enum class EdgeSourceKind { ebpf, conntrack };

struct AgentOptions {
    std::string db_path = "/var/lib/depgraph/depgraph.db";
    int64_t flush_interval_s = 10;
    int64_t bucket_s = 60;
    Scope scope = Scope::host;
    EdgeSourceKind source = EdgeSourceKind::ebpf;
    std::string hostname;  // empty: gethostname()
    bool once = false;
    size_t netlink_buffer_bytes = size_t{8} << 20;  // conntrack events' receive buffer
    bool verbose = false;
};

// The signals that stop the agent: it drains what is still in the kernel,
// writes it and exits 0. SIGHUP too: a closed terminal or ssh session must
// not lose the counts.
sigset_t stop_signals();

// Returns when one of stop_signals() arrives (after a last flush), or after
// one flush with `once`. The caller blocks those signals in every thread first.
Status run_agent(const AgentOptions& options);

}  // namespace depgraph
