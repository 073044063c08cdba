#include "tests/integration/netns_fixture.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <tuple>
#include <stdexcept>
#include <utility>

#include "agent/process_table.hpp"

extern char** environ;

namespace depgraph::test {

namespace {

constexpr const char* kNetnsDir = "/run/netns/";
constexpr const char* kNamePrefix = "depgraph-test-";

// What the signal handler removes: fixed storage, since a handler may not
// allocate. A slot is claimed with `used` after its path is written.
enum class Kind { netns, cgroup };
constexpr size_t kSlots = 64;
constexpr size_t kPathSize = 128;
struct Slot {
    std::atomic<bool> used{false};
    Kind kind = Kind::netns;
    char path[kPathSize] = {};
};
std::array<Slot, kSlots> g_slots;

constexpr std::array<int, 7> kFatalSignals = {SIGINT, SIGTERM, SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
std::array<struct sigaction, kFatalSignals.size()> g_previous{};

// What `ip netns delete` does; only async-signal-safe calls.
bool remove_netns_path(const char* path) {
    (void)umount2(path, MNT_DETACH);  // fails harmlessly if already unmounted
    return unlink(path) == 0 || errno == ENOENT;
}

// Kills what still runs in the cgroup (cgroup.kill, Linux 5.14), then
// removes it. The processes leave it as they die, not at once, so rmdir is
// tried for up to 2 s. Only async-signal-safe calls.
constexpr char kCgroupKill[] = "/cgroup.kill";
bool remove_cgroup_dir(const char* dir) {
    char kill_file[kPathSize + sizeof kCgroupKill];
    size_t n = strnlen(dir, kPathSize - 1);
    memcpy(kill_file, dir, n);
    memcpy(kill_file + n, kCgroupKill, sizeof kCgroupKill);
    int fd = open(kill_file, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, "1", 1);
        (void)close(fd);
    }
    for (int i = 0; i < 200; i++) {
        if (rmdir(dir) == 0 || errno == ENOENT) return true;
        if (errno != EBUSY) return false;
        const timespec ten_ms{0, 10'000'000};
        (void)nanosleep(&ten_ms, nullptr);
    }
    return false;
}

bool remove_slot_path(const Slot& slot) {
    return slot.kind == Kind::netns ? remove_netns_path(slot.path) : remove_cgroup_dir(slot.path);
}

void on_fatal_signal(int sig) {
    for (Slot& slot : g_slots) {
        if (slot.used.load()) (void)remove_slot_path(slot);
    }
    // Hand over to whoever was there before (Catch2 reports the failure,
    // then re-raises with the default action).
    for (size_t i = 0; i < kFatalSignals.size(); ++i) {
        if (kFatalSignals[i] == sig) (void)sigaction(sig, &g_previous[i], nullptr);
    }
    (void)raise(sig);
}

// Called for every namespace and cgroup, not once: Catch2 installs its own handlers
// around each test case and puts back what it found afterwards, which
// removes ours.
void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < kFatalSignals.size(); ++i) {
        struct sigaction current {};
        if (sigaction(kFatalSignals[i], nullptr, &current) != 0 ||
            (current.sa_handler != on_fatal_signal && sigaction(kFatalSignals[i], &sa, &g_previous[i]) != 0)) {
            throw std::runtime_error(std::string("sigaction failed: ") + std::strerror(errno));
        }
    }
}

int claim_slot(Kind kind, const std::string& path) {
    if (path.size() >= kPathSize) throw std::runtime_error("path too long for the cleanup table: " + path);
    for (size_t i = 0; i < kSlots; ++i) {
        bool expected = false;
        if (g_slots[i].used.load()) continue;
        g_slots[i].kind = kind;
        std::snprintf(g_slots[i].path, sizeof g_slots[i].path, "%s", path.c_str());
        if (g_slots[i].used.compare_exchange_strong(expected, true)) return static_cast<int>(i);
    }
    throw std::runtime_error("too many test namespaces and cgroups alive at once");
}

void release_slot(int slot) { g_slots[static_cast<size_t>(slot)].used.store(false); }

// depgraph-test-<pid>[-...]: the pid of the test process that made it.
pid_t creator_of(const std::string& name) {
    if (name.rfind(kNamePrefix, 0) != 0) return 0;
    const char* digits = name.c_str() + std::strlen(kNamePrefix);
    char* end = nullptr;
    long pid = std::strtol(digits, &end, 10);
    if (end == digits || (*end != '-' && *end != '\0') || pid <= 0) return 0;
    return static_cast<pid_t>(pid);
}

// The entries of `dir` that test processes killed with SIGKILL (no handler
// runs for that) left behind: their creator is gone.
std::vector<std::string> stale_entries(const std::string& dir) {
    std::vector<std::string> stale;
    DIR* listing = opendir(dir.c_str());
    if (listing == nullptr) return stale;  // no namespace was ever added; no cgroup2 mount
    while (const dirent* entry = readdir(listing)) {
        pid_t pid = creator_of(entry->d_name);
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(dir + entry->d_name);
    }
    (void)closedir(listing);
    return stale;
}

// The cgroup2 mount with a trailing slash, or "" when there is none.
const std::string& cgroup2_root() {
    static const std::string root = [] {
        std::ifstream mountinfo("/proc/self/mountinfo");
        std::stringstream text;
        text << mountinfo.rdbuf();
        auto mount = parse_cgroup2_mount(text.str());
        return mount ? *mount + "/" : std::string();
    }();
    return root;
}

// Namespaces and cgroups of test processes that no longer exist.
void remove_stale_entries() {
    for (const std::string& path : stale_entries(kNetnsDir)) {
        if (!remove_netns_path(path.c_str())) {
            std::fprintf(stderr, "warning: cannot remove stale %s: %s\n", path.c_str(), std::strerror(errno));
        }
    }
    if (cgroup2_root().empty()) return;
    for (const std::string& dir : stale_entries(cgroup2_root())) {
        if (!remove_cgroup_dir(dir.c_str())) {
            std::fprintf(stderr, "warning: cannot remove stale cgroup %s: %s\n", dir.c_str(), std::strerror(errno));
        }
    }
}

}  // namespace

bool can_run_as_root(const char* test_name) {
    if (geteuid() == 0) return true;
    std::fprintf(stderr, "%s: skipped: needs root to create network namespaces\n", test_name);
    return false;
}

std::string describe_command(const std::vector<std::string>& argv) {
    std::string text;
    for (const auto& arg : argv) text += (text.empty() ? "" : " ") + arg;
    return text;
}

void run_command(const std::vector<std::string>& argv) {
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);

    pid_t pid = 0;
    int err = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
    if (err != 0) throw std::runtime_error("cannot run " + describe_command(argv) + ": " + std::strerror(err));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw std::runtime_error("waitpid for " + describe_command(argv) + ": " + std::strerror(errno));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error(describe_command(argv) + " failed (wait status " + std::to_string(status) + ")");
    }
}

SocketAddress socket_address(const std::string& addr, uint16_t port) {
    SocketAddress sa;
    int parsed = 0;
    if (addr.find(':') == std::string::npos) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&sa.storage);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        parsed = inet_pton(AF_INET, addr.c_str(), &sin->sin_addr);
        sa.length = sizeof *sin;
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&sa.storage);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        parsed = inet_pton(AF_INET6, addr.c_str(), &sin6->sin6_addr);
        sa.length = sizeof *sin6;
    }
    if (parsed != 1) throw std::invalid_argument("not an IP address: " + addr);
    return sa;
}

TestNetns::TestNetns() {
    static std::atomic<int> counter{0};
    name_ = kNamePrefix + std::to_string(getpid()) + "-" + std::to_string(counter++);
    install_signal_handlers();
    remove_stale_entries();
    // Claimed before the namespace exists, so that there is no moment when it
    // exists and a signal would not remove it.
    slot_ = claim_slot(Kind::netns, path());
    try {
        run_command({"ip", "netns", "add", name_});
        ip({"link", "set", "lo", "up"});
    } catch (...) {
        (void)remove_netns_path(path().c_str());
        release_slot(slot_);
        throw;
    }
}

TestNetns::~TestNetns() {
    if (!remove_netns_path(path().c_str())) {
        std::fprintf(stderr, "warning: cannot remove %s: %s\n", path().c_str(), std::strerror(errno));
    }
    release_slot(slot_);
}

std::string TestNetns::path() const { return kNetnsDir + name_; }

void TestNetns::nft(const std::string& command) const {
    run_command({"ip", "netns", "exec", name_, "nft", command});
}

void TestNetns::ip(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{"ip", "-n", name_};
    argv.insert(argv.end(), args.begin(), args.end());
    run_command(argv);
}

std::pair<std::string, std::string> TestNetns::link(TestNetns& a, const std::string& addr_a, TestNetns& b,
                                                    const std::string& addr_b) {
    // Both ends are created directly inside their namespaces, so the names
    // only need to be unique there, not on the machine.
    static std::atomic<int> counter{0};
    const std::string n = std::to_string(counter++);
    std::pair<std::string, std::string> names{"dg" + n + "a", "dg" + n + "b"};
    a.ip({"link", "add", names.first, "type", "veth", "peer", "name", names.second, "netns", b.name()});
    for (auto [ns, dev, addr] : {std::tuple{&a, names.first, addr_a}, std::tuple{&b, names.second, addr_b}}) {
        ns->ip({"addr", "add", addr, "dev", dev});
        ns->ip({"link", "set", dev, "up"});
    }
    return names;
}

TestCgroup::TestCgroup(const std::string& label)
    : name_(kNamePrefix + std::to_string(getpid()) + "-" + label), path_("/" + name_) {
    if (cgroup2_root().empty()) throw std::runtime_error("no cgroup2 file system is mounted");
    dir_ = cgroup2_root() + name_;
    install_signal_handlers();
    remove_stale_entries();
    slot_ = claim_slot(Kind::cgroup, dir_);
    if (::mkdir(dir_.c_str(), 0755) != 0) {
        int err = errno;
        release_slot(slot_);
        throw std::runtime_error("cannot create cgroup " + dir_ + ": " + std::strerror(err));
    }
}

TestCgroup::~TestCgroup() {
    if (!remove_cgroup_dir(dir_.c_str())) {
        std::fprintf(stderr, "warning: cannot remove cgroup %s: %s\n", dir_.c_str(), std::strerror(errno));
    }
    release_slot(slot_);
}

void TestCgroup::enter() const {
    std::ofstream procs(dir_ + "/cgroup.procs");
    procs << getpid() << std::flush;
    if (!procs) std::fprintf(stderr, "child: cannot move into cgroup %s\n", dir_.c_str());
}

}  // namespace depgraph::test
