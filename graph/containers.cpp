#include "graph/containers.hpp"

#include <set>


namespace depgraph {

std::string_view container_of(std::string_view cgroup) {
    auto slash = cgroup.find_last_of('/');
    return slash == std::string::npos ? cgroup : cgroup.substr(slash + 1);
}

void name_containers(Records& records) {
    const auto& agent_namespaces = records.agent_namespaces;
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
