#include "graph/merge.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <csignal>
#include <cstdio>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <map>
#include <set>

#include "graph/records.hpp"
#include "store/database.hpp"
#include "store/rollup.hpp"
#include "store/rows.hpp"

namespace depgraph {
namespace {

struct Copy {
    std::string_view select;
    std::string_view insert;
    int columns;
};

constexpr Copy kRuns{
    "SELECT run_id, host, started_at, stopped_at, last_report_at, version, kernel, scope, netns FROM agent_runs",
    "INSERT INTO agent_runs VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (run_id) DO UPDATE SET "
    "stopped_at = coalesce(max(stopped_at, excluded.stopped_at), stopped_at, excluded.stopped_at), "
    "last_report_at = max(last_report_at, excluded.last_report_at)",
    9};
constexpr Copy kAddresses{
    "SELECT host, netns, addr, first_seen, last_seen FROM host_addresses",
    "INSERT INTO host_addresses VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET "
    "last_seen = max(last_seen, excluded.last_seen)",
    5};
constexpr Copy kLosses{
    "SELECT run_id, bucket_start, counter, value FROM losses",
    "INSERT INTO losses VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO UPDATE SET value = max(value, excluded.value)",
    4};

// Schema 3 added nat_translations; an older input has none to copy.
constexpr int64_t kFirstVersionWithNat = 3;
constexpr Copy kTranslations{
    "SELECT host, netns, bucket_start, bucket_seconds, client_addr, nat_addr, dialled_addr, dialled_port, "
    "server_addr, server_port, flows, open FROM nat_translations",
    "INSERT INTO nat_translations VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
    "ON CONFLICT DO UPDATE SET flows = max(flows, excluded.flows), open = max(open, excluded.open)",
    12};

constexpr std::string_view kSelectEdges =
    "SELECT edge_id, host, direction, netns, process, cgroup, local_addr, remote_addr, port, loopback, source "
    "FROM edges";
constexpr std::string_view kInsertEdge =
    "INSERT INTO edges (host, direction, netns, process, cgroup, local_addr, remote_addr, port, loopback, source) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING";
constexpr std::string_view kFindEdge =
    "SELECT edge_id FROM edges WHERE host = ?1 AND direction = ?2 AND netns = ?3 AND process = ?4 AND "
    "cgroup = ?5 AND local_addr = ?6 AND remote_addr = ?7 AND port = ?8";
constexpr std::string_view kSelectBuckets =
    "SELECT edge_id, bucket_start, bucket_seconds, connects, failed, refused, accepts, closes, bytes_sent, "
    "bytes_received, lifetime_ns, open FROM edge_buckets";
// A bucket already in the output: from a copy of the same run's file
// (copies_of_one_another), each counter keeps the larger; the gauge is the
// later copy's, the one with more events (an open counts a connect or an
// accept, a close a close), or on a tie the larger.
constexpr std::string_view kInsertBucketCopy =
    "INSERT INTO edge_buckets VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
    "ON CONFLICT DO UPDATE SET connects = max(connects, excluded.connects), failed = max(failed, excluded.failed), "
    "refused = max(refused, excluded.refused), accepts = max(accepts, excluded.accepts), "
    "closes = max(closes, excluded.closes), bytes_sent = max(bytes_sent, excluded.bytes_sent), "
    "bytes_received = max(bytes_received, excluded.bytes_received), "
    "lifetime_ns = max(lifetime_ns, excluded.lifetime_ns), open = CASE "
    "WHEN excluded.connects + excluded.accepts + excluded.closes + excluded.failed > "
    "connects + accepts + closes + failed THEN excluded.open "
    "WHEN excluded.connects + excluded.accepts + excluded.closes + excluded.failed < "
    "connects + accepts + closes + failed THEN open ELSE max(open, excluded.open) END";
// From another agent run of the host (a replaced database): its traffic in
// the bucket is more, added. The gauge stays the larger: which run's is the
// later is not known here.
constexpr std::string_view kInsertBucketAdd =
    "INSERT INTO edge_buckets VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
    "ON CONFLICT DO UPDATE SET connects = connects + excluded.connects, failed = failed + excluded.failed, "
    "refused = refused + excluded.refused, accepts = accepts + excluded.accepts, "
    "closes = closes + excluded.closes, bytes_sent = bytes_sent + excluded.bytes_sent, "
    "bytes_received = bytes_received + excluded.bytes_received, "
    "lifetime_ns = lifetime_ns + excluded.lifetime_ns, open = max(open, excluded.open)";

// Binds column c of `from` as parameter c + 1 of `to`, keeping NULLs and text as they are.
void bind_column(Statement& to, const Statement& from, int c, bool text) {
    if (from.column_is_null(c)) {
        to.bind_null(c + 1);
    } else if (text) {
        to.bind(c + 1, from.column_text(c));
    } else {
        to.bind(c + 1, from.column_int(c));
    }
}

Status read_error(const Database& db, const Error& e) { return Error{"cannot read " + db.path() + ": " + e.message}; }
Status write_error(const Database& db, const Error& e) { return Error{"cannot write " + db.path() + ": " + e.message}; }

Result<int64_t> copy_rows(Database& in, Database& out, const Copy& copy, const std::set<int>& text_columns) {
    auto select = in.prepare(copy.select);
    if (!select) return select.error();
    auto insert = out.prepare(copy.insert);
    if (!insert) return insert.error();
    int64_t rows = 0;
    for (;;) {
        auto row = select->step();
        if (!row) return read_error(in, row.error()).error();
        if (!*row) return rows;
        for (int c = 0; c < copy.columns; c++) bind_column(*insert, *select, c, text_columns.count(c) > 0);
        if (auto s = insert->run(); !s) return write_error(out, s.error()).error();
        rows++;
    }
}

// Each edge of the output that got a bucket, and the first day it got one on.
// Its days from then on are rebuilt from the buckets, as the schema
// migration builds them, so that they are exact whatever the inputs held
// (their own rollups are not read: a bucket merged from two files keeps the
// larger counts, a day cannot), and so are its running totals from then on.
using FirstDayTouched = std::map<int64_t, int64_t>;

// The hosts with edges in `db` but none of its agent `runs`.
Status add_hosts_without_runs(Database& db, const RunsByHost& runs, std::set<std::string>& hosts) {
    return for_each_row(db, "SELECT DISTINCT host FROM edges", [&](const Statement& row) {
        if (!runs.count(row.column_view(0))) hosts.insert(row.column_text(0));
    });
}

// `in_runs`: the input's agent runs. `without_runs`: hosts whose buckets are
// copies wherever they meet (see merge_into).
Status merge_one(Database& in, const RunsByHost& in_runs, Database& out, FirstDayTouched& touched,
                 const std::set<std::string>& without_runs) {
    // Whether the input's buckets of a host are copies of the output's or
    // add to them depends on their runs before this input's are copied.
    auto out_runs = runs_by_host(out);
    if (!out_runs) return out_runs.error();
    auto adds = [&, none = RunIds{}](const std::string& host) {
        if (without_runs.count(host)) return false;
        auto a = in_runs.find(host);
        auto b = out_runs->find(host);
        return !copies_of_one_another(a == in_runs.end() ? none : a->second, b == out_runs->end() ? none : b->second);
    };
    if (auto r = copy_rows(in, out, kRuns, {0, 1, 5, 6, 7}); !r) return r.error();
    if (auto r = copy_rows(in, out, kAddresses, {0, 2}); !r) return r.error();
    if (auto r = copy_rows(in, out, kLosses, {0, 2}); !r) return r.error();
    auto version = in.prepare("PRAGMA user_version");
    if (!version) return version.error();
    if (auto row = version->step(); !row) return read_error(in, row.error());
    if (version->column_int(0) >= kFirstVersionWithNat) {
        if (auto r = copy_rows(in, out, kTranslations, {0, 4, 5, 6, 8}); !r) return r.error();
    }

    // edge_ids are local to each file: translate through the edge's identity;
    // and whether its buckets add to the output's.
    struct Target {
        int64_t edge_id;
        bool adds;
    };
    std::map<int64_t, Target> edge_ids;
    auto select = in.prepare(kSelectEdges);
    auto insert = out.prepare(kInsertEdge);
    auto find = out.prepare(kFindEdge);
    if (!select || !insert || !find) return in.error("cannot prepare the merge");
    for (;;) {
        auto row = select->step();
        if (!row) return read_error(in, row.error());
        if (!*row) break;
        // The SELECT has edge_id first, so column c is parameter c; netns, port and loopback are numbers.
        for (int c = 1; c <= 10; c++) {
            if (c == 3 || c == 8 || c == 9) {
                insert->bind(c, select->column_int(c));
            } else {
                insert->bind(c, select->column_text(c));
            }
        }
        if (auto s = insert->run(); !s) return write_error(out, s.error());
        for (int c = 1; c <= 8; c++) {
            if (c == 3 || c == 8) {
                find->bind(c, select->column_int(c));
            } else {
                find->bind(c, select->column_text(c));
            }
        }
        auto found = find->step();
        if (!found || !*found) return Error{"cannot merge an edge into " + out.path()};
        edge_ids[select->column_int(0)] = {find->column_int(0), adds(select->column_text(1))};
        find->reset();
    }

    auto buckets = in.prepare(kSelectBuckets);
    auto put_copy = out.prepare(kInsertBucketCopy);
    auto put_add = out.prepare(kInsertBucketAdd);
    if (!buckets || !put_copy || !put_add) return in.error("cannot prepare the merge");
    for (;;) {
        auto row = buckets->step();
        if (!row) return read_error(in, row.error());
        if (!*row) break;
        auto id = edge_ids.find(buckets->column_int(0));
        if (id == edge_ids.end()) return Error{in.path() + " is damaged: a bucket refers to a missing edge"};
        auto& put = id->second.adds ? *put_add : *put_copy;
        put.bind(1, id->second.edge_id);
        for (int c = 1; c < 12; c++) put.bind(c + 1, buckets->column_int(c));
        if (auto s = put.run(); !s) return write_error(out, s.error());
        int64_t day = day_start_of(buckets->column_int(1));
        if (auto [it, fresh] = touched.try_emplace(id->second.edge_id, day); !fresh) {
            it->second = std::min(it->second, day);
        }
    }
    return ok_status();
}

Status rebuild_days(Database& out, const FirstDayTouched& days) {
    std::vector<EdgeDayRange> ranges;
    ranges.reserve(days.size());
    for (const auto& [edge_id, first_day] : days) ranges.push_back(EdgeDayRange::edge_from(edge_id, first_day));
    return rebuild_edge_days(out, ranges);
}

// How many edges and buckets `db` holds.
Status count_held(Database& db, int64_t& edges, int64_t& buckets) {
    return for_each_row(db, "SELECT (SELECT count(*) FROM edges), (SELECT count(*) FROM edge_buckets)",
                        [&](const Statement& row) {
                            edges = row.column_int(0);
                            buckets = row.column_int(1);
                        });
}

// The sources into `output`, in one transaction. The output is closed on
// return, its WAL checkpointed into it and removed.
Result<MergeSummary> merge_into(const std::string& output, std::vector<Database>& sources) {
    auto out = Database::open_for_write(output);
    if (!out) return out.error();
    MergeSummary summary;
    auto tx = Transaction::begin(*out);
    if (!tx) return tx.error();
    int64_t edges_before = 0, buckets_before = 0;
    if (auto s = count_held(*out, edges_before, buckets_before); !s) return s.error();
    // A host that some file holds without its runs (not written by an agent)
    // cannot be told copy from other run: its buckets are copies throughout,
    // the larger kept. Decided before merging, or the answer would depend on
    // the inputs' order (a run-less file merged first, then r1's, would make
    // r2's look like another run's and count it twice).
    std::set<std::string> without_runs;
    auto out_runs = runs_by_host(*out);
    if (!out_runs) return out_runs.error();
    if (auto s = add_hosts_without_runs(*out, *out_runs, without_runs); !s) return s.error();
    std::vector<RunsByHost> source_runs;
    for (auto& in : sources) {
        auto runs = runs_by_host(in);
        if (!runs) return runs.error();
        if (auto s = add_hosts_without_runs(in, *runs, without_runs); !s) return s.error();
        source_runs.push_back(std::move(*runs));
    }
    FirstDayTouched touched;
    for (size_t i = 0; i < sources.size(); i++) {
        if (auto s = merge_one(sources[i], source_runs[i], *out, touched, without_runs); !s) return s.error();
        summary.databases++;
    }
    if (auto s = rebuild_days(*out, touched); !s) return s.error();
    if (auto s = count_held(*out, summary.edges, summary.buckets); !s) return s.error();
    summary.new_edges = summary.edges - edges_before;
    summary.new_buckets = summary.buckets - buckets_before;
    if (auto s = tx->commit(); !s) return s.error();
    return summary;
}

// A new output is built under a temporary name, so that until it is complete
// no file of the output's name exists: an interrupted merge must not leave
// an empty or partial fleet that reads as one with no traffic. SIGINT and
// SIGTERM remove the temporary files (unlink is async-signal-safe); after
// SIGKILL they stay, named for what they are.
char g_temporary[3][PATH_MAX + 8];

extern "C" void remove_temporary_and_die(int sig) {
    for (const auto& path : g_temporary) {
        if (path[0]) ::unlink(path);
    }
    ::signal(sig, SIG_DFL);
    ::raise(sig);  // delivered when the handler returns
}

void remove_database_files(const std::string& path) {
    std::error_code ec;
    for (const char* suffix : kDatabaseFileSuffixes) std::filesystem::remove(path + suffix, ec);
}

// `text` with each `from` in it replaced by `to`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
    }
    return text;
}

Result<MergeSummary> merge_into_new(const std::string& output, std::vector<Database>& sources) {
    auto name = std::filesystem::path(output);
    auto dir = name.parent_path();
    std::error_code ec;
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    if (ec) return Error{"cannot create directory " + dir.string() + ": " + ec.message()};
    // In the output's directory: link(2) does not cross file systems.
    std::string temporary = (dir / ("." + name.filename().string() + ".merging-XXXXXX")).string();
    if (temporary.size() + 4 >= PATH_MAX) return Error{"cannot merge into " + output + ": its path is too long"};
    int fd = ::mkstemp(temporary.data());
    if (fd < 0) return errno_error("cannot create a temporary file next to " + output, errno);
    // mkstemp makes it 0600; the output gets what SQLite would create it with.
    (void)::fchmod(fd, new_file_mode());
    ::close(fd);

    for (size_t i = 0; i < std::size(kDatabaseFileSuffixes); i++) {
        std::snprintf(g_temporary[i], sizeof g_temporary[i], "%s%s", temporary.c_str(), kDatabaseFileSuffixes[i]);
    }
    // A signal the merge was started to ignore (a background job's SIGINT,
    // nohup's SIGHUP) is left ignored: the merge goes on.
    constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction remove {}, old[std::size(kStopSignals)] {};
    remove.sa_handler = remove_temporary_and_die;
    sigemptyset(&remove.sa_mask);
    for (size_t i = 0; i < std::size(kStopSignals); i++) {
        ::sigaction(kStopSignals[i], nullptr, &old[i]);
        if (old[i].sa_handler != SIG_IGN) ::sigaction(kStopSignals[i], &remove, nullptr);
    }

    auto summary = merge_into(temporary, sources);
    struct stat st {};
    if (summary && ::stat((temporary + "-wal").c_str(), &st) == 0) {
        // Closing it did not checkpoint: without its WAL the file misses what was merged.
        summary = Error{"cannot write " + output + ": its write-ahead log was not checkpointed"};
    }
    // Published by link(2), which, unlike rename(2), fails if another merge
    // created the output meanwhile: its result is kept, not replaced.
    if (summary && ::link(temporary.c_str(), output.c_str()) != 0) {
        summary = errno == EEXIST ? Error{"cannot merge into " + output +
                                          ": it was created by another process during the merge; it is left as "
                                          "it is: merge into it again to add these inputs"}
                                  : errno_error("cannot create " + output, errno);
    }
    if (summary) {
        // The new name made durable, as SQLite makes its commits.
        int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            (void)::fsync(dfd);
            ::close(dfd);
        }
    }
    remove_database_files(temporary);
    for (size_t i = 0; i < std::size(kStopSignals); i++) ::sigaction(kStopSignals[i], &old[i], nullptr);
    for (auto& path : g_temporary) path[0] = 0;
    if (!summary) return Error{replaced(summary.error().message, temporary, output)};
    return summary;
}

}  // namespace

Result<MergeSummary> merge_databases(const std::string& output, const std::vector<std::string>& inputs) {
    for (const auto& input : inputs) {
        if (is_database_file(output, input)) {
            return Error{"cannot merge " + input + " into itself: choose another output file"};
        }
    }
    // An existing output must be a database file: SQLite would as well write
    // onto a block device, or leave /dev/null-journal next to /dev/null.
    struct stat st {};
    bool exists = ::stat(output.c_str(), &st) == 0;
    if (exists && !S_ISREG(st.st_mode)) {
        return Error{"cannot merge into " + output + ": it is " +
                     (S_ISDIR(st.st_mode) ? "a directory" : "not a regular file") + "; give a database file's name"};
    }
    if (!exists && ::lstat(output.c_str(), &st) == 0) {
        return Error{"cannot merge into " + output + ": it is a symbolic link to a missing file"};
    }
    // Every input is checked before the output is touched, so a bad input leaves no half-written file.
    std::vector<Database> sources;
    for (const auto& input : inputs) {
        auto db = Database::open_read_only(input);
        if (!db) return db.error();
        sources.push_back(std::move(*db));
    }
    // An output that was there before keeps what it held if the merge fails:
    // the merge is one transaction.
    if (exists) return merge_into(output, sources);
    return merge_into_new(output, sources);
}

}  // namespace depgraph
