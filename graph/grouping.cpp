#include "graph/grouping.hpp"

#include <fnmatch.h>

#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace depgraph {
namespace {

std::string strip_trailing_number(const std::string& host) {
    size_t end = host.size();
    while (end > 0 && std::isdigit(static_cast<unsigned char>(host[end - 1]))) end--;
    if (end == host.size()) return host;
    while (end > 0 && (host[end - 1] == '-' || host[end - 1] == '_' || host[end - 1] == '.')) end--;
    return end == 0 ? host : host.substr(0, end);
}

}  // namespace

std::string glob_problem(std::string_view pattern) {
    for (size_t i = 0; i < pattern.size(); i++) {
        if (pattern[i] == '\\') {
            i++;
        } else if (pattern[i] == '[') {
            size_t j = i + 1;
            if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) j++;
            if (j < pattern.size() && pattern[j] == ']') j++;  // a ']' first is one of the set
            j = pattern.find(']', j);
            if (j == std::string_view::npos) return "'[' at character " + std::to_string(i + 1) + " is never closed";
            i = j;
        }
    }
    return "";
}

Result<RoleRules> RoleRules::load(const std::string& path) {
    // An ifstream opens a directory and reads it as an empty file: no rules, and no error.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return errno_error("cannot read roles file " + path, EISDIR);
    std::ifstream in(path);
    if (!in) return errno_error("cannot read roles file " + path, errno);
    std::stringstream text;
    text << in.rdbuf();
    return parse(text.str(), path);
}

Result<RoleRules> RoleRules::parse(const std::string& text, const std::string& origin) {
    RoleRules roles;
    std::istringstream lines(text);
    std::string line;
    for (int number = 1; std::getline(lines, line); number++) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        std::istringstream words(line);
        std::string pattern, role, extra;
        if (!(words >> pattern)) continue;
        if (!(words >> role) || (words >> extra)) {
            return Error{origin + ":" + std::to_string(number) + ": expected 'PATTERN ROLE'"};
        }
        if (auto problem = glob_problem(pattern); !problem.empty()) {
            return Error{origin + ":" + std::to_string(number) + ": pattern " + pattern + ": " + problem};
        }
        roles.rules_.emplace_back(pattern, role);
    }
    return roles;
}

std::string RoleRules::role_of(const std::string& host) const {
    for (const auto& [pattern, role] : rules_) {
        if (fnmatch(pattern.c_str(), host.c_str(), FNM_CASEFOLD) == 0) return role;  // host names are case-blind
    }
    return strip_trailing_number(host);
}

Graph group_graph(Graph graph, GroupBy group_by, const RoleRules& roles) {
    if (group_by == GroupBy::process) return graph;
    Graph grouped;
    grouped.window = graph.window;
    std::vector<size_t> group_of(graph.nodes.size());
    for (size_t i = 0; i < graph.nodes.size(); i++) {
        const auto& n = graph.nodes[i];
        if (n.kind == NodeKind::external) {
            group_of[i] = grouped.node(n.id, NodeKind::external, n.host, "");
            grouped.nodes[group_of[i]].name = n.name;
            continue;
        }
        auto name = group_by == GroupBy::host ? n.host : roles.role_of(n.host);
        group_of[i] = grouped.node(name, n.kind, name, "");
        grouped.nodes[group_of[i]].members.insert(n.members.begin(), n.members.end());
    }
    for (const auto& e : graph.edges) {
        grouped.connect(group_of[e.source], group_of[e.target], e.port, e.traffic, e.disputed, e.via);
    }
    grouped.settle();
    return grouped;
}

}  // namespace depgraph
