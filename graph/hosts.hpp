// `depgraph hosts`: when each host's agent ran, and what it lost, so that
// "no traffic" can be told from "agent not running".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace depgraph {

struct RunRecord {
    std::string run_id;
    std::string version;
    int64_t started_at = 0;
    std::optional<int64_t> stopped_at;  // none: still running, or it died
    int64_t last_report_at = 0;
    std::string kernel;
    std::string scope;  // "host" or "netns"
    int64_t netns = 0;  // the agent's own network namespace inode
};

// A time between two runs when no agent of the host ran: from a run's stop
// (or, without one, its last report) to the next run's start.
struct NotRunning {
    int64_t from = 0;
    int64_t until = 0;
};

// Two runs of a host at once in different network namespaces: two agents
// recorded one host name (--scope netns without --hostname in namespaces
// that share the machine's), and their edges read as one host's.
struct SharedHostName {
    int64_t since = 0;  // the later run's start: both agents ran from then on
    int64_t netns = 0, other_netns = 0;
};

struct HostReport {
    std::string host;
    std::vector<RunRecord> runs;               // oldest first
    std::vector<NotRunning> not_running;       // between those runs, oldest first
    std::map<std::string, int64_t> losses;    // counter -> total over all runs
    int64_t edges = 0;
    std::optional<int64_t> last_report_at;
    std::optional<SharedHostName> shared_name;
};

Result<std::vector<HostReport>> load_hosts(const std::vector<std::string>& db_paths);

}  // namespace depgraph
