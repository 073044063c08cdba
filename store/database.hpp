// The depgraph database: one SQLite file per host (written by the agent) or
// merged from many (written by `depgraph merge`). Everything that opens one
// goes through here, so the schema, its version check and its migrations
// live in one place.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/unique_fd.hpp"

namespace depgraph {

using SqliteDb = std::unique_ptr<sqlite3, Free<sqlite3_close_v2>>;
using SqliteStmt = std::unique_ptr<sqlite3_stmt, Free<sqlite3_finalize>>;

// PRAGMA application_id: tells our file from any other SQLite database ("DGPH").
inline constexpr int32_t kApplicationId = 0x44475048;
// PRAGMA user_version: the schema this build writes and reads.
inline constexpr int kSchemaVersion = 5;

class Statement;

class Database {
public:
    // Creates the file (and its directory) if missing, migrates an older
    // schema, refuses a foreign or newer file. WAL mode.
    static Result<Database> open_for_write(const std::string& path);
    // Never writes; refuses a missing, foreign, corrupt or newer file.
    static Result<Database> open_read_only(const std::string& path);

    Status exec(std::string_view sql);
    Result<Statement> prepare(std::string_view sql);
    // An error naming what failed and SQLite's own words for why.
    Error error(const std::string& what) const;
    // Whether the last statement failed because another connection held the
    // lock past the busy timeout. Read it at once: a ROLLBACK resets it.
    bool busy() const;
    // Whether it failed for want of space: SQLITE_FULL, or an I/O error
    // whose errno says the file system or the quota is full. Read it at once too.
    bool full() const;

    sqlite3* handle() const { return db_.get(); }
    const std::string& path() const { return path_; }

private:
    Database(SqliteDb db, std::string path) : db_(std::move(db)), path_(std::move(path)) {}
    SqliteDb db_;
    std::string path_;
};

// A database's files: the main one, its write-ahead log, its WAL index
// (suffixes of the main file's name).
inline constexpr const char* kDatabaseFileSuffixes[] = {"", "-wal", "-shm"};

// Whether writing `path` would overwrite the database `db`: the same file (by
// device and inode), or its -wal or -shm file; by name for one not there yet.
bool is_database_file(const std::string& path, const std::string& db);

// A prepared statement with 1-based binds and 0-based columns.
class Statement {
public:
    explicit Statement(SqliteStmt stmt, sqlite3* db) : stmt_(std::move(stmt)), db_(db) {}

    Statement& bind(int index, int64_t value);
    Statement& bind(int index, const std::string& value);
    Statement& bind_null(int index);
    // true: a row is ready; false: done. Errors carry SQLite's message.
    Result<bool> step();
    Status run();  // step to completion, then reset for reuse
    void reset();

    int64_t column_int(int col) const;
    std::string column_text(int col) const;
    // The text of a column in place: valid until the next step or reset.
    std::string_view column_view(int col) const;
    bool column_is_null(int col) const;

private:
    SqliteStmt stmt_;
    sqlite3* db_;
};

// BEGIN IMMEDIATE ... COMMIT; rolls back unless commit() succeeded.
class Transaction {
public:
    static Result<Transaction> begin(Database& db);
    Transaction(Transaction&& o) noexcept : db_(std::exchange(o.db_, nullptr)) {}
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction();
    Status commit();

private:
    explicit Transaction(Database* db) : db_(db) {}
    Database* db_;
};

}  // namespace depgraph
