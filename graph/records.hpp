// What the agents recorded, read back from one or many databases: per-edge
// counters summed over a time window, and which host owned which address when.
// Everything the graph is built from comes through here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/result.hpp"

namespace depgraph {

// [since, until) in Unix seconds. A bucket belongs to the window when it
// starts inside it.
struct Window {
    int64_t since = std::numeric_limits<int64_t>::min();
    int64_t until = std::numeric_limits<int64_t>::max();

    bool bounded_since() const { return since != std::numeric_limits<int64_t>::min(); }
    bool bounded_until() const { return until != std::numeric_limits<int64_t>::max(); }
};

// "2026-10-27T17:01:37Z to now", "the beginning to 2026-11-01T00:00:00Z".
std::string window_text(const Window& w);

// The store's day of a bucket (edge_days.day_start), as the agent and the
// schema migration compute it in SQL: `t - t % 86400`, a UTC midnight for t >= 0.
inline constexpr int64_t kSecondsPerDay = 86400;
constexpr int64_t day_start_of(int64_t t) { return t - t % kSecondsPerDay; }

// The window cut at UTC midnights: the days wholly inside it, [days_since,
// days_until), are read from the per-day rollup; the partial days at either
// end, [since, days_since) and [days_until, until), from the buckets. No whole
// day: days_since == days_until == until, and the buckets cover it all.
struct WindowDays {
    int64_t days_since = 0;
    int64_t days_until = 0;
};
WindowDays split_into_days(const Window& window);

// The text of one load's records, each distinct string kept once. Records
// hold views of it, so that a record is flat: cheap to build, move, sort and
// compare, with no allocation of its own. The set's nodes never move (not on
// rehash, not when the table is moved), so the views live as long as it does.
class StringTable {
public:
    StringTable() = default;
    StringTable(StringTable&&) = default;
    StringTable& operator=(StringTable&&) = default;
    // A copy's records would still look into the original.
    StringTable(const StringTable&) = delete;
    StringTable& operator=(const StringTable&) = delete;

    std::string_view intern(std::string_view text);
    // Each string's place in byte order, found by where its text lives:
    // ranks compare as the strings do.
    std::unordered_map<const char*, uint32_t> ranks() const;

private:
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
    };
    std::unordered_set<std::string, Hash, std::equal_to<>> strings_;
};

class Database;

// Each host's agent runs (their run_ids) in one database.
using RunIds = std::set<std::string, std::less<>>;
using RunsByHost = std::map<std::string, RunIds, std::less<>>;
Result<RunsByHost> runs_by_host(Database& db);

// Whether two files' records of one host are copies of one another, so that
// a bucket (or span) found in both is counted once, by the larger count: they
// share an agent run. A run_id is random and a run writes one file, so files
// with no run in common hold traffic of different runs (an agent whose
// database was replaced, restarting in the same minute) and are added. A side
// with no run at all (written without agent_runs rows) is taken as a copy:
// counting a copy twice is worse than missing a restart. Used by both merge
// and the multi-file read, so that they agree.
bool copies_of_one_another(const RunIds& a, const RunIds& b);

// One row of `edges` with its buckets in the window folded together. Its
// text lives in the StringTable of the Records that hold it.
struct EdgeRecord {
    std::string_view host;
    std::string_view direction;  // "out" or "in"
    int64_t netns = 0;
    std::string_view process;
    std::string_view cgroup;
    std::string_view local_addr;
    std::string_view remote_addr;
    int port = 0;
    bool loopback = false;
    int64_t connects = 0;
    int64_t failed = 0;
    int64_t refused = 0;
    int64_t accepts = 0;
    int64_t closes = 0;
    int64_t bytes_sent = 0;
    int64_t bytes_received = 0;
    int64_t open = 0;        // the gauge of the latest bucket in the window
    int64_t first_seen = 0;  // start of the first bucket
    int64_t last_seen = 0;   // end of the last bucket
    // "198.18.5.5:80" when the client dialled that address and NAT sent the
    // connection to remote_addr:port (set by resolve_nat, graph/nat.hpp).
    std::string_view via{};

    bool outgoing() const { return direction == "out"; }
    // Narrowed to the part of its span within [first, last] (bucket bounds);
    // as it was when they do not overlap.
    void narrow(int64_t first, int64_t last) {
        if (std::max(first, first_seen) >= std::min(last, last_seen)) return;
        first_seen = std::max(first, first_seen);
        last_seen = std::min(last, last_seen);
    }
};

struct AddressRecord {
    std::string_view host;
    std::string_view addr;
    int64_t first_seen = 0;
    int64_t last_seen = 0;
};

// One NAT translation seen in the window, its buckets folded together
// (graph/nat.hpp follows them).
struct TranslationRecord {
    std::string host;  // whose conntrack saw it
    std::string client_addr;
    std::string nat_addr;  // the source the server saw
    std::string dialled_addr;
    int dialled_port = 0;
    std::string server_addr;  // the actual destination
    int server_port = 0;
    int64_t flows = 0;  // connections begun in the window
    int64_t open = 0;   // the largest open gauge in the window
    // The buckets in which connections began; those it was only open in
    // when it had none (conntrack keeps an entry after its connection closed).
    int64_t first_seen = 0;
    int64_t last_seen = 0;

    bool dnat() const { return dialled_addr != server_addr || dialled_port != server_port; }
    bool snat() const { return nat_addr != client_addr; }
};

// Edges in identity order (the columns of the edges table's UNIQUE
// constraint), each once; and what the join, NAT and containers need.
struct Records {
    std::vector<EdgeRecord> edges;
    std::vector<AddressRecord> addresses;
    // Where each host's agent ran, (host, netns inode): graph/containers.hpp.
    std::vector<std::pair<std::string, int64_t>> agent_namespaces;
    // Files older than schema 3 have none. The same translation in two files
    // (a host's own and a merged one) is one, with the larger numbers.
    std::vector<TranslationRecord> translations;
    StringTable text;  // what the records' views look at
};

// Copies of `e`, one per weight, with each counter split in proportion to
// the weights (at least one of them positive): the parts of a counter add up
// to it exactly, the remainder going to the heaviest part.
std::vector<EdgeRecord> split_record(const EdgeRecord& e, const std::vector<int64_t>& weights);

// Reads every database read-only, each in one read transaction: all that is
// read from a file is one state of it, though an agent may be writing. The same edge found in two databases is
// one edge: where their copies overlap in time (a host's own file and a
// merged one that contains it) each counter takes the larger value, as
// `depgraph merge` does per bucket; copies of different periods add up.
Result<Records> load_records(const std::vector<std::string>& db_paths, const Window& window);

}  // namespace depgraph
