// Bad database files: one clear line, exit 1, never a crash; for every command.
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/graph/fixture_db.hpp"
#include "tests/graph/small_fleet.hpp"

using namespace depgraph::fixture;

namespace {

void expect_one_error_line(const CliResult& r, const std::string& fragment) {
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err.rfind("depgraph: error: ", 0) == 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(fragment) != std::string::npos);
}

void sql(const std::string& path, const char* statement) {
    sqlite3* raw = nullptr;
    sqlite3_open(path.c_str(), &raw);
    depgraph::SqliteDb db(raw);
    REQUIRE(sqlite3_exec(raw, statement, nullptr, nullptr, nullptr) == SQLITE_OK);
}

}  // namespace

TEST_CASE("every reading command refuses bad database files with one line") {
    TempDir dir;
    auto good = write_small_fleet(dir)[0];

    std::ofstream(dir.file("text.db")) << "this is a text file that someone named .db by mistake, not sqlite\n";
    std::ofstream(dir.file("empty.db"));
    sql(dir.file("foreign.db"), "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    std::filesystem::copy_file(good, dir.file("newer.db"));
    sql(dir.file("newer.db"), "PRAGMA user_version = 99");
    // the first half of a real database: header intact, pages missing
    {
        auto bytes = read_file(good);
        std::ofstream(dir.file("truncated.db"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    std::filesystem::create_directory(dir.file("dir.db"));

    const std::vector<std::pair<std::string, std::string>> cases{
        {"missing.db", "No such file or directory"},
        {"text.db", "not a depgraph database"},
        {"empty.db", "not a depgraph database"},
        {"foreign.db", "not a depgraph database"},
        {"newer.db", "newer than this build reads"},
        {"truncated.db", "truncated.db is damaged: the file is shorter than its header says (truncated?)"},
        {"dir.db", "not a regular file"},
    };
    const std::vector<std::vector<std::string>> commands{
        {"edges"}, {"hosts"}, {"render", "-o", "-", "--format", "svg"}, {"impact", "db-01"}, {"deps", "web-01"},
        {"merge", "-o", dir.file("out.db")},
    };
    for (const auto& [file, fragment] : cases) {
        for (auto args : commands) {
            INFO(file << " with " << args[0]);
            if (args[0] == "merge") {
                args.push_back(good);
                args.push_back(dir.file(file));
            } else {
                args.insert(args.end(), {"--db", good, "--db", dir.file(file)});
            }
            expect_one_error_line(run_depgraph(args), fragment);
        }
    }
    CHECK_FALSE(std::filesystem::exists(dir.file("out.db")));
}

TEST_CASE("usage errors exit 2 with one line") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {}, {"render"}, {"impact"}, {"render", "-o", "-", "--group-by", "rack"}, {"impact", "x", "--depth", "-1"},
             {"frobnicate"}}) {
        auto r = run_depgraph(args);
        INFO(r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.rfind("depgraph: error: ", 0) == 0);
    }
    // Counts out of range are said in words (CLI11's own checks print 0 to 1.8e308 in full).
    for (const auto& [args, error] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"impact", "x", "--depth", "-1"}, "--depth: expected a whole number of at least 1, not '-1'"},
             {{"impact", "x", "--depth", "0"}, "--depth: expected a whole number of at least 1, not '0'"},
             {{"impact", "x", "--depth", "99999999999"},
              "--depth: expected a whole number of at most 2147483647, not '99999999999'"},
             {{"render", "-o", "-", "--layout-timeout", "0"},
              "--layout-timeout: expected a whole number of at least 1, not '0'"},
             {{"render", "-o", "-", "--min-connections", "2.5"},
              "--min-connections: expected a whole number of at least 0, not '2.5'"},
             // SQLite would open a temporary database for an empty path
             {{"edges", "--db", ""}, "--db: expected a path, not an empty string"},
             {{"hosts", "--db", ""}, "--db: expected a path, not an empty string"},
             {{"render", "-o", ""}, "--output: expected a path, not an empty string"},
             {{"impact", "x", "-o", ""}, "--output: expected a path, not an empty string"},
             {{"deps", "x", "--roles", ""}, "--roles: expected a path, not an empty string"}}) {
        auto r = run_depgraph(args);
        CHECK(r.exit_code == 2);
        CHECK(r.err == "depgraph: error: " + error + "\n");
    }
    // Times are checked as they are parsed, and the message says what is wrong with this one.
    for (const auto& [since, error] : std::vector<std::pair<std::string, std::string>>{
             {"yesterday",
              "invalid time 'yesterday': expected a duration back from now (7d, 12h) or ISO 8601 like "
              "2026-11-26T04:30:00Z"},
             {"2026-13-01", "invalid time '2026-13-01': expected ISO 8601 like 2026-11-26 or 2026-11-26T04:30:00Z"},
             {"-1d", "invalid duration '-1d': write it without a sign, like 5m"},
             {"7D", "invalid duration '7D': the unit is one of s, m, h, d and w, in lower case"},
             {"0s", "invalid duration '0s': it must be longer than zero"},
             {"", "expected a duration back from now (7d) or a time (2026-11-26T04:30Z), not nothing"},
             {"0001-01-01", "invalid time '0001-01-01': before 1970, where Unix time begins"}}) {
        auto r = run_depgraph({"edges", "--since", since});
        CHECK(r.exit_code == 2);
        CHECK(r.err == "depgraph: error: --since: " + error + "\n");
    }
    // A time that has not come: an error, as a window that ends before it starts is.
    auto future = run_depgraph({"render", "-o", "-", "--since", "2999-01-01"});
    CHECK(future.exit_code == 2);  // a bad value, as every other bad time is
    CHECK(future.err.rfind("depgraph: error: --since: 2999-01-01 is in the future (now is 20", 0) == 0);
    // What to run next, where the message alone leaves one guessing.
    auto none = run_depgraph({});
    CHECK(none.exit_code == 2);
    CHECK(none.err == "depgraph: error: A subcommand is required (see 'depgraph --help')\n");
    auto before = run_depgraph({"--bogus", "edges"});
    CHECK(before.err == "depgraph: error: unexpected arguments: --bogus (see 'depgraph edges --help')\n");
    // A control character typed into a value is not echoed raw to the terminal.
    auto escaped = run_depgraph({"edges", "--since", "x\x1b[31m"});
    CHECK(escaped.exit_code == 2);
    CHECK(escaped.err.find('\x1b') == std::string::npos);
    auto extras = run_depgraph({"edges", "--group-by", "role"});
    CHECK(extras.exit_code == 2);
    CHECK(extras.err == "depgraph: error: unexpected arguments: --group-by role (see 'depgraph edges --help')\n");
    auto mistyped = run_depgraph({"rendr", "-o", "-"});
    CHECK(mistyped.exit_code == 2);
    CHECK(mistyped.err ==
          "depgraph: error: unknown subcommand 'rendr': use one of edges, hosts, merge, render, impact, deps\n");
    auto merge_to_stdout = run_depgraph({"merge", "-o", "-", "x.db"});
    CHECK(merge_to_stdout.exit_code == 1);
    CHECK(merge_to_stdout.err ==
          "depgraph: error: merge writes a database file, not standard output: give -o a file name\n");
    auto glob = run_depgraph({"render", "-o", "-", "--exclude", "db-[0-9"});
    CHECK(glob.exit_code == 2);
    CHECK(glob.err == "depgraph: error: --exclude: '[' at character 4 is never closed\n");
}

TEST_CASE("--roles must name a readable file, not a directory") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    for (const auto& [roles, why] : std::vector<std::pair<std::string, std::string>>{
             {dir.file("missing.roles"), "No such file or directory"}, {dir.path.string(), "Is a directory"}}) {
        std::vector<std::string> args{"render", "-o", "-", "--format", "json", "--group-by", "role", "--roles", roles};
        for (const auto& a : db_args(dbs)) args.push_back(a);
        auto r = run_depgraph(args);
        CHECK(r.exit_code == 1);
        CHECK(r.out.empty());
        CHECK(r.err == "depgraph: error: cannot read roles file " + roles + ": " + why + "\n");
    }
    // fnmatch() would read an unclosed '[' as itself: the rule would match nothing, silently.
    std::ofstream(dir.file("bad.roles")) << "db-* storage\n[abc backend\n";
    std::vector<std::string> args{"render", "-o", "-", "--format", "json", "--group-by", "role", "--roles",
                                  dir.file("bad.roles")};
    for (const auto& a : db_args(dbs)) args.push_back(a);
    auto r = run_depgraph(args);
    CHECK(r.exit_code == 1);
    CHECK(r.err == "depgraph: error: " + dir.file("bad.roles") + ":2: pattern [abc: '[' at character 1 is never closed\n");
}

TEST_CASE("a WAL database in a directory the reader cannot write is refused with the reason") {
    TempDir dir;
    auto db = write_small_fleet(dir)[0];
    // SQLite creates the -wal and -shm files even to read; root could, so the test reads as nobody.
    std::vector<std::string> runner;
    if (geteuid() == 0) runner = {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
    chmod(dir.path.c_str(), 0555);
    auto r = run_depgraph({"hosts", "--db", db}, runner);
    chmod(dir.path.c_str(), 0755);
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err == "depgraph: error: cannot read " + db + ": SQLite reads a database in WAL mode through its -wal "
                   "and -shm files, and cannot create or open them here (attempt to write a readonly database): "
                   "read it as a user who can write to " + dir.path.string() +
                   ", or copy it with its -wal file somewhere writable\n");
}

TEST_CASE("-o naming a --db input, or its -wal or -shm file, is refused before any work") {
    TempDir dir;
    auto dbs = write_small_fleet(dir);
    const auto& db = dbs[0];
    // Reading leaves the -wal and -shm files behind; a hard link is the same file by another name.
    REQUIRE(run_depgraph({"hosts", "--db", db}).exit_code == 0);
    std::filesystem::create_hard_link(db, dir.file("link.db"));
    auto before = read_file(db);
    for (const auto& output : {db, db + "-wal", db + "-shm", dir.file("link.db")}) {
        for (std::vector<std::string> args : {std::vector<std::string>{"render", "--format", "json"},
                                              {"impact", "web-01", "--format", "table"}}) {
            INFO(output << " with " << args[0]);
            args.insert(args.end(), {"-o", output, "--db", dbs[1], "--db", db});
            auto r = run_depgraph(args);
            CHECK(r.exit_code == 1);
            CHECK(r.err == "depgraph: error: -o " + output + " would overwrite the database " + db +
                               ": choose another output file\n");
        }
    }
    CHECK(read_file(db) == before);
}

TEST_CASE("an output file is replaced whole or left as it was") {
    TempDir dir;
    auto db = dir.file("scan-01.db");
    {
        HostDb h(db, "scan-01");
        h.run("run-scan-01", kT0, 0, kT0 + 60);
        for (int i = 0; i < 250; i++) {
            h.bucket(h.edge("out", "scanner", "198.18.0.1", "203.0.113." + std::to_string(i), 443), kT0, {.connects = 1});
        }
    }
    auto output = dir.file("graph.json");
    std::ofstream(output) << "the previous graph\n";
    chmod(output.c_str(), 0640);
    // Room for SQLite's 32 KiB -shm file, not for the graph: the output's write fails part way (EFBIG).
    auto r = run_depgraph({"render", "--db", db, "-o", output}, {"prlimit", "--fsize=40960"});
    CHECK(r.exit_code == 1);
    CHECK(r.err == "depgraph: error: cannot write " + output + ": File too large\n");
    CHECK(read_file(output) == "the previous graph\n");
    // Through a symlink: the file it points to is replaced whole, or left as it was, too.
    auto link = dir.file("latest.json");
    std::filesystem::create_symlink(output, link);
    auto through_link = run_depgraph({"render", "--db", db, "-o", link}, {"prlimit", "--fsize=40960"});
    CHECK(through_link.exit_code == 1);
    CHECK(read_file(output) == "the previous graph\n");
    CHECK(std::filesystem::is_symlink(link));
    for (const auto& file : std::filesystem::directory_iterator(dir.path)) {
        CHECK(file.path().filename().string().rfind("graph.json.", 0) != 0);  // no temporary file left
    }

    // An SVG is laid out and rendered in a child, whose memory file counts against the same limit.
    auto svg = dir.file("graph.svg");
    auto drawn = run_depgraph({"render", "--db", db, "-o", svg}, {"prlimit", "--fsize=40960"});
    CHECK(drawn.exit_code == 1);
    CHECK(drawn.err == "depgraph: error: cannot hand the rendered file over: File too large\n");
    CHECK_FALSE(std::filesystem::exists(svg));

    REQUIRE(run_depgraph({"render", "--db", db, "-o", link}).exit_code == 0);
    CHECK(std::filesystem::is_symlink(link));
    CHECK(read_file(output).rfind("{", 0) == 0);
    REQUIRE(run_depgraph({"render", "--db", db, "-o", output}).exit_code == 0);
    CHECK(read_file(output).rfind("{", 0) == 0);
    struct stat st {};
    REQUIRE(stat(output.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);

    mode_t umask_before = umask(027);
    REQUIRE(run_depgraph({"render", "--db", db, "-o", dir.file("new.json")}).exit_code == 0);
    umask(umask_before);
    REQUIRE(stat(dir.file("new.json").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("every command that writes to standard output reports a failed write") {
    TempDir dir;
    auto db = write_small_fleet(dir)[0];
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"edges"}, {"edges", "--format", "json"}, {"hosts"}, {"hosts", "--format", "json"},
             {"render", "-o", "-", "--format", "json"}, {"impact", "web-01", "--since", "2025-11-01"}}) {
        auto with_db = args;
        with_db.insert(with_db.end(), {"--db", db});
        auto r = run_depgraph(with_db, {"sh", "-c", "exec \"$0\" \"$@\" >/dev/full"});
        INFO(args[0]);
        CHECK(r.exit_code == 1);
        CHECK(r.err == "depgraph: error: cannot write to standard output: No space left on device\n");
    }
}

TEST_CASE("table columns line up by characters, not bytes") {
    TempDir dir;
    {
        HostDb db(dir.file("h.db"), "сервер-01");  // 9 characters, 15 bytes
        db.bucket(db.edge("out", "app", "198.18.0.1", "198.18.0.2", 80), kT0, {.connects = 1});
    }
    auto r = run_depgraph({"edges", "--db", dir.file("h.db"), "--since", "2025-01-01"});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.rfind("HOST       DIR  PROCESS", 0) == 0);
    CHECK(r.out.find("\nсервер-01  out  app ") != std::string::npos);
}

// The first version past this build's, not only a far one.
TEST_CASE("a database one schema version newer is refused") {
    TempDir dir;
    auto good = write_small_fleet(dir)[0];
    std::filesystem::copy_file(good, dir.file("next.db"));
    sql(dir.file("next.db"), ("PRAGMA user_version = " + std::to_string(depgraph::kSchemaVersion + 1)).c_str());
    expect_one_error_line(run_depgraph({"edges", "--db", dir.file("next.db")}), "newer than this build reads");
}
