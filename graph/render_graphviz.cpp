// The one file that includes Graphviz. Layout runs in a child process so that
// an unlucky graph (dot on a large cyclic graph takes minutes) can be stopped.
#include "graph/render_graphviz.hpp"

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <numeric>
#include <set>

#include "common/address.hpp"
#include "common/time.hpp"
#include "common/unique_fd.hpp"
#include "graph/text.hpp"

namespace depgraph {
namespace {

using CGraph = std::unique_ptr<Agraph_t, Free<agclose>>;

// From DESIGN.md's timings on Graphviz 2.42: dot lays out a layered graph of
// 2,400 edges in 0.5 s but needs 42 s for a random cyclic one of 600 edges
// (406 s with edge labels); sfdp does 3,000 edges in 0.75 s whatever the shape.
// The cyclic limit counts only the edges on cycles: dot lays out a layered
// graph of 350 edges with one 2-edge cycle in 0.1 s, tiers and all.
constexpr size_t kDotMaxEdges = 2500;
constexpr size_t kDotMaxCyclicEdges = 150;
constexpr size_t kLabelledMaxEdges = 60;
// Edge widths; a failed edge thinner than kFailedWidth was lost among busy ones.
constexpr double kThinnest = 0.5;
constexpr double kThickest = 4.0;
constexpr double kFailedWidth = 2.5;

// Each node's strongly connected component, given each node's successors
// (Tarjan's, iterative: a fleet's 20,000 edges can chain deeper than the
// stack goes). Two nodes share a component when each reaches the other.
std::vector<size_t> components_of(const std::vector<std::vector<size_t>>& next) {
    size_t count = next.size();
    constexpr size_t kUnseen = SIZE_MAX;
    std::vector<size_t> seen_at(count, kUnseen), low(count), component(count);
    std::vector<bool> on_stack(count);
    std::vector<size_t> stack;
    std::vector<std::pair<size_t, size_t>> path;  // a node being visited and how many of its successors are done
    size_t clock = 0, components = 0;
    auto enter = [&](size_t v) {
        seen_at[v] = low[v] = clock++;
        stack.push_back(v);
        on_stack[v] = true;
        path.push_back({v, 0});
    };
    for (size_t root = 0; root < count; root++) {
        if (seen_at[root] != kUnseen) continue;
        enter(root);
        while (!path.empty()) {
            auto [v, done] = path.back();
            if (done < next[v].size()) {
                path.back().second++;
                size_t w = next[v][done];
                if (seen_at[w] == kUnseen) {
                    enter(w);
                } else if (on_stack[w]) {
                    low[v] = std::min(low[v], seen_at[w]);
                }
                continue;
            }
            path.pop_back();
            if (!path.empty()) low[path.back().first] = std::min(low[path.back().first], low[v]);
            if (low[v] != seen_at[v]) continue;
            for (size_t w = kUnseen; w != v;) {  // v heads a component: the stack down to it
                w = stack.back();
                stack.pop_back();
                on_stack[w] = false;
                component[w] = components;
            }
            components++;
        }
    }
    return component;
}

// The components of the graph whose nodes are `unit_of` the graph's nodes,
// by unit. A self-loop joins a unit to nothing.
std::vector<size_t> unit_components(const Graph& graph, const std::vector<size_t>& unit_of, size_t units) {
    std::vector<std::vector<size_t>> next(units);
    for (const auto& e : graph.edges) {
        if (unit_of[e.source] != unit_of[e.target]) next[unit_of[e.source]].push_back(unit_of[e.target]);
    }
    return components_of(next);
}

// The edges that lie on a cycle: those joining two nodes of one component.
// A self-loop costs dot nothing and is not counted.
size_t edges_on_cycles(const Graph& graph) {
    std::vector<size_t> itself(graph.nodes.size());
    std::iota(itself.begin(), itself.end(), 0);
    auto component = unit_components(graph, itself, graph.nodes.size());
    return static_cast<size_t>(std::count_if(graph.edges.begin(), graph.edges.end(), [&](const Edge& e) {
        return e.source != e.target && component[e.source] == component[e.target];
    }));
}

// The hosts dot can draw as boxes: those with two processes or more (a box
// earns its place only then; and cgraph's cost grows with nodes times
// subgraphs), less those on a cycle once each box is one node. dot ranks a
// box as a whole: a host that calls a service that calls back into it ("trouble
// in init_rank") came out with its box and the service on one rank, and
// edges lost.
std::set<std::string> boxed_hosts(const Graph& graph) {
    std::map<std::string, int> processes_on;
    for (const auto& n : graph.nodes) {
        if (n.kind != NodeKind::external) processes_on[n.host]++;
    }
    std::map<std::string, size_t> unit_of_host;
    std::vector<size_t> unit_of(graph.nodes.size());
    size_t units = 0;
    for (size_t i = 0; i < graph.nodes.size(); i++) {
        const auto& n = graph.nodes[i];
        if (n.kind == NodeKind::external || processes_on[n.host] < 2) {
            unit_of[i] = units++;
        } else {
            auto [it, added] = unit_of_host.try_emplace(n.host, units);
            if (added) units++;
            unit_of[i] = it->second;
        }
    }
    auto component = unit_components(graph, unit_of, units);
    std::vector<size_t> members(units);
    for (size_t c : component) members[c]++;
    std::set<std::string> boxed;
    for (const auto& [host, unit] : unit_of_host) {
        if (members[component[unit]] == 1) boxed.insert(host);
    }
    return boxed;
}

// Graphviz reads backslash sequences (\N, \G, \l) in labels: a name must
// not. It also turns entity references into the characters they stand for
// (`&#112;ostgres` shows as "postgres", in SVG and PNG alike), but keeps
// `&amp;` as a literal `&`: so every `&` is written that way, and a process
// cannot pass for another. XML 1.0 has no way to write most control
// characters, not even as references: one in a name would make the whole SVG
// unreadable.
std::string label_text(std::string_view text) {
    std::string out;
    for (char c : valid_utf8(text)) {
        if ((c >= 0 && c < 0x20) || c == 0x7f) {
            out += kReplacementCharacter;
        } else if (c == '&') {
            out += "&amp;";
        } else {
            if (c == '\\') out += '\\';
            out += c;
        }
    }
    return out;
}

void set(void* object, const char* name, const std::string& value) {
    std::string n(name), v(value), empty;
    agsafeset(object, n.data(), v.data(), empty.data());
}

std::string ports_text(const std::set<int>& ports) {
    std::string text;
    for (int p : ports) text += (text.empty() ? ":" : " :") + std::to_string(p);
    return text;
}

// Inside its host's box a node is named by its process; alone, by host/process;
// an external address by its name above it, when it has one. `unanswered`:
// its ports that every attempt failed on, said apart from the ports it serves.
std::string node_label(const Node& n, bool in_cluster, const std::set<int>& unanswered) {
    std::string label = label_text(n.process.empty() || !in_cluster ? n.id : n.process);
    if (!n.name.empty()) label = label_text(n.name) + "\\n" + label;
    if (n.members.size() > 1) label += " (" + std::to_string(n.members.size()) + " hosts)";
    std::set<int> answered;
    std::set_difference(n.ports.begin(), n.ports.end(), unanswered.begin(), unanswered.end(),
                        std::inserter(answered, answered.end()));
    if (!answered.empty()) label += "\\n" + ports_text(answered);
    if (!unanswered.empty()) label += "\\n" + ports_text(unanswered) + " no answer";
    return label;
}

// Each node's ports on which every attempt in the window failed (refused or
// timed out: nothing listening, a firewall). Drawn as a service they would
// pass for one. A port with no attempt at all (a connection made before the
// window that closed in it) answered when it was asked.
std::vector<std::set<int>> unanswered_ports(const Graph& graph) {
    std::vector<std::set<int>> unanswered(graph.nodes.size());
    std::set<std::pair<size_t, int>> answered;
    for (const auto& e : graph.edges) {
        if (e.traffic.connections > 0 || e.traffic.open > 0 || e.traffic.failed == 0) {
            answered.emplace(e.target, e.port);
        }
    }
    for (size_t i = 0; i < graph.nodes.size(); i++) {
        for (int port : graph.nodes[i].ports) {
            if (!answered.count({i, port})) unanswered[i].insert(port);
        }
    }
    return unanswered;
}

// "via 198.18.5.5:80": what the clients dialled before NAT sent them here.
std::string via_text(const Edge& e) {
    std::string text = "via";
    for (const auto& v : e.via) text += " " + label_text(v);
    return text;
}

// `shown_ids`: each node's id as label text, by node index.
std::string edge_tooltip(const Graph& graph, const std::vector<std::string>& shown_ids, const Edge& e) {
    // An external IPv6 address in brackets: fd00::99:80 would read as one address.
    std::string service = graph.nodes[e.target].kind == NodeKind::external
                              ? address_and_port(shown_ids[e.target], e.port)
                              : shown_ids[e.target] + ":" + std::to_string(e.port);
    std::string text = shown_ids[e.source] + " -> " + service + ", " + std::to_string(e.traffic.connections) +
                       " connections, " + std::to_string(e.traffic.failed) + " failed";
    if (e.traffic.open > 0) text += ", " + std::to_string(e.traffic.open) + " open at the end";
    if (e.disputed) text += ", the two hosts' counts disagree (the larger is shown)";
    if (!e.via.empty()) text += ", " + via_text(e);
    return text;
}

// The indices 0 to count - 1, those for which `last` holds after the others, each part in order.
template <typename Predicate>
std::vector<size_t> made_last(size_t count, Predicate last) {
    std::vector<size_t> order(count);
    std::iota(order.begin(), order.end(), 0);
    std::stable_partition(order.begin(), order.end(), [&](size_t i) { return !last(i); });
    return order;
}

CGraph build(const Graph& graph, const RenderOptions& options, const std::string& engine) {
    std::string name = "depgraph";
    CGraph g(agopen(name.data(), Agdirected, nullptr));
    set(g.get(), "layout", engine);
    set(g.get(), "rankdir", "LR");
    // What the colours that need words mean, under the title: orange is no
    // convention, and a tooltip is not there in PNG or print.
    std::string title = label_text(options.title);
    if (size_t disputed = std::count_if(graph.edges.begin(), graph.edges.end(), [](const Edge& e) { return e.disputed; })) {
        title += "\\norange: " + std::to_string(disputed) + (disputed == 1 ? " edge" : " edges") +
                 " whose two hosts counted differently (an agent was not running, or lost counts): the larger count is drawn";
    }
    set(g.get(), "label", title);
    set(g.get(), "labelloc", "t");
    set(g.get(), "fontname", "Helvetica");
    set(g.get(), "overlap", "false");
    set(g.get(), "outputorder", "edgesfirst");

    // A box around a host earns its place only with two processes in it; and
    // cgraph's cost grows with nodes times subgraphs. Only dot draws the boxes:
    // under sfdp or neato a node labelled by its process alone could be on any host.
    std::set<std::string> boxed;
    if (options.host_clusters && engine == "dot") boxed = boxed_hosts(graph);
    std::map<std::string, Agraph_t*> clusters;
    std::vector<Agnode_t*> placed(graph.nodes.size());
    // Made once per node, not once per edge that names it.
    std::vector<std::string> shown_ids;
    shown_ids.reserve(graph.nodes.size());
    for (const auto& n : graph.nodes) shown_ids.push_back(label_text(n.id));
    auto unanswered = unanswered_ports(graph);
    // Graphviz paints the edges (outputorder=edgesfirst) client by client, in
    // the order the nodes were made (each client's by service, in that order,
    // then as made): the clients with failed edges come last, or busy black
    // edges are painted over the red ones.
    std::vector<bool> failing(graph.nodes.size());
    for (const auto& e : graph.edges) {
        if (e.traffic.failed > 0) failing[e.source] = true;
    }
    for (size_t i : made_last(graph.nodes.size(), [&](size_t i) { return failing[i]; })) {
        const auto& n = graph.nodes[i];
        Agraph_t* parent = g.get();
        if (n.kind != NodeKind::external && boxed.count(n.host)) {
            auto& cluster = clusters[n.host];
            if (!cluster) {
                std::string cluster_name = "cluster_" + std::to_string(clusters.size());
                cluster = agsubg(g.get(), cluster_name.data(), 1);
                set(cluster, "label", label_text(n.host));
                set(cluster, "style", "rounded");
                set(cluster, "color", "grey60");
            }
            parent = cluster;
        }
        std::string node_name = "n" + std::to_string(i);
        Agnode_t* node = agnode(parent, node_name.data(), 1);
        placed[i] = node;
        set(node, "label", node_label(n, parent != g.get(), unanswered[i]));
        set(node, "tooltip", shown_ids[i]);
        set(node, "fontname", "Helvetica");
        if (n.kind == NodeKind::external) {
            // Filled, unlike the host boxes' frames, which an empty dashed box looked like.
            set(node, "shape", "box");
            set(node, "style", "filled,dashed,rounded");
            set(node, "fillcolor", "#fff2cc");
            set(node, "color", "darkorange3");
        } else {
            set(node, "shape", n.kind == NodeKind::service ? "box" : "ellipse");
            set(node, "style", "filled,rounded");
            set(node, "fillcolor", n.kind == NodeKind::service ? "lightblue" : "white");
            // A service that never answered: red and dashed, as the edges that failed to reach it.
            if (n.kind == NodeKind::service && unanswered[i].size() == n.ports.size()) {
                set(node, "style", "filled,dashed,rounded");
                set(node, "fillcolor", "mistyrose");
                set(node, "color", "red");
            }
        }
        if (options.highlight.count(i)) {  // its style stays: an external target still looks external
            set(node, "fillcolor", "gold");
            set(node, "penwidth", "3");
        }
    }

    bool labelled = graph.edges.size() <= kLabelledMaxEdges;
    // Translucent: hundreds of edges bundled between two tiers made a black
    // mass. The graph's default, once, not an attribute on each of 20,000 edges.
    if (!labelled) {
        std::string color = "color", translucent = "#1f3b6080";
        agattr(g.get(), AGEDGE, color.data(), translucent.data());
    }
    // Widths by log(attempts), from the graph's quietest edge to its busiest:
    // counts run from 1 to tens of thousands, and a scale starting at zero drew
    // 16 and 19,804 connections 2.15 and 5 wide.
    double quietest = HUGE_VAL, busiest = 0;
    for (const auto& e : graph.edges) {
        double a = std::log1p(static_cast<double>(e.traffic.attempts()));
        quietest = std::min(quietest, a);
        busiest = std::max(busiest, a);
    }
    for (size_t i : made_last(graph.edges.size(), [&](size_t i) { return graph.edges[i].traffic.failed > 0; })) {
        const auto& e = graph.edges[i];
        bool failed = e.traffic.failed > 0;
        // Unnamed: cgraph gives each its own id. Edges of one name between the
        // same two nodes are one edge to it, and a client calling a service on
        // two ports has two.
        Agedge_t* edge = agedge(g.get(), placed[e.source], placed[e.target], nullptr, 1);
        double share = busiest > quietest
                           ? (std::log1p(static_cast<double>(e.traffic.attempts())) - quietest) / (busiest - quietest)
                           : 0.5;  // all alike: nothing to tell apart
        double width = kThinnest + (kThickest - kThinnest) * share;
        if (failed) width = std::max(width, kFailedWidth);
        // to_chars, not snprintf: the same digits at a tenth of the cost, 20,000 times on a fleet.
        char penwidth[16];
        auto written = std::to_chars(penwidth, penwidth + sizeof penwidth, width, std::chars_format::fixed, 2);
        set(edge, "penwidth", std::string(penwidth, written.ptr));
        set(edge, "tooltip", edge_tooltip(graph, shown_ids, e));
        if (labelled) {
            std::string label = ":" + std::to_string(e.port) + " (" + std::to_string(e.traffic.connections);
            if (failed) label += ", " + std::to_string(e.traffic.failed) + " failed";
            // A pool of long-lived connections made none in the window: "(0)" alone would read as unused.
            if (e.traffic.open > 0) label += ", " + std::to_string(e.traffic.open) + " open";
            label += ")";
            if (!e.via.empty()) label += "\\n" + via_text(e);
            set(edge, "label", label);
            set(edge, "fontname", "Helvetica");
            if (failed) set(edge, "fontcolor", "red");
        }
        if (failed) {
            set(edge, "color", "red");
            set(edge, "style", "dashed");
        } else if (e.disputed) {
            set(edge, "color", "darkorange");
        }
    }
    return g;
}

Result<std::string> write_dot(Agraph_t* g) {
    char* buffer = nullptr;
    size_t size = 0;
    std::unique_ptr<FILE, Free<fclose>> stream(open_memstream(&buffer, &size));
    if (!stream) return errno_error("cannot write DOT", errno);
    int rc = agwrite(g, stream.get());
    stream.reset();  // fclose publishes buffer and size
    std::unique_ptr<char, Free<free>> owned(buffer);
    if (rc != 0) return Error{"cannot write DOT"};
    return std::string(buffer, size);
}

// The child's last act: `bytes` into the memory file, `status` into the pipe.
[[noreturn]] void hand_over(int file, int status_pipe, char status, std::string_view bytes) {
    if (!write_all(file, bytes)) {
        status = '-';
        std::string why = std::string("cannot hand the rendered file over: ") + std::strerror(errno);
        (void)ftruncate(file, 0);
        (void)lseek(file, 0, SEEK_SET);
        (void)write_all(file, why);
    }
    _exit(write(status_pipe, &status, 1) == 1 ? 0 : 1);
}

// The child's part: lays the graph out, renders it, hands the file (or what
// went wrong) over and exits. It frees nothing: a graph of thousands of edges
// taken apart piece by piece costs tens of milliseconds, and the child's end
// returns its memory at once.
[[noreturn]] void lay_out_in_child(const Graph& graph, const RenderOptions& options, const std::string& engine,
                                   int file, int status_pipe) {
    GVC_t* gvc = gvContext();
    if (!gvc) hand_over(file, status_pipe, '-', "cannot start Graphviz");
    Agraph_t* g = build(graph, options, engine).release();
    if (gvLayout(gvc, g, engine.c_str()) != 0) {
        hand_over(file, status_pipe, '-',
                  "Graphviz could not lay the graph out with " + engine + " (is its plugin installed?)");
    }
    char* data = nullptr;
    unsigned int length = 0;
    if (gvRenderData(gvc, g, options.format.c_str(), &data, &length) != 0) {
        hand_over(file, status_pipe, '-',
                  "Graphviz could not render " + options.format + " (is its plugin installed?)");
    }
    hand_over(file, status_pipe, '+', {data, length});
}

// Runs the layout in a child, which writes the file, or the error message, to
// a memory file that it shares with the parent, and then one status byte to a
// pipe ('+' done, '-' failed): megabytes of SVG are not pushed through a pipe
// 64 KiB at a time. std::nullopt: the time ran out and the child was killed.
Result<std::optional<std::string>> render_with_deadline(const Graph& graph, const RenderOptions& options,
                                                        const std::string& engine) {
    UniqueFd file(memfd_create("depgraph-render", MFD_CLOEXEC));
    if (!file.valid()) return errno_error("cannot create the layout's memory file", errno);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return errno_error("cannot create a pipe", errno);
    UniqueFd reader(fds[0]), writer(fds[1]);
    std::fflush(nullptr);
    pid_t child = fork();
    if (child < 0) return errno_error("cannot start the layout process", errno);
    if (child == 0) lay_out_in_child(graph, options, engine, file.get(), writer.get());
    writer = UniqueFd();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options.timeout_seconds);
    char status = 0;  // none: the child died without saying how it went
    bool timed_out = false;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            timed_out = true;
            break;
        }
        pollfd pfd{reader.get(), POLLIN, 0};
        if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;  // interrupted, or the time is up
        ssize_t n = read(reader.get(), &status, 1);
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    if (timed_out) kill(child, SIGKILL);
    while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) return std::optional<std::string>();
    if (status == 0) return Error{"the Graphviz layout with " + engine + " crashed"};
    struct stat st {};
    if (fstat(file.get(), &st) != 0) return errno_error("cannot read the layout's result", errno);
    std::string bytes(static_cast<size_t>(st.st_size), '\0');
    for (size_t done = 0; done < bytes.size();) {
        ssize_t n = pread(file.get(), bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return errno_error("cannot read the layout's result", n < 0 ? errno : EIO);
        done += static_cast<size_t>(n);
    }
    if (status != '+') return Error{bytes};
    return std::optional<std::string>(std::move(bytes));
}

}  // namespace

std::string choose_layout(const Graph& graph) {
    bool fits = graph.edges.size() <= kDotMaxEdges && edges_on_cycles(graph) <= kDotMaxCyclicEdges;
    return fits ? "dot" : "sfdp";
}

Result<std::string> render_graphviz(const Graph& graph, const RenderOptions& options) {
    // Graphviz's warnings are not the user's business; failures come back as return codes.
    agseterr(AGMAX);
    std::string engine = options.layout.empty() ? choose_layout(graph) : options.layout;
    if (options.format == "dot") {
        auto g = build(graph, options, engine);
        return write_dot(g.get());
    }
    auto rendered = render_with_deadline(graph, options, engine);
    if (!rendered) return rendered.error();
    if (*rendered) return std::move(**rendered);
    if (options.layout.empty() && engine != "sfdp") {
        rendered = render_with_deadline(graph, options, "sfdp");
        if (!rendered) return rendered.error();
        if (*rendered) return std::move(**rendered);
    }
    return Error{"the layout with " + engine + " did not finish within " + std::to_string(options.timeout_seconds) +
                 " s: try --layout sfdp, --group-by role or --min-connections"};
}

}  // namespace depgraph
