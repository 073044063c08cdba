// Which process owns a socket: socket inode -> /proc/PID/fd. Named the way
// the BPF side names processes: the thread-group leader's comm, plus the
// cgroup v2 path, never a pid.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.hpp"

namespace depgraph {

struct ProcessIdentity {
    std::string comm;    // /proc/TGID/comm: the thread-group leader's name, at most 15 chars
    std::string cgroup;  // cgroup v2 path relative to the cgroup2 mount, "" for the root
    uint64_t cgroup_id = 0;  // cgroup v2 id (the directory's inode), as bpf_get_current_cgroup_id() returns
    // The thread-group id where the socket was found: the programs rename its
    // listeners when it execs, and the conntrack source looks for its next
    // sockets there. Never part of an edge.
    pid_t pid = 0;
};

// Scans /proc once: every socket inode held open by any process.
// Processes that vanish during the scan are skipped, not errors.
std::unordered_map<uint64_t, ProcessIdentity> socket_owners();
// The socket inodes one process holds open; empty when it has none or has
// exited. Far cheaper than socket_owners() for a caller that knows who is
// likely to own the socket it looks for.
std::vector<uint64_t> socket_inodes_of(pid_t pid);

// cgroup v2 id <-> path. The mount is found from /proc/self/mountinfo
// (pure v2: /sys/fs/cgroup; hybrid: /sys/fs/cgroup/unified).
class CgroupPaths {
public:
    // Path relative to the cgroup2 mount ("" for the root, "/system.slice/nginx.service"),
    // or "" when the id is unknown (the cgroup is gone). Caches lookups.
    std::string path_of(uint64_t cgroup_id);
    // 0 when there is no cgroup2 mount or no such cgroup.
    uint64_t id_of(const std::string& path);

private:
    std::string mount_;
    bool mount_known_ = false;
    std::unordered_map<uint64_t, std::string> cache_;
    const std::string& mount();
};

// The thread-group ids in /proc (its numeric entries), in no promised order.
std::vector<pid_t> list_processes();

// Pure parsers of /proc text, exposed for unit tests.

// "socket:[12345]" -> 12345; anything else (pipes, files, anon inodes) -> nullopt.
std::optional<uint64_t> parse_socket_link(std::string_view link);

// The path from /proc/PID/cgroup's "0::" line, "" for the root ("0::/");
// nullopt when there is no such line (no cgroup v2 hierarchy).
std::optional<std::string> parse_cgroup_v2_path(std::string_view proc_cgroup);

// The mount point of the first cgroup2 filesystem in /proc/self/mountinfo
// text, with octal escapes (\040 for a space) decoded; nullopt if none.
std::optional<std::string> parse_cgroup2_mount(std::string_view mountinfo);

}  // namespace depgraph
