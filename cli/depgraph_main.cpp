// depgraph: merges hosts' edge databases into one dependency graph, renders
// it, and answers "who depends on this?". Argument parsing only: the commands
// are in depgraph_commands.cpp, the answers in graph/.
#include <CLI/CLI.hpp>
#include <sqlite3.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli/depgraph_commands.hpp"
#include "cli/depgraph_output.hpp"
#include "cli/path_validator.hpp"
#include "common/time.hpp"
#include "graph/grouping.hpp"
#include "version.h"

namespace depgraph {
namespace {

// A status line on standard error while long work runs (merging many
// databases, laying out a large fleet): what is being done and for how long.
// Only on a terminal, and only once the work has taken half a second, so that
// quick commands and piped or logged runs print nothing extra. graph/ reports
// no fraction done, so this shows elapsed time, not a percentage. The thread
// only writes to stderr: it never touches SQLite. What the command itself
// writes to std::cerr meanwhile is held back and written once the line is
// gone, so that the two never share a line.
class ProgressLine {
public:
    explicit ProgressLine(std::string what) : what_(std::move(what)) {
        if (!isatty(STDERR_FILENO)) return;
        saved_cerr_ = std::cerr.rdbuf(held_back_.rdbuf());
        thread_ = std::thread([this] { run(); });
    }
    ~ProgressLine() {
        if (!thread_.joinable()) return;
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        wake_.notify_one();
        thread_.join();
        std::cerr.rdbuf(saved_cerr_);
        std::cerr << held_back_.str() << std::flush;
    }
    ProgressLine(const ProgressLine&) = delete;
    ProgressLine& operator=(const ProgressLine&) = delete;

private:
    void run() {
        using namespace std::chrono_literals;
        static constexpr char kSpinner[] = {'|', '/', '-', '\\'};
        auto start = std::chrono::steady_clock::now();
        std::unique_lock lock(mutex_);
        if (wake_.wait_for(lock, 500ms, [this] { return done_; })) return;
        for (size_t tick = 0; !done_; tick++) {
            double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            std::fprintf(stderr, "\r%c %s (%.0fs)\033[K", kSpinner[tick % 4], what_.c_str(), seconds);
            std::fflush(stderr);
            wake_.wait_for(lock, 200ms, [this] { return done_; });
        }
        std::fputs("\r\033[K", stderr);  // the line goes away: the command's own output follows
        std::fflush(stderr);
    }

    std::string what_;
    std::ostringstream held_back_;
    std::streambuf* saved_cerr_ = nullptr;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool done_ = false;
    std::thread thread_;
};

// --since and --until are checked as they are parsed, so that a bad one is
// a usage error like any other; "" too, which would otherwise mean "not given".
// `start`: the start of a window, which cannot be later than now: a window
// that starts in the future holds nothing yet (a mistyped year, not a question).
struct TimePointValidator : CLI::Validator {
    explicit TimePointValidator(bool start) {
        name_ = "TIME";
        func_ = [start](const std::string& text) {
            int64_t now = unix_now();
            auto point = parse_time_point(text, now);
            if (!point) return point.error().message;
            if (start && *point > now) return text + " is in the future (now is " + format_iso8601(now) + ")";
            return std::string();
        };
    }
};

// --db: one path each time it is given, so that `--db fleet.db TARGET` leaves the target alone.
void add_db_option(CLI::App& cmd, Inputs& in) {
    cmd.add_option("--db", in.dbs, "agent or merged database (repeat for several)")
        ->check(PathValidator())
        ->allow_extra_args(false)
        ->capture_default_str();
}

void add_inputs(CLI::App& cmd, Inputs& in, const std::string& default_since) {
    add_db_option(cmd, in);
    const std::string zones = "; ISO 8601 without an offset is UTC, and a date alone is its midnight";
    cmd.add_option("--since", in.since,
                   "start of the window: a duration back from now (7d) or ISO 8601 (default: " +
                       (default_since.empty() ? std::string("everything") : default_since + " before --until") + ")" +
                       zones)
        ->check(TimePointValidator(true));
    cmd.add_option("--until", in.until, "end of the window: a duration back from now or ISO 8601 (default: now)")
        ->check(TimePointValidator(false));
    in.default_since = default_since;
}

// --format of a command that prints to standard output, `formats` the first by default.
void add_format(CLI::App& cmd, Inputs& in, const std::vector<std::string>& formats) {
    cmd.add_option("--format", in.format, "output format")
        ->transform(CLI::IsMember(formats, CLI::ignore_case))
        ->default_val(formats[0]);
}

// --format of a command that writes a file (-o): absent, the file's extension says.
void add_file_format(CLI::App& cmd, Inputs& in, const std::vector<std::string>& formats) {
    cmd.add_option("--format", in.format, "output format (default: from the output file's extension, else " +
                                              formats[0] + ")")
        ->transform(CLI::IsMember(formats, CLI::ignore_case));
}

// A count given on the command line, for an int unless told otherwise.
// CLI11's own NonNegativeNumber and PositiveNumber name their range in
// doubles, 0 to 1.8e308 written out in full.
struct WholeNumberValidator : CLI::Validator {
    explicit WholeNumberValidator(int64_t lowest, int64_t highest = std::numeric_limits<int>::max()) {
        name_ = "INT";
        func_ = [lowest, highest](const std::string& text) {
            int64_t value = 0;
            auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
            bool digits_only = !text.empty() && end == text.data() + text.size();
            if (ec == std::errc() && digits_only && value >= lowest && value <= highest) return std::string();
            // Out of range: past int64_t's end, or past `highest`.
            bool too_big = digits_only && (ec == std::errc() ? value > highest : text[0] != '-');
            return "expected a whole number " +
                   (too_big ? "of at most " + std::to_string(highest) : "of at least " + std::to_string(lowest)) +
                   ", not '" + text + "'";
        };
    }
};

void add_layout(CLI::App& cmd, std::string& layout) {
    cmd.add_option("--layout", layout, "Graphviz engine (default: chosen by the graph's size and shape)")
        ->check(CLI::IsMember({"dot", "sfdp", "neato"}));
}

void add_graph_options(CLI::App& cmd, GraphOptions& g) {
    cmd.add_option("--group-by", g.group_by, "one node per process, host or role")
        ->check(CLI::IsMember({"process", "host", "role"}))
        ->capture_default_str();
    cmd.add_option("--roles", g.roles_file, "file of 'PATTERN ROLE' lines: a shell glob on host names (any case), the first match wins, '#' "
                   "comments; a host no line matches, or without the file: its name without the number")
        ->check(PathValidator());
    cmd.add_option("--min-connections", g.filters.min_connections,
                   "leave out edges with fewer connection attempts, unless a connection on the edge is open (default: 0, "
                   "none left out)")
        ->check(WholeNumberValidator(0, std::numeric_limits<int64_t>::max()));
    cmd.add_option("--exclude", g.filters.excludes,
                   "leave out nodes whose id, host, process, address, hosts-file name or (grouped by role) role "
                   "match this glob, in any case (repeat for several)")
        ->allow_extra_args(false)
        ->check([](const std::string& pattern) { return glob_problem(pattern); });
    cmd.add_flag("--no-external", g.filters.no_external, "leave out addresses that no agent reports for");
    cmd.add_option("--layout-timeout", g.layout_timeout,
                   "seconds the Graphviz layout may run before it is stopped (svg, png)")
        ->check(WholeNumberValidator(1))
        ->capture_default_str();
}

int run(int argc, char** argv) {
    CLI::App app{"depgraph: the fleet's TCP dependency graph, from depgraph-agent databases"};
    app.set_version_flag("--version", std::string("depgraph ") + DEPGRAPH_VERSION);
    app.require_subcommand(1);
    std::function<Status()> command;

    Inputs edges_in;
    auto* edges = app.add_subcommand("edges", "list the recorded edges, counters summed over the window");
    add_inputs(*edges, edges_in, "");
    add_format(*edges, edges_in, {"table", "json"});
    edges->footer("Example:\n  depgraph edges --db /var/lib/depgraph/depgraph.db --since 1h");
    edges->callback([&] { command = [&] { return run_edges(edges_in); }; });

    Inputs hosts_in;
    auto* hosts = app.add_subcommand("hosts", "each host's agent runs and the times between them, loss counters and last report");
    add_db_option(*hosts, hosts_in);
    add_format(*hosts, hosts_in, {"table", "json"});
    hosts->footer("Example:\n  depgraph hosts --db fleet.db");
    hosts->callback([&] { command = [&] { return run_hosts(hosts_in); }; });

    std::string merge_output;
    std::vector<std::string> merge_inputs;
    auto* merge = app.add_subcommand("merge", "combine databases into one (merging one twice counts it once)");
    merge->add_option("-o,--output", merge_output, "the merged database (created if missing)")
        ->check(PathValidator())
        ->required();
    merge->add_option("inputs", merge_inputs, "databases to merge")->check(PathValidator())->required();
    merge->footer("Example:\n  depgraph merge -o fleet.db hosts/*.db");
    merge->callback([&] {
        command = [&] {
            ProgressLine progress("merging " + std::to_string(merge_inputs.size()) + " databases into " + merge_output);
            return run_merge(merge_output, merge_inputs);
        };
    });

    RenderArgs render_args;
    auto* render = app.add_subcommand("render", "draw the dependency graph with Graphviz");
    add_inputs(*render, render_args.graph.inputs, "");
    add_graph_options(*render, render_args.graph);
    render->add_option("-o,--output", render_args.output, "output file, '-' for standard output")
        ->check(PathValidator())
        ->required();
    add_file_format(*render, render_args.graph.inputs, kRenderFormats);
    add_layout(*render, render_args.layout);
    render->footer("Examples:\n  depgraph render --db fleet.db -o fleet.svg\n"
                   "  depgraph render --db fleet.db --group-by role --since 7d -o roles.png");
    render->callback([&] {
        command = [&] {
            ProgressLine progress("rendering " + (render_args.output == "-" ? std::string("to standard output")
                                                                                : render_args.output));
            return run_render(render_args);
        };
    });

    WalkArgs impact_args, deps_args;
    deps_args.dependencies = true;
    for (auto* walk_args : {&impact_args, &deps_args}) {
        auto* cmd = walk_args->dependencies
                        ? app.add_subcommand("deps", "everything TARGET depends on, transitively")
                        : app.add_subcommand("impact", "everything that depends on TARGET, transitively");
        cmd->add_option("target", walk_args->target, "HOST, HOST:PORT, HOST/PROCESS, ADDRESS:PORT or a role")
            ->required();
        add_inputs(*cmd, walk_args->graph.inputs, "30d");
        add_graph_options(*cmd, walk_args->graph);
        // 1 or more: the walk's own 0 means no limit, which a user asking for 0 hops would not expect.
        cmd->add_option("--depth", walk_args->depth, "how many hops to follow (default: all)")
            ->check(WholeNumberValidator(1));
        add_file_format(*cmd, walk_args->graph.inputs, kWalkFormats);
        add_layout(*cmd, walk_args->layout);
        cmd->add_option("-o,--output", walk_args->output, "output file, '-' for standard output")
            ->check(PathValidator())
            ->capture_default_str();
        cmd->footer(walk_args->dependencies ? "Example:\n  depgraph deps app-01/python3 --db fleet.db"
                                            : "Examples:\n  depgraph impact db-01:5432 --db fleet.db\n"
                                              "  depgraph impact db-01 --db fleet.db --depth 1 --format json");
        cmd->callback([&command, walk_args] { command = [walk_args] { return run_walk(*walk_args); }; });
    }

    // Written after the subcommands, which would each inherit it.
    app.footer("Examples:\n"
               "  depgraph merge -o fleet.db hosts/*.db\n"
               "  depgraph render --db fleet.db -o fleet.svg\n"
               "  depgraph impact db-01:5432 --db fleet.db\n"
               "Run 'depgraph SUBCOMMAND --help' for a subcommand's options.");
    // CLI11 would call a mistyped subcommand a missing one.
    if (argc > 1 && argv[1][0] != '-') {
        std::string names;
        bool known = false;
        for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
            known = known || sub->get_name() == argv[1];
            names += (names.empty() ? "" : ", ") + sub->get_name();
        }
        if (!known) {
            std::cerr << "depgraph: error: unknown subcommand '" << printable(argv[1]) << "': use one of " << names
                      << '\n';
            return 2;
        }
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // An option this subcommand lacks, or no subcommand: where to look next.
        // Other errors say what is wrong with the value given.
        // What was typed is untrusted: a control character in it must not reach the terminal raw.
        std::string message = printable(e.what());
        if (dynamic_cast<const CLI::ExtrasError*>(&e)) {  // CLI11 lists them last first: "role --group-by"
            message = "unexpected arguments:";
            for (const auto& arg : app.remaining(true)) message += " " + printable(arg);
            std::string help = "depgraph --help";
            for (const auto* sub : app.get_subcommands()) help = "depgraph " + sub->get_name() + " --help";
            message += " (see '" + help + "')";
        } else if (app.get_subcommands().empty()) {
            message += " (see 'depgraph --help')";
        }
        std::cerr << "depgraph: error: " << message << '\n';
        return 2;
    }
    auto status = command();
    if (!status) {
        std::cerr << "depgraph: error: " << printable(status.error().message) << '\n';
        return 1;
    }
    return 0;
}

}  // namespace
}  // namespace depgraph

int main(int argc, char** argv) {
    // depgraph never shares a database connection between threads, so SQLite
    // need not lock one around every call: in the default (serialized) mode
    // the locking alone cost a tenth of reading a month of rollups. Must come
    // before SQLite's first use.
    sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
    // Past a file size limit (ulimit -f), a write fails with EFBIG and is
    // reported, and the half-written temporary file removed, rather than the
    // signal killing the process with that file left behind.
    std::signal(SIGXFSZ, SIG_IGN);
    try {
        return depgraph::run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "depgraph: error: " << depgraph::printable(e.what()) << '\n';
        return 1;
    }
}
