#include "common/address.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace depgraph {

std::string format_address(int family, const uint8_t* bytes) {
    static const uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && std::memcmp(bytes, kMappedPrefix, 12) == 0) {
        family = AF_INET;
        bytes += 12;
    }
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(family, bytes, buf, sizeof buf)) return "?";
    return buf;
}

bool is_loopback_address(const std::string& addr) {
    return addr.rfind("127.", 0) == 0 || addr == "::1";
}

std::string address_and_port(std::string_view addr, int port) {
    bool v6 = addr.find(':') != std::string_view::npos;
    std::string text(addr);
    return (v6 ? "[" + text + "]" : text) + ":" + std::to_string(port);
}

}  // namespace depgraph
