#include "graph/hosts.hpp"

#include <algorithm>
#include <tuple>

#include "store/rows.hpp"

namespace depgraph {
Result<std::vector<HostReport>> load_hosts(const std::vector<std::string>& db_paths) {
    std::map<std::string, HostReport> hosts;
    std::map<std::string, std::string> host_of_run;
    std::map<std::tuple<std::string, int64_t, std::string>, int64_t> losses;  // deduplicated across files
    std::map<std::pair<std::string, std::string>, RunRecord> runs;
    std::map<std::string, int64_t> edges;
    for (const auto& path : db_paths) {
        auto db = Database::open_read_only(path);
        if (!db) return db.error();
        auto s = for_each_row(*db,
            "SELECT host, run_id, version, started_at, stopped_at, last_report_at FROM agent_runs",
            [&](const Statement& r) {
                RunRecord run{r.column_text(1), r.column_text(2), r.column_int(3), std::nullopt, r.column_int(5)};
                if (!r.column_is_null(4)) run.stopped_at = r.column_int(4);
                host_of_run[run.run_id] = r.column_text(0);
                auto& kept = runs[{r.column_text(0), run.run_id}];
                if (kept.run_id.empty() || kept.last_report_at < run.last_report_at) kept = run;
            });
        if (!s) return s.error();
        s = for_each_row(*db, "SELECT run_id, bucket_start, counter, value FROM losses", [&](const Statement& r) {
            auto& value = losses[{r.column_text(0), r.column_int(1), r.column_text(2)}];
            value = std::max(value, r.column_int(3));
        });
        if (!s) return s.error();
        s = for_each_row(*db, "SELECT host, count(*) FROM edges GROUP BY host", [&](const Statement& r) {
            auto& count = edges[r.column_text(0)];
            count = std::max(count, r.column_int(1));
        });
        if (!s) return s.error();
    }
    for (const auto& [key, run] : runs) {
        auto& h = hosts[key.first];
        h.host = key.first;
        h.runs.push_back(run);
        h.last_report_at = std::max(h.last_report_at.value_or(run.last_report_at), run.last_report_at);
    }
    for (const auto& [key, value] : losses) {
        auto run = host_of_run.find(std::get<0>(key));
        if (run != host_of_run.end()) hosts[run->second].losses[std::get<2>(key)] += value;
    }
    for (const auto& [host, count] : edges) {
        hosts[host].host = host;
        hosts[host].edges = count;
    }
    std::vector<HostReport> reports;
    for (auto& [name, report] : hosts) {
        std::sort(report.runs.begin(), report.runs.end(),
                  [](const RunRecord& a, const RunRecord& b) { return a.started_at < b.started_at; });
        reports.push_back(std::move(report));
    }
    return reports;
}

}  // namespace depgraph
