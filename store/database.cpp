#include "store/database.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "store/rollup.hpp"

namespace depgraph {
namespace {

// How long a statement waits for another connection's lock before it fails
// with SQLITE_BUSY.
constexpr int kBusyTimeoutMs = 5000;

// Version 1. Times are Unix seconds, UTC. Addresses are text (IPv4-mapped
// IPv6 written as IPv4). A run_id is random so that merging databases from
// many hosts, or the same database twice, never collides or double-counts.
constexpr std::string_view kSchemaV1 = R"sql(
CREATE TABLE agent_runs (
    run_id         TEXT PRIMARY KEY,
    host           TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    stopped_at     INTEGER,            -- NULL: still running, or it died
    last_report_at INTEGER NOT NULL,   -- the last flush that committed
    version        TEXT NOT NULL,
    kernel         TEXT NOT NULL,
    scope          TEXT NOT NULL,      -- 'host' or 'netns'
    netns          INTEGER NOT NULL    -- the agent's own network namespace inode
);
CREATE TABLE edges (
    edge_id     INTEGER PRIMARY KEY,
    host        TEXT NOT NULL,
    direction   TEXT NOT NULL CHECK (direction IN ('out', 'in')),
    netns       INTEGER NOT NULL,
    process     TEXT NOT NULL,         -- thread-group leader's name
    cgroup      TEXT NOT NULL,         -- cgroup v2 path, '' for the root
    local_addr  TEXT NOT NULL,
    remote_addr TEXT NOT NULL,
    port        INTEGER NOT NULL,      -- the service (listening) port
    loopback    INTEGER NOT NULL,
    source      TEXT NOT NULL,         -- what observed it: 'ebpf'
    UNIQUE (host, direction, netns, process, cgroup, local_addr, remote_addr, port)
);
CREATE TABLE edge_buckets (
    edge_id        INTEGER NOT NULL REFERENCES edges (edge_id),
    bucket_start   INTEGER NOT NULL,   -- aligned to bucket_seconds from the epoch
    bucket_seconds INTEGER NOT NULL,
    connects       INTEGER NOT NULL,
    failed         INTEGER NOT NULL,
    refused        INTEGER NOT NULL,
    accepts        INTEGER NOT NULL,
    closes         INTEGER NOT NULL,
    bytes_sent     INTEGER NOT NULL,
    bytes_received INTEGER NOT NULL,
    lifetime_ns    INTEGER NOT NULL,
    open           INTEGER NOT NULL,   -- gauge: connections open at the bucket's last flush
    PRIMARY KEY (edge_id, bucket_start)
) WITHOUT ROWID;
CREATE INDEX edge_buckets_by_time ON edge_buckets (bucket_start);
CREATE TABLE host_addresses (
    host       TEXT NOT NULL,
    netns      INTEGER NOT NULL,
    addr       TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (host, netns, addr, first_seen)
);
CREATE TABLE losses (
    run_id       TEXT NOT NULL REFERENCES agent_runs (run_id),
    bucket_start INTEGER NOT NULL,
    counter      TEXT NOT NULL,        -- e.g. 'edge_map_full', 'netlink_enobufs'
    value        INTEGER NOT NULL,
    PRIMARY KEY (run_id, bucket_start, counter)
) WITHOUT ROWID;
)sql";

// Version 2: a per-day rollup of edge_buckets, so that a question over a
// month reads one row per edge and day instead of 1,440. The rows of a day
// are always the sums of that day's buckets (the agent adds to both in one
// transaction; merge recomputes the days it touched). migrate() fills it from
// the buckets, with the SQL merge uses (store/rollup.cpp).
constexpr std::string_view kSchemaV2 = R"sql(
CREATE TABLE edge_days (
    edge_id        INTEGER NOT NULL REFERENCES edges (edge_id),
    day_start      INTEGER NOT NULL,   -- UTC midnight
    first_bucket   INTEGER NOT NULL,   -- bucket_start of the day's first bucket with this edge
    last_bucket    INTEGER NOT NULL,   -- bucket_start of the day's last one
    bucket_seconds INTEGER NOT NULL,
    connects       INTEGER NOT NULL,
    failed         INTEGER NOT NULL,
    refused        INTEGER NOT NULL,
    accepts        INTEGER NOT NULL,
    closes         INTEGER NOT NULL,
    bytes_sent     INTEGER NOT NULL,
    bytes_received INTEGER NOT NULL,
    lifetime_ns    INTEGER NOT NULL,
    open           INTEGER NOT NULL,   -- the gauge of the day's last bucket
    PRIMARY KEY (edge_id, day_start)
) WITHOUT ROWID;
CREATE INDEX edge_days_by_time ON edge_days (day_start);
)sql";

// Version 3: NAT, as each host's conntrack saw it. A connection that was
// translated (DNAT to a backend behind a VIP or port mapping, SNAT or
// masquerade on its way out) leaves a row here on the host that translated
// it: the client's own host for a local rule, the router for a forwarded
// flow. The graph tool turns a client's edge to a dialled address into an
// edge to the actual backend, and a server's edge from a NAT address into
// one from the real client, from these rows.
constexpr std::string_view kSchemaV3 = R"sql(
CREATE TABLE nat_translations (
    host           TEXT NOT NULL,      -- whose conntrack saw it
    netns          INTEGER NOT NULL,
    bucket_start   INTEGER NOT NULL,
    bucket_seconds INTEGER NOT NULL,
    client_addr    TEXT NOT NULL,      -- original source
    nat_addr       TEXT NOT NULL,      -- the source the server saw (= client_addr without SNAT)
    dialled_addr   TEXT NOT NULL,      -- original destination
    dialled_port   INTEGER NOT NULL,
    server_addr    TEXT NOT NULL,      -- actual destination (= dialled without DNAT)
    server_port    INTEGER NOT NULL,
    flows          INTEGER NOT NULL,   -- translated connections that began in the bucket
    open           INTEGER NOT NULL,   -- gauge: tracked at the bucket's last flush
    PRIMARY KEY (host, netns, bucket_start, client_addr, nat_addr, dialled_addr, dialled_port,
                 server_addr, server_port)
) WITHOUT ROWID;
CREATE INDEX nat_translations_by_dialled ON nat_translations (dialled_addr, dialled_port, bucket_start);
CREATE INDEX nat_translations_by_nat ON nat_translations (nat_addr, server_addr, server_port, bucket_start);
)sql";

// Version 4: running totals per edge in the rollup. cum_x of a day row is
// the sum of x over that edge's days up to and including this one, so the
// whole days of any window cost two rows per edge, not one per day:
// cum at the window's last day minus cum before its first. The agent carries
// them forward when it starts a day; merge and migrate() recompute them.
constexpr std::string_view kSchemaV4 = R"sql(
ALTER TABLE edge_days ADD COLUMN cum_connects INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_days ADD COLUMN cum_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_days ADD COLUMN cum_refused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_days ADD COLUMN cum_accepts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_days ADD COLUMN cum_closes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_days ADD COLUMN cum_bytes_sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_days ADD COLUMN cum_bytes_received INTEGER NOT NULL DEFAULT 0;
ALTER TABLE edge_days ADD COLUMN cum_lifetime_ns INTEGER NOT NULL DEFAULT 0;
)sql";

// Version 5: each edge's lifetime in its own row, and the buckets readable
// by time alone. An edge's first_day/last_day, its first bucket, its last
// bucket (length, open gauge) and total_* (its last day's cum_*) let a window
// that holds an edge's whole life, or the end of it (the default "since 30d",
// "everything"), sum its whole days without a seek into edge_days; NULL until
// the edge has a day row. They are always what rebuild_edge_totals
// (store/rollup.cpp) computes from the day rows: the agent, merge and
// migrate() all run it. The time index now holds every column the reader
// takes from a bucket, so the partial days at a window's ends are read from
// the index alone, not looked up again in the table row by row.
constexpr std::string_view kSchemaV5 = R"sql(
ALTER TABLE edges ADD COLUMN first_day INTEGER;        -- day_start of its first edge_days row
ALTER TABLE edges ADD COLUMN first_bucket INTEGER;     -- that day's first_bucket
ALTER TABLE edges ADD COLUMN last_day INTEGER;         -- day_start of its last edge_days row
ALTER TABLE edges ADD COLUMN last_bucket INTEGER;      -- that day's last_bucket, bucket_seconds and open
ALTER TABLE edges ADD COLUMN last_bucket_seconds INTEGER;
ALTER TABLE edges ADD COLUMN last_open INTEGER;
ALTER TABLE edges ADD COLUMN total_connects INTEGER;   -- the last day's cum_*: sums over every bucket
ALTER TABLE edges ADD COLUMN total_failed INTEGER;
ALTER TABLE edges ADD COLUMN total_refused INTEGER;
ALTER TABLE edges ADD COLUMN total_accepts INTEGER;
ALTER TABLE edges ADD COLUMN total_closes INTEGER;
ALTER TABLE edges ADD COLUMN total_bytes_sent INTEGER;
ALTER TABLE edges ADD COLUMN total_bytes_received INTEGER;
ALTER TABLE edges ADD COLUMN total_lifetime_ns INTEGER;
DROP INDEX edge_buckets_by_time;
CREATE INDEX edge_buckets_by_time ON edge_buckets (bucket_start, edge_id, bucket_seconds, connects, failed, refused,
    accepts, closes, bytes_sent, bytes_received, open);
)sql";

// migrations[v] takes a database at version v to v + 1.
constexpr std::string_view kMigrations[] = {kSchemaV1, kSchemaV2, kSchemaV3, kSchemaV4, kSchemaV5};
static_assert(std::size(kMigrations) == kSchemaVersion);

Result<int64_t> pragma_int(Database& db, const char* pragma) {
    auto stmt = db.prepare(std::string("PRAGMA ") + pragma);
    if (!stmt) return stmt.error();
    auto row = stmt->step();
    if (!row) return row.error();
    return *row ? stmt->column_int(0) : 0;
}

// Tells our database from any other file, and a newer schema from a known one.
Status check_identity(Database& db, bool empty_is_ok) {
    auto app = pragma_int(db, "application_id");
    if (!app) {
        return Error{db.path() + " is not a depgraph database (" + app.error().message + ")"};
    }
    auto version = pragma_int(db, "user_version");
    if (!version) return version.error();
    if (*app == 0 && *version == 0 && empty_is_ok) {
        auto tables = db.prepare("SELECT count(*) FROM sqlite_schema");
        if (!tables) return tables.error();
        auto row = tables->step();
        if (!row) return row.error();
        if (tables->column_int(0) == 0) return ok_status();
    }
    if (*app != kApplicationId) return Error{db.path() + " is not a depgraph database"};
    if (*version > kSchemaVersion) {
        return Error{db.path() + " has schema version " + std::to_string(*version) +
                     ", newer than this build reads (" + std::to_string(kSchemaVersion) +
                     "): upgrade depgraph"};
    }
    return ok_status();
}

Status migrate(Database& db) {
    auto version = pragma_int(db, "user_version");
    if (!version) return version.error();
    if (*version == kSchemaVersion) return ok_status();
    auto tx = Transaction::begin(db);
    if (!tx) return tx.error();
    // Read again under the write lock: two processes that both found a new
    // file empty take turns here, and the second finds the first's schema.
    version = pragma_int(db, "user_version");
    if (!version) return version.error();
    for (int64_t v = *version; v < kSchemaVersion; v++) {
        if (auto s = db.exec(kMigrations[v]); !s) return s;
    }
    // The rollup's rows are data, not schema: a file from before version 2
    // has buckets and no day rows, one from before version 4 has day rows
    // and no running totals, one from before version 5 no edge totals.
    const EdgeDayRange everything[] = {EdgeDayRange{}};
    if (*version < 2) {
        if (auto s = rebuild_edge_days(db, everything); !s) return s;
    } else if (*version < 4) {
        if (auto s = rebuild_edge_cums(db, everything); !s) return s;
    } else if (*version < 5) {
        if (auto s = rebuild_edge_totals(db, everything); !s) return s;
    }
    if (auto s = db.exec("PRAGMA application_id = " + std::to_string(kApplicationId)); !s) return s;
    if (auto s = db.exec("PRAGMA user_version = " + std::to_string(kSchemaVersion)); !s) return s;
    return tx->commit();
}

// The 100-byte header of an SQLite file; nullopt for a shorter or foreign one.
// See https://www.sqlite.org/fileformat.html.
using FileHeader = std::array<unsigned char, 100>;
std::optional<FileHeader> sqlite_header(const std::string& path) {
    FileHeader h;
    std::ifstream in(path, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(h.data()), h.size())) return std::nullopt;
    if (std::memcmp(h.data(), "SQLite format 3", 16) != 0) return std::nullopt;  // 16 bytes: the NUL included
    return h;
}

// The main file's size in bytes according to its header, when the header
// vouches for it (offset 28 is valid if offset 92 equals the change counter
// at offset 24).
std::optional<int64_t> header_database_bytes(const FileHeader& h) {
    auto be32 = [&](int at) {
        return static_cast<uint32_t>(h[at]) << 24 | static_cast<uint32_t>(h[at + 1]) << 16 |
               static_cast<uint32_t>(h[at + 2]) << 8 | h[at + 3];
    };
    if (be32(24) != be32(92) || be32(28) == 0) return std::nullopt;
    int64_t page_size = (h[16] << 8) | h[17];
    if (page_size == 1) page_size = 65536;
    return static_cast<int64_t>(be32(28)) * page_size;
}

// The file format's read version (offset 18) is 2 for a database in WAL mode.
bool header_says_wal(const FileHeader& h) { return h[18] == 2; }

bool has_content(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && st.st_size > 0;
}

// SQLite refuses a main file shorter than the page count in its header as
// "database disk image is malformed" (the page count of a database in WAL
// mode includes the pages still in its -wal file). When that is why, say so:
// the file lost its tail. Looked at only once SQLite has refused the file, so
// a healthy one is never refused by this look, which takes no locks and could
// see a checkpoint half done. With a -wal file that holds anything, the
// header alone does not tell; SQLite's words stand. quick_check would find
// more, but reads the whole file on every command; damage inside a page
// surfaces as an error when the page is read.
Error named_damage(const Database& db, Error e) {
    if ((sqlite3_extended_errcode(db.handle()) & 0xff) != SQLITE_CORRUPT) return e;
    const auto& path = db.path();
    struct stat st {};
    if (has_content(path + "-wal") || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return e;
    auto header = sqlite_header(path);
    if (auto size = header ? header_database_bytes(*header) : std::nullopt;
        size && static_cast<int64_t>(st.st_size) < *size) {
        return Error{path + " is damaged: the file is shorter than its header says (truncated?)"};
    }
    return e;
}

bool on_read_only_file_system(const std::string& dir) {
    struct statvfs fs {};
    return ::statvfs(dir.c_str(), &fs) == 0 && (fs.f_flag & ST_RDONLY);
}

// A file: URI that opens `path` as immutable (no locks, no -wal or -shm).
// Every byte but letters, digits and "/-._~" is percent-encoded, so that a
// '?', '#' or '%' in the name stays part of it.
std::string immutable_uri(const std::string& path) {
    static const char hex[] = "0123456789ABCDEF";
    std::error_code ec;
    auto name = std::filesystem::absolute(path, ec).string();
    if (ec) name = path;  // no working directory: a file: URI takes a relative path too
    std::string uri = name.front() == '/' ? "file://" : "file:";
    for (unsigned char c : name) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || std::strchr("/-._~", c)) {
            uri += static_cast<char>(c);
        } else {
            uri += {'%', hex[c >> 4], hex[c & 15]};
        }
    }
    return uri + "?immutable=1";
}

// `name` is what SQLite opens (`path`, or a URI for it).
Result<SqliteDb> open_with(const std::string& path, int flags, const std::string& name = {}) {
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(name.empty() ? path.c_str() : name.c_str(), &raw, flags, nullptr);
    SqliteDb db(raw);  // sqlite3_open_v2 allocates a handle even when it fails
    if (rc != SQLITE_OK) {
        std::string why = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
        return Error{"cannot open database " + path + ": " + why};
    }
    sqlite3_extended_result_codes(raw, 1);
    sqlite3_busy_timeout(raw, kBusyTimeoutMs);
    return db;
}

// Names SQLite does not take as a file, where whatever is written is gone
// when the program exits: an unset variable in a unit file must not lose
// every count without a word.
std::optional<Error> not_a_file_name(const std::string& path) {
    if (path.empty()) return Error{"no database path given (an empty name is a temporary database, deleted at exit)"};
    if (path == ":memory:") return Error{"database :memory: is not a file: nothing would be kept; give a file's path"};
    // Debian's SQLite reads names that begin with "file:" as URIs.
    if (path.rfind("file:", 0) == 0 && sqlite3_compileoption_used("USE_URI")) {
        return Error{"database " + path + " would be taken as an SQLite URI: give a path (./" + path +
                     " for a file of that name)"};
    }
    return std::nullopt;
}

// SQLite opens a file it may not write read-only without a word, and one it
// cannot create fails with "unable to open database file"; the file system
// says why (a read-only mount, permissions). The directory must be writable
// too: the write-ahead log is created next to the file.
std::optional<Error> not_writable(const std::string& path, const std::filesystem::path& dir) {
    if (::access(path.c_str(), F_OK) == 0 && ::access(path.c_str(), W_OK) != 0) {
        return errno_error("cannot write database " + path, errno);
    }
    auto where = dir.empty() ? std::filesystem::path(".") : dir;
    if (::access(where.c_str(), W_OK) != 0) {
        return errno_error("cannot write database " + path + ": its directory " + where.string(), errno);
    }
    return std::nullopt;
}

}  // namespace

Result<Database> Database::open_for_write(const std::string& path) {
    if (auto e = not_a_file_name(path)) return *e;
    std::error_code ec;
    auto dir = std::filesystem::path(path).parent_path();
    if (!dir.empty() && !std::filesystem::exists(dir, ec)) {
        std::filesystem::create_directories(dir, ec);
        if (ec) return Error{"cannot create directory " + dir.string() + ": " + ec.message()};
    }
    if (auto e = not_writable(path, dir)) return *e;
    auto handle = open_with(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!handle) return handle.error();
    Database db(std::move(*handle), path);
    // Its reads as one snapshot: another process may be creating the schema
    // of the same new file right now, and must be seen before or after.
    if (auto s = db.exec("BEGIN"); !s) return s.error();
    auto identity = check_identity(db, true);
    if (!identity) identity = named_damage(db, identity.error());  // before ROLLBACK resets SQLite's error code
    (void)db.exec(identity ? "COMMIT" : "ROLLBACK");
    if (!identity) return identity.error();
    // WAL: readers (depgraph) never block the agent's flushes and vice versa.
    // The switch takes an exclusive lock without waiting for it (no busy
    // handler): another process opening the same new file holds it briefly.
    {
        auto mode = db.prepare("PRAGMA journal_mode = WAL");
        if (!mode) return mode.error();
        for (int waited_ms = 0;; waited_ms += 10) {
            auto row = mode->step();
            if (row) break;
            if (!db.busy() || waited_ms >= kBusyTimeoutMs) {
                return Error{"cannot write database " + path + ": " + row.error().message};
            }
            mode->reset();
            usleep(10000);
        }
    }
    if (auto s = db.exec("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON"); !s) return s.error();
    if (auto s = migrate(db); !s) return Error{"cannot set up the schema in " + s.error().message};
    return db;
}

Result<Database> Database::open_read_only(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno_error("cannot open database " + path, errno);
    if (!S_ISREG(st.st_mode)) return Error{"cannot open database " + path + ": not a regular file"};
    auto header = sqlite_header(path);
    bool wal = header && header_says_wal(*header);
    auto dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    // A WAL database is read through its -wal and -shm files, which SQLite
    // creates when missing; on a read-only file system it cannot. With no
    // -wal file there (a cleanly closed copy, what .backup makes), no writer
    // has the file open and none can start through this mount, so the main
    // file is all there is: read it as immutable, without them.
    bool read_only_fs = wal && on_read_only_file_system(dir);
    auto handle = read_only_fs && !has_content(path + "-wal")
                      ? open_with(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, immutable_uri(path))
                      : open_with(path, SQLITE_OPEN_READONLY);
    if (!handle) return handle.error();
    Database db(std::move(*handle), path);
    if (auto s = check_identity(db, false); !s) {
        // Even a read-only connection to a WAL database needs its -wal and -shm
        // files (https://www.sqlite.org/wal.html#readonly): SQLite creates them
        // when missing, which takes write access to the directory. Reading
        // without them (immutable=1, or no locks) is not safe while an agent
        // may be writing the file, so this is an error that says why. On a
        // read-only file system that is a -wal file without its -shm: the WAL
        // holds data an immutable read would miss.
        int code = sqlite3_extended_errcode(db.handle());
        if (wal && (code == SQLITE_READONLY_DIRECTORY || code == SQLITE_READONLY_CANTINIT || code == SQLITE_CANTOPEN)) {
            if (read_only_fs) {
                return Error{"cannot read " + path + ": it is in WAL mode on a read-only file system, where SQLite "
                             "cannot read its -wal file without creating a -shm file beside it: copy " + path +
                             " and " + path + "-wal somewhere writable and read the copy"};
            }
            return Error{"cannot read " + path + ": SQLite reads a database in WAL mode through its -wal and -shm "
                         "files, and cannot create or open them here (" + sqlite3_errmsg(db.handle()) +
                         "): read it as a user who can write to " + dir +
                         ", or copy it with its -wal file somewhere writable"};
        }
        return named_damage(db, s.error());
    }
    return db;
}

bool is_database_file(const std::string& path, const std::string& db) {
    struct stat target {};
    bool exists = ::stat(path.c_str(), &target) == 0;
    // A -wal or -shm file that is not there yet may be by the time the output is written.
    auto same_name = [&](const std::string& file) {
        std::error_code a, b;
        auto name = std::filesystem::weakly_canonical(path, a);
        return !a && name == std::filesystem::weakly_canonical(file, b) && !b;
    };
    for (const char* suffix : kDatabaseFileSuffixes) {
        std::string file = db + suffix;
        struct stat st {};
        if (exists ? ::stat(file.c_str(), &st) == 0 && st.st_dev == target.st_dev && st.st_ino == target.st_ino
                   : same_name(file)) {
            return true;
        }
    }
    return false;
}

bool Database::busy() const { return (sqlite3_extended_errcode(db_.get()) & 0xff) == SQLITE_BUSY; }

bool Database::full() const {
    int code = sqlite3_extended_errcode(db_.get()) & 0xff;
    int err = sqlite3_system_errno(db_.get());
    return code == SQLITE_FULL || (code == SQLITE_IOERR && (err == ENOSPC || err == EDQUOT));
}

Status Database::exec(std::string_view sql) {
    char* msg = nullptr;
    std::string text(sql);
    if (sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
        std::string why = msg ? msg : sqlite3_errmsg(db_.get());
        sqlite3_free(msg);
        return Error{"database " + path_ + ": " + why};
    }
    return ok_status();
}

Result<Statement> Database::prepare(std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_.get(), sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    SqliteStmt stmt(raw);
    if (rc != SQLITE_OK) return error("cannot prepare query");
    return Statement(std::move(stmt), db_.get());
}

Error Database::error(const std::string& what) const {
    return Error{what + " on " + path_ + ": " + sqlite3_errmsg(db_.get())};
}

Statement& Statement::bind(int index, int64_t value) {
    sqlite3_bind_int64(stmt_.get(), index, value);
    return *this;
}

Statement& Statement::bind(int index, const std::string& value) {
    sqlite3_bind_text(stmt_.get(), index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
    return *this;
}

Statement& Statement::bind_null(int index) {
    sqlite3_bind_null(stmt_.get(), index);
    return *this;
}

Result<bool> Statement::step() {
    int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Error{sqlite3_errmsg(db_)};
}

Status Statement::run() {
    for (;;) {
        auto row = step();
        if (!row) {
            reset();
            return row.error();
        }
        if (!*row) break;
    }
    reset();
    return ok_status();
}

void Statement::reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
}

int64_t Statement::column_int(int col) const { return sqlite3_column_int64(stmt_.get(), col); }

std::string Statement::column_text(int col) const { return std::string(column_view(col)); }

std::string_view Statement::column_view(int col) const {
    auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_.get(), col));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(stmt_.get(), col))) : std::string_view();
}

bool Statement::column_is_null(int col) const { return sqlite3_column_type(stmt_.get(), col) == SQLITE_NULL; }

Result<Transaction> Transaction::begin(Database& db) {
    if (auto s = db.exec("BEGIN IMMEDIATE"); !s) return s.error();
    return Transaction(&db);
}

Transaction::~Transaction() {
    if (db_) (void)db_->exec("ROLLBACK");
}

Status Transaction::commit() {
    auto s = db_->exec("COMMIT");
    if (s) db_ = nullptr;
    return s;
}

}  // namespace depgraph
