#include "graph/records.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <tuple>
#include <unordered_map>

#include "common/time.hpp"
#include "store/rows.hpp"

namespace depgraph {

std::string window_text(const Window& w) {
    return (w.bounded_since() ? format_iso8601(w.since) : std::string("the beginning")) + " to " +
           (w.bounded_until() ? format_iso8601(w.until) : std::string("now"));
}
namespace {

// Schema 2 added edge_days, schema 4 its running totals, schema 5 the edges'
// own totals; an older file opened read-only is not migrated.
constexpr int64_t kFirstVersionWithDays = 2;
constexpr int64_t kFirstVersionWithTotals = 4;
constexpr int64_t kFirstVersionWithEdgeTotals = 5;
// Schema 3 added nat_translations.
constexpr int64_t kFirstVersionWithNat = 3;
// An edge's latest piece so far, before it has one.
constexpr int64_t kNoPiece = std::numeric_limits<int64_t>::min();

// An edge's counters that add up over time (`open`, a gauge, does not), in
// the order of the store's columns and of Piece::sums.
constexpr int64_t EdgeRecord::*kCounters[] = {&EdgeRecord::connects, &EdgeRecord::failed,     &EdgeRecord::refused,
                                              &EdgeRecord::accepts,  &EdgeRecord::closes,     &EdgeRecord::bytes_sent,
                                              &EdgeRecord::bytes_received};

// In edge_id order, the table's own: read_edges finds an edge's record by a binary search of the ids.
constexpr std::string_view kEdges =
    "SELECT edge_id, host, direction, netns, process, cgroup, local_addr, remote_addr, port, loopback FROM edges "
    "ORDER BY edge_id";
// Schema 5: each edge with its whole life as one piece (columns as Piece::from_row reads them),
// NULLs when it has no day row.
constexpr std::string_view kEdgesWithTotals = R"sql(
SELECT edge_id, host, direction, netns, process, cgroup, local_addr, remote_addr, port, loopback,
       first_day, last_day, first_bucket, last_bucket + last_bucket_seconds, last_bucket, total_connects, total_failed,
       total_refused, total_accepts, total_closes, total_bytes_sent, total_bytes_received, last_open
FROM edges ORDER BY edge_id
)sql";
constexpr int kLifetimeColumn = 12;  // first_bucket in kEdgesWithTotals: a piece's columns from here on

// One row per piece of an edge's traffic in the window, a whole day or a
// bucket of a partial one, with the same columns: edge_id, first start, end,
// latest start, the counters, the open gauge at the latest start.
//
// Whole days, from the running totals: per edge, the window's first day row
// (a) and its last (b); b's totals minus a's, plus a's own day, are the sums
// of every day in between, whatever their number: four primary-key seeks per
// edge (two find the days, two read them). CROSS JOIN keeps edges outermost;
// the scalar subqueries are the min/max optimisation, one seek each.
constexpr std::string_view kDaysFromTotals = R"sql(
SELECT e.edge_id, a.first_bucket, b.last_bucket + b.bucket_seconds, b.last_bucket,
       b.cum_connects - a.cum_connects + a.connects, b.cum_failed - a.cum_failed + a.failed,
       b.cum_refused - a.cum_refused + a.refused, b.cum_accepts - a.cum_accepts + a.accepts,
       b.cum_closes - a.cum_closes + a.closes, b.cum_bytes_sent - a.cum_bytes_sent + a.bytes_sent,
       b.cum_bytes_received - a.cum_bytes_received + a.bytes_received, b.open
FROM edges e
CROSS JOIN edge_days a ON a.edge_id = e.edge_id
    AND a.day_start = (SELECT min(day_start) FROM edge_days WHERE edge_id = e.edge_id AND day_start >= ?1)
CROSS JOIN edge_days b ON b.edge_id = e.edge_id
    AND b.day_start = (SELECT max(day_start) FROM edge_days WHERE edge_id = e.edge_id AND day_start < ?2)
WHERE a.day_start < ?2
)sql";
// Schema 5: an edge whose life goes on past a cut at a midnight (?2, the
// window's first or last whole day) loses what lies on the far side of it,
// one seek through the primary key for each edge and cut.
// kFirstDayFrom: the first day at or after the cut (a above): its day, its
// start, the sums before it. kLastDayBefore: the last day before the cut (b):
// its end, the sums up to it, its gauge.
constexpr std::string_view kFirstDayFrom = R"sql(
SELECT day_start, first_bucket, cum_connects - connects, cum_failed - failed, cum_refused - refused,
       cum_accepts - accepts, cum_closes - closes, cum_bytes_sent - bytes_sent, cum_bytes_received - bytes_received
FROM edge_days WHERE edge_id = ?1 AND day_start >= ?2 ORDER BY day_start LIMIT 1
)sql";
constexpr std::string_view kLastDayBefore = R"sql(
SELECT last_bucket + bucket_seconds, last_bucket, cum_connects, cum_failed, cum_refused, cum_accepts, cum_closes,
       cum_bytes_sent, cum_bytes_received, open
FROM edge_days WHERE edge_id = ?1 AND day_start < ?2 ORDER BY day_start DESC LIMIT 1
)sql";
// Whole days of a schema 2 or 3 file, row by row. CROSS JOIN fixes the loop
// order, edges outside and their days through the primary key inside: left
// to itself the planner takes the time index and looks every row up again by
// its key, 4x slower on a month.
constexpr std::string_view kDaysInWindow = R"sql(
SELECT d.edge_id, d.first_bucket, d.last_bucket + d.bucket_seconds, d.last_bucket, d.connects, d.failed,
       d.refused, d.accepts, d.closes, d.bytes_sent, d.bytes_received, d.open
FROM edges e CROSS JOIN edge_days d ON d.edge_id = e.edge_id
WHERE d.day_start >= ?1 AND d.day_start < ?2
)sql";
// Buckets: through the time index, because the partial days at either end
// of a window are less than a day each, a few rows, while seeking every edge
// for them costs a seek per edge. Since schema 5 the index holds these
// columns, and the table is not read. (A schema 1 file, which has no rollup,
// reads its whole window this way: correct, and slower.)
constexpr std::string_view kBucketsInWindow = R"sql(
SELECT edge_id, bucket_start, bucket_start + bucket_seconds, bucket_start, connects, failed, refused, accepts,
       closes, bytes_sent, bytes_received, open
FROM edge_buckets
WHERE bucket_start >= ?1 AND bucket_start < ?2
)sql";

constexpr std::string_view kAddresses =
    "SELECT host, addr, min(first_seen), max(last_seen) FROM host_addresses GROUP BY host, addr, first_seen";

constexpr std::string_view kAgentNamespaces = "SELECT DISTINCT host, netns FROM agent_runs";

constexpr std::string_view kTranslations = R"sql(
SELECT host, client_addr, nat_addr, dialled_addr, dialled_port, server_addr, server_port,
       sum(flows), max(open),
       coalesce(min(CASE WHEN flows > 0 THEN bucket_start END), min(bucket_start)),
       coalesce(max(CASE WHEN flows > 0 THEN bucket_start + bucket_seconds END), max(bucket_start + bucket_seconds))
FROM nat_translations
WHERE bucket_start >= ?1 AND bucket_start < ?2
GROUP BY host, netns, client_addr, nat_addr, dialled_addr, dialled_port, server_addr, server_port
)sql";

// A translation's identity across files.
using TranslationKey = std::tuple<std::string, std::string, std::string, std::string, int, std::string, int>;
TranslationKey identity_of(const TranslationRecord& t) {
    return {t.host, t.client_addr, t.nat_addr, t.dialled_addr, t.dialled_port, t.server_addr, t.server_port};
}

// An edge's identity, the columns of the edges table's UNIQUE constraint,
// with its strings as their ranks in the load's text: sorting 40,000 records
// compares integers, not bytes. Then its position, so that of an edge found
// in two files the earlier file's copy sorts first.
struct IdentityKey {
    uint32_t host = 0, direction = 0;
    int64_t netns = 0;
    uint32_t process = 0, cgroup = 0, local_addr = 0, remote_addr = 0;
    int port = 0;
    size_t position = 0;

    IdentityKey() = default;
    IdentityKey(const EdgeRecord& e, size_t at, const std::unordered_map<const char*, uint32_t>& rank)
        : host(rank.at(e.host.data())), direction(rank.at(e.direction.data())), netns(e.netns),
          process(rank.at(e.process.data())), cgroup(rank.at(e.cgroup.data())),
          local_addr(rank.at(e.local_addr.data())), remote_addr(rank.at(e.remote_addr.data())), port(e.port),
          position(at) {}
    auto identity() const { return std::tie(host, direction, netns, process, cgroup, local_addr, remote_addr, port); }
    bool operator<(const IdentityKey& other) const {
        return std::tie(host, direction, netns, process, cgroup, local_addr, remote_addr, port, position) <
               std::tie(other.host, other.direction, other.netns, other.process, other.cgroup, other.local_addr,
                        other.remote_addr, other.port, other.position);
    }
};

// The records' identities, in identity order (their positions in `all` tell
// where each was). By host first, counted into place (a host is a rank, a
// small integer), then each host's few dozen records sorted: log2 of 40 or so
// comparisons per record, not log2 of 40,000.
std::vector<IdentityKey> identity_order(const std::vector<EdgeRecord>& all, const StringTable& text) {
    auto rank = text.ranks();
    std::vector<size_t> host_start(rank.size() + 1);
    for (const auto& e : all) host_start[rank.at(e.host.data()) + 1]++;
    std::partial_sum(host_start.begin(), host_start.end(), host_start.begin());
    std::vector<IdentityKey> order(all.size());
    auto next = host_start;
    for (size_t i = 0; i < all.size(); i++) {
        IdentityKey key(all[i], i, rank);
        order[next[key.host]++] = key;
    }
    for (size_t host = 0; host + 1 < host_start.size(); host++) {
        std::sort(order.begin() + static_cast<ptrdiff_t>(host_start[host]),
                  order.begin() + static_cast<ptrdiff_t>(host_start[host + 1]));
    }
    return order;
}

// The events of a record: an open always counts a connect or an accept, a
// close a close, so of two copies of one run's record the later has more.
int64_t events(const EdgeRecord& e) { return e.connects + e.accepts + e.closes + e.failed; }

// One edge from two files. Copies (copies_of_one_another) that overlap in
// time: the one holds the other's buckets, and the larger count is right.
// Records of different agent runs, or copies that share no bucket (a copy
// trimmed of old buckets), add up, as `depgraph merge` adds them.
void fold_duplicate(EdgeRecord& kept, const EdgeRecord& other, bool copies) {
    // The gauge is the latest one's; of two copies ending in the same bucket, the
    // one with more events is the later copy; equal, or of different runs
    // (which merge adds in one bucket, its gauge the larger), the larger.
    if (other.last_seen != kept.last_seen) {
        if (other.last_seen > kept.last_seen) kept.open = other.open;
    } else if (copies && events(other) != events(kept)) {
        if (events(other) > events(kept)) kept.open = other.open;
    } else {
        kept.open = std::max(kept.open, other.open);
    }
    bool add = !copies || other.first_seen >= kept.last_seen || other.last_seen <= kept.first_seen;
    for (int64_t EdgeRecord::*counter : kCounters) {
        kept.*counter = add ? kept.*counter + other.*counter : std::max(kept.*counter, other.*counter);
    }
    kept.first_seen = std::min(kept.first_seen, other.first_seen);
    kept.last_seen = std::max(kept.last_seen, other.last_seen);
}

// One edge's records from several files, each with its host's runs there.
struct Found {
    const EdgeRecord* record;
    const RunIds* runs;
};

// Records that share a run (copies_of_one_another), also through others,
// are copies of one run's traffic and fold by the larger; such groups hold
// different runs' traffic and add up. A file with runs r1 and r2 (or a
// merged one) joins the groups of r1 and of r2: it holds both, and they
// add up before it is compared with them. A record without runs (a file
// not written by an agent) is a copy of every group: taken last, it joins
// them all, added up, and keeps the larger, whatever the files' order.
EdgeRecord fold_found(std::vector<Found>& found) {
    std::stable_partition(found.begin(), found.end(), [](const Found& f) { return !f.runs->empty(); });
    struct Group {
        RunIds runs;
        EdgeRecord record;
    };
    std::vector<Group> groups;
    for (const auto& [record, runs] : found) {
        std::optional<Group> joined;
        for (auto g = groups.begin(); g != groups.end();) {
            if (!copies_of_one_another(g->runs, *runs)) {
                ++g;
                continue;
            }
            if (!joined) {
                joined = std::move(*g);
            } else {
                fold_duplicate(joined->record, g->record, false);
                joined->runs.insert(g->runs.begin(), g->runs.end());
            }
            g = groups.erase(g);
        }
        if (!joined) {
            groups.push_back({*runs, *record});
            continue;
        }
        fold_duplicate(joined->record, *record, true);
        joined->runs.insert(runs->begin(), runs->end());
        groups.push_back(std::move(*joined));
    }
    EdgeRecord sum = groups[0].record;
    for (size_t g = 1; g < groups.size(); g++) fold_duplicate(sum, groups[g].record, false);
    return sum;
}

Result<int64_t> schema_version(Database& db) {
    auto stmt = db.prepare("PRAGMA user_version");
    if (!stmt) return stmt.error();
    auto row = stmt->step();
    if (!row) return Error{"cannot read " + db.path() + ": " + row.error().message};
    return stmt->column_int(0);
}

// A piece of an edge's traffic in the window: a bucket, a day, or its whole
// days together.
struct Piece {
    int64_t first = 0;   // start of its first bucket
    int64_t end = 0;     // end of its last bucket
    int64_t latest = 0;  // start of its last bucket
    int64_t sums[std::size(kCounters)] = {};  // connects, failed, refused, accepts, closes, bytes_sent, bytes_received
    int64_t open = 0;    // the gauge of its last bucket

    // From the columns first, end, latest, the seven sums, open, at `col` on.
    static Piece from_row(const Statement& row, int col) {
        Piece p;
        p.first = row.column_int(col);
        p.end_as(row, col + 1);
        return p;
    }
    // Its last bucket and sums from the columns end, latest, the seven sums, open.
    void end_as(const Statement& row, int col) {
        end = row.column_int(col);
        latest = row.column_int(col + 1);
        for (int c = 0; c < 7; c++) sums[c] = row.column_int(col + 2 + c);
        open = row.column_int(col + 9);
    }
};

// What the edges table says of an edge's life (schema 5).
struct Life {
    int64_t first_day = 0;
    int64_t last_day = 0;
    std::optional<Piece> whole;  // its whole days in the window; none: it has no day in them
};

void add_piece(EdgeRecord& e, int64_t& latest, const Piece& p) {
    bool had_any = latest != kNoPiece;
    e.first_seen = had_any ? std::min(e.first_seen, p.first) : p.first;
    e.last_seen = had_any ? std::max(e.last_seen, p.end) : p.end;
    for (size_t c = 0; c < std::size(kCounters); c++) e.*kCounters[c] += p.sums[c];
    // `open` is a gauge: the latest piece's, not a sum.
    if (p.latest >= latest) {
        latest = p.latest;
        e.open = p.open;
    }
}

// Adds the pieces that `sql` yields over [from, until) to their edges, the
// record at i having the edge_id ids[i] (ascending); rows of edges that are
// not in `edges` (not in any graph) are skipped.
Status add_pieces(Database& db, std::string_view sql, int64_t from, int64_t until, const std::vector<int64_t>& ids,
                  std::span<EdgeRecord> edges, std::vector<int64_t>& latest) {
    if (from >= until) return ok_status();
    auto stmt = db.prepare(sql);
    if (!stmt) return stmt.error();
    stmt->bind(1, from).bind(2, until);
    // The days come edge by edge: look an edge up once, not once per row.
    constexpr size_t kNotRead = SIZE_MAX;
    int64_t edge_id = 0;
    size_t at = kNotRead;
    bool first_row = true;
    return for_each_row(db, *stmt, [&](const Statement& row) {
        if (int64_t id = row.column_int(0); first_row || id != edge_id) {
            first_row = false;
            edge_id = id;
            auto it = std::lower_bound(ids.begin(), ids.end(), id);
            at = it != ids.end() && *it == id ? static_cast<size_t>(it - ids.begin()) : kNotRead;
        }
        if (at != kNotRead) add_piece(edges[at], latest[at], Piece::from_row(row, 1));
    });
}

// Seeks the day row of one edge that `stmt` names at `cut`; false: none.
Result<bool> seek_day(const Database& db, Statement& stmt, int64_t edge_id, int64_t cut) {
    stmt.reset();
    stmt.bind(1, edge_id).bind(2, cut);
    auto row = stmt.step();
    if (!row) return Error{"cannot read " + db.path() + ": " + row.error().message};
    return *row;
}

// Schema 5: each edge's whole days in [from, until), its lifetime cut at
// `until` and at `from` where its life goes on past them.
Status cut_whole_days(Database& db, int64_t from, int64_t until, const std::vector<int64_t>& ids,
                      std::vector<Life>& lives) {
    auto first_day_from = db.prepare(kFirstDayFrom);
    if (!first_day_from) return first_day_from.error();
    auto last_day_before = db.prepare(kLastDayBefore);
    if (!last_day_before) return last_day_before.error();
    for (size_t i = 0; i < lives.size(); i++) {
        auto& life = lives[i];
        auto& p = life.whole;
        if (!p) continue;
        // The end first: its running totals replace the lifetime's, and the
        // start's are taken from them.
        if (life.last_day >= until) {
            auto found = seek_day(db, *last_day_before, ids[i], until);
            if (!found) return found.error();
            if (*found) p->end_as(*last_day_before, 0);  // it has one: first_day < until
        }
        if (life.first_day < from) {
            auto found = seek_day(db, *first_day_from, ids[i], from);
            if (!found) return found.error();
            if (!*found || first_day_from->column_int(0) >= until) {
                p.reset();  // days before and after the window, none inside it
                continue;
            }
            p->first = first_day_from->column_int(1);
            for (int c = 0; c < 7; c++) p->sums[c] -= first_day_from->column_int(2 + c);
        }
    }
    return ok_status();
}

// Appends the edges with traffic in the window to `out`, their text to `text`.
Status read_edges(Database& db, int64_t version, const Window& window, StringTable& text,
                  std::vector<EdgeRecord>& out) {
    WindowDays days = version >= kFirstVersionWithDays ? split_into_days(window) : WindowDays{window.until, window.until};
    bool edge_totals = version >= kFirstVersionWithEdgeTotals;

    // This file's edges are out[base..], ids[i] the edge_id of out[base + i].
    const size_t base = out.size();
    std::vector<int64_t> ids;
    // Schema 5: each edge's whole days in the window, from its own row, then cut.
    std::vector<Life> lives;
    auto s = for_each_row(db, "SELECT count(*) FROM edges", [&](const Statement& row) {
        auto count = static_cast<size_t>(row.column_int(0));
        out.reserve(base + count);
        ids.reserve(count);
        if (edge_totals) lives.reserve(count);
    });
    if (!s) return s;
    // A host's edges come together: most of a row's text is the previous
    // row's, and comparing with it is cheaper than interning again.
    std::string_view previous[8];  // by column, 1 to 7; none yet: a null view, which interning never returns
    auto text_of = [&](const Statement& row, int col) {
        auto view = row.column_view(col);
        if (!previous[col].data() || view != previous[col]) previous[col] = text.intern(view);
        return previous[col];
    };
    s = for_each_row(db, edge_totals ? kEdgesWithTotals : kEdges, [&](const Statement& row) {
        ids.push_back(row.column_int(0));
        EdgeRecord& e = out.emplace_back();
        e.host = text_of(row, 1);
        e.direction = text_of(row, 2);
        e.netns = row.column_int(3);
        e.process = text_of(row, 4);
        e.cgroup = text_of(row, 5);
        e.local_addr = text_of(row, 6);
        e.remote_addr = text_of(row, 7);
        e.port = static_cast<int>(row.column_int(8));
        e.loopback = row.column_int(9) != 0;
        if (!edge_totals) return;
        Life& life = lives.emplace_back(Life{row.column_int(10), row.column_int(11), {}});
        // Its days reach into [days_since, days_until); NULL: it has none at all.
        if (!row.column_is_null(10) && life.first_day < days.days_until && life.last_day >= days.days_since) {
            life.whole = Piece::from_row(row, kLifetimeColumn);
        }
    });
    if (!s) return s;
    std::span<EdgeRecord> edges(out.begin() + static_cast<ptrdiff_t>(base), out.end());
    std::vector<int64_t> latest(edges.size(), kNoPiece);
    if (s = add_pieces(db, kBucketsInWindow, window.since, days.days_since, ids, edges, latest); !s) return s;
    if (!edge_totals) {
        auto sql = version >= kFirstVersionWithTotals ? kDaysFromTotals : kDaysInWindow;
        if (s = add_pieces(db, sql, days.days_since, days.days_until, ids, edges, latest); !s) return s;
    } else if (days.days_since < days.days_until) {
        if (s = cut_whole_days(db, days.days_since, days.days_until, ids, lives); !s) return s;
        for (size_t i = 0; i < edges.size(); i++) {
            if (lives[i].whole) add_piece(edges[i], latest[i], *lives[i].whole);
        }
    }
    if (s = add_pieces(db, kBucketsInWindow, days.days_until, window.until, ids, edges, latest); !s) return s;
    // Only edges with traffic in the window are in it.
    size_t kept = 0;
    for (size_t i = 0; i < edges.size(); i++) {
        if (latest[i] != kNoPiece) edges[kept++] = edges[i];
    }
    out.resize(base + kept);
    return ok_status();
}

Status read_addresses(Database& db, StringTable& text, std::vector<AddressRecord>& out) {
    return for_each_row(db, kAddresses, [&](const Statement& row) {
        out.push_back({text.intern(row.column_view(0)), text.intern(row.column_view(1)), row.column_int(2),
                       row.column_int(3)});
    });
}

Status read_agent_namespaces(Database& db, std::set<std::pair<std::string, int64_t>>& out) {
    return for_each_row(db, kAgentNamespaces,
                        [&](const Statement& row) { out.emplace(row.column_text(0), row.column_int(1)); });
}

// Adds the file's translations in the window to `by_identity`: one already
// there from another file takes the larger numbers.
Status read_translations(Database& db, const Window& window, std::map<TranslationKey, TranslationRecord>& by_identity) {
    auto stmt = db.prepare(kTranslations);
    if (!stmt) return stmt.error();
    stmt->bind(1, window.since).bind(2, window.until);
    return for_each_row(db, *stmt, [&](const Statement& row) {
        TranslationRecord t{row.column_text(0), row.column_text(1), row.column_text(2), row.column_text(3),
                            static_cast<int>(row.column_int(4)), row.column_text(5),
                            static_cast<int>(row.column_int(6)), row.column_int(7), row.column_int(8),
                            row.column_int(9), row.column_int(10)};
        auto [it, inserted] = by_identity.try_emplace(identity_of(t), t);
        if (inserted) return;
        auto& kept = it->second;
        kept.flows = std::max(kept.flows, t.flows);
        kept.open = std::max(kept.open, t.open);
        kept.first_seen = std::min(kept.first_seen, t.first_seen);
        kept.last_seen = std::max(kept.last_seen, t.last_seen);
    });
}

// Splits `n` in proportion to `weights`; the remainder goes to the heaviest
// part, so that the parts always add up to `n`.
std::vector<int64_t> split(int64_t n, const std::vector<int64_t>& weights) {
    int64_t total = 0;
    for (int64_t w : weights) total += w;
    std::vector<int64_t> parts(weights.size());
    int64_t given = 0;
    for (size_t i = 0; i < weights.size(); i++) {
        parts[i] = total > 0 ? static_cast<int64_t>(static_cast<__int128>(n) * weights[i] / total) : 0;
        given += parts[i];
    }
    auto heaviest = std::max_element(weights.begin(), weights.end()) - weights.begin();
    parts[static_cast<size_t>(heaviest)] += n - given;
    return parts;
}

}  // namespace

Result<RunsByHost> runs_by_host(Database& db) {
    RunsByHost runs;
    auto s = for_each_row(db, "SELECT host, run_id FROM agent_runs",
                          [&](const Statement& row) { runs[row.column_text(0)].insert(row.column_text(1)); });
    if (!s) return s.error();
    return runs;
}

bool copies_of_one_another(const RunIds& a, const RunIds& b) {
    if (a.empty() || b.empty()) return true;
    for (const auto& run : a) {
        if (b.count(run)) return true;
    }
    return false;
}

WindowDays split_into_days(const Window& window) {
    // Day 0 of the store also holds (-86400, 0), where `t - t % 86400`
    // rounds up: only days from 86400 on are exactly their UTC day.
    int64_t first = kSecondsPerDay;
    if (window.since > first) {
        first = day_start_of(window.since);
        if (first != window.since) first += kSecondsPerDay;
    }
    int64_t last = day_start_of(window.until);
    if (first >= last) return {window.until, window.until};
    return {first, last};
}

std::string_view StringTable::intern(std::string_view text) {
    auto it = strings_.find(text);
    if (it == strings_.end()) it = strings_.emplace(text).first;
    return *it;
}

std::unordered_map<const char*, uint32_t> StringTable::ranks() const {
    std::vector<std::string_view> sorted(strings_.begin(), strings_.end());
    std::sort(sorted.begin(), sorted.end());
    std::unordered_map<const char*, uint32_t> rank;
    rank.reserve(sorted.size());
    for (size_t i = 0; i < sorted.size(); i++) rank.emplace(sorted[i].data(), static_cast<uint32_t>(i));
    return rank;
}

std::vector<EdgeRecord> split_record(const EdgeRecord& e, const std::vector<int64_t>& weights) {
    std::vector<EdgeRecord> parts(weights.size(), e);
    auto share = [&](int64_t EdgeRecord::*counter) {
        auto shares = split(e.*counter, weights);
        for (size_t i = 0; i < parts.size(); i++) parts[i].*counter = shares[i];
    };
    for (int64_t EdgeRecord::*counter : kCounters) share(counter);
    share(&EdgeRecord::open);  // the open connections are split too: each part has its own
    return parts;
}

Result<Records> load_records(const std::vector<std::string>& db_paths, const Window& window) {
    Records records;
    std::vector<EdgeRecord> all;
    std::set<std::pair<std::string, int64_t>> agent_namespaces;
    std::map<TranslationKey, TranslationRecord> translations;
    // Each file's agent runs by host, and where its records end in `all`.
    std::vector<RunsByHost> runs;
    std::vector<size_t> file_ends;
    for (const auto& path : db_paths) {
        auto db = Database::open_read_only(path);
        if (!db) return db.error();
        // A month of rollups is most of the file: mapped, SQLite reads its
        // pages in place instead of copying each one through read(). A hint:
        // where it cannot map, it reads as before.
        (void)db->exec("PRAGMA mmap_size = 1073741824");
        // One read transaction: every query sees the same state of a file
        // that an agent may be writing, and the per-edge seeks do not each
        // take and drop the file's lock.
        if (auto s = db->exec("BEGIN"); !s) return s.error();
        auto version = schema_version(*db);
        if (!version) return version.error();
        if (auto s = read_edges(*db, *version, window, records.text, all); !s) return s.error();
        if (auto s = read_addresses(*db, records.text, records.addresses); !s) return s.error();
        if (auto s = read_agent_namespaces(*db, agent_namespaces); !s) return s.error();
        if (*version >= kFirstVersionWithNat) {
            if (auto s = read_translations(*db, window, translations); !s) return s.error();
        }
        auto file_runs = runs_by_host(*db);
        if (!file_runs) return file_runs.error();
        runs.push_back(std::move(*file_runs));
        file_ends.push_back(all.size());
        if (auto s = db->exec("COMMIT"); !s) return s.error();
    }
    records.agent_namespaces.assign(agent_namespaces.begin(), agent_namespaces.end());
    for (auto& [key, t] : translations) records.translations.push_back(std::move(t));
    // In identity order, an edge found in two files is two neighbours.
    auto order = identity_order(all, records.text);
    // Each record moved once, to its place, along the cycles of the
    // permutation: a second vector of them is megabytes of fresh pages.
    std::vector<bool> placed(all.size());
    for (size_t start = 0; start < all.size(); start++) {
        if (placed[start]) continue;
        EdgeRecord first = all[start];
        size_t to = start;
        for (size_t from = order[to].position; from != start; from = order[to].position) {
            all[to] = all[from];
            placed[to] = true;
            to = from;
        }
        all[to] = first;
        placed[to] = true;
    }
    // The runs of the host of the record first read at `position`.
    const RunIds none;
    auto runs_of = [&](size_t position, std::string_view host) -> const RunIds* {
        size_t file = static_cast<size_t>(std::upper_bound(file_ends.begin(), file_ends.end(), position) -
                                          file_ends.begin());
        auto it = runs[file].find(host);
        return it == runs[file].end() ? &none : &it->second;
    };
    size_t kept = 0;
    std::vector<Found> found;
    for (size_t i = 0, next = 0; i < all.size(); i = next) {
        for (next = i + 1; next < all.size() && order[next].identity() == order[i].identity(); next++) {}
        if (next - i == 1) {
            all[kept++] = all[i];
            continue;
        }
        found.clear();
        for (size_t j = i; j < next; j++) found.push_back({&all[j], runs_of(order[j].position, all[j].host)});
        all[kept++] = fold_found(found);
    }
    all.resize(kept);
    records.edges = std::move(all);
    return records;
}

}  // namespace depgraph
