#include "graph/hosts.hpp"

#include <algorithm>
#include <tuple>

#include "graph/records.hpp"
#include "store/rows.hpp"

namespace depgraph {

namespace {

// A run without a recorded stop (still running, or it died) is known to
// have run until its last report.
int64_t run_end(const RunRecord& run) { return run.stopped_at.value_or(run.last_report_at); }

// `runs` oldest first. Runs that overlap (two agents at once) have no gap between them.
std::vector<NotRunning> not_running(const std::vector<RunRecord>& runs) {
    std::vector<NotRunning> gaps;
    std::optional<int64_t> ran_until;
    for (const auto& run : runs) {
        if (ran_until && run.started_at > *ran_until) gaps.push_back({*ran_until, run.started_at});
        ran_until = std::max(ran_until.value_or(run_end(run)), run_end(run));
    }
    return gaps;
}

// `runs` oldest first.
std::optional<SharedHostName> shared_host_name(const std::vector<RunRecord>& runs) {
    for (size_t i = 0; i < runs.size(); i++) {
        for (size_t j = i + 1; j < runs.size() && runs[j].started_at < run_end(runs[i]); j++) {
            if (runs[j].netns != runs[i].netns) return SharedHostName{runs[j].started_at, runs[i].netns, runs[j].netns};
        }
    }
    return std::nullopt;
}

}  // namespace

// Several files may hold the same run, edge or loss (a host's file and a
// merged one, copies taken at different times): each counts once, combined
// as `depgraph merge` combines them, so that the report on the files equals
// the report on their merge.
Result<std::vector<HostReport>> load_hosts(const std::vector<std::string>& db_paths) {
    std::map<std::string, HostReport> hosts;
    std::map<std::tuple<std::string, int64_t, std::string>, int64_t> losses;
    std::map<std::string, std::pair<std::string, RunRecord>> runs;  // run_id -> (host, run), as agent_runs keys them
    for (const auto& path : db_paths) {
        auto db = Database::open_read_only(path);
        if (!db) return db.error();
        auto s = for_each_row(*db,
            "SELECT host, run_id, version, started_at, stopped_at, last_report_at, kernel, scope, netns "
            "FROM agent_runs",
            [&](const Statement& r) {
                RunRecord run{r.column_text(1), r.column_text(2), r.column_int(3), std::nullopt, r.column_int(5),
                              r.column_text(6), r.column_text(7), r.column_int(8)};
                if (!r.column_is_null(4)) run.stopped_at = r.column_int(4);
                auto [it, first] = runs.try_emplace(run.run_id, r.column_text(0), run);
                if (first) return;
                // An older copy of a run has no stop yet, or an earlier last report.
                auto& kept = it->second.second;
                if (run.stopped_at) kept.stopped_at = std::max(kept.stopped_at.value_or(0), *run.stopped_at);
                kept.last_report_at = std::max(kept.last_report_at, run.last_report_at);
            });
        if (!s) return s.error();
        s = for_each_row(*db, "SELECT run_id, bucket_start, counter, value FROM losses", [&](const Statement& r) {
            auto& value = losses[{r.column_text(0), r.column_int(1), r.column_text(2)}];
            value = std::max(value, r.column_int(3));
        });
        if (!s) return s.error();
    }
    // An edge found in two files is one edge, as `depgraph edges` lists it.
    auto records = load_records(db_paths, Window{});
    if (!records) return records.error();
    for (const auto& e : records->edges) {
        auto& h = hosts[std::string(e.host)];
        h.host = e.host;
        h.edges++;
    }
    for (const auto& [run_id, owned] : runs) {
        const auto& [host, run] = owned;
        auto& h = hosts[host];
        h.host = host;
        h.runs.push_back(run);
        h.last_report_at = std::max(h.last_report_at.value_or(run.last_report_at), run.last_report_at);
    }
    for (const auto& [key, value] : losses) {
        auto run = runs.find(std::get<0>(key));
        if (run != runs.end()) hosts[run->second.first].losses[std::get<2>(key)] += value;
    }
    std::vector<HostReport> reports;
    for (auto& [name, report] : hosts) {
        std::sort(report.runs.begin(), report.runs.end(),
                  [](const RunRecord& a, const RunRecord& b) { return a.started_at < b.started_at; });
        report.not_running = not_running(report.runs);
        report.shared_name = shared_host_name(report.runs);
        reports.push_back(std::move(report));
    }
    return reports;
}

}  // namespace depgraph
