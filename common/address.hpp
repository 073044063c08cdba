// IP addresses as the store keeps them: text, IPv4 dotted, IPv6 compressed,
// IPv4-mapped IPv6 always written as IPv4 so a dual-stack peer is one host.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace depgraph {

// family is AF_INET (4 bytes used) or AF_INET6 (16 bytes); bytes in network order.
std::string format_address(int family, const uint8_t* bytes);

bool is_loopback_address(const std::string& addr);

// "198.18.5.5:80", "[2001:2::5]:80".
std::string address_and_port(std::string_view addr, int port);

}  // namespace depgraph
