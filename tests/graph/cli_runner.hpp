// Runs the built `depgraph` binary (its path comes from the DEPGRAPH
// environment variable that meson sets) and captures what it printed.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace depgraph::fixture {

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char tmpl[] = "/tmp/depgraph-graph-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

struct CliResult {
    int exit_code = -1;
    std::string out;
    std::string err;

    nlohmann::json json() const { return nlohmann::json::parse(out); }
};

inline std::string shell_quote(const std::string& arg) {
    std::string quoted = "'";
    for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// `runner`, if any, is the command that runs depgraph (setpriv, to drop root).
inline CliResult run_depgraph(const std::vector<std::string>& args, const std::vector<std::string>& runner = {}) {
    const char* binary = std::getenv("DEPGRAPH");
    if (!binary) throw std::runtime_error("DEPGRAPH is not set: run the tests through meson");
    TempDir capture;
    std::string command;
    for (const auto& r : runner) command += shell_quote(r) + " ";
    command += shell_quote(binary);
    for (const auto& a : args) command += " " + shell_quote(a);
    command += " >" + capture.file("out") + " 2>" + capture.file("err");
    int status = std::system(command.c_str());
    CliResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = read_file(capture.file("out"));
    result.err = read_file(capture.file("err"));
    return result;
}

}  // namespace depgraph::fixture
