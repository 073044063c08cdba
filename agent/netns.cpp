#include "agent/netns.hpp"

#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "agent/process_table.hpp"
#include "common/address.hpp"
#include "common/unique_fd.hpp"

namespace depgraph {

namespace {

constexpr const char* kOwnNetns = "/proc/thread-self/ns/net";

using IfAddrs = std::unique_ptr<ifaddrs, Free<freeifaddrs>>;

Result<UniqueFd> open_netns(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return errno_error("failed to open network namespace " + path, errno);
    return fd;
}

Status enter_netns(const UniqueFd& fd, const std::string& path) {
    if (::setns(fd.get(), CLONE_NEWNET) != 0) {
        return errno_error("failed to enter network namespace " + path + " (is the agent root?)", errno);
    }
    return ok_status();
}

bool is_ipv6_link_local(const sockaddr* sa) {
    if (sa->sa_family != AF_INET6) return false;
    const auto* a = &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    return a->s6_addr[0] == 0xfe && (a->s6_addr[1] & 0xc0) == 0x80;
}

const uint8_t* address_bytes(const sockaddr* sa) {
    if (sa->sa_family == AF_INET) return reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(sa)->sin_addr);
    return reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr.s6_addr;
}

}  // namespace

Result<uint32_t> current_netns_inode() {
    struct stat st {};
    if (::stat(kOwnNetns, &st) != 0) return errno_error(std::string("failed to stat ") + kOwnNetns, errno);
    return static_cast<uint32_t>(st.st_ino);
}

std::vector<NetnsRef> all_netns() {
    // Enough to outlive a few short-lived processes; the rest of a busy
    // namespace's thousands would only cost memory.
    constexpr size_t kPathsPerNetns = 4;
    std::vector<NetnsRef> found;
    std::map<uint32_t, size_t> index;  // inode -> its place in `found`
    for (pid_t pid : list_processes()) {
        std::string path = "/proc/" + std::to_string(pid) + "/ns/net";
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) continue;  // exited, or a kernel thread's ns we may not read
        auto inode = static_cast<uint32_t>(st.st_ino);
        auto [at, added] = index.emplace(inode, found.size());
        if (added) found.push_back({inode, {}});
        auto& paths = found[at->second].paths;
        if (paths.size() < kPathsPerNetns) paths.push_back(std::move(path));
    }
    return found;
}

Status in_netns(const std::string& path, const std::function<Status()>& work) {
    auto saved = open_netns(kOwnNetns);
    if (!saved) return saved.error();
    auto target = open_netns(path);
    if (!target) return target.error();
    if (auto entered = enter_netns(*target, path); !entered) return entered;

    auto restore = [&]() -> Status {
        if (::setns(saved->get(), CLONE_NEWNET) != 0) {
            return errno_error("failed to return to the original network namespace from " + path, errno);
        }
        return ok_status();
    };
    Status result = ok_status();
    try {
        result = work();
    } catch (...) {
        // Going on in the wrong namespace would silently attribute every
        // later socket to the wrong host: better to stop the process.
        if (!restore()) std::terminate();
        throw;
    }
    if (auto restored = restore(); !restored) {
        if (!result) return Error{result.error().message + "; also " + restored.error().message};
        return restored;
    }
    return result;
}

Result<Entered> in_netns(const NetnsRef& ns, const std::function<Status()>& work) {
    for (const auto& path : ns.paths) {
        // Held open, the namespace cannot go while `work` runs in it.
        UniqueFd target(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!target.valid()) {
            if (errno == ENOENT || errno == ESRCH) continue;  // that process exited
            return errno_error("failed to open network namespace " + path, errno);
        }
        if (auto s = in_netns("/proc/self/fd/" + std::to_string(target.get()), work); !s) return s.error();
        return Entered::yes;
    }
    return Entered::gone;
}

Result<std::vector<std::string>> try_local_addresses() {
    ifaddrs* raw = nullptr;
    if (::getifaddrs(&raw) != 0) return errno_error("failed to list interface addresses", errno);
    IfAddrs list(raw);

    std::vector<std::string> addresses;
    for (const ifaddrs* ifa = list.get(); ifa != nullptr; ifa = ifa->ifa_next) {
        const sockaddr* sa = ifa->ifa_addr;
        if (sa == nullptr || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) continue;
        if (is_ipv6_link_local(sa)) continue;
        addresses.push_back(format_address(sa->sa_family, address_bytes(sa)));
    }
    std::sort(addresses.begin(), addresses.end());
    addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
    return addresses;
}

std::vector<std::string> local_addresses() {
    auto addresses = try_local_addresses();
    if (!addresses) return {};
    return std::move(addresses).value();
}

PortRange local_port_range() {
    // A thread that entered another namespace reads that namespace's value:
    // /proc/sys/net follows the opening thread's namespace.
    std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
    unsigned first = 0, last = 0;
    if (!(in >> first >> last) || first > last || last > 65535) return PortRange{};
    return PortRange{static_cast<uint16_t>(first), static_cast<uint16_t>(last)};
}

}  // namespace depgraph
