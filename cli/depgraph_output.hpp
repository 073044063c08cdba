// Output formatting for the depgraph tool: aligned tables with untrusted text
// made harmless, and JSON that survives invalid UTF-8.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace depgraph {

// Control characters, backslashes and invalid UTF-8 bytes become visible
// escapes (\n, \x1b, \\), so a hostile process name cannot drive the terminal.
std::string printable(std::string_view text);

// Columns padded to their widest cell; every cell passes through printable().
void print_table(std::ostream& out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows);

// Invalid UTF-8 (a process name cut mid-character) is replaced, not thrown.
void print_json(std::ostream& out, const nlohmann::ordered_json& value);

// ISO 8601, or null for a side of the window that is open.
nlohmann::ordered_json time_or_null(int64_t unix_seconds, bool bounded);

}  // namespace depgraph
