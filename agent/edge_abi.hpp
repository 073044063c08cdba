// The C++ view of bpf/depgraph.h: pins the layout the BPF programs share
// with the agent, so a change on one side that the other misses fails to compile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "depgraph.h"

namespace depgraph {

static_assert(sizeof(dg_process) == 24);
static_assert(offsetof(dg_process, cgroup_id) == 16);
static_assert(sizeof(dg_edge_key) == 64);
static_assert(offsetof(dg_edge_key, remote_addr) == 16);
static_assert(offsetof(dg_edge_key, netns_ino) == 32);
static_assert(offsetof(dg_edge_key, service_port) == 36);
static_assert(offsetof(dg_edge_key, direction) == 38);
static_assert(offsetof(dg_edge_key, family) == 39);
static_assert(offsetof(dg_edge_key, process) == 40);
static_assert(sizeof(dg_edge_counters) == 64);
static_assert(sizeof(dg_sock_info) == 80);
static_assert(offsetof(dg_sock_info, start) == 64);
static_assert(offsetof(dg_sock_info, state) == 72);
static_assert(offsetof(dg_sock_info, seeded) == 73);
static_assert(sizeof(dg_edge_cache_entry) == 136);
static_assert(offsetof(dg_edge_cache_entry, counters) == 64);
static_assert(sizeof(dg_sock_slot) == 96);
static_assert(offsetof(dg_sock_slot, cookie) == 8);
static_assert(offsetof(dg_sock_slot, info) == 16);
static_assert(sizeof(dg_listener_key) == 24);
static_assert(offsetof(dg_listener_key, netns_ino) == 16);
static_assert(offsetof(dg_listener_key, family) == 22);
static_assert(sizeof(dg_listener) == 32);
static_assert(offsetof(dg_listener, tgid) == 24);

// Edge keys in a std::map: bytewise, as keys are made zeroed whole and have no padding.
struct EdgeKeyLess {
    bool operator()(const dg_edge_key& a, const dg_edge_key& b) const { return std::memcmp(&a, &b, sizeof a) < 0; }
};

inline dg_edge_counters& operator+=(dg_edge_counters& to, const dg_edge_counters& from) {
    dg_add_counters(&to, &from);
    return to;
}

// The names the store uses for the loss counters, indexed by enum dg_loss.
inline constexpr const char* kLossNames[DG_LOSS_COUNT] = {
    "edge_map_full",
    "sock_map_full",
    "listener_map_full",
    "close_of_unknown_socket",
    "program_skipped_nested",
    "edge_map_full_closes",
};

}  // namespace depgraph
