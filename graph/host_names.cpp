#include "graph/host_names.hpp"

#include <arpa/inet.h>

#include <fstream>
#include <sstream>

#include "common/address.hpp"

namespace depgraph {

std::string store_form(const std::string& text) {
    uint8_t bytes[16];
    if (inet_pton(AF_INET, text.c_str(), bytes) == 1) return format_address(AF_INET, bytes);
    if (inet_pton(AF_INET6, text.c_str(), bytes) == 1) return format_address(AF_INET6, bytes);
    return "";
}

HostNames HostNames::load(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return parse(text.str());
}

HostNames HostNames::parse(const std::string& text) {
    HostNames names;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        std::istringstream words(line);
        std::string addr, name;
        if (!(words >> addr >> name)) continue;
        if (auto key = store_form(addr); !key.empty()) names.names_.try_emplace(key, name);
    }
    return names;
}

std::string HostNames::name_of(const std::string& addr) const {
    auto it = names_.find(addr);
    return it == names_.end() ? std::string() : it->second;
}

void name_external_nodes(Graph& graph, const HostNames& names) {
    for (auto& n : graph.nodes) {
        if (n.kind == NodeKind::external) n.name = names.name_of(n.id);
    }
}

}  // namespace depgraph
