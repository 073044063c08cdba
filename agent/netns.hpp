// Network namespaces: which one we are in, all of them on the machine, and
// running work inside another one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace depgraph {

// Inode of the calling thread's network namespace (/proc/thread-self/ns/net).
Result<uint32_t> current_netns_inode();

// Every distinct network namespace that some process is in (from /proc/*/ns/net),
// each with a path that setns() can open.
struct NetnsRef {
    uint32_t inode = 0;
    std::string path;  // e.g. /proc/1234/ns/net
};
std::vector<NetnsRef> all_netns();

// Runs `work` with the calling thread moved into the namespace at `path`,
// and moves it back afterwards, also when `work` fails.
Status in_netns(const std::string& path, const std::function<Status()>& work);

// The addresses configured on this namespace's interfaces (getifaddrs), as
// store text (common/address.hpp), loopback included, IPv6 link-local (fe80::/10)
// left out: no peer can name it without an interface. Sorted, without duplicates.
std::vector<std::string> local_addresses();
// The same, but a failure of getifaddrs() is an error rather than an empty
// list, which would read as "this host has no addresses".
Result<std::vector<std::string>> try_local_addresses();

}  // namespace depgraph
