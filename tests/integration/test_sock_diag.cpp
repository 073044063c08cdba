// sock_diag snapshots, socket owners, cgroups and namespace switching against
// the real kernel, inside network namespaces this test creates.
//
// Needs root: without it, main() (root_main.cpp) prints
// why and exits 77, which meson reports as SKIP (never a silent pass).
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/netns.hpp"
#include "agent/process_table.hpp"
#include "agent/sock_diag.hpp"
#include "common/address.hpp"
#include "common/unique_fd.hpp"
#include "tests/integration/netns_fixture.hpp"

using namespace depgraph;
using depgraph::test::socket_address;
using depgraph::test::TestNetns;

namespace {

constexpr uint32_t kAllStates = ~0u;

// A listener, a client connected to it and the accepted socket.
struct Connection {
    UniqueFd listener, client, server;
    uint16_t port = 0;         // the listener's
    uint16_t client_port = 0;  // the client's ephemeral port
};

uint16_t local_port_of(const UniqueFd& fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    REQUIRE(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

UniqueFd tcp_socket(int family) {
    UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    INFO(std::strerror(errno));
    REQUIRE(fd.valid());
    return fd;
}

// Sockets belong to the namespace of the thread that creates them: call
// inside in_netns().
Connection open_connection(int family, const char* listen_addr, const char* connect_addr, bool v6only = true) {
    Connection c;
    c.listener = tcp_socket(family);
    if (family == AF_INET6) {
        int on = v6only ? 1 : 0;
        REQUIRE(setsockopt(c.listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) == 0);
    }
    auto bind_to = socket_address(listen_addr, 0);
    REQUIRE(bind(c.listener.get(), bind_to.get(), bind_to.length) == 0);
    REQUIRE(listen(c.listener.get(), 8) == 0);
    c.port = local_port_of(c.listener);

    c.client = tcp_socket(family);
    auto peer = socket_address(connect_addr, c.port);
    INFO("connect to " << connect_addr << ": " << std::strerror(errno));
    REQUIRE(connect(c.client.get(), peer.get(), peer.length) == 0);
    c.client_port = local_port_of(c.client);
    c.server = UniqueFd(accept4(c.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(c.server.valid());
    return c;
}

uint64_t cookie_of(const UniqueFd& fd) {
    // SO_COOKIE returns sock_gen_cookie(), as bpf_get_socket_cookie() does.
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    REQUIRE(getsockopt(fd.get(), SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0);
    return cookie;
}

uint64_t inode_of(const UniqueFd& fd) {
    struct stat st {};
    REQUIRE(fstat(fd.get(), &st) == 0);
    return st.st_ino;
}

uint64_t inode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    return st.st_ino;
}

void require_ok(const Status& st) {
    INFO((st ? std::string() : st.error().message));
    REQUIRE(st.ok());
}

void inside(const TestNetns& ns, const std::function<void()>& work) {
    require_ok(in_netns(ns.path(), [&]() -> Status {
        work();
        return ok_status();
    }));
}

std::vector<TcpSocket> dump_here(uint32_t mask = kAllStates) {
    auto sockets = dump_tcp_sockets(mask);
    INFO((sockets ? std::string() : sockets.error().message));
    REQUIRE(sockets.ok());
    return *sockets;
}

std::vector<TcpSocket> dump_in(const TestNetns& ns, uint32_t mask = kAllStates) {
    std::vector<TcpSocket> sockets;
    inside(ns, [&] { sockets = dump_here(mask); });
    return sockets;
}

const TcpSocket& find_by_cookie(const std::vector<TcpSocket>& sockets, uint64_t cookie) {
    auto it = std::find_if(sockets.begin(), sockets.end(), [&](const TcpSocket& s) { return s.cookie == cookie; });
    REQUIRE(it != sockets.end());
    return *it;
}

bool has_cookie(const std::vector<TcpSocket>& sockets, uint64_t cookie) {
    return std::any_of(sockets.begin(), sockets.end(), [&](const TcpSocket& s) { return s.cookie == cookie; });
}

size_t count_state(const std::vector<TcpSocket>& sockets, uint8_t state) {
    return static_cast<size_t>(
        std::count_if(sockets.begin(), sockets.end(), [&](const TcpSocket& s) { return s.state == state; }));
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string own_comm() {
    std::string comm = read_text("/proc/self/comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    return comm;
}

std::string local_text(const TcpSocket& s) { return format_address(s.family, s.local.data()); }
std::string remote_text(const TcpSocket& s) { return format_address(s.family, s.remote.data()); }

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + path);
}

// A child of the cgroup2 root with this process moved into it; moved back
// and removed by the destructor.
class TestCgroup {
public:
    explicit TestCgroup(const std::string& mount)
        : mount_(mount), relative_("/depgraph-test-" + std::to_string(getpid())) {
        auto original = parse_cgroup_v2_path(read_text("/proc/self/cgroup"));
        REQUIRE(original);
        original_ = *original;
        INFO(std::strerror(errno));
        REQUIRE(mkdir(dir().c_str(), 0755) == 0);
        write_text(dir() + "/cgroup.procs", std::to_string(getpid()));
    }
    ~TestCgroup() {
        try {
            write_text(mount_ + original_ + "/cgroup.procs", std::to_string(getpid()));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "warning: %s\n", e.what());
        }
        if (rmdir(dir().c_str()) != 0) std::fprintf(stderr, "warning: rmdir %s: %s\n", dir().c_str(), strerror(errno));
    }
    TestCgroup(const TestCgroup&) = delete;
    TestCgroup& operator=(const TestCgroup&) = delete;

    const std::string& relative() const { return relative_; }
    std::string dir() const { return mount_ + relative_; }

private:
    std::string mount_, relative_, original_;
};

}  // namespace

TEST_CASE("an IPv4 listener and its connection, and nothing from the outer namespace") {
    // A socket in the namespace the test started in must not leak into the inner dump.
    Connection outer = open_connection(AF_INET, "127.0.0.1", "127.0.0.1");

    TestNetns ns;
    Connection c;
    inside(ns, [&] { c = open_connection(AF_INET, "127.0.0.1", "127.0.0.1"); });

    std::vector<TcpSocket> sockets = dump_in(ns);
    REQUIRE(sockets.size() == 3);
    REQUIRE(count_state(sockets, TCP_LISTEN) == 1);
    REQUIRE(count_state(sockets, TCP_ESTABLISHED) == 2);

    const TcpSocket& listener = find_by_cookie(sockets, cookie_of(c.listener));
    CHECK(listener.state == TCP_LISTEN);
    CHECK(listener.family == AF_INET);
    CHECK(local_text(listener) == "127.0.0.1");
    CHECK(listener.local_port == c.port);
    CHECK(listener.inode == inode_of(c.listener));

    const TcpSocket& client = find_by_cookie(sockets, cookie_of(c.client));
    CHECK(client.state == TCP_ESTABLISHED);
    CHECK(client.local_port == c.client_port);
    CHECK(client.remote_port == c.port);
    CHECK(remote_text(client) == "127.0.0.1");
    CHECK(client.inode == inode_of(c.client));

    const TcpSocket& server = find_by_cookie(sockets, cookie_of(c.server));
    CHECK(server.state == TCP_ESTABLISHED);
    CHECK(server.local_port == c.port);
    CHECK(server.remote_port == c.client_port);
    CHECK(server.inode == inode_of(c.server));

    SECTION("the state mask filters in the kernel") {
        std::vector<TcpSocket> listeners = dump_in(ns, 1u << TCP_LISTEN);
        REQUIRE(listeners.size() == 1);
        CHECK(listeners[0].cookie == listener.cookie);
    }
    SECTION("the outer namespace sees its own sockets, not the inner ones") {
        CHECK_FALSE(has_cookie(sockets, cookie_of(outer.listener)));
        CHECK_FALSE(has_cookie(sockets, cookie_of(outer.client)));
        std::vector<TcpSocket> outside = dump_here();
        CHECK(has_cookie(outside, cookie_of(outer.listener)));
        CHECK(has_cookie(outside, cookie_of(outer.server)));
        for (const TcpSocket& s : sockets) CHECK_FALSE(has_cookie(outside, s.cookie));
    }
    SECTION("socket_owners names this process for every socket") {
        auto owners = socket_owners();
        auto cgroup = parse_cgroup_v2_path(read_text("/proc/self/cgroup"));
        REQUIRE(cgroup);
        for (const TcpSocket& s : sockets) {
            INFO("inode " << s.inode);
            REQUIRE(owners.count(s.inode) == 1);
            const ProcessIdentity& owner = owners.at(s.inode);
            CHECK(owner.comm == own_comm());
            CHECK(owner.cgroup == *cgroup);
            CHECK(owner.cgroup_id == CgroupPaths().id_of(*cgroup));
            CHECK(owner.cgroup_id != 0);
        }
    }
}

TEST_CASE("IPv6 sockets stay AF_INET6, dual-stack IPv4 ones become AF_INET") {
    TestNetns ns;
    Connection v6, dual;
    inside(ns, [&] {
        v6 = open_connection(AF_INET6, "::1", "::1");
        dual = open_connection(AF_INET6, "::", "::ffff:127.0.0.1", /*v6only=*/false);
    });
    std::vector<TcpSocket> sockets = dump_in(ns);
    REQUIRE(sockets.size() == 6);

    for (const UniqueFd* fd : {&v6.client, &v6.server}) {
        const TcpSocket& s = find_by_cookie(sockets, cookie_of(*fd));
        CHECK(s.family == AF_INET6);
        CHECK(local_text(s) == "::1");
        CHECK(remote_text(s) == "::1");
    }
    CHECK(find_by_cookie(sockets, cookie_of(v6.client)).remote_port == v6.port);

    const TcpSocket& dual_listener = find_by_cookie(sockets, cookie_of(dual.listener));
    CHECK(dual_listener.family == AF_INET6);
    CHECK(local_text(dual_listener) == "::");
    for (const UniqueFd* fd : {&dual.client, &dual.server}) {
        const TcpSocket& s = find_by_cookie(sockets, cookie_of(*fd));
        CHECK(s.family == AF_INET);
        CHECK(local_text(s) == "127.0.0.1");
        CHECK(remote_text(s) == "127.0.0.1");
        std::array<uint8_t, 16> expected{127, 0, 0, 1};
        CHECK(s.local == expected);
    }
    const TcpSocket& dual_server = find_by_cookie(sockets, cookie_of(dual.server));
    CHECK(dual_server.local_port == dual.port);
    CHECK(dual_server.remote_port == dual.client_port);
}

TEST_CASE("in_netns switches the calling thread and always switches back") {
    auto home = current_netns_inode();
    REQUIRE(home.ok());
    TestNetns ns;
    const auto target = static_cast<uint32_t>(inode_of(ns.path()));
    REQUIRE(target != *home);

    SECTION("work runs inside and sees the namespace's addresses") {
        inside(ns, [&] {
            auto here = current_netns_inode();
            REQUIRE(here.ok());
            CHECK(*here == target);
            auto addresses = try_local_addresses();
            REQUIRE(addresses.ok());
            CHECK(*addresses == std::vector<std::string>{"127.0.0.1", "::1"});
            // The main thread is in it now, so /proc lists it.
            auto all = all_netns();
            CHECK(std::any_of(all.begin(), all.end(), [&](const NetnsRef& r) { return r.inode == target; }));
        });
        auto all = all_netns();
        CHECK_FALSE(std::any_of(all.begin(), all.end(), [&](const NetnsRef& r) { return r.inode == target; }));
        CHECK(std::any_of(all.begin(), all.end(), [&](const NetnsRef& r) { return r.inode == *home; }));
    }
    SECTION("an error from the work comes back, after switching back") {
        Status st = in_netns(ns.path(), [] { return Status(Error{"work failed"}); });
        REQUIRE_FALSE(st.ok());
        CHECK(st.error().message == "work failed");
    }
    SECTION("an exception from the work propagates, after switching back") {
        CHECK_THROWS_AS(in_netns(ns.path(), []() -> Status { throw std::runtime_error("boom"); }), std::runtime_error);
    }
    SECTION("a namespace that does not exist is an error with the errno text") {
        Status st = in_netns("/run/netns/depgraph-test-does-not-exist", [] { return ok_status(); });
        REQUIRE_FALSE(st.ok());
        CHECK_THAT(st.error().message,
                   Catch::Contains("depgraph-test-does-not-exist") && Catch::Contains(std::strerror(ENOENT)));
    }
    auto back = current_netns_inode();
    REQUIRE(back.ok());
    CHECK(*back == *home);
}

TEST_CASE("two namespaces linked by veth talk over 198.18.0.0/24") {
    TestNetns a, b;
    TestNetns::link(a, "198.18.0.1/24", b, "198.18.0.2/24");

    std::vector<std::string> addresses;
    inside(a, [&] {
        auto listed = try_local_addresses();
        REQUIRE(listed.ok());
        addresses = *listed;
    });
    // The veth's fe80:: address is left out: nobody can dial it without an interface.
    CHECK(addresses == std::vector<std::string>{"127.0.0.1", "198.18.0.1", "::1"});

    // Listener in a, client in b: each namespace sees only its own half.
    UniqueFd listener, client, server;
    uint16_t port = 0;
    inside(a, [&] {
        listener = tcp_socket(AF_INET);
        auto addr = socket_address("198.18.0.1", 0);
        REQUIRE(bind(listener.get(), addr.get(), addr.length) == 0);
        REQUIRE(listen(listener.get(), 8) == 0);
        port = local_port_of(listener);
    });
    inside(b, [&] {
        client = tcp_socket(AF_INET);
        auto peer = socket_address("198.18.0.1", port);
        REQUIRE(connect(client.get(), peer.get(), peer.length) == 0);
    });
    server = UniqueFd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(server.valid());

    std::vector<TcpSocket> in_a = dump_in(a), in_b = dump_in(b);
    REQUIRE(in_a.size() == 2);
    REQUIRE(in_b.size() == 1);
    CHECK(remote_text(find_by_cookie(in_a, cookie_of(server))) == "198.18.0.2");
    const TcpSocket& c = find_by_cookie(in_b, cookie_of(client));
    CHECK(local_text(c) == "198.18.0.2");
    CHECK(remote_text(c) == "198.18.0.1");
    CHECK(c.remote_port == port);
}

TEST_CASE("cgroup ids and paths, and the owner's cgroup") {
    auto mount = parse_cgroup2_mount(read_text("/proc/self/mountinfo"));
    REQUIRE(mount);
    CgroupPaths cgroups;
    const uint64_t root_id = cgroups.id_of("");
    CHECK(root_id == inode_of(*mount));
    CHECK(cgroups.path_of(root_id) == "");
    CHECK(cgroups.path_of(0xfffffffffffULL) == "");

    TestCgroup cgroup(*mount);
    const uint64_t id = cgroups.id_of(cgroup.relative());
    CHECK(id == inode_of(cgroup.dir()));
    // A fresh lookup table, and the one that already walked the tree (the
    // cgroup did not exist then, so it must walk again).
    CHECK(CgroupPaths().path_of(id) == cgroup.relative());
    CHECK(cgroups.path_of(id) == cgroup.relative());

    UniqueFd sock = tcp_socket(AF_INET);
    auto owners = socket_owners();
    REQUIRE(owners.count(inode_of(sock)) == 1);
    const ProcessIdentity& owner = owners.at(inode_of(sock));
    CHECK(owner.comm == own_comm());
    CHECK(owner.cgroup == cgroup.relative());
    CHECK(owner.cgroup_id == id);
}

TEST_CASE("the fixture removes its namespace on failure, on a signal and after SIGKILL") {
    SECTION("a failing REQUIRE (an exception) unwinds through the destructor") {
        std::string path;
        try {
            TestNetns ns;
            path = ns.path();
            REQUIRE(access(path.c_str(), F_OK) == 0);
            throw std::runtime_error("simulated failure");
        } catch (const std::runtime_error&) {
        }
        CHECK(access(path.c_str(), F_OK) != 0);
    }
    for (int sig : {SIGTERM, SIGKILL}) {
        DYNAMIC_SECTION("a child test process killed by signal " << sig) {
            int fds[2];
            REQUIRE(pipe(fds) == 0);
            UniqueFd read_end(fds[0]), write_end(fds[1]);
            std::fflush(nullptr);
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                // The child: make a namespace, report its path, die by `sig`.
                int code = 0;
                // Catch2's own handler would report the child's death as a failure.
                (void)signal(sig, SIG_DFL);
                try {
                    TestNetns ns;
                    std::string path = ns.path() + "\n";
                    if (write(write_end.get(), path.data(), path.size()) != static_cast<ssize_t>(path.size())) code = 1;
                    if (raise(sig) != 0) code = 2;
                } catch (...) {
                    code = 3;
                }
                _exit(code == 0 ? 4 : code);
            }
            write_end.reset();
            int status = 0;
            REQUIRE(waitpid(pid, &status, 0) == pid);
            CHECK(WIFSIGNALED(status));
            CHECK(WTERMSIG(status) == sig);
            char buf[256] = {};
            ssize_t n = read(read_end.get(), buf, sizeof buf - 1);
            REQUIRE(n > 1);
            std::string path(buf, static_cast<size_t>(n) - 1);
            if (sig == SIGKILL) {
                REQUIRE(access(path.c_str(), F_OK) == 0);  // nothing ran in the child
                TestNetns next;                             // sweeps namespaces of dead test processes
            }
            CHECK(access(path.c_str(), F_OK) != 0);
        }
    }
}
