// depgraph-agent: argument parsing only; the work is in agent/.
#include <signal.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>

#include "agent/agent.hpp"
#include "cli/path_validator.hpp"
#include "common/time.hpp"
#include "version.h"

namespace {

// CLI11 validator: durations like 10s, 5m, 2h.
struct DurationValidator : CLI::Validator {
    DurationValidator() {
        name_ = "DURATION";
        func_ = [](const std::string& text) {
            auto d = depgraph::parse_duration(text);
            return d ? std::string() : d.error().message;
        };
    }
};

}  // namespace

int main(int argc, char** argv) {
    depgraph::AgentOptions options;
    std::string flush_interval = "10s", bucket = "60s", scope = "host", source = "ebpf";

    CLI::App app{"depgraph-agent: traces this host's TCP connections (eBPF, netlink sock_diag) and records "
                 "per-time-bucket edge summaries in SQLite"};
    app.set_version_flag("--version", std::string("depgraph-agent ") + DEPGRAPH_VERSION);
    app.footer("Runs until SIGINT, SIGTERM or SIGHUP, then writes what is still in the kernel and exits 0.\n"
               "Needs root, or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN to trace (plus CAP_DAC_READ_SEARCH+CAP_SYS_PTRACE\n"
               "to name the owners of connections open at start, and CAP_SYS_ADMIN to enter other namespaces\n"
               "with --scope host), and a kernel with BTF (/sys/kernel/btf/vmlinux).\n"
               "Example: depgraph-agent --db /var/lib/depgraph/depgraph.db; then: depgraph edges --db THAT_FILE");
    app.add_option("--db", options.db_path, "SQLite database to write")
        ->check(depgraph::PathValidator())
        ->capture_default_str();
    app.add_option("--flush-interval", flush_interval, "how often to drain the kernel's counters into the database")
        ->check(DurationValidator())
        ->capture_default_str();
    app.add_option("--bucket", bucket, "time bucket of the stored rows, aligned to UTC; a multiple of the flush interval")
        ->check(DurationValidator())
        ->capture_default_str();
    app.add_option("--scope", scope,
                   "host: every network namespace on the machine; netns: only the agent's own, so that one agent "
                   "per namespace acts as a separate host, named by --hostname (namespaces made with `ip netns` "
                   "share the machine's host name, and agents that record one name merge into one host)")
        ->check(CLI::IsMember({"host", "netns"}))
        ->capture_default_str();
    app.add_option("--source", source,
                   "ebpf: trace TCP in the kernel, conntrack for NAT; conntrack: where the BPF programs cannot load, "
                   "build edges from conntrack events and sock_diag (needs a firewall rule that uses conntrack; "
                   "no bytes, and closes only when conntrack forgets a connection)")
        ->check(CLI::IsMember({"ebpf", "conntrack"}))
        ->capture_default_str();
    app.add_option("--hostname", options.hostname, "name to record for this host (default: the system's hostname)")
        ->check([](const std::string& name) {
            if (name.empty()) return std::string("expected a name, not an empty string");
            bool control = std::any_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
            return control ? std::string("a host name has no control characters") : std::string();
        });
    app.add_flag("--once", options.once, "take one snapshot, write it and exit");
    app.add_option("--netlink-buffer", options.netlink_buffer_bytes,
                   "receive buffer for conntrack events, in bytes or with a unit (8M is 8 MiB); a busy NAT "
                   "gateway wants more (losses are counted and resynchronised either way)")
        ->transform(CLI::AsSizeValue(false))
        ->check(CLI::Range(size_t{4096}, size_t{1} << 30))
        ->capture_default_str();
    app.add_flag("-v,--verbose", options.verbose, "log what the agent and libbpf do");

    try {
        app.parse(argc, argv);
    } catch (const CLI::Success& e) {  // --help, --version
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "depgraph-agent: error: %s\n", e.what());
        return 2;
    }
    options.flush_interval_s = *depgraph::parse_duration(flush_interval);
    options.bucket_s = *depgraph::parse_duration(bucket);
    options.scope = scope == "netns" ? depgraph::Scope::netns : depgraph::Scope::host;
    options.source = source == "conntrack" ? depgraph::EdgeSourceKind::conntrack : depgraph::EdgeSourceKind::ebpf;

    // Blocked before any other thread exists, so only the flush loop sees them.
    sigset_t stopping = depgraph::stop_signals();
    pthread_sigmask(SIG_BLOCK, &stopping, nullptr);

    auto status = depgraph::run_agent(options);
    if (!status) {
        std::fprintf(stderr, "depgraph-agent: error: %s\n", status.error().message.c_str());
        return 1;
    }
    return 0;
}
