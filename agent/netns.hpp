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
// each with paths that setns() can open: a few, since a process may exit
// before its namespace is entered while others in it live on.
struct NetnsRef {
    uint32_t inode = 0;
    std::vector<std::string> paths;  // e.g. /proc/1234/ns/net
};
std::vector<NetnsRef> all_netns();

// Runs `work` with the calling thread moved into the namespace at `path`,
// and moves it back afterwards, also when `work` fails.
Status in_netns(const std::string& path, const std::function<Status()>& work);

// The same through the first of the namespace's paths whose process is still
// there; `gone` when none is: every process listed in it has exited, and with
// them, as a rule, the namespace. That is no failure: nothing is left to read.
enum class Entered { yes, gone };
Result<Entered> in_netns(const NetnsRef& ns, const std::function<Status()>& work);

// The addresses configured on this namespace's interfaces (getifaddrs), as
// store text (common/address.hpp), loopback included, IPv6 link-local (fe80::/10)
// left out: no peer can name it without an interface. Sorted, without duplicates.
std::vector<std::string> local_addresses();
// The same, but a failure of getifaddrs() is an error rather than an empty
// list, which would read as "this host has no addresses".
Result<std::vector<std::string>> try_local_addresses();

// The calling thread's namespace's range of ports for connect() to choose
// from (net.ipv4.ip_local_port_range, which covers IPv6 too); the kernel's
// default, 32768-60999, when it cannot be read.
struct PortRange {
    uint16_t first = 32768;
    uint16_t last = 60999;
    bool contains(uint16_t port) const { return first <= port && port <= last; }
};
PortRange local_port_range();

}  // namespace depgraph
