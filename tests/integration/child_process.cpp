#include "tests/integration/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include "tests/integration/netns_fixture.hpp"

namespace depgraph::test {
namespace {

void enter_netns_or_die(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        std::perror(("child: cannot enter " + path).c_str());
        _exit(126);
    }
    ::close(fd);
}

// In a forked child: SIGKILL when the test process dies (a crash, meson's
// timeout, kill -9), so no server, agent or command outlives it. `parent`
// is the test's pid from before the fork: when it is gone already, the
// signal would never come. Call it again after a change of user, which
// clears the setting.
void die_with_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
}

}  // namespace

CommandOutput run_captured(const std::vector<std::string>& argv, const std::string& netns_path, uid_t uid,
                           int timeout_ms) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    std::fflush(nullptr);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        die_with_parent(parent);
        dup2(out[1], 1);
        dup2(err[1], 2);
        if (!netns_path.empty()) enter_netns_or_die(netns_path);
        if (uid != 0) {
            if (setgid(uid) != 0 || setuid(uid) != 0) _exit(125);
            die_with_parent(parent);
        }
        execv(args[0], args.data());
        std::perror(("cannot exec " + argv[0]).c_str());
        _exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    CommandOutput result;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    // Both pipes are read together, so a child that fills one cannot block.
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_pipes = 2;
    while (open_pipes > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            result.timed_out = true;
            break;
        }
        int ready = poll(fds, 2, static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR) break;
        for (int i = 0; i < 2 && ready > 0; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                sinks[i]->append(buf, static_cast<size_t>(n));
            } else {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                open_pipes--;
            }
        }
    }
    // On a timeout, whatever it started may still hold the pipes: stop reading.
    for (auto& p : fds) {
        if (p.fd >= 0) ::close(p.fd);
    }
    if (result.timed_out) ::kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exit_code = !result.timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (result.timed_out) {
        result.err += "\nrun_captured: `" + describe_command(argv) + "` did not finish within " +
                      std::to_string(timeout_ms) + " ms and was killed\n";
    }
    return result;
}

ChildProcess ChildProcess::fork_in(const std::string& netns_path, const std::string& name,
                                   const std::function<int()>& body) {
    std::fflush(nullptr);
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        die_with_parent(parent);
        enter_netns_or_die(netns_path);
        if (!name.empty()) prctl(PR_SET_NAME, name.c_str());
        int rc = body();
        std::fflush(nullptr);
        _exit(rc);
    }
    return ChildProcess(pid);
}

ChildProcess ChildProcess::exec_in(const std::string& netns_path, const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    return fork_in(netns_path, "", [&] {
        execv(args[0], args.data());
        std::perror(("child: cannot exec " + argv[0]).c_str());
        return 127;
    });
}

ChildProcess::ChildProcess(ChildProcess&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }

ChildProcess::~ChildProcess() {
    if (pid_ > 0) stop(SIGKILL);
}

int ChildProcess::wait_exit(int timeout_ms) {
    if (pid_ <= 0) return -1;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            pid_ = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        if (std::chrono::steady_clock::now() > deadline) return -1;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

int ChildProcess::stop(int sig) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, sig);
    int rc = wait_exit(10000);
    if (pid_ > 0) {  // did not stop in time
        ::kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    return rc;
}

Signal::Signal() {
    if (pipe2(fds_, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
}

Signal::~Signal() {
    ::close(fds_[0]);
    ::close(fds_[1]);
}

// One message is one write of 8 bytes: a pipe never splits a write that
// small (PIPE_BUF), so a read gets a message whole.
void Signal::send(int64_t value) {
    if (::write(fds_[1], &value, sizeof value) != sizeof value) std::perror("signal write");
}

std::optional<int64_t> Signal::receive(int timeout_ms) {
    pollfd p{fds_[0], POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return std::nullopt;
    int64_t value = 0;
    if (::read(fds_[0], &value, sizeof value) != sizeof value) return std::nullopt;
    return value;
}

}  // namespace depgraph::test
