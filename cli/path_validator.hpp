// CLI11 check for the options that name a file (--db, -o, --roles).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace depgraph {

// An empty path is refused: SQLite opens a private temporary database for
// "", so `merge -o ""` would merge into nothing and say it had succeeded.
struct PathValidator : CLI::Validator {
    PathValidator() {
        name_ = "PATH";
        func_ = [](const std::string& text) {
            return text.empty() ? std::string("expected a path, not an empty string") : std::string();
        };
    }
};

}  // namespace depgraph
