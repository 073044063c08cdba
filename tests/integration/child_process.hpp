// Processes that integration tests start inside a test network namespace:
// an agent binary, or a forked function playing a server or a client.
// The destructor stops and reaps the process, also when a test fails.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace depgraph::test {

class ChildProcess {
public:
    // Forks; the child enters the network namespace at `netns_path`, names
    // itself `name` (what the kernel reports as its comm), and exits with
    // the value `body` returns.
    static ChildProcess fork_in(const std::string& netns_path, const std::string& name,
                                const std::function<int()>& body);
    // Forks and execs `argv` inside the network namespace (the program keeps its own name).
    static ChildProcess exec_in(const std::string& netns_path, const std::vector<std::string>& argv);

    ChildProcess(ChildProcess&& o) noexcept;
    ChildProcess& operator=(ChildProcess&&) = delete;
    ~ChildProcess();

    pid_t pid() const { return pid_; }
    // Sends `sig` and waits; returns the exit status (-1 if killed by a signal).
    int stop(int sig);
    // Waits up to `timeout_ms` for a normal exit; -1 on timeout or signal.
    int wait_exit(int timeout_ms);

private:
    explicit ChildProcess(pid_t pid) : pid_(pid) {}
    pid_t pid_ = -1;
};

// Runs a command to completion, optionally inside a network namespace and
// as another user, and collects what it wrote. Like a forked child, the
// command is killed when the test process dies; one still running after
// `timeout_ms` is killed, and `err` ends with a line that says so.
struct CommandOutput {
    int exit_code = -1;  // -1: killed by a signal, or timed out
    bool timed_out = false;
    std::string out;
    std::string err;
};
constexpr int kCommandTimeoutMs = 30000;
CommandOutput run_captured(const std::vector<std::string>& argv, const std::string& netns_path = "",
                           uid_t uid = 0, int timeout_ms = kCommandTimeoutMs);

// A pipe between a test and its child: "go", "done", or a number the child
// reports ("I made 1,234 connections").
class Signal {
public:
    Signal();
    ~Signal();
    void send(int64_t value = 0);
    // false when nothing arrived within `timeout_ms`.
    bool wait(int timeout_ms) { return receive(timeout_ms).has_value(); }
    // The value sent; nullopt when nothing arrived within `timeout_ms`.
    std::optional<int64_t> receive(int timeout_ms);

private:
    int fds_[2] = {-1, -1};
};

}  // namespace depgraph::test
