// Simplification: one node per (host, process), per host, or per role, so
// that fifty web servers draw as one node with a member count.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "graph/model.hpp"

namespace depgraph {

enum class GroupBy { process, host, role };

// Lines of "PATTERN ROLE" (shell glob on the hostname, in any case), first match wins;
// '#' starts a comment. A host no rule matches gets its name without the
// trailing number: web-01 -> web.
// Why a shell glob is malformed, or "" when it is not. fnmatch() would take an
// unclosed '[' literally, and the pattern would silently match nothing.
std::string glob_problem(std::string_view pattern);

class RoleRules {
public:
    static Result<RoleRules> load(const std::string& path);
    static Result<RoleRules> parse(const std::string& text, const std::string& origin);
    std::string role_of(const std::string& host) const;

private:
    std::vector<std::pair<std::string, std::string>> rules_;
};

Graph group_graph(Graph graph, GroupBy group_by, const RoleRules& roles);

}  // namespace depgraph
