#include "common/time.hpp"

#include <charconv>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace depgraph {

Result<int64_t> parse_duration(std::string_view text) {
    const auto bad = [&](const std::string& why) {
        return Error{"invalid duration '" + std::string(text) + "': " + why};
    };
    const std::string expected = "expected a whole number and a unit, like 30s, 5m, 2h, 7d or 1w";
    if (!text.empty() && (text[0] == '-' || text[0] == '+')) return bad("write it without a sign, like 5m");
    if (text.size() < 2) return bad(expected);
    int64_t amount = 0;
    const char* end = text.data() + text.size() - 1;
    auto [ptr, ec] = std::from_chars(text.data(), end, amount);
    if (ec == std::errc::result_out_of_range) return bad("too long");
    if (ec != std::errc() || ptr != end) return bad(expected);
    if (amount == 0) return bad("it must be longer than zero");
    int64_t unit = 0;
    switch (text.back()) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return bad("the unit is one of s, m, h, d and w, in lower case");
    }
    if (amount > INT64_MAX / unit) return bad("too long");
    return amount * unit;
}

std::string format_iso8601(int64_t unix_seconds) {
    std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

Result<int64_t> parse_iso8601(std::string_view text) {
    const auto bad = [&] {
        return Error{"invalid time '" + std::string(text) +
                     "': expected ISO 8601 like 2026-11-26 or 2026-11-26T04:30:00Z"};
    };
    std::tm tm{};
    int consumed = 0;
    std::string s(text);
    int n = std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &consumed);
    if (n != 3 || consumed != 10) return bad();
    size_t pos = 10;
    if (pos < s.size() && (s[pos] == 'T' || s[pos] == ' ')) {
        int used = 0;
        if (std::sscanf(s.c_str() + pos + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &used) != 2 || used != 5)
            return bad();
        pos += 1 + static_cast<size_t>(used);
        if (pos < s.size() && s[pos] == ':') {
            if (std::sscanf(s.c_str() + pos + 1, "%2d%n", &tm.tm_sec, &used) != 1 || used != 2) return bad();
            pos += 3;
        }
    }
    int64_t offset = 0;
    if (pos < s.size() && s[pos] == 'Z') {
        pos++;
    } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
        int oh = 0, om = 0, used = 0;
        if (std::sscanf(s.c_str() + pos + 1, "%2d:%2d%n", &oh, &om, &used) != 2 || used != 5 || oh > 23 || om > 59)
            return bad();
        offset = (s[pos] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
        pos += 6;
    }
    if (pos != s.size()) return bad();
    // timegm() would carry an impossible date or time into the next month or day (2026-02-31 becoming
    // 2026-03-03) instead of refusing it. A leap second (:60) is refused too: Unix time has none.
    using namespace std::chrono;
    auto date = year_month_day{year{tm.tm_year}, month{static_cast<unsigned>(tm.tm_mon)},
                               day{static_cast<unsigned>(tm.tm_mday)}};
    if (tm.tm_year < 1970) {
        return Error{"invalid time '" + std::string(text) + "': before 1970, where Unix time begins"};
    }
    if (!date.ok() || tm.tm_hour < 0 || tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 ||
        tm.tm_sec > 59)
        return bad();
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<int64_t>(timegm(&tm)) - offset;
}

// A duration is a number and a unit, maybe with a sign it should not have;
// an ISO 8601 time has a '-' after its year.
bool looks_like_duration(std::string_view text) {
    if (!text.empty() && (text[0] == '-' || text[0] == '+')) text.remove_prefix(1);
    return !text.empty() && std::isdigit(static_cast<unsigned char>(text[0])) &&
           std::isalpha(static_cast<unsigned char>(text.back())) && text.find_first_of("-:") == std::string_view::npos;
}

Result<int64_t> parse_time_point(std::string_view text, int64_t now) {
    if (text.empty()) return Error{"expected a duration back from now (7d) or a time (2026-11-26T04:30Z), not nothing"};
    if (looks_like_duration(text)) {
        auto d = parse_duration(text);
        if (!d) return d.error();
        return std::max<int64_t>(now - *d, 0);  // further back than the epoch: from the beginning
    }
    // Neither a number nor a date ("yesterday"): both forms are what was meant to be given.
    if (!std::isdigit(static_cast<unsigned char>(text[0]))) {
        return Error{"invalid time '" + std::string(text) +
                     "': expected a duration back from now (7d, 12h) or ISO 8601 like 2026-11-26T04:30:00Z"};
    }
    return parse_iso8601(text);
}

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace depgraph
