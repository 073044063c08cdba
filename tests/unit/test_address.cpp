#include <arpa/inet.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "common/address.hpp"

using namespace depgraph;

TEST_CASE("addresses format as text, IPv4-mapped IPv6 as IPv4") {
    uint8_t v4[4] = {198, 18, 0, 1};
    CHECK(format_address(AF_INET, v4) == "198.18.0.1");
    uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2};
    CHECK(format_address(AF_INET6, mapped) == "198.18.0.2");
    uint8_t v6[16];
    REQUIRE(inet_pton(AF_INET6, "2001:db8::1", v6) == 1);
    CHECK(format_address(AF_INET6, v6) == "2001:db8::1");
}

TEST_CASE("loopback addresses are recognised") {
    CHECK(is_loopback_address("127.0.0.1"));
    CHECK(is_loopback_address("127.5.6.7"));
    CHECK(is_loopback_address("::1"));
    CHECK_FALSE(is_loopback_address("198.18.0.1"));
    CHECK_FALSE(is_loopback_address("::2"));
}
