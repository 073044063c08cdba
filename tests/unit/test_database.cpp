#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "store/database.hpp"
#include "tests/schema_downgrade.hpp"

using namespace depgraph;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/depgraph-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("a new database gets the current schema and identity") {
    TempDir dir;
    auto path = (dir.path / "sub" / "agent.db").string();
    {
        auto db = Database::open_for_write(path);
        REQUIRE(db.ok());
        auto stmt = db->prepare("PRAGMA user_version");
        REQUIRE(stmt.ok());
        REQUIRE(*stmt->step());
        CHECK(stmt->column_int(0) == kSchemaVersion);
    }
    auto again = Database::open_read_only(path);
    REQUIRE(again.ok());
    auto tables = again->prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table'");
    REQUIRE(*tables->step());
    CHECK(tables->column_int(0) == 7);
}

TEST_CASE("a file that is not ours is refused, for reading and for writing, and left intact") {
    TempDir dir;
    auto text = (dir.path / "notes.txt").string();
    std::ofstream(text) << "not a database, just some text that is long enough to look like a header\n";
    auto size_before = fs::file_size(text);
    auto w = Database::open_for_write(text);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().message.find("not a depgraph database") != std::string::npos);
    CHECK(fs::file_size(text) == size_before);
    REQUIRE_FALSE(Database::open_read_only(text).ok());

    auto other = (dir.path / "other.db").string();
    {
        sqlite3* raw = nullptr;
        sqlite3_open(other.c_str(), &raw);
        SqliteDb db(raw);
        sqlite3_exec(raw, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", nullptr, nullptr, nullptr);
    }
    auto o = Database::open_for_write(other);
    REQUIRE_FALSE(o.ok());
    CHECK(o.error().message.find("not a depgraph database") != std::string::npos);
}

TEST_CASE("a newer schema is refused with advice to upgrade") {
    TempDir dir;
    auto path = (dir.path / "new.db").string();
    {
        auto db = Database::open_for_write(path);
        REQUIRE(db.ok());
        REQUIRE(db->exec("PRAGMA user_version = 99").ok());
    }
    auto r = Database::open_read_only(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("newer") != std::string::npos);
    CHECK_FALSE(Database::open_for_write(path).ok());
}

namespace {

// Refused for reading and for writing, with the same words.
void check_refused_as_truncated(const std::string& path) {
    const auto damaged = path + " is damaged: the file is shorter than its header says (truncated?)";
    auto r = Database::open_read_only(path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == damaged);
    auto w = Database::open_for_write(path);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().message == damaged);
}

}  // namespace

TEST_CASE("missing and truncated files are refused for reading; a truncated one for writing too, in the same words") {
    TempDir dir;
    CHECK_FALSE(Database::open_read_only((dir.path / "missing.db").string()).ok());
    CHECK_FALSE(fs::exists(dir.path / "missing.db"));

    auto path = (dir.path / "cut.db").string();
    {
        auto db = Database::open_for_write(path);
        REQUIRE(db.ok());
        REQUIRE(db->exec("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE").ok());
    }
    fs::resize_file(path, 1500);
    check_refused_as_truncated(path);
    CHECK(fs::file_size(path) == 1500);
}

namespace {

// Sets the page count in an SQLite file's header (offset 28) and vouches for
// it (offset 92 = the change counter at 24), as a checkpoint's first write,
// page 1, does.
void set_header_page_count(const std::string& path, uint32_t pages) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    std::array<char, 100> h{};
    f.read(h.data(), h.size());
    for (int i = 0; i < 4; i++) {
        h[28 + i] = static_cast<char>(pages >> (24 - 8 * i));
        h[92 + i] = h[24 + i];
    }
    f.seekp(0);
    f.write(h.data(), h.size());
}

int64_t count_rows(Database& db, const char* table) {
    auto stmt = db.prepare(std::string("SELECT count(*) FROM ") + table);
    REQUIRE(stmt.ok());
    REQUIRE(*stmt->step());
    return stmt->column_int(0);
}

}  // namespace

// The state a checkpoint leaves for a moment, and for good when the disk fills
// during one: the main file's header already counts pages that are still only
// in the -wal file. SQLite reads such a database correctly.
TEST_CASE("a WAL database whose header counts pages still in its -wal file is read, not called truncated") {
    TempDir dir;
    auto live = (dir.path / "live.db").string(), copy = (dir.path / "copy.db").string(),
         alone = (dir.path / "alone.db").string();
    {
        auto db = Database::open_for_write(live);
        REQUIRE(db.ok());
        REQUIRE(db->exec("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint = 0").ok());
        REQUIRE(db->exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
                         "INSERT INTO host_addresses SELECT 'h', 1, '198.18.0.' || i, i, i FROM n")
                    .ok());
        auto pages = db->prepare("PRAGMA page_count");
        REQUIRE(*pages->step());
        auto count = static_cast<uint32_t>(pages->column_int(0));
        // Copied while open: the -wal file goes when the last connection closes.
        fs::copy_file(live, copy);
        fs::copy_file(live + "-wal", copy + "-wal");
        fs::copy_file(live, alone);
        set_header_page_count(copy, count);
        set_header_page_count(alone, count);
        REQUIRE(fs::file_size(copy) < count * 4096u);
    }
    {
        auto r = Database::open_read_only(copy);
        INFO((r ? std::string() : r.error().message));
        REQUIRE(r.ok());
        CHECK(count_rows(*r, "host_addresses") == 2000);
    }
    auto w = Database::open_for_write(copy);
    INFO((w ? std::string() : w.error().message));
    REQUIRE(w.ok());
    CHECK(count_rows(*w, "host_addresses") == 2000);
    // Without its -wal file the same main file has lost pages.
    check_refused_as_truncated(alone);
}

namespace {

// A tmpfs mounted on `dir`, made read-only by read_only(), unmounted at the
// end however the test ends.
struct TestMount {
    std::string dir;
    bool mounted;
    explicit TestMount(const fs::path& where) : dir(where.string()) {
        fs::create_directory(where);
        mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=8m") == 0;
    }
    bool read_only() { return ::mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0; }
    ~TestMount() {
        if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
    }
};

}  // namespace

// A cleanly closed WAL database (what `sqlite3 .backup` makes) has no -wal
// file; on a read-only file system SQLite cannot create one, and nothing can
// write the file, so it is read as it is.
TEST_CASE("a WAL database on a read-only file system is read when it has no -wal file, and explained when it has") {
    if (geteuid() != 0) {
        WARN("skipped: mounting a read-only file system needs root");
        return;
    }
    TempDir dir;
    TestMount mount(dir.path / "ro");
    REQUIRE(mount.mounted);
    // A name a file: URI would take apart unless percent-encoded.
    auto closed = mount.dir + "/a %41?#b.db", with_wal = mount.dir + "/w.db";
    {
        auto db = Database::open_for_write(closed);
        REQUIRE(db.ok());
        REQUIRE(db->exec("INSERT INTO host_addresses VALUES ('h', 1, '198.18.0.1', 1, 2)").ok());
    }
    {
        auto live = mount.dir + "/live.db";
        auto db = Database::open_for_write(live);
        REQUIRE(db.ok());
        REQUIRE(db->exec("PRAGMA wal_autocheckpoint = 0").ok());
        REQUIRE(db->exec("INSERT INTO host_addresses VALUES ('h', 1, '198.18.0.1', 1, 2)").ok());
        fs::copy_file(live, with_wal);
        fs::copy_file(live + "-wal", with_wal + "-wal");
    }
    REQUIRE(mount.read_only());

    auto r = Database::open_read_only(closed);
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(count_rows(*r, "host_addresses") == 1);
    CHECK_FALSE(fs::exists(closed + "-wal"));

    auto w = Database::open_read_only(with_wal);
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().message == "cannot read " + with_wal + ": it is in WAL mode on a read-only file system, where "
                               "SQLite cannot read its -wal file without creating a -shm file beside it: copy " +
                               with_wal + " and " + with_wal + "-wal somewhere writable and read the copy");
}

TEST_CASE("a transaction that is not committed leaves nothing behind") {
    TempDir dir;
    auto db = Database::open_for_write((dir.path / "t.db").string());
    REQUIRE(db.ok());
    {
        auto tx = Transaction::begin(*db);
        REQUIRE(tx.ok());
        REQUIRE(db->exec("INSERT INTO host_addresses VALUES ('h', 1, '198.18.0.1', 1, 2)").ok());
    }
    auto count = db->prepare("SELECT count(*) FROM host_addresses");
    REQUIRE(*count->step());
    CHECK(count->column_int(0) == 0);
}

TEST_CASE("a version 1 database is migrated: its buckets are rolled up per day") {
    TempDir dir;
    auto path = (dir.path / "v1.db").string();
    {
        auto db = Database::open_for_write(path);
        REQUIRE(db.ok());
        // Back to version 1: no rollup and no NAT table yet.
        REQUIRE(db->exec(depgraph::testing::kBackToSchema4).ok());
        REQUIRE(db->exec("DROP TABLE edge_days; DROP TABLE nat_translations; PRAGMA user_version = 1").ok());
        REQUIRE(db->exec("INSERT INTO edges VALUES (1, 'h', 'out', 1, 'curl', '', '198.18.0.1', '198.18.0.2', 80, 0, "
                         "'ebpf')")
                    .ok());
        // Two buckets on one day (the later one holds the last open gauge), one on the next day.
        REQUIRE(db->exec("INSERT INTO edge_buckets VALUES (1, 86400, 60, 2, 1, 1, 0, 2, 10, 20, 5, 3), "
                         "(1, 86400 + 3600, 60, 3, 0, 0, 0, 3, 30, 40, 6, 1), "
                         "(1, 2 * 86400 + 60, 60, 7, 0, 0, 0, 7, 70, 80, 7, 0)")
                    .ok());
    }
    auto db = Database::open_for_write(path);
    REQUIRE(db.ok());
    auto days = db->prepare(
        "SELECT day_start, first_bucket, last_bucket, connects, failed, bytes_sent, bytes_received, open "
        "FROM edge_days ORDER BY day_start");
    REQUIRE(days.ok());
    REQUIRE(*days->step());
    CHECK(days->column_int(0) == 86400);
    CHECK(days->column_int(1) == 86400);
    CHECK(days->column_int(2) == 86400 + 3600);
    CHECK(days->column_int(3) == 5);
    CHECK(days->column_int(4) == 1);
    CHECK(days->column_int(5) == 40);
    CHECK(days->column_int(6) == 60);
    CHECK(days->column_int(7) == 1);
    REQUIRE(*days->step());
    CHECK(days->column_int(0) == 2 * 86400);
    CHECK(days->column_int(3) == 7);
    CHECK_FALSE(*days->step());
    // and with running totals (schema 4)
    auto totals = db->prepare("SELECT cum_connects, cum_bytes_sent, cum_lifetime_ns FROM edge_days ORDER BY day_start");
    REQUIRE(totals.ok());
    REQUIRE(*totals->step());
    CHECK(totals->column_int(0) == 5);
    CHECK(totals->column_int(1) == 40);
    CHECK(totals->column_int(2) == 11);
    REQUIRE(*totals->step());
    CHECK(totals->column_int(0) == 12);
    CHECK(totals->column_int(1) == 110);
    CHECK(totals->column_int(2) == 18);
    auto version = db->prepare("PRAGMA user_version");
    REQUIRE(*version->step());
    CHECK(version->column_int(0) == kSchemaVersion);
}

TEST_CASE("a version 3 database is migrated: its day rows get running totals per edge") {
    TempDir dir;
    auto path = (dir.path / "v3.db").string();
    {
        auto db = Database::open_for_write(path);
        REQUIRE(db.ok());
        REQUIRE(db->exec(depgraph::testing::kBackToSchema4).ok());
        REQUIRE(db->exec("DROP TABLE edge_days; CREATE TABLE edge_days (edge_id INTEGER NOT NULL, day_start INTEGER "
                         "NOT NULL, first_bucket INTEGER NOT NULL, last_bucket INTEGER NOT NULL, bucket_seconds "
                         "INTEGER NOT NULL, connects INTEGER NOT NULL, failed INTEGER NOT NULL, refused INTEGER NOT "
                         "NULL, accepts INTEGER NOT NULL, closes INTEGER NOT NULL, bytes_sent INTEGER NOT NULL, "
                         "bytes_received INTEGER NOT NULL, lifetime_ns INTEGER NOT NULL, open INTEGER NOT NULL, "
                         "PRIMARY KEY (edge_id, day_start)) WITHOUT ROWID; PRAGMA user_version = 3")
                    .ok());
        // Two edges, days out of order: the totals follow day_start, per edge.
        REQUIRE(db->exec("INSERT INTO edge_days VALUES (1, 3 * 86400, 0, 0, 60, 4, 0, 0, 0, 0, 40, 0, 0, 0), "
                         "(2, 86400, 0, 0, 60, 100, 0, 0, 0, 0, 0, 0, 0, 0), "
                         "(1, 86400, 0, 0, 60, 1, 1, 0, 0, 0, 10, 0, 0, 0), "
                         "(1, 2 * 86400, 0, 0, 60, 2, 0, 0, 0, 0, 20, 0, 0, 0)")
                    .ok());
    }
    auto db = Database::open_for_write(path);
    REQUIRE(db.ok());
    auto totals = db->prepare("SELECT edge_id, cum_connects, cum_failed, cum_bytes_sent FROM edge_days "
                              "ORDER BY edge_id, day_start");
    REQUIRE(totals.ok());
    std::vector<std::array<int64_t, 4>> rows;
    while (*totals->step()) {
        rows.push_back({totals->column_int(0), totals->column_int(1), totals->column_int(2), totals->column_int(3)});
    }
    CHECK(rows == std::vector<std::array<int64_t, 4>>{{1, 1, 1, 10}, {1, 3, 1, 30}, {1, 7, 1, 70}, {2, 100, 0, 0}});
}

TEST_CASE("a version 4 database is migrated: each edge gets its lifetime totals, the time index covers the buckets") {
    TempDir dir;
    auto path = (dir.path / "v4.db").string();
    {
        auto db = Database::open_for_write(path);
        REQUIRE(db.ok());
        REQUIRE(db->exec(depgraph::testing::kBackToSchema4).ok());
        REQUIRE(db->exec("INSERT INTO edges VALUES (1, 'h', 'out', 1, 'curl', '', '198.18.0.1', '198.18.0.2', 80, 0, "
                         "'ebpf'), (2, 'h', 'out', 1, 'curl', '', '198.18.0.1', '198.18.0.3', 80, 0, 'ebpf')")
                    .ok());
        // Edge 1: three days, written out of order; edge 2: no day at all.
        REQUIRE(db->exec("INSERT INTO edge_days VALUES "
                         "(1, 3 * 86400, 3 * 86400 + 60, 3 * 86400 + 600, 30, 4, 0, 0, 0, 0, 40, 0, 9, 2, "
                         "   7, 1, 0, 0, 0, 70, 0, 21), "
                         "(1, 86400, 86400 + 120, 86400 + 120, 60, 1, 1, 0, 0, 0, 10, 0, 5, 0, 1, 1, 0, 0, 0, 10, 0, 5), "
                         "(1, 2 * 86400, 2 * 86400, 2 * 86400, 60, 2, 0, 0, 0, 0, 20, 0, 7, 1, 3, 1, 0, 0, 0, 30, 0, 12)")
                    .ok());
    }
    auto db = Database::open_for_write(path);
    REQUIRE(db.ok());
    auto edges = db->prepare("SELECT first_day, first_bucket, last_day, last_bucket, last_bucket_seconds, last_open, "
                             "total_connects, total_failed, total_bytes_sent, total_lifetime_ns FROM edges "
                             "ORDER BY edge_id");
    REQUIRE(edges.ok());
    REQUIRE(*edges->step());
    std::vector<int64_t> first;
    for (int c = 0; c < 10; c++) first.push_back(edges->column_int(c));
    CHECK(first == std::vector<int64_t>{86400, 86400 + 120, 3 * 86400, 3 * 86400 + 600, 30, 2, 7, 1, 70, 21});
    REQUIRE(*edges->step());
    CHECK(edges->column_is_null(0));
    CHECK(edges->column_is_null(6));
    CHECK_FALSE(*edges->step());
    auto plan = db->prepare("EXPLAIN QUERY PLAN SELECT edge_id, bucket_seconds, connects, bytes_received, open "
                            "FROM edge_buckets WHERE bucket_start >= 0 AND bucket_start < 86400");
    REQUIRE(plan.ok());
    REQUIRE(*plan->step());
    CHECK(plan->column_text(3).find("COVERING INDEX edge_buckets_by_time") != std::string::npos);
    auto version = db->prepare("PRAGMA user_version");
    REQUIRE(*version->step());
    CHECK(version->column_int(0) == kSchemaVersion);
}

// Each process finds the new file empty; the schema must be created once,
// by whichever takes the write lock first, and found by the others.
TEST_CASE("processes creating one new database at the same moment all succeed") {
    constexpr int kRounds = 20, kProcesses = 4;
    TempDir dir;
    for (int round = 0; round < kRounds; round++) {
        auto path = (dir.path / ("race-" + std::to_string(round) + ".db")).string();
        int go[2];
        REQUIRE(pipe(go) == 0);
        std::vector<pid_t> children;
        for (int i = 0; i < kProcesses; i++) {
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                char c;
                ::close(go[1]);
                (void)!::read(go[0], &c, 1);  // all start when the pipe closes
                auto db = Database::open_for_write(path);
                if (!db) std::fprintf(stderr, "%s\n", db.error().message.c_str());
                _exit(db ? 0 : 1);
            }
            children.push_back(pid);
        }
        ::close(go[0]);
        ::close(go[1]);
        int failed = 0;
        for (pid_t pid : children) {
            int status = 0;
            waitpid(pid, &status, 0);
            failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        INFO("round " << round);
        CHECK(failed == 0);
    }
}
