// The kernel side's lifecycle: load and attach the BPF programs, seed them
// with what sock_diag saw, drain the edge counters.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <unordered_set>
#include <vector>

#include "agent/edge_abi.hpp"
#include "common/result.hpp"

struct depgraph_bpf;

namespace depgraph {

struct EdgeSample {
    dg_edge_key key;
    dg_edge_counters counters;
};

using LossCounters = std::array<uint64_t, DG_LOSS_COUNT>;

class Tracer {
public:
    // netns_filter: 0 traces every network namespace, else only that inode.
    static Result<Tracer> start(uint32_t netns_filter);

    Tracer(Tracer&&) noexcept;
    Tracer& operator=(Tracer&&) noexcept;
    ~Tracer();

    // Every edge counted since the last drain, each exactly once.
    Result<std::vector<EdgeSample>> drain();
    // Totals since start, summed over CPUs.
    Result<LossCounters> losses() const;
    // The connections open now, per edge, as the programs hold their
    // sockets: every one they saw open or were told of, and have not seen
    // close. Unlike connects + accepts - closes, this is not thrown off for
    // good by a close whose count was lost (a full edge map).
    Result<std::vector<std::pair<dg_edge_key, int64_t>>> open_connections() const;

    // A listener that existed before tracing; one the programs saw themselves wins.
    Status seed_listener(const dg_listener_key& key, const dg_listener& listener);
    // Reads which sockets the programs keep in slots. Call it after taking
    // the sock_diag dumps and before seeding their connections.
    Status note_traced_sockets();
    // A connection that was open before tracing. Returns false when the
    // programs already know the socket (it opened after attach), so it is
    // not counted twice.
    Result<bool> seed_socket(uint64_t cookie, const dg_sock_info& info);
    // After the last seed_socket: the programs stop keeping cookies in the
    // slots and leaving those of closed sockets behind; the next drain
    // removes the latter.
    void end_seeding();

private:
    struct Skeleton;
    explicit Tracer(std::unique_ptr<Skeleton> skel);
    std::unique_ptr<Skeleton> skel_;
    int active_ = 0;  // which of the two edge maps (and caches) the programs write to
    std::unordered_set<uint64_t> traced_cookies_;  // of the sockets in slots, from note_traced_sockets to end_seeding
    bool closed_while_seeding_left_ = false;       // from end_seeding to the next drain
    Status forget_closed_while_seeding();
};

// Routes libbpf's own messages to stderr only when verbose.
void set_libbpf_verbose(bool verbose);

}  // namespace depgraph
