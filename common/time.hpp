// Durations as users write them ("10s", "5m", "2h", "7d") and timestamps
// as ISO 8601 in UTC. Stored times are Unix seconds, UTC.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace depgraph {

// Seconds in a positive duration: a whole number followed by s, m, h, d or w.
Result<int64_t> parse_duration(std::string_view text);

// "2026-11-26T04:26:38Z".
std::string format_iso8601(int64_t unix_seconds);

// Accepts "2026-11-26", "2026-11-26T04:26", "2026-11-26T04:26:38" with an
// optional "Z" or "+HH:MM"/"-HH:MM" offset; no offset means UTC.
Result<int64_t> parse_iso8601(std::string_view text);

// A point in time given either as a duration back from `now` or as ISO 8601.
// A duration reaching back past 1970 means 1970: everything recorded.
Result<int64_t> parse_time_point(std::string_view text, int64_t now);

int64_t unix_now();

}  // namespace depgraph
