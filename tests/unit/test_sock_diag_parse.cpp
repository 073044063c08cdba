// The sock_diag reply parser on hand-built netlink buffers (well-formed,
// truncated, malformed), and the pure /proc parsers of the process table.
// No privileges and no kernel features needed.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "agent/process_table.hpp"
#include "agent/sock_diag.hpp"
#include "common/address.hpp"

using namespace depgraph;

namespace {

constexpr uint32_t kSeq = 7;
constexpr uint32_t kPortid = 4242;

// A datagram as the kernel would send it: messages back to back, each
// NLMSG_ALIGNed. Stored in uint32_t so the headers are aligned.
class NetlinkBuffer {
public:
    nlmsghdr* add(uint16_t type, const void* payload, size_t payload_len, uint16_t flags = NLM_F_MULTI) {
        size_t offset = bytes_;
        size_t total = NLMSG_ALIGN(NLMSG_LENGTH(payload_len));
        words_.resize((offset + total) / 4, 0);
        auto* nlh = reinterpret_cast<nlmsghdr*>(reinterpret_cast<char*>(words_.data()) + offset);
        nlh->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(payload_len));
        nlh->nlmsg_type = type;
        nlh->nlmsg_flags = flags;
        nlh->nlmsg_seq = kSeq;
        nlh->nlmsg_pid = kPortid;
        std::memcpy(NLMSG_DATA(nlh), payload, payload_len);
        bytes_ = offset + total;
        return nlh;
    }
    nlmsghdr* add_socket(const inet_diag_msg& msg) { return add(SOCK_DIAG_BY_FAMILY, &msg, sizeof msg); }
    void add_done() {
        int status = 0;
        add(NLMSG_DONE, &status, sizeof status);
    }
    void add_error(int err) {
        nlmsgerr e{};
        e.error = -err;
        add(NLMSG_ERROR, &e, sizeof e, 0);
    }

    const void* data() const { return words_.data(); }
    size_t size() const { return bytes_; }

    Result<bool> parse(std::vector<TcpSocket>& out, size_t len) const {
        return parse_inet_diag_batch(data(), len, kSeq, kPortid, out);
    }
    Result<bool> parse(std::vector<TcpSocket>& out) const { return parse(out, size()); }

private:
    std::vector<uint32_t> words_;
    size_t bytes_ = 0;
};

void set_address(int family, const char* text, __be32* dst) {
    REQUIRE(inet_pton(family, text, dst) == 1);
}

inet_diag_msg make_msg(int family, const char* src, uint16_t sport, const char* dst, uint16_t dport,
                       uint8_t state = TCP_ESTABLISHED) {
    inet_diag_msg msg{};
    msg.idiag_family = static_cast<uint8_t>(family);
    msg.idiag_state = state;
    set_address(family, src, msg.id.idiag_src);
    set_address(family, dst, msg.id.idiag_dst);
    msg.id.idiag_sport = htons(sport);
    msg.id.idiag_dport = htons(dport);
    msg.id.idiag_cookie[0] = 0x89abcdef;
    msg.id.idiag_cookie[1] = 0x01234567;
    msg.idiag_inode = 987654;
    return msg;
}

TcpSocket parse_one(const inet_diag_msg& msg) {
    NetlinkBuffer buf;
    const nlmsghdr* nlh = buf.add_socket(msg);
    auto sock = parse_inet_diag_msg(nlh);
    INFO((sock ? std::string() : sock.error().message));
    REQUIRE(sock.ok());
    return *sock;
}

std::string local_text(const TcpSocket& s) { return format_address(s.family, s.local.data()); }
std::string remote_text(const TcpSocket& s) { return format_address(s.family, s.remote.data()); }

void require_error(const Result<bool>& r, const std::string& fragment) {
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains("sock_diag dump failed") && Catch::Contains(fragment));
}

}  // namespace

TEST_CASE("an IPv4 inet_diag message decodes to host-order ports, the cookie and the inode") {
    TcpSocket s = parse_one(make_msg(AF_INET, "198.18.0.1", 43210, "198.18.0.2", 5432));
    CHECK(s.family == AF_INET);
    CHECK(local_text(s) == "198.18.0.1");
    CHECK(remote_text(s) == "198.18.0.2");
    CHECK(s.local_port == 43210);
    CHECK(s.remote_port == 5432);
    CHECK(s.state == TCP_ESTABLISHED);
    // sock_diag_save_cookie(): cookie[0] is the low word.
    CHECK(s.cookie == 0x0123456789abcdefULL);
    CHECK(s.inode == 987654);
    std::array<uint8_t, 16> expected_local{198, 18, 0, 1};
    CHECK(s.local == expected_local);
}

TEST_CASE("IPv6 messages stay IPv6; IPv4-mapped ones become IPv4 with the 4 bytes first") {
    SECTION("plain IPv6") {
        TcpSocket s = parse_one(make_msg(AF_INET6, "2001:db8::1", 443, "2001:db8::2", 50000));
        CHECK(s.family == AF_INET6);
        CHECK(local_text(s) == "2001:db8::1");
        CHECK(remote_text(s) == "2001:db8::2");
    }
    SECTION("dual-stack connection") {
        TcpSocket s = parse_one(make_msg(AF_INET6, "::ffff:127.0.0.1", 8080, "::ffff:198.18.0.9", 41000));
        CHECK(s.family == AF_INET);
        std::array<uint8_t, 16> expected_local{127, 0, 0, 1};
        std::array<uint8_t, 16> expected_remote{198, 18, 0, 9};
        CHECK(s.local == expected_local);
        CHECK(s.remote == expected_remote);
        CHECK(s.local_port == 8080);
    }
    SECTION("listener bound to a mapped address, remote unspecified") {
        TcpSocket s = parse_one(make_msg(AF_INET6, "::ffff:127.0.0.1", 8080, "::", 0, TCP_LISTEN));
        CHECK(s.family == AF_INET);
        CHECK(local_text(s) == "127.0.0.1");
        CHECK(remote_text(s) == "0.0.0.0");
    }
    SECTION("dual-stack listener on :: stays IPv6") {
        TcpSocket s = parse_one(make_msg(AF_INET6, "::", 8080, "::", 0, TCP_LISTEN));
        CHECK(s.family == AF_INET6);
        CHECK(local_text(s) == "::");
    }
    SECTION("a mapped address against a real IPv6 one is left alone") {
        TcpSocket s = parse_one(make_msg(AF_INET6, "::ffff:127.0.0.1", 8080, "2001:db8::2", 1));
        CHECK(s.family == AF_INET6);
    }
}

TEST_CASE("malformed single messages are clear errors") {
    NetlinkBuffer buf;
    SECTION("payload shorter than inet_diag_msg") {
        nlmsghdr* nlh = buf.add_socket(make_msg(AF_INET, "127.0.0.1", 1, "127.0.0.1", 2));
        nlh->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(sizeof(inet_diag_msg) - 1));
        auto r = parse_inet_diag_msg(nlh);
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Catch::StartsWith("sock_diag dump failed: truncated inet_diag message"));
    }
    SECTION("header only") {
        nlmsghdr* nlh = buf.add(SOCK_DIAG_BY_FAMILY, nullptr, 0);
        CHECK_FALSE(parse_inet_diag_msg(nlh).ok());
    }
    SECTION("unknown address family") {
        inet_diag_msg msg = make_msg(AF_INET, "127.0.0.1", 1, "127.0.0.1", 2);
        msg.idiag_family = AF_UNIX;
        auto r = parse_inet_diag_msg(buf.add_socket(msg));
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Catch::Contains("address family"));
    }
    SECTION("wrong message type") {
        inet_diag_msg msg = make_msg(AF_INET, "127.0.0.1", 1, "127.0.0.1", 2);
        auto r = parse_inet_diag_msg(buf.add(SOCK_DIAG_BY_FAMILY + 1, &msg, sizeof msg));
        REQUIRE_FALSE(r.ok());
        CHECK_THAT(r.error().message, Catch::Contains("message type"));
    }
}

TEST_CASE("a dump arrives in several datagrams and ends with NLMSG_DONE") {
    std::vector<TcpSocket> out;
    NetlinkBuffer first;
    first.add_socket(make_msg(AF_INET, "127.0.0.1", 80, "0.0.0.0", 0, TCP_LISTEN));
    first.add_socket(make_msg(AF_INET, "127.0.0.1", 80, "127.0.0.1", 40000));
    auto more = first.parse(out);
    REQUIRE(more.ok());
    CHECK_FALSE(*more);

    NetlinkBuffer last;
    last.add_socket(make_msg(AF_INET, "127.0.0.1", 40000, "127.0.0.1", 80));
    last.add_done();
    auto done = last.parse(out);
    REQUIRE(done.ok());
    CHECK(*done);

    REQUIRE(out.size() == 3);
    CHECK(out[0].state == TCP_LISTEN);
    CHECK(out[1].remote_port == 40000);
    CHECK(out[2].local_port == 40000);
}

TEST_CASE("broken dump datagrams are clear errors") {
    std::vector<TcpSocket> out;
    NetlinkBuffer buf;
    buf.add_socket(make_msg(AF_INET, "127.0.0.1", 80, "127.0.0.1", 40000));

    SECTION("datagram cut inside the second message") {
        buf.add_socket(make_msg(AF_INET, "127.0.0.1", 81, "127.0.0.1", 40001));
        require_error(buf.parse(out, buf.size() - 10), "truncated netlink message");
    }
    SECTION("datagram cut inside a header") {
        buf.add_done();
        require_error(buf.parse(out, buf.size() - NLMSG_LENGTH(sizeof(int)) + 4), "truncated netlink message");
    }
    SECTION("the kernel refuses the dump") {
        buf.add_error(EPERM);
        require_error(buf.parse(out), std::strerror(EPERM));
    }
    SECTION("NLMSG_ERROR too short for its error code") {
        nlmsgerr e{};
        buf.add(NLMSG_ERROR, &e, sizeof(int) - 1, 0);
        require_error(buf.parse(out), std::strerror(EBADMSG));
    }
    SECTION("a reply to some other request") {
        nlmsghdr* nlh = buf.add_socket(make_msg(AF_INET, "127.0.0.1", 81, "127.0.0.1", 40001));
        nlh->nlmsg_seq = kSeq + 1;
        require_error(buf.parse(out), std::strerror(EPROTO));
    }
    SECTION("the kernel marks the dump inconsistent") {
        nlmsghdr* nlh = buf.add_socket(make_msg(AF_INET, "127.0.0.1", 81, "127.0.0.1", 40001));
        nlh->nlmsg_flags |= NLM_F_DUMP_INTR;
        require_error(buf.parse(out), "NLM_F_DUMP_INTR");
    }
    SECTION("a malformed message in the middle") {
        inet_diag_msg msg = make_msg(AF_INET, "127.0.0.1", 81, "127.0.0.1", 40001);
        buf.add(SOCK_DIAG_BY_FAMILY, &msg, 8);  // well framed, but too short to be a socket
        buf.add_done();
        require_error(buf.parse(out), "truncated inet_diag message");
    }
}

TEST_CASE("socket links in /proc/PID/fd name the socket inode") {
    CHECK(parse_socket_link("socket:[12345]") == 12345u);
    CHECK(parse_socket_link("socket:[18446744073709551615]") == 18446744073709551615ull);
    CHECK_FALSE(parse_socket_link("socket:[]"));
    CHECK_FALSE(parse_socket_link("socket:[12a]"));
    CHECK_FALSE(parse_socket_link("socket:[123"));
    CHECK_FALSE(parse_socket_link("pipe:[12345]"));
    CHECK_FALSE(parse_socket_link("anon_inode:[eventpoll]"));
    CHECK_FALSE(parse_socket_link("/dev/null"));
}

TEST_CASE("the cgroup v2 path comes from the 0:: line of /proc/PID/cgroup") {
    CHECK(parse_cgroup_v2_path("0::/\n") == std::string());
    CHECK(parse_cgroup_v2_path("0::/system.slice/nginx.service\n") == "/system.slice/nginx.service");
    CHECK(parse_cgroup_v2_path("9:name=systemd:/\n4:memory:/x/y\n0::/user.slice\n") == "/user.slice");
    CHECK(parse_cgroup_v2_path("0::/no-trailing-newline") == "/no-trailing-newline");
    CHECK_FALSE(parse_cgroup_v2_path("4:memory:/x\n1:cpu:/\n"));
    CHECK_FALSE(parse_cgroup_v2_path(""));
}

TEST_CASE("the cgroup2 mount is found in mountinfo, hybrid or pure v2") {
    const std::string hybrid =
        "25 30 0:22 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
        "31 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755\n"
        "33 31 0:28 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
        "32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev shared:8 - cgroup2 cgroup2 rw,nsdelegate\n";
    CHECK(parse_cgroup2_mount(hybrid) == "/sys/fs/cgroup/unified");

    const std::string pure = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n";
    CHECK(parse_cgroup2_mount(pure) == "/sys/fs/cgroup");

    const std::string escaped = "35 24 0:30 / /mnt/my\\040cgroups rw - cgroup2 none rw\n";
    CHECK(parse_cgroup2_mount(escaped) == "/mnt/my cgroups");

    // An optional field that looks like the type must not fool the parser.
    const std::string v1_only = "33 31 0:28 / /sys/fs/cgroup/cgroup2 rw - cgroup cgroup2 rw,memory\n";
    CHECK_FALSE(parse_cgroup2_mount(v1_only));
    CHECK_FALSE(parse_cgroup2_mount(""));
}

// A TIME_WAIT socket reports its substate, which may be FIN_WAIT2; only its
// timer tells it from a full socket in FIN_WAIT2, whose close is still to come.
TEST_CASE("a TIME_WAIT socket in its FIN_WAIT2 substate decodes as TIME_WAIT") {
    auto msg = make_msg(AF_INET, "198.18.0.1", 80, "198.18.0.2", 43210, TCP_FIN_WAIT2);
    msg.idiag_timer = kTimeWaitTimer;
    CHECK(parse_one(msg).state == TCP_TIME_WAIT);
    msg.idiag_timer = 2;  // keepalive: a full socket, its application gone
    CHECK(parse_one(msg).state == TCP_FIN_WAIT2);
}
