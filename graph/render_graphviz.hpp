// Drawing the graph with Graphviz (cgraph builds it, gvc lays it out and
// renders). The only header of graph/ that mentions rendering; no Graphviz
// type crosses it.
#pragma once

#include <set>
#include <string>

#include "common/result.hpp"
#include "graph/model.hpp"

namespace depgraph {

struct RenderOptions {
    std::string format;  // "svg", "png" or "dot"
    std::string layout;  // "dot", "sfdp" or "neato"; empty: chosen by size and shape
    std::string title;
    std::set<size_t> highlight;  // nodes drawn as the target of an impact query
    bool host_clusters = false;  // draw each host as a box around its processes
    int timeout_seconds = 20;    // a layout still running then is abandoned
};

// The engine an automatic choice takes for this graph.
std::string choose_layout(const Graph& graph);

// The rendered file's bytes. "dot" output is not laid out: it names its engine
// in the `layout` attribute, so Graphviz's own `dot` reproduces the drawing.
Result<std::string> render_graphviz(const Graph& graph, const RenderOptions& options);

}  // namespace depgraph
