// The reader sums whole days from edge_days and the partial days at the
// window's ends from edge_buckets: for every kind of window the result must be
// what summing every bucket gives.
#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "agent/edge_store.hpp"
#include "graph/merge.hpp"
#include "graph/records.hpp"
#include "tests/graph/bucket_sums.hpp"
#include "tests/graph/cli_runner.hpp"
#include "tests/graph/fixture_db.hpp"
#include "tests/schema_downgrade.hpp"

using namespace depgraph;
using namespace depgraph::fixture;

namespace {

constexpr int64_t kDay = kSecondsPerDay;

// Seven edges over five days from kT0 (a UTC midnight): random busy minutes,
// buckets on the midnights themselves and in the last minute before them, a
// day with one bucket, an edge of ten-minute buckets, an edge seen on one day,
// an edge written out of order.
std::string write_days(const TempDir& dir) {
    auto path = dir.file("days.db");
    HostDb h(path, "h-01");
    h.begin();
    std::mt19937 rng(7);
    auto random_bucket = [&] {
        auto n = [&](int64_t below) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(below)); };
        return Bucket{n(20), n(3), n(2), n(20), n(20), n(5000), n(50000), n(4)};
    };
    for (int k = 0; k < 4; k++) {
        auto edge = h.edge("out", "app", "198.18.0.1", "198.18.0." + std::to_string(10 + k), 8000 + k);
        std::set<int64_t> minutes{0, 1439, 1440, 2879, 2880, 4 * 1440 - 1};
        while (minutes.size() < 200) minutes.insert(rng() % (5 * 1440));
        for (int64_t m : minutes) h.bucket(edge, kT0 + m * 60, random_bucket());
    }
    auto coarse = h.edge("in", "db", "198.18.0.1", "198.18.0.20", 5432);
    for (int64_t t = kT0 - kDay; t < kT0 + 5 * kDay; t += 600 * (1 + static_cast<int64_t>(rng() % 7))) {
        h.bucket(coarse, t, random_bucket(), 600);
    }
    auto lone = h.edge("in", "db", "198.18.0.1", "198.18.0.21", 5432);
    h.bucket(lone, kT0 + 2 * kDay + 5 * 3600, random_bucket());
    // The clock stepped back: days written after a later one must still be
    // in the later days' running totals.
    auto stepped = h.edge("out", "app", "198.18.0.1", "198.18.0.22", 9000);
    for (int64_t t : {kT0 + 3 * kDay + 60, kT0 + 60, kT0 + 3 * kDay + 120, kT0 + 2 * kDay + 60, kT0 + kDay - 60}) {
        h.bucket(stepped, t, random_bucket());
    }
    h.commit();
    return path;
}

Window window(int64_t since, int64_t until) { return {since, until}; }

const int64_t never = Window{}.until, always = Window{}.since;
// Every shape of window against write_days' five days.
const Window kWindows[] = {
    {always, never},                                   // everything
    {kT0 + 3600, kT0 + 3 * kDay + 7200},               // mid-day to mid-day, two whole days between
    {kT0 + kDay, kT0 + 3 * kDay},                      // midnight to midnight
    {kT0 + kDay, kT0 + 3 * kDay + 1},                  // a midnight to one second past one
    {kT0 + kDay - 1, kT0 + 3 * kDay},                  // one second before a midnight to a midnight
    {kT0 + 2 * kDay, kT0 + 3 * kDay},                  // exactly one day
    {kT0 + 2 * kDay + 60, kT0 + 2 * kDay + 6 * 3600},  // part of one day only
    {kT0 + 2 * kDay - 60, kT0 + 2 * kDay + 60},        // across one midnight, less than a day
    {kT0 + kDay + 1, kT0 + 2 * kDay + 1},              // a day long, but no whole day
    {always, kT0 + 2 * kDay + 12 * 3600},              // from the beginning to mid-day
    {kT0 + 12 * 3600, never},                          // from mid-day on
    {kT0 - kDay, kT0 - kDay + 600},                    // one ten-minute bucket of one edge
    {kT0 + 10 * kDay, kT0 + 12 * kDay},                // nothing recorded
    {kT0 + 3 * kDay, never},                           // from a midnight on: lives cut at their start only
    {always, kT0 + 2 * kDay},                          // up to a midnight: lives cut at their end only
};

std::vector<std::string> described(const std::vector<EdgeRecord>& edges) {
    std::vector<std::string> lines;
    for (const auto& e : edges) lines.push_back(describe(e));
    return lines;
}

}  // namespace

TEST_CASE("windows cut at UTC midnights: whole days from the rollup, partial days from buckets") {
    const int64_t d1 = kT0 + kDay;
    CHECK(split_into_days(window(d1 + 1, d1 + 3 * kDay - 1)).days_since == d1 + kDay);
    CHECK(split_into_days(window(d1 + 1, d1 + 3 * kDay - 1)).days_until == d1 + 2 * kDay);
    CHECK(split_into_days(window(d1, d1 + kDay)).days_since == d1);
    CHECK(split_into_days(window(d1, d1 + kDay)).days_until == d1 + kDay);
    // No whole day inside: the buckets cover it all.
    for (auto w : {window(d1 + 1, d1 + kDay), window(d1 - 60, d1 + 60), window(d1, d1 + kDay - 1)}) {
        CHECK(split_into_days(w).days_since == w.until);
        CHECK(split_into_days(w).days_until == w.until);
    }
    Window everything;
    CHECK(split_into_days(everything).days_since == kDay);
    CHECK(split_into_days(everything).days_until == day_start_of(everything.until));
}

TEST_CASE("the counters of every window equal the sums of its buckets") {
    TempDir dir;
    auto path = write_days(dir);
    for (const auto& w : kWindows) {
        INFO("window [" << w.since << ", " << w.until << ")");
        auto records = load_records({path}, w);
        REQUIRE(records);
        CHECK(described(records->edges) == described(sum_buckets(path, w).edges));
    }
    // and the rollup and the edges' totals the reader relied on are exact
    CHECK(days_as_stored(path) == days_from_buckets(path));
    CHECK(edge_totals_as_stored(path) == edge_totals_from_buckets(path));
    CHECK(edge_totals_as_stored(path).size() == 7);
}

TEST_CASE("a schema 4 file gives the same answers before and after its migration to schema 5") {
    TempDir dir;
    auto path = write_days(dir);
    {
        HostDb h(path, "h-01");
        REQUIRE(h.database().exec(depgraph::testing::kBackToSchema4));
    }
    std::vector<std::vector<std::string>> before;
    for (const auto& w : kWindows) {
        auto records = load_records({path}, w);  // read-only: not migrated
        REQUIRE(records);
        before.push_back(described(records->edges));
    }
    HostDb migrated(path, "h-01");
    CHECK(edge_totals_as_stored(path) == edge_totals_from_buckets(path));
    for (size_t i = 0; i < std::size(kWindows); i++) {
        INFO("window [" << kWindows[i].since << ", " << kWindows[i].until << ")");
        auto records = load_records({path}, kWindows[i]);
        REQUIRE(records);
        CHECK(described(records->edges) == before[i]);
        CHECK(described(records->edges) == described(sum_buckets(path, kWindows[i]).edges));
    }
}

TEST_CASE("the agent's flushes keep the day rows and the edges' totals exact, also when the clock steps back") {
    TempDir dir;
    auto path = dir.file("agent.db");
    auto store = EdgeStore::open(path);
    REQUIRE(store);
    REQUIRE(store->begin_run({"run-1", "h-01", kT0, "test", "6.1", "host", 1, "ebpf"}));
    EdgeIdentity web{"out", 1, "app", "", "198.18.0.1", "198.18.0.2", 80};
    EdgeIdentity db{"in", 1, "db", "", "198.18.0.1", "198.18.0.3", 5432};
    int64_t n = 0;
    auto flush = [&](int64_t bucket_start, std::vector<EdgeIdentity> edges) {
        Flush f;
        f.now = bucket_start + 30;
        f.bucket_start = bucket_start;
        f.bucket_seconds = 60;
        for (const auto& e : edges) {
            n++;
            EdgeCounts c;
            c.sums = {static_cast<uint64_t>(n), static_cast<uint64_t>(n % 3), static_cast<uint64_t>(n % 2),
                      static_cast<uint64_t>(2 * n), static_cast<uint64_t>(n), static_cast<uint64_t>(100 * n),
                      static_cast<uint64_t>(1000 * n), static_cast<uint64_t>(7 * n)};
            c.open = n % 5;
            f.edges[e] = c;
        }
        REQUIRE(store->write(f));
        // after every flush, not only at the end
        CHECK(days_as_stored(path) == days_from_buckets(path));
        CHECK(edge_totals_as_stored(path) == edge_totals_from_buckets(path));
    };
    flush(kT0 + kDay + 60, {web});
    flush(kT0 + kDay + 60, {web, db});  // the same bucket again: added up
    flush(kT0 + kDay + 120, {web});
    flush(kT0 + 3 * kDay + 60, {web, db});  // a new day, a day skipped
    flush(kT0 + 2 * kDay + 600, {web});     // the clock stepped back a day
    flush(kT0 + 60, {db});                  // and back before the edge's first day
    flush(kT0 + 3 * kDay + 120, {web, db});
    CHECK(edge_totals_as_stored(path).size() == 2);
    for (const auto& w : kWindows) {
        INFO("window [" << w.since << ", " << w.until << ")");
        auto records = load_records({path}, w);
        REQUIRE(records);
        CHECK(described(records->edges) == described(sum_buckets(path, w).edges));
    }
}

TEST_CASE("a schema 1 database, which has no rollup, is read from its buckets") {
    TempDir dir;
    auto path = write_days(dir);
    {
        HostDb h(path, "h-01");
        REQUIRE(h.database().exec("DROP TABLE edge_days; PRAGMA user_version = 1"));
    }
    const Window w{kT0 + 3600, kT0 + 3 * kDay + 7200};
    auto records = load_records({path}, w);
    INFO((records ? "" : records.error().message));
    REQUIRE(records);
    CHECK(described(records->edges) == described(sum_buckets(path, w).edges));
}

TEST_CASE("the string table keeps one copy of each text, where it stays when the table grows or moves") {
    StringTable text;
    std::string web = "web-01";
    auto first = text.intern(web);
    web[0] = 'x';  // the table has its own copy
    CHECK(first == "web-01");
    CHECK(text.intern("web-01").data() == first.data());
    CHECK(text.intern("").data() == text.intern(std::string()).data());
    for (int i = 0; i < 10000; i++) text.intern("host-" + std::to_string(i) + "-with-a-name-longer-than-sso");
    StringTable moved = std::move(text);
    CHECK(moved.intern("web-01").data() == first.data());
    CHECK(first == "web-01");
    // Ranks compare as the strings do.
    auto rank = moved.ranks();
    CHECK(rank.at(moved.intern("").data()) == 0);
    CHECK(rank.at(moved.intern("host-10-with-a-name-longer-than-sso").data()) <
          rank.at(moved.intern("host-9-with-a-name-longer-than-sso").data()));
    CHECK(rank.at(moved.intern("host-9999-with-a-name-longer-than-sso").data()) < rank.at(first.data()));
}

TEST_CASE("edges from two files come once each, in identity order: the larger count where they overlap, else both") {
    TempDir dir;
    auto a_path = dir.file("a.db"), b_path = dir.file("b.db");
    {
        // Written out of identity order: "out" before "in", a later address before an earlier one.
        HostDb a(a_path, "h-02");
        auto a_out_2 = a.edge("out", "app", "198.18.0.2", "198.18.0.9", 8000);
        auto a_out_1 = a.edge("out", "app", "198.18.0.2", "198.18.0.10", 8000);
        auto a_in = a.edge("in", "db", "198.18.0.2", "198.18.0.7", 5432);
        a.bucket(a_out_2, kT0, {.connects = 5, .open = 1});
        a.bucket(a_out_1, kT0, {.connects = 1});
        a.bucket(a_in, kT0 + 60, {.accepts = 2, .bytes_sent = 100});
    }
    {
        // The same in part, another order; h-01 sorts before h-02, and one of its edges has no traffic.
        HostDb b(b_path, "h-02");
        auto b_in = b.edge("in", "db", "198.18.0.2", "198.18.0.7", 5432);
        auto b_out_2 = b.edge("out", "app", "198.18.0.2", "198.18.0.9", 8000);
        b.bucket(b_in, kT0 + 60, {.accepts = 3, .bytes_sent = 50});
        b.bucket(b_out_2, kT0 + 120, {.connects = 4, .open = 7});
        HostDb other(b_path, "h-01");
        auto quiet = other.edge("out", "cron", "198.18.0.1", "198.18.0.2", 22);
        auto busy = other.edge("out", "cron", "198.18.0.1", "198.18.0.2", 21);
        other.bucket(busy, kT0, {.connects = 9});
        (void)quiet;
    }
    auto lines_of = [](const std::vector<std::string>& paths) {
        auto records = load_records(paths, Window{});
        REQUIRE(records);
        std::vector<std::string> lines;
        for (const auto& e : records->edges) {
            lines.push_back(std::string(e.host) + " " + std::string(e.direction) + " " + std::string(e.remote_addr) +
                            ":" + std::to_string(e.port) + " c" + std::to_string(e.connects) + " a" +
                            std::to_string(e.accepts) + " s" + std::to_string(e.bytes_sent) + " o" +
                            std::to_string(e.open) + " " + std::to_string(e.first_seen - kT0) + "-" +
                            std::to_string(e.last_seen - kT0));
        }
        return lines;
    };
    auto lines = lines_of({a_path, b_path});
    CHECK(lines == std::vector<std::string>{
                       "h-01 out 198.18.0.2:21 c9 a0 s0 o0 0-60",
                       "h-02 in 198.18.0.7:5432 c0 a3 s100 o0 60-120",
                       "h-02 out 198.18.0.10:8000 c1 a0 s0 o0 0-60",
                       // a's minute and b's share no bucket: both count; open from the later one, b's
                       "h-02 out 198.18.0.9:8000 c9 a0 s0 o7 0-180",
                   });
    // the same answer as from the two files merged bucket by bucket
    REQUIRE(merge_databases(dir.file("ab.db"), {a_path, b_path}));
    CHECK(lines_of({dir.file("ab.db")}) == lines);
}

// An agent whose database was replaced: the old file holds an edge's minute
// at kT0, the new one the next minute. Their spans touch, and share no
// bucket: they add up. A copy that also holds the other's minute shares a
// bucket with it: the larger count. Either way as their merge has it.
TEST_CASE("one edge in two files: spans that touch add up, spans that share a bucket take the larger") {
    TempDir dir;
    auto write = [&](const std::string& name, std::vector<std::pair<int64_t, int64_t>> buckets) {
        HostDb h(dir.file(name), "h-01");
        auto edge = h.edge("out", "app", "198.18.9.1", "198.18.9.2", 80);
        for (auto [start, connects] : buckets) h.bucket(edge, start, {.connects = connects});
        return dir.file(name);
    };
    auto first = write("first.db", {{kT0, 3}});
    auto next = write("next.db", {{kT0 + 60, 5}});
    auto both = write("both.db", {{kT0, 3}, {kT0 + 60, 5}});
    auto connects = [](const std::vector<std::string>& paths) {
        auto records = load_records(paths, Window{});
        REQUIRE(records);
        REQUIRE(records->edges.size() == 1);
        const auto& e = records->edges[0];
        CHECK(e.first_seen == kT0);
        CHECK(e.last_seen == kT0 + 120);
        return e.connects;
    };
    // each order: the later minute's file read second, then first
    CHECK(connects({first, next}) == 8);
    CHECK(connects({next, first}) == 8);
    CHECK(connects({first, both}) == 8);
    CHECK(connects({both, next}) == 8);
    REQUIRE(merge_databases(dir.file("merged.db"), {first, next, both}));
    CHECK(connects({dir.file("merged.db")}) == 8);
}

TEST_CASE("a record split by weights gives each part its share, and the remainder to the heaviest") {
    EdgeRecord e;
    e.connects = 10;
    e.bytes_sent = 100;
    e.open = 2;
    // 10 * 1/3 = 3 and 10 * 2/3 = 6, 1 left over: the heavier part, the second, takes it.
    auto parts = split_record(e, {1, 2});
    REQUIRE(parts.size() == 2);
    CHECK(parts[0].connects == 3);
    CHECK(parts[1].connects == 7);
    CHECK(parts[0].bytes_sent == 33);
    CHECK(parts[1].bytes_sent == 67);
    CHECK(parts[0].open == 0);
    CHECK(parts[1].open == 2);
}

// Two copies of one run's file taken in the same minute, the earlier while a
// connection was open, the later after it closed: the gauge is the later
// copy's, the one with more events, in either order; equal events, the larger.
// Merged, also the bucket's, its day's and its edge's last gauge.
TEST_CASE("of two copies of one run ending in the same bucket, the gauge is the one with more events") {
    TempDir dir;
    auto write = [&](const std::string& name, const Bucket& counts) {
        HostDb h(dir.file(name), "h-01");
        h.run("run-1", kT0, 0, kT0 + 60);
        h.bucket(h.edge("out", "app", "198.18.9.1", "198.18.9.2", 80), kT0, counts);
        return dir.file(name);
    };
    auto early = write("early.db", {.connects = 1, .open = 1});
    auto later = write("later.db", {.connects = 1, .closes = 1, .open = 0});
    auto tie = write("tie.db", {.connects = 1, .open = 0});
    auto open_of = [](const std::vector<std::string>& paths) {
        auto records = load_records(paths, Window{});
        REQUIRE(records);
        REQUIRE(records->edges.size() == 1);
        CHECK(records->edges[0].connects == 1);
        return records->edges[0].open;
    };
    int n = 0;
    for (const auto& [inputs, open] : std::vector<std::pair<std::vector<std::string>, int64_t>>{
             {{early, later}, 0}, {{later, early}, 0}, {{early, tie}, 1}, {{tie, early}, 1}}) {
        CHECK(open_of(inputs) == open);
        auto fleet = dir.file("fleet-" + std::to_string(n++) + ".db");
        INFO(fleet);
        REQUIRE(merge_databases(fleet, inputs));
        CHECK(open_of({fleet}) == open);
        auto db = Database::open_read_only(fleet);
        REQUIRE(db);
        auto row = db->prepare("SELECT (SELECT open FROM edge_buckets), (SELECT open FROM edge_days), "
                               "(SELECT last_open FROM edges), (SELECT closes FROM edge_buckets)");
        REQUIRE(row);
        REQUIRE(row->step());
        CHECK(row->column_int(0) == open);
        CHECK(row->column_int(1) == open);
        CHECK(row->column_int(2) == open);
        CHECK(row->column_int(3) == 1 - open);
    }
}

// An agent wrote 5 connections in minute kT0 to old.db, then restarted onto a
// fresh new.db in the same minute (1 more) and went on (20 the next minute):
// 26 in all. Files that share no run add up, bucket by bucket for merge;
// files that share one (copies, merged files) take the larger.
TEST_CASE("a replaced database and its successor add up, also in a shared bucket; copies of either do not") {
    TempDir dir;
    auto write = [&](const std::string& name, const std::vector<std::string>& run_ids,
                     std::vector<std::pair<int64_t, int64_t>> buckets) {
        HostDb h(dir.file(name), "h-01");
        for (const auto& id : run_ids) h.run(id, kT0, 0, kT0 + 120);
        auto edge = h.edge("out", "app", "198.18.9.1", "198.18.9.2", 80);
        for (auto [start, connects] : buckets) h.bucket(edge, start, {.connects = connects});
        return dir.file(name);
    };
    auto old = write("old.db", {"run-old"}, {{kT0, 5}});
    auto early = write("new-early.db", {"run-new"}, {{kT0, 1}});  // new.db copied before its second minute
    auto fresh = write("new.db", {"run-new"}, {{kT0, 1}, {kT0 + 60, 20}});
    // one file that an agent restarted onto (runs 1 and 2), and an earlier copy of it with run 1 only
    auto r1 = write("r1.db", {"run-1"}, {{kT0, 2}});
    auto r12 = write("r12.db", {"run-1", "run-2"}, {{kT0, 2 + 4}, {kT0 + 60, 8}});
    auto connects = [](const std::vector<std::string>& paths) {
        auto records = load_records(paths, Window{});
        REQUIRE(records);
        REQUIRE(records->edges.size() == 1);
        return records->edges[0].connects;
    };
    auto merged = [&](const std::vector<std::string>& inputs) {
        static int n = 0;
        auto out = dir.file("merged-" + std::to_string(n++) + ".db");
        REQUIRE(merge_databases(out, inputs));
        return out;
    };
    const std::vector<std::pair<std::vector<std::string>, int64_t>> cases = {
        {{old, fresh}, 26},
        {{fresh, old}, 26},
        {{old, old}, 5},  // the same file twice
        {{fresh, fresh}, 21},
        {{early, fresh}, 21},  // a later copy of a file
        {{fresh, early}, 21},
        {{old, early, fresh}, 26},
        {{early, old, fresh}, 26},
        {{fresh, early, old}, 26},
        {{r1, r12}, 14},  // runs 1 and 2 against an earlier copy with run 1 only
        {{r12, r1}, 14},
    };
    for (const auto& [inputs, expected] : cases) {
        std::string names;
        for (const auto& p : inputs) names += p.substr(dir.path.string().size()) + " ";
        INFO(names);
        CHECK(connects(inputs) == expected);
        auto out = merged(inputs);
        CHECK(connects({out}) == expected);
        // a fleet file next to a host file it contains, and merged with it again
        for (const auto& input : inputs) {
            INFO(input);
            CHECK(connects({out, input}) == expected);
            CHECK(connects({input, out}) == expected);
            CHECK(connects({merged({out, input})}) == expected);
            CHECK(connects({merged({input, out})}) == expected);
        }
    }
}

// c.db holds both runs' traffic without its runs (a file not written by an agent); a.db is run 1's (4 in
// the first minute), b.db run 2's (6 in the next). c.db is taken as a copy of both: 10 in every order. It
// was 16 in some: merged first, c.db made a.db a copy and b.db another run's, added to what c.db held.
// Two runs' gauges in one bucket: merge adds their buckets and keeps the larger gauge; so does the read.
TEST_CASE("a file without runs is a copy of the others whatever the order; two runs' gauges keep the larger") {
    TempDir dir;
    auto write = [&](const std::string& name, const std::string& run_id,
                     std::vector<std::tuple<int64_t, int64_t, int64_t>> buckets) {
        HostDb h(dir.file(name), "h-01");
        if (!run_id.empty()) h.run(run_id, kT0, 0, kT0 + 120);
        auto edge = h.edge("out", "app", "198.18.9.1", "198.18.9.2", 80);
        for (auto [start, connects, open] : buckets) h.bucket(edge, start, {.connects = connects, .open = open});
        return dir.file(name);
    };
    auto c = write("c.db", "", {{kT0, 4, 0}, {kT0 + 60, 6, 0}});
    auto a = write("a.db", "run-1", {{kT0, 4, 0}});
    auto b = write("b.db", "run-2", {{kT0 + 60, 6, 0}});
    auto record = [](const std::vector<std::string>& paths) {
        auto records = load_records(paths, Window{});
        REQUIRE(records);
        REQUIRE(records->edges.size() == 1);
        return records->edges[0];
    };
    int n = 0;
    for (const auto& inputs : std::vector<std::vector<std::string>>{{c, a, b}, {a, c, b}, {a, b, c}, {b, c, a}}) {
        CHECK(record(inputs).connects == 10);
        auto out = dir.file("merged-" + std::to_string(n++) + ".db");
        REQUIRE(merge_databases(out, inputs));
        CHECK(record({out}).connects == 10);
    }

    auto g1 = write("g1.db", "run-1", {{kT0, 10, 1}});
    auto g2 = write("g2.db", "run-2", {{kT0, 2, 5}});
    for (const auto& inputs : std::vector<std::vector<std::string>>{{g1, g2}, {g2, g1}}) {
        CHECK(record(inputs).connects == 12);
        CHECK(record(inputs).open == 5);
        auto out = dir.file("merged-" + std::to_string(n++) + ".db");
        REQUIRE(merge_databases(out, inputs));
        CHECK(record({out}).open == 5);
    }
}
