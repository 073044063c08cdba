// IP addresses as the store keeps them: text, IPv4 dotted, IPv6 compressed,
// IPv4-mapped IPv6 always written as IPv4 so a dual-stack peer is one host.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace depgraph {

// family is AF_INET (4 bytes used) or AF_INET6 (16 bytes); bytes in network order.
std::string format_address(int family, const uint8_t* bytes);

bool is_loopback_address(const std::string& addr);

}  // namespace depgraph
