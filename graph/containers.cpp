#include "graph/containers.hpp"

#include <set>

#include "graph/rows.hpp"

namespace depgraph {

std::string_view container_of(std::string_view cgroup) {
    auto slash = cgroup.find_last_of('/');
    return slash == std::string::npos ? cgroup : cgroup.substr(slash + 1);
}

Result<std::vector<std::pair<std::string, int64_t>>> load_agent_namespaces(
    const std::vector<std::string>& db_paths) {
    std::set<std::pair<std::string, int64_t>> found;
    for (const auto& path : db_paths) {
        auto db = Database::open_read_only(path);
        if (!db) return db.error();
        auto read = for_each_row(*db, "SELECT DISTINCT host, netns FROM agent_runs", [&](const Statement& row) {
            found.emplace(row.column_text(0), row.column_int(1));
        });
        if (!read) return read.error();
    }
    return std::vector<std::pair<std::string, int64_t>>(found.begin(), found.end());
}

void name_containers(Records& records,
                     const std::vector<std::pair<std::string, int64_t>>& agent_namespaces) {
    std::set<std::pair<std::string, int64_t>> own(agent_namespaces.begin(), agent_namespaces.end());
    std::set<std::string, std::less<>> hosts_with_runs;
    for (const auto& [host, netns] : agent_namespaces) hosts_with_runs.insert(host);
    // Records come sorted by host and namespace: decide once for each run of them.
    const EdgeRecord* previous = nullptr;
    bool in_container = false;
    for (auto& e : records.edges) {
        if (!previous || previous->host != e.host || previous->netns != e.netns) {
            // Without a recorded run there is no telling which namespace was the agent's own.
            in_container = hosts_with_runs.count(e.host) && !own.count({std::string(e.host), e.netns});
        }
        previous = &e;
        if (!in_container) continue;
        auto container = container_of(e.cgroup);
        auto name = container.empty() ? "netns " + std::to_string(e.netns) : std::string(container);
        e.process = records.text.intern(std::string(e.process) + " (" + name + ")");
    }
}

}  // namespace depgraph
