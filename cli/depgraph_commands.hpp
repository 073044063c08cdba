// The depgraph subcommands: each takes its parsed options, asks graph/ for
// the answer and prints it.
#pragma once

#include <string>
#include <vector>

#include "common/result.hpp"
#include "graph/filters.hpp"

namespace depgraph {

inline constexpr const char* kDefaultDb = "/var/lib/depgraph/depgraph.db";

// What render and impact/deps write, the first where neither --format nor
// the output's extension says (a file's format follows its extension).
inline const std::vector<std::string> kRenderFormats{"svg", "png", "dot", "json"};
inline const std::vector<std::string> kWalkFormats{"table", "json", "svg", "dot"};

// Options that every reading command shares.
struct Inputs {
    std::vector<std::string> dbs{kDefaultDb};
    std::string since;
    std::string until;
    std::string default_since;  // without --since: a duration back from --until, or from now (impact, deps)
    std::string format;  // empty: from the output's extension (render, impact, deps)
};

// Options of the commands that build the graph.
struct GraphOptions {
    Inputs inputs;
    std::string group_by = "process";
    std::string roles_file;
    Filters filters;
    int layout_timeout = 20;  // seconds a Graphviz layout may take before it is stopped
};

struct RenderArgs {
    GraphOptions graph;
    std::string output;
    std::string layout;  // a Graphviz engine; empty: chosen by the graph's size and shape
};

struct WalkArgs {
    GraphOptions graph;
    std::string layout;  // as RenderArgs's, for svg and dot
    std::string target;
    int depth = 0;
    bool dependencies = false;  // deps rather than impact
    std::string output = "-";
};

Status run_edges(const Inputs& in);
Status run_hosts(const Inputs& in);
Status run_merge(const std::string& output, const std::vector<std::string>& inputs);
Status run_render(const RenderArgs& args);
Status run_walk(const WalkArgs& args);

}  // namespace depgraph
