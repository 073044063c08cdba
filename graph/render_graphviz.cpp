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
#include <memory>

#include "common/time.hpp"
#include "common/unique_fd.hpp"
#include "graph/text.hpp"

namespace depgraph {
namespace {

using CGraph = std::unique_ptr<Agraph_t, Free<agclose>>;

// From DESIGN.md's timings on Graphviz 2.42: dot lays out a layered graph of
// 2,400 edges in 0.5 s but needs 42 s for a random cyclic one of 600 edges
// (406 s with edge labels); sfdp does 3,000 edges in 0.75 s whatever the shape.
constexpr size_t kDotMaxAcyclicEdges = 2500;
constexpr size_t kDotMaxCyclicEdges = 150;
constexpr size_t kLabelledMaxEdges = 60;

bool has_cycle(const Graph& graph) {
    std::vector<size_t> indegree(graph.nodes.size());
    std::vector<std::vector<size_t>> next(graph.nodes.size());
    for (const auto& e : graph.edges) {
        if (e.source == e.target) continue;  // a self-loop costs dot nothing
        next[e.source].push_back(e.target);
        indegree[e.target]++;
    }
    std::vector<size_t> ready;
    for (size_t i = 0; i < indegree.size(); i++) {
        if (indegree[i] == 0) ready.push_back(i);
    }
    size_t removed = 0;
    while (!ready.empty()) {
        size_t n = ready.back();
        ready.pop_back();
        removed++;
        for (size_t m : next[n]) {
            if (--indegree[m] == 0) ready.push_back(m);
        }
    }
    return removed < graph.nodes.size();
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
// an external address by its name above it, when it has one.
std::string node_label(const Node& n, bool in_cluster) {
    std::string label = label_text(n.process.empty() || !in_cluster ? n.id : n.process);
    if (!n.name.empty()) label = label_text(n.name) + "\\n" + label;
    if (n.members.size() > 1) label += " (" + std::to_string(n.members.size()) + " hosts)";
    if (!n.ports.empty()) label += "\\n" + ports_text(n.ports);
    return label;
}

// "via 198.18.5.5:80": what the clients dialled before NAT sent them here.
std::string via_text(const Edge& e) {
    std::string text = "via";
    for (const auto& v : e.via) text += " " + label_text(v);
    return text;
}

// `shown_ids`: each node's id as label text, by node index.
std::string edge_tooltip(const std::vector<std::string>& shown_ids, const Edge& e) {
    std::string text = shown_ids[e.source] + " -> " + shown_ids[e.target] + ":" + std::to_string(e.port) + ", " +
                       std::to_string(e.traffic.connections) + " connections, " + std::to_string(e.traffic.failed) +
                       " failed";
    if (e.disputed) text += ", the two hosts' counts disagree (the larger is shown)";
    if (!e.via.empty()) text += ", " + via_text(e);
    return text;
}

CGraph build(const Graph& graph, const RenderOptions& options, const std::string& engine) {
    std::string name = "depgraph";
    CGraph g(agopen(name.data(), Agdirected, nullptr));
    set(g.get(), "layout", engine);
    set(g.get(), "rankdir", "LR");
    set(g.get(), "label", label_text(options.title));
    set(g.get(), "labelloc", "t");
    set(g.get(), "fontname", "Helvetica");
    set(g.get(), "overlap", "false");
    set(g.get(), "outputorder", "edgesfirst");

    // A box around a host earns its place only with two processes in it; and
    // cgraph's cost grows with nodes times subgraphs.
    std::map<std::string, int> processes_on;
    for (const auto& n : graph.nodes) {
        if (n.kind != NodeKind::external) processes_on[n.host]++;
    }
    std::map<std::string, Agraph_t*> clusters;
    std::vector<Agnode_t*> placed(graph.nodes.size());
    // Made once per node, not once per edge that names it.
    std::vector<std::string> shown_ids;
    shown_ids.reserve(graph.nodes.size());
    for (const auto& n : graph.nodes) shown_ids.push_back(label_text(n.id));
    for (size_t i = 0; i < graph.nodes.size(); i++) {
        const auto& n = graph.nodes[i];
        Agraph_t* parent = g.get();
        if (options.host_clusters && n.kind != NodeKind::external && processes_on[n.host] > 1) {
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
        set(node, "label", node_label(n, parent != g.get()));
        set(node, "tooltip", shown_ids[i]);
        set(node, "fontname", "Helvetica");
        if (n.kind == NodeKind::external) {
            set(node, "shape", "box");
            set(node, "style", "dashed,rounded");
            set(node, "color", "grey40");
        } else {
            set(node, "shape", n.kind == NodeKind::service ? "box" : "ellipse");
            set(node, "style", "filled,rounded");
            set(node, "fillcolor", n.kind == NodeKind::service ? "lightblue" : "white");
        }
        if (options.highlight.count(i)) {
            set(node, "style", "filled,bold");
            set(node, "fillcolor", "gold");
            set(node, "penwidth", "3");
        }
    }

    bool labelled = graph.edges.size() <= kLabelledMaxEdges;
    int64_t busiest = 1;
    for (const auto& e : graph.edges) busiest = std::max(busiest, e.traffic.attempts());
    for (const auto& e : graph.edges) {
        // Unnamed: cgraph gives each its own id. Edges of one name between the
        // same two nodes are one edge to it, and a client calling a service on
        // two ports has two.
        Agedge_t* edge = agedge(g.get(), placed[e.source], placed[e.target], nullptr, 1);
        double width = 1.0 + 4.0 * std::log1p(static_cast<double>(e.traffic.attempts())) / std::log1p(busiest);
        // to_chars, not snprintf: the same digits at a tenth of the cost, 20,000 times on a fleet.
        char penwidth[16];
        auto written = std::to_chars(penwidth, penwidth + sizeof penwidth, width, std::chars_format::fixed, 2);
        set(edge, "penwidth", std::string(penwidth, written.ptr));
        set(edge, "tooltip", edge_tooltip(shown_ids, e));
        if (labelled) {
            std::string label = ":" + std::to_string(e.port) + " (" + std::to_string(e.traffic.connections) + ")";
            if (!e.via.empty()) label += "\\n" + via_text(e);
            set(edge, "label", label);
            set(edge, "fontname", "Helvetica");
        }
        if (e.traffic.failed > 0) {
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
    size_t limit = has_cycle(graph) ? kDotMaxCyclicEdges : kDotMaxAcyclicEdges;
    return graph.edges.size() <= limit ? "dot" : "sfdp";
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
