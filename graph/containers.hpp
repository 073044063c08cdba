// Containers and units: an agent with --scope host records the connections
// of every network namespace on its machine under the machine's hostname.
// A connection made in a namespace other than the agent's own belongs to a
// container (or a systemd unit with its own namespace); its process is named
// after that container, from the cgroup path the agent recorded, so that two
// containers running the same program are two nodes, not one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "graph/records.hpp"

namespace depgraph {

// "/system.slice/docker-4f2a.scope" -> "docker-4f2a.scope"; "" for the root cgroup.
std::string_view container_of(std::string_view cgroup);

// Renames the process of every edge recorded in another namespace than its
// agent's: "nginx (docker-4f2a.scope)", or "nginx (netns 4026532290)" when
// the cgroup says nothing; the agents' namespaces are the records'. The new
// names go into the records' text.
void name_containers(Records& records);

}  // namespace depgraph
