// Listeners by network namespace, family, address and port, as the BPF
// programs key them, found for an accepted connection as the programs find
// them (listener_of in depgraph.bpf.c): the one on the connection's local
// address, else the wildcard's, else for IPv4 a dual-stack one on ::. Two
// programs on one port on different addresses (an admin server on
// 127.0.0.1:80 beside the public one) each keep their own accepts.
#pragma once

#include <cstdint>
#include <cstring>
#include <sys/socket.h>
#include <map>

#include "agent/edge_abi.hpp"

namespace depgraph {

inline dg_listener_key listener_key(uint32_t netns, int family, const uint8_t* addr, uint16_t port) {
    dg_listener_key key{};
    std::memcpy(key.addr, addr, sizeof key.addr);
    key.netns_ino = netns;
    key.port = port;
    key.family = static_cast<uint8_t>(family);
    return key;
}

template <typename Value>
class ListenerTable {
public:
    // The first value for a key stays (try_emplace) or the last one does (set).
    void try_emplace(const dg_listener_key& key, const Value& value) { listeners_.try_emplace(key, value); }
    void set(const dg_listener_key& key, const Value& value) { listeners_[key] = value; }
    void clear() { listeners_.clear(); }

    // Null when nothing listens on the port there.
    const Value* find(uint32_t netns, int family, const uint8_t* addr, uint16_t port) const {
        static const uint8_t kWildcard[16] = {};
        for (auto key : {listener_key(netns, family, addr, port), listener_key(netns, family, kWildcard, port)}) {
            if (auto found = listeners_.find(key); found != listeners_.end()) return &found->second;
        }
        if (family != AF_INET) return nullptr;
        auto dual_stack = listeners_.find(listener_key(netns, AF_INET6, kWildcard, port));
        return dual_stack == listeners_.end() ? nullptr : &dual_stack->second;
    }

private:
    // The keys' padding is zero: compared as bytes.
    struct Order {
        bool operator()(const dg_listener_key& a, const dg_listener_key& b) const {
            return std::memcmp(&a, &b, sizeof a) < 0;
        }
    };
    std::map<dg_listener_key, Value, Order> listeners_;
};

}  // namespace depgraph
