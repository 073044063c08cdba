// Network namespaces and cgroups for integration tests: each test makes the
// "hosts" it needs, with lo up and veth links on 198.18.0.0/15, and the
// cgroups its "containers" run in; they are removed whatever happens to the
// test (see TestNetns).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace depgraph::test {

// meson reads this exit code as "skipped".
constexpr int kSkipExitCode = 77;

// For the integration tests' main() (root_main.cpp): whether it may run
// (root); when not, it says why on stderr and main returns kSkipExitCode.
bool can_run_as_root(const char* test_name);

// Runs a program (found in PATH) with these arguments and waits for it; no
// shell. Throws std::runtime_error naming the command when it fails.
void run_command(const std::vector<std::string>& argv);

// The command line, as an error message shows it.
std::string describe_command(const std::vector<std::string>& argv);

// An address for bind()/connect(): "198.18.0.1" or "::1" (IPv6 when the text
// has a colon). Throws std::invalid_argument on text that is neither.
struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;
    int family() const { return storage.ss_family; }
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};
SocketAddress socket_address(const std::string& addr, uint16_t port);

// A named network namespace, `ip netns add depgraph-test-<pid>-<n>`, with lo
// up. It is removed (as `ip netns delete` does) by the destructor, so also
// when a REQUIRE throws; by a signal handler on SIGINT/SIGTERM/SIGABRT/SIGSEGV
// (meson's timeout, a crash); and, for SIGKILL, by the next test run, which
// removes the namespaces of test processes that no longer exist.
// Sockets opened inside keep the namespace alive until they are closed, but
// its name is gone, so `ip netns list` is empty after the test.
class TestNetns {
public:
    TestNetns();
    ~TestNetns();
    TestNetns(const TestNetns&) = delete;
    TestNetns& operator=(const TestNetns&) = delete;

    const std::string& name() const { return name_; }
    // /run/netns/NAME: what setns() and depgraph::in_netns() take.
    std::string path() const;

    // Runs `ip -n NAME args...`, e.g. ip({"route", "add", "default", "dev", "dg0a"}).
    void ip(const std::vector<std::string>& args) const;

    // Runs one nft command inside the namespace, e.g.
    // nft("add rule ip nat output ip daddr 198.18.5.5 dnat to 198.18.0.2").
    // The rules go with the namespace.
    void nft(const std::string& command) const;

    // A veth pair between two namespaces, each end up with its address in
    // CIDR form ("198.18.0.1/24"). Returns the two interface names (a's, b's).
    static std::pair<std::string, std::string> link(TestNetns& a, const std::string& addr_a, TestNetns& b,
                                                    const std::string& addr_b);

private:
    std::string name_;
    int slot_ = -1;  // in the signal handler's table of names to remove
};

// A child of the cgroup v2 root, `depgraph-test-<pid>-<label>`, standing in
// for a systemd unit or a container. It is removed as a TestNetns is: by the
// destructor, by the signal handler, and for SIGKILL by the next test run,
// which also removes the test cgroups of processes that no longer exist;
// each time after killing what still runs in it. Throws std::runtime_error
// when it cannot be made.
class TestCgroup {
public:
    explicit TestCgroup(const std::string& label);
    ~TestCgroup();
    TestCgroup(const TestCgroup&) = delete;
    TestCgroup& operator=(const TestCgroup&) = delete;

    // depgraph-test-<pid>-<label>
    const std::string& name() const { return name_; }
    // As the agent records it: relative to the cgroup2 mount, "/NAME".
    const std::string& path() const { return path_; }
    // Moves the calling process in (call it in the child that should run there).
    void enter() const;

private:
    std::string name_, path_;
    std::string dir_;  // the absolute directory
    int slot_ = -1;
};

}  // namespace depgraph::test
