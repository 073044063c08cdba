// Synthetic fleets with known answers, one database per host.
//
// small fleet (all in the bucket at kT0):
//   203.0.113.5 -> web-01/nginx:80 (40)      external client
//   web-01/nginx -> web-01/app:8080 (40)     loopback
//   web-01/app -> db-01/postgres:5432 (10, open 2, 1000 B sent, 5000 B received)
//   web-01/app -> cache-01/redis:6379        app counted 10, redis 12: disputed, 12 kept
//   web-01/app -> 93.184.216.34:443 (3, 1 failed)   external service
//   web-02/app -> db-01/postgres:5432 (6, 2 failed)
//   198.18.0.77 -> cache-01/redis:6379 (1)   an address no agent owns
//   batch-01/(unknown) -> db-01/postgres:5432 (4)  batch-01's agent recorded no edges: disputed
//
// cycle fleet: a-01/alpha:7000 <-> b-01/beta:7001, c-01/gamma -> a-01/alpha:7000
#pragma once

#include <string>
#include <vector>

#include "tests/graph/cli_runner.hpp"

namespace depgraph::fixture {

std::vector<std::string> write_small_fleet(const TempDir& dir);
std::vector<std::string> write_cycle_fleet(const TempDir& dir);

// "--db A --db B ..." as arguments.
std::vector<std::string> db_args(const std::vector<std::string>& paths);

// Finds the edge source -> target in render's JSON; null if absent.
nlohmann::json find_edge(const nlohmann::json& graph, const std::string& source, const std::string& target);
nlohmann::json find_node(const nlohmann::json& graph, const std::string& id);

}  // namespace depgraph::fixture
