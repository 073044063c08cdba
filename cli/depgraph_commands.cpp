#include "cli/depgraph_commands.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "cli/depgraph_output.hpp"
#include "common/time.hpp"
#include "graph/grouping.hpp"
#include "graph/host_names.hpp"
#include "graph/hosts.hpp"
#include "graph/impact.hpp"
#include "graph/join.hpp"
#include "graph/containers.hpp"
#include "graph/merge.hpp"
#include "graph/nat.hpp"
#include "graph/records.hpp"
#include "graph/render_graphviz.hpp"
#include "graph/text.hpp"
#include "store/database.hpp"

namespace depgraph {
namespace {

// Past this many nodes a drawing is a texture, not a map (the readability
// review's 1,020-node fleet; its 183-node graph still read).
constexpr size_t kReadableNodes = 300;

// Keys in the order written: window, nodes, edges read better than alphabetical.
using json = nlohmann::ordered_json;

Result<Window> window_of(const Inputs& in) {
    Window window;
    int64_t now = unix_now();
    if (!in.until.empty()) {
        auto until = parse_time_point(in.until, now);
        if (!until) return until.error();
        window.until = *until;
    }
    // The default window ends where the user's does: `impact --until 35d` asks about the 30 days
    // before that, not about a window that ends before it starts.
    if (std::string since = in.since.empty() ? in.default_since : in.since; !since.empty()) {
        auto point = parse_time_point(since, in.since.empty() && window.bounded_until() ? window.until : now);
        if (!point) return point.error();
        window.since = *point;
    }
    if (window.since >= window.until) return Error{"--since must be earlier than --until"};
    return window;
}

json window_json(const Window& w) {
    return {{"since", time_or_null(w.since, w.bounded_since())}, {"until", time_or_null(w.until, w.bounded_until())}};
}

// What the graphs are built from, the graph with its filters and grouping
// applied, and what resolving targets needs.
struct Fleet {
    Records records;
    RoleRules roles;
    HostNames names;
    Graph graph;
};

// The fleet's graph: filtered by `filters`, grouped, external addresses named.
Graph fleet_graph(const Fleet& fleet, const Window& window, const std::string& grouping, const Filters& filters) {
    auto group_by = grouping == "host" ? GroupBy::host : grouping == "role" ? GroupBy::role : GroupBy::process;
    // Each step hands its graph on: a fleet's graph is not copied. External addresses are named
    // before the excludes, which match names too.
    auto graph = build_graph(fleet.records, window);
    name_external_nodes(graph, fleet.names);
    graph = exclude_nodes(std::move(graph), filters, group_by, fleet.roles);
    return drop_small_edges(group_graph(std::move(graph), group_by, fleet.roles), filters);
}

Result<Fleet> load_fleet(const GraphOptions& options) {
    auto window = window_of(options.inputs);
    if (!window) return window.error();
    Fleet fleet;
    if (!options.roles_file.empty()) {
        auto roles = RoleRules::load(options.roles_file);
        if (!roles) return roles.error();
        fleet.roles = std::move(*roles);
    }
    auto records = load_records(options.inputs.dbs, *window);
    if (!records) return records.error();
    fleet.records = std::move(*records);
    name_containers(fleet.records);
    resolve_nat(fleet.records);
    fleet.names = HostNames::load();
    fleet.graph = fleet_graph(fleet, *window, options.group_by, options.filters);
    return fleet;
}

json traffic_json(const Traffic& t) {
    return {{"connections", t.connections}, {"failed", t.failed}, {"bytes_sent", t.bytes_sent},
            {"bytes_received", t.bytes_received}, {"open", t.open},
            {"first_seen", format_iso8601(t.first_seen)}, {"last_seen", format_iso8601(t.last_seen)}};
}

json graph_json(const Graph& graph) {
    json nodes = json::array(), edges = json::array();
    for (const auto& n : graph.nodes) {
        nodes.push_back({{"id", n.id}, {"kind", to_string(n.kind)}, {"host", n.host}, {"process", n.process},
                         {"name", n.name.empty() ? json() : json(n.name)}, {"ports", n.ports},
                         {"members", n.members.size()}});
    }
    for (const auto& e : graph.edges) {
        json edge = {{"source", graph.nodes[e.source].id}, {"target", graph.nodes[e.target].id}, {"port", e.port},
                     {"disputed", e.disputed}, {"via", e.via}};
        edge.update(traffic_json(e.traffic));
        edges.push_back(std::move(edge));
    }
    return {{"window", window_json(graph.window)}, {"nodes", nodes}, {"edges", edges}};
}

// `path` replaced by a file holding `bytes`, or left as it was: they go to a
// temporary file beside it, renamed over it once they are all on disk, so a
// full disk or a size limit never leaves half a file where a whole one was.
// The file keeps its permissions; a new one gets 0666 less the umask.
Status replace_file(const std::string& path, const std::string& bytes) {
    struct stat st {};
    mode_t mode = ::stat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : new_file_mode();
    std::string temporary = path + ".XXXXXX";
    UniqueFd fd(::mkostemp(temporary.data(), O_CLOEXEC));
    if (!fd.valid()) return errno_error("cannot create a temporary file beside " + path, errno);
    if (::fchmod(fd.get(), mode) != 0 || !write_all(fd.get(), bytes) || ::fsync(fd.get()) != 0 ||
        ::close(fd.release()) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(temporary.c_str());
        return errno_error("cannot write " + path, err);
    }
    return ok_status();
}

// "-" is standard output. A regular file, or a name that is free, is
// replaced whole (replace_file); so is the regular file a symlink points to,
// when its directory is ours to write in. Anything else is written in place,
// as opening it would: a device (/dev/null), a FIFO, /dev/stdout.
Status write_output(const std::string& output, const std::string& bytes) {
    if (output == "-") {
        if (!write_all(STDOUT_FILENO, bytes)) return errno_error("cannot write to standard output", errno);
        return ok_status();
    }
    struct stat st {};
    if (::lstat(output.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return replace_file(output, bytes);
    if (S_ISLNK(st.st_mode)) {
        std::error_code ec;
        auto target = std::filesystem::canonical(output, ec);
        if (!ec && std::filesystem::is_regular_file(target, ec) &&
            ::access(target.parent_path().c_str(), W_OK) == 0) {
            return replace_file(target.string(), bytes);
        }
    }
    UniqueFd fd(::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));  // a dangling link's target
    if (!fd.valid() || !write_all(fd.get(), bytes) || ::close(fd.release()) != 0) {
        return errno_error("cannot write " + output, errno);
    }
    return ok_status();
}

// -o naming a --db input, or its -wal or -shm file, would replace recorded
// data with the output: refused before any work.
Status check_output_spares_inputs(const std::string& output, const Inputs& in) {
    if (output == "-") return ok_status();
    for (const auto& db : in.dbs) {
        if (is_database_file(output, db)) {
            return Error{"-o " + output + " would overwrite the database " + db + ": choose another output file"};
        }
    }
    return ok_status();
}

// svg, png, dot or json for a graph, with its title.
Result<std::string> draw(const Graph& graph, const std::string& format, const RenderOptions& base) {
    if (format == "json") return graph_json(graph).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    RenderOptions options = base;
    options.format = format;
    return render_graphviz(graph, options);
}

// What the graph options say about drawing: hosts boxed when nodes are processes.
RenderOptions render_options(const GraphOptions& graph, std::string title) {
    RenderOptions options;
    options.title = std::move(title);
    options.host_clusters = graph.group_by == "process";
    options.timeout_seconds = graph.layout_timeout;
    return options;
}

// "depgraph: the beginning to now, traffic seen 2026-11-26T19:04:00Z to
// 2026-11-26T19:09:00Z (--no-external)": a window that starts at the
// beginning says when the traffic drawn was.
std::string drawing_title(const std::string& what, const Graph& graph, const std::string& filters) {
    std::string title = what + ": " + window_text(graph.window);
    if (!graph.window.bounded_since() && !graph.edges.empty()) {
        int64_t first = INT64_MAX, last = INT64_MIN;
        for (const auto& e : graph.edges) {
            first = std::min(first, e.traffic.first_seen);
            last = std::max(last, e.traffic.last_seen);
        }
        title += ", traffic seen " + format_iso8601(first) + " to " + format_iso8601(last);
    }
    return title + (filters.empty() ? "" : " (" + filters + ")");
}

// The extensions a written file's format follows, and the format each names.
constexpr std::pair<std::string_view, std::string_view> kExtensions[] = {
    {".svg", "svg"}, {".png", "png"}, {".json", "json"}, {".dot", "dot"}, {".gv", "dot"}, {".txt", "table"}};

// --format, or else the output's extension; none, or '-': the first of
// `formats`. An extension that names none of them is an error: `render -o
// fleet.pdf` is not an SVG file called fleet.pdf.
Result<std::string> format_from(const std::string& output, const std::string& given,
                                const std::vector<std::string>& formats) {
    if (!given.empty()) return given;
    std::string ext = lower_case(std::filesystem::path(output).extension().string());
    if (ext.empty()) return formats[0];
    std::string_view named;  // a format this command may not write: `impact -o x.png`
    for (const auto& [extension, format] : kExtensions) {
        if (ext != extension) continue;
        if (std::find(formats.begin(), formats.end(), format) != formats.end()) return std::string(format);
        named = format;
    }
    std::string accepted;  // ".txt, .json, .svg, .dot/.gv": each format's extensions, in the formats' order
    for (const auto& format : formats) {
        accepted += accepted.empty() ? "" : ", ";
        bool first = true;
        for (const auto& [extension, named] : kExtensions) {
            if (named != format) continue;
            accepted += (first ? "" : "/") + std::string(extension);
            first = false;
        }
    }
    if (!named.empty()) {
        return Error{printable(output) + ": this command does not write " + std::string(named) + "; use " + accepted +
                     ", or --format"};
    }
    return Error{"cannot tell the format from the extension of " + printable(output) + ": use " + accepted +
                 ", or --format"};
}

// "--exclude db-*, --min-connections 100": the filters given, as typed.
std::string filters_text(const Filters& filters) {
    std::string text;
    auto add = [&](const std::string& option) { text += (text.empty() ? "" : ", ") + option; };
    for (const auto& pattern : filters.excludes) add("--exclude " + pattern);
    if (filters.no_external) add("--no-external");
    if (filters.min_connections > 0) add("--min-connections " + std::to_string(filters.min_connections));
    return text;
}

// The graph the walk's filters were applied to, without them, and the target in it.
struct Unfiltered {
    Graph graph;
    Result<Target> target;
};

Unfiltered unfiltered(const Fleet& fleet, const WalkArgs& args) {
    auto whole = fleet_graph(fleet, fleet.graph.window, args.graph.group_by, Filters{});
    auto target = resolve_target(whole, args.target, AddressBook(fleet.records.addresses), fleet.roles);
    return {std::move(whole), std::move(target)};
}

// A target the filtered graph lacks may be one the filters left out: an empty
// answer or "no such node" would then mislead, so the error says which it is.
// Unknown either way: the unfiltered graph's error, whose suggestions are not
// limited to what the filters kept.
Error unresolved_target(const Fleet& fleet, const WalkArgs& args, const Error& filtered) {
    auto filters = filters_text(args.graph.filters);
    if (filters.empty()) return filtered;
    auto whole = unfiltered(fleet, args);
    if (!whole.target) return whole.target.error();
    std::string matched;
    for (size_t n : whole.target->nodes) matched += (matched.empty() ? "" : ", ") + whole.graph.nodes[n].id;
    return Error{"no node matches '" + args.target + "' once filtered (" + filters +
                 "); without the filters it matches " + matched};
}

// How many nodes the walk reaches in the unfiltered graph and not in the
// filtered one: the dependents the filters hid. 0 without filters.
size_t left_out_by_filters(const Fleet& fleet, const WalkArgs& args, const std::vector<Reached>& reached) {
    if (filters_text(args.graph.filters).empty()) return 0;
    auto whole = unfiltered(fleet, args);
    if (!whole.target) return 0;
    auto direction = args.dependencies ? Direction::dependencies : Direction::dependents;
    std::set<std::string> kept;
    for (const auto& r : reached) kept.insert(fleet.graph.nodes[r.node].id);
    size_t hidden = 0;
    for (const auto& r : walk(whole.graph, *whole.target, direction, args.depth)) {
        hidden += !kept.count(whole.graph.nodes[r.node].id);
    }
    return hidden;
}

}  // namespace

Status run_edges(const Inputs& in) {
    auto window = window_of(in);
    if (!window) return window.error();
    auto records = load_records(in.dbs, *window);
    if (!records) return records.error();
    if (in.format == "json") {
        auto rows = json::array();
        for (const auto& e : records->edges) {
            rows.push_back({{"host", e.host}, {"direction", e.direction}, {"netns", e.netns},
                            {"process", e.process}, {"cgroup", e.cgroup}, {"local_addr", e.local_addr},
                            {"remote_addr", e.remote_addr}, {"port", e.port}, {"loopback", e.loopback},
                            {"connects", e.connects}, {"failed", e.failed}, {"refused", e.refused},
                            {"accepts", e.accepts}, {"closes", e.closes}, {"bytes_sent", e.bytes_sent},
                            {"bytes_received", e.bytes_received}, {"open", e.open},
                            {"first_seen", format_iso8601(e.first_seen)},
                            {"last_seen", format_iso8601(e.last_seen)}});
        }
        std::ostringstream text;
        print_json(text, rows);
        return write_output("-", text.str());
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : records->edges) {
        rows.push_back({std::string(e.host), std::string(e.direction), std::string(e.process),
                        std::string(e.local_addr), std::string(e.remote_addr), std::to_string(e.port),
                        std::to_string(e.connects), std::to_string(e.failed), std::to_string(e.accepts),
                        std::to_string(e.bytes_sent), std::to_string(e.bytes_received), std::to_string(e.open),
                        format_iso8601(e.first_seen), format_iso8601(e.last_seen)});
    }
    if (rows.empty()) return write_output("-", "No edges recorded from " + window_text(*window) + ".\n");
    std::ostringstream table;
    print_table(table,
                {"HOST", "DIR", "PROCESS", "LOCAL", "REMOTE", "PORT", "CONNECTS", "FAILED", "ACCEPTS", "SENT",
                 "RECEIVED", "OPEN", "FIRST_SEEN", "LAST_SEEN"},
                rows);
    return write_output("-", table.str());
}

Status run_hosts(const Inputs& in) {
    auto hosts = load_hosts(in.dbs);
    if (!hosts) return hosts.error();
    for (const auto& h : *hosts) {
        if (!h.shared_name) continue;
        std::cerr << "depgraph: warning: host " << printable(h.host) << ": two agents recorded under one host name "
                  << "at once (network namespaces " << h.shared_name->netns << " and " << h.shared_name->other_netns
                  << ", from " << format_iso8601(h.shared_name->since) << "), so their edges are one host's: "
                  << "give each agent --hostname NAME\n";
    }
    auto optional_time = [](const std::optional<int64_t>& t) { return time_or_null(t.value_or(0), t.has_value()); };
    if (in.format == "json") {
        auto rows = json::array();
        for (const auto& h : *hosts) {
            json runs = json::array(), not_running = json::array();
            for (const auto& r : h.runs) {
                runs.push_back({{"run_id", r.run_id}, {"version", r.version}, {"kernel", r.kernel}, {"scope", r.scope},
                                {"netns", r.netns}, {"started_at", format_iso8601(r.started_at)},
                                {"stopped_at", optional_time(r.stopped_at)},
                                {"last_report_at", format_iso8601(r.last_report_at)}});
            }
            for (const auto& gap : h.not_running) {
                not_running.push_back({{"from", format_iso8601(gap.from)}, {"until", format_iso8601(gap.until)}});
            }
            rows.push_back({{"host", h.host}, {"edges", h.edges}, {"losses", h.losses},
                            {"last_report_at", optional_time(h.last_report_at)}, {"runs", runs},
                            {"not_running", not_running}});
        }
        std::ostringstream text;
        print_json(text, rows);
        return write_output("-", text.str());
    }
    // A row per run, and one per time between runs when the agent was not
    // running; HOST on every row, so that grep and sort keep each row whole.
    // EDGES and LOSSES are the host's, on its first row.
    std::vector<std::vector<std::string>> rows;
    for (const auto& h : *hosts) {
        std::string losses;
        for (const auto& [counter, value] : h.losses) losses += (losses.empty() ? "" : ",") + counter + "=" + std::to_string(value);
        std::vector<std::string> totals{std::to_string(h.edges), losses.empty() ? "-" : losses};
        if (h.runs.empty()) rows.push_back({h.host, "-", "-", "-", "-", "-", totals[0], totals[1]});
        auto gap = h.not_running.begin();
        for (const auto& r : h.runs) {
            if (gap != h.not_running.end() && gap->until == r.started_at) {
                rows.push_back({h.host, "NOT RUNNING", format_iso8601(gap->from), format_iso8601(gap->until), "-", "-"});
                ++gap;
            }
            std::vector<std::string> row{h.host, "running", format_iso8601(r.started_at),
                                         // No stop recorded: still running, or it died; its last report says since when.
                                         r.stopped_at ? format_iso8601(*r.stopped_at) : "not recorded",
                                         format_iso8601(r.last_report_at), r.version};
            if (&r == &h.runs.front()) row.insert(row.end(), totals.begin(), totals.end());
            rows.push_back(std::move(row));
        }
    }
    std::ostringstream table;
    print_table(table, {"HOST", "AGENT", "FROM", "UNTIL", "LAST_REPORT", "VERSION", "EDGES", "LOSSES"}, rows);
    return write_output("-", table.str());
}

Status run_merge(const std::string& output, const std::vector<std::string>& inputs) {
    if (output == "-") return Error{"merge writes a database file, not standard output: give -o a file name"};
    auto summary = merge_databases(output, inputs);
    if (!summary) return summary.error();
    auto counted = [](int64_t n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); };
    std::cerr << "merged " << counted(summary->databases, "database") << " into " << printable(output)
              << ", which holds " << counted(summary->edges, "edge") << " in " << counted(summary->buckets, "bucket row")
              << " (new: " << counted(summary->new_edges, "edge") << ", " << counted(summary->new_buckets, "bucket row")
              << ")\n";
    return ok_status();
}

Status run_render(const RenderArgs& args) {
    if (auto s = check_output_spares_inputs(args.output, args.graph.inputs); !s) return s;
    auto format = format_from(args.output, args.graph.inputs.format, kRenderFormats);
    if (!format) return format.error();
    if (*format == "png" && args.output == "-" && isatty(STDOUT_FILENO)) {
        return Error{"not writing a PNG image to the terminal: give -o a file name, or pipe it"};
    }
    if (!args.graph.roles_file.empty() && args.graph.group_by != "role") {
        std::cerr << "depgraph: warning: --roles only applies with --group-by role\n";
    }
    auto fleet = load_fleet(args.graph);
    if (!fleet) return fleet.error();
    // Still drawn (a script may expect the file), but a picture of nothing is rarely what was meant.
    // The filters are named in the title too, so that a filtered picture does not pass for the whole fleet.
    auto filters = filters_text(args.graph.filters);
    if (fleet->graph.nodes.empty()) {
        std::cerr << "depgraph: warning: the graph is empty from " << window_text(fleet->graph.window)
                  << (filters.empty() ? "" : " with " + filters) << '\n';
    }
    // A picture of a thousand processes is drawn, and no one can read it: say what draws fewer.
    if (*format != "json" && fleet->graph.nodes.size() > kReadableNodes && args.graph.group_by != "role") {
        std::cerr << "depgraph: note: " << fleet->graph.nodes.size() << " nodes are more than a picture shows "
                  << "legibly; --group-by role draws one node per role\n";
    }
    auto options = render_options(args.graph, drawing_title("depgraph", fleet->graph, filters));
    options.layout = args.layout;
    auto bytes = draw(fleet->graph, *format, options);
    if (!bytes) return bytes.error();
    return write_output(args.output, *bytes);
}

Status run_walk(const WalkArgs& args) {
    if (auto s = check_output_spares_inputs(args.output, args.graph.inputs); !s) return s;
    auto chosen = format_from(args.output, args.graph.inputs.format, kWalkFormats);
    if (!chosen) return chosen.error();
    const std::string& format = *chosen;
    auto fleet = load_fleet(args.graph);
    if (!fleet) return fleet.error();
    const auto& graph = fleet->graph;
    auto target = resolve_target(graph, args.target, AddressBook(fleet->records.addresses), fleet->roles);
    if (!target) return unresolved_target(*fleet, args, target.error());
    auto direction = args.dependencies ? Direction::dependencies : Direction::dependents;
    auto reached = walk(graph, *target, direction, args.depth);
    std::stable_sort(reached.begin(), reached.end(), [&](const Reached& a, const Reached& b) {
        return std::tie(a.depth, graph.nodes[a.node].id) < std::tie(b.depth, graph.nodes[b.node].id);
    });
    const char* list_name = args.dependencies ? "dependencies" : "dependents";

    if (format == "svg" || format == "dot") {
        std::vector<bool> keep(graph.nodes.size());
        for (size_t n : target->nodes) keep[n] = true;
        for (const auto& r : reached) keep[r.node] = true;
        auto drawn = subgraph(graph, keep);
        auto filters = filters_text(args.graph.filters);
        auto options = render_options(args.graph, drawing_title(std::string("depgraph ") +
                                                                    (args.dependencies ? "deps" : "impact") + " of " +
                                                                    args.target, drawn, filters));
        options.layout = args.layout;
        for (size_t n : target->nodes) options.highlight.insert(*drawn.find(graph.nodes[n].id));
        auto bytes = draw(drawn, format, options);
        if (!bytes) return bytes.error();
        return write_output(args.output, *bytes);
    }
    // A node as the tables and lists name it: an address with its /etc/hosts name.
    auto shown = [&](size_t n) {
        const auto& node = graph.nodes[n];
        return node.name.empty() ? node.id : node.id + " (" + node.name + ")";
    };
    // The nodes one level closer, each once, the busiest edge's first: the nodes called (impact) or
    // calling (deps). A client calling one service on two ports calls one node.
    auto neighbours = [&](const Reached& r) {
        std::vector<size_t> nodes;
        for (size_t i : r.edges) {
            size_t n = args.dependencies ? graph.edges[i].source : graph.edges[i].target;
            if (std::find(nodes.begin(), nodes.end(), n) == nodes.end()) nodes.push_back(n);
        }
        return nodes;
    };
    const char* neighbour_key = args.dependencies ? "from" : "calls";
    // A dependent's evidence: its edges to the level before, added up (lb/nginx made 14 connections to
    // app-01 and 10 to app-02: 24). The busiest edge names the neighbour and the port.
    auto evidence = [&](const Reached& r) {
        Traffic total = graph.edges[r.edges[0]].traffic;
        for (size_t i = 1; i < r.edges.size(); i++) total.add(graph.edges[r.edges[i]].traffic);
        return total;
    };
    auto left_out = left_out_by_filters(*fleet, args, reached);
    if (format == "json") {
        json list = json::array();
        for (const auto& r : reached) {
            const auto& n = graph.nodes[r.node];
            const auto& busiest = graph.edges[r.edges[0]];
            // Every neighbour, the busiest first; the port and NAT addresses are the busiest edge's.
            json called = json::array();
            for (size_t neighbour : neighbours(r)) called.push_back(graph.nodes[neighbour].id);
            json row = {{"node", n.id}, {"kind", to_string(n.kind)}, {"host", n.host}, {"process", n.process},
                        {"depth", r.depth}, {neighbour_key, std::move(called)}, {"port", busiest.port},
                        {"via", busiest.via}, {"through_external", r.through_external}};
            row.update(traffic_json(evidence(r)));
            list.push_back(std::move(row));
        }
        json targets = json::array();
        for (size_t n : target->nodes) targets.push_back(graph.nodes[n].id);
        json doc = {{"target", args.target}, {"matched", targets}, {"window", window_json(graph.window)},
                    {list_name, list}, {"left_out_by_filters", left_out}};
        return write_output(args.output, doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
    }
    // The table says what the target matched and when: under --group-by role a host
    // stands for its whole role, and an empty table alone reads like a broken command.
    std::string matched;
    for (size_t i = 0; i < target->nodes.size(); i++) {
        const auto& n = graph.nodes[target->nodes[i]];
        if (i == 5) {
            matched += " and " + std::to_string(target->nodes.size() - i) + " more";
            break;
        }
        matched += (i ? ", " : "") + n.id + (n.members.size() > 1 ? " of " + std::to_string(n.members.size()) + " hosts" : "");
    }
    std::string subject = printable(matched == args.target ? args.target : args.target + " (" + matched + ")");
    std::string window = window_text(graph.window);
    // What the filters hid is said, not dropped in silence: "nothing depends on it" is the answer
    // that lets a change go ahead.
    std::string filters = filters_text(args.graph.filters), hidden;
    if (left_out > 0) {
        hidden = "The filters left out " + std::to_string(left_out) + " more " + (left_out == 1 ? "node" : "nodes") +
                 " that the whole graph lists here.\n";
    }
    if (reached.empty()) {
        return write_output(args.output, (args.dependencies ? subject + " depends on nothing, "
                                                            : "Nothing depends on " + subject + ", ") +
                                             window + (filters.empty() ? "" : " (" + filters + ")") + ".\n" + hidden);
    }
    std::vector<std::vector<std::string>> rows;
    bool any_through_external = false;
    for (const auto& r : reached) {
        const auto& busiest = graph.edges[r.edges[0]];
        auto total = evidence(r);
        auto called = neighbours(r);
        std::string others = called.size() > 1 ? " +" + std::to_string(called.size() - 1) : "";
        any_through_external |= r.through_external;
        rows.push_back({std::to_string(r.depth) + (r.through_external ? "*" : ""), shown(r.node),
                        shown(called[0]) + others, std::to_string(busiest.port), std::to_string(total.connections),
                        std::to_string(total.failed), std::to_string(total.open), format_iso8601(total.first_seen),
                        format_iso8601(total.last_seen)});
    }
    std::ostringstream table;
    table << (args.dependencies ? "What " + subject + " depends on, " : "Who depends on " + subject + ", ") << window
          << (filters.empty() ? "" : " (" + filters + ")") << ":\n";
    print_table(table, {"DEPTH", "NODE", args.dependencies ? "FROM" : "CALLS", "PORT", "CONNECTIONS", "FAILED",
                        "OPEN", "FIRST_SEEN", "LAST_SEEN"}, rows);
    if (any_through_external) {
        // Said of the dependent (impact) or of the target (deps): the unknown link is between them.
        table << "* reached only through an address no agent reports for: what runs there is unknown, so "
              << (args.dependencies ? printable(args.target) + " may not depend on it" 
                                    : "it may not depend on " + printable(args.target))
              << " at all\n";
    }
    table << hidden;
    return write_output(args.output, table.str());
}

}  // namespace depgraph
