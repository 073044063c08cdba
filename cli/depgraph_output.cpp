#include "cli/depgraph_output.hpp"

#include <algorithm>
#include <cstdio>

#include "common/time.hpp"
#include "graph/text.hpp"

namespace depgraph {

std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
        unsigned char c = static_cast<unsigned char>(text[i]);
        size_t length = utf8_sequence_length(text, i);
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (length == 0 || c < 0x20 || c == 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
            length = 1;
        } else {
            out.append(text.substr(i, length));
        }
        i += std::max<size_t>(length, 1);
    }
    return out;
}

void print_table(std::ostream& out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::vector<std::string>> cells;
    cells.push_back(header);
    for (const auto& row : rows) {
        auto& escaped = cells.emplace_back();
        for (const auto& cell : row) escaped.push_back(printable(cell));
    }
    // Width in characters (cells are valid UTF-8 once printable): a wide
    // character (CJK) still takes two columns, so alignment is a courtesy, not a contract.
    auto columns = [](const std::string& cell) {
        return static_cast<size_t>(std::count_if(cell.begin(), cell.end(), [](char c) { return (c & 0xC0) != 0x80; }));
    };
    std::vector<size_t> width(header.size(), 0);
    for (const auto& row : cells) {
        for (size_t c = 0; c < row.size() && c < width.size(); c++) width[c] = std::max(width[c], columns(row[c]));
    }
    for (const auto& row : cells) {
        std::string line;
        for (size_t c = 0; c < row.size(); c++) {
            line += row[c];
            if (c + 1 < row.size()) line.append(width[c] - columns(row[c]) + 2, ' ');
        }
        out << line << '\n';
    }
}

void print_json(std::ostream& out, const nlohmann::ordered_json& value) {
    out << value.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
}

nlohmann::ordered_json time_or_null(int64_t unix_seconds, bool bounded) {
    return bounded ? nlohmann::ordered_json(format_iso8601(unix_seconds)) : nlohmann::ordered_json(nullptr);
}

}  // namespace depgraph
