#include <catch2/catch.hpp>

#include "common/time.hpp"

using namespace depgraph;

TEST_CASE("durations read like 10s, 5m, 2h, 7d") {
    CHECK(*parse_duration("10s") == 10);
    CHECK(*parse_duration("5m") == 300);
    CHECK(*parse_duration("2h") == 7200);
    CHECK(*parse_duration("7d") == 7 * 86400);
    CHECK(*parse_duration("1w") == 7 * 86400);
}

TEST_CASE("bad durations are refused with a message naming the input") {
    for (const char* bad : {"", "s", "10", "-5s", "0s", "5x", "1.5h", "5 m", "99999999999999999999s"}) {
        auto r = parse_duration(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().message.find("invalid duration") != std::string::npos);
    }
}

TEST_CASE("ISO 8601 round trip in UTC") {
    CHECK(format_iso8601(0) == "1970-01-01T00:00:00Z");
    CHECK(format_iso8601(1795667198) == "2026-11-26T04:26:38Z");
    CHECK(*parse_iso8601("2026-11-26T04:26:38Z") == 1795667198);
    CHECK(*parse_iso8601("2026-11-26T04:26:38") == 1795667198);
    CHECK(*parse_iso8601("2026-11-26T05:26:38+01:00") == 1795667198);
    CHECK(*parse_iso8601("2026-11-26") == 1795667198 - (4 * 3600 + 26 * 60 + 38));
    CHECK_FALSE(parse_iso8601("2026-13-01").ok());
    CHECK_FALSE(parse_iso8601("yesterday").ok());
    CHECK_FALSE(parse_iso8601("2026-11-26T04:26:38Zjunk").ok());
}

TEST_CASE("impossible dates and times are refused, not carried into the next month or day") {
    CHECK(*parse_iso8601("2024-02-29") == 1709164800);  // a leap year
    CHECK(*parse_iso8601("2026-01-31T23:59:59-23:59") == 1769990339);
    for (const char* bad : {"2026-02-31", "2026-02-29", "2100-02-29", "2026-04-31", "2026-00-10", "2026-01-00",
                            "2026-01-01T24:00", "2026-01-01T23:60", "2026-01-01T23:59:60",
                            "2026-01-01T12:00+24:00", "2026-01-01T12:00-01:60"}) {
        INFO(bad);
        auto r = parse_iso8601(bad);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().message == "invalid time '" + std::string(bad) +
                                       "': expected ISO 8601 like 2026-11-26 or 2026-11-26T04:30:00Z");
    }
}

TEST_CASE("a time point is a duration back from now or an absolute time") {
    CHECK(*parse_time_point("1h", 10000) == 6400);
    CHECK(*parse_time_point("2026-11-26T04:26:38Z", 0) == 1795667198);
    CHECK_FALSE(parse_time_point("1x", 0).ok());
    CHECK(*parse_time_point("9223372036854775807s", 1795667198) == 0);  // further back than 1970: from 1970
    CHECK(parse_time_point("-1d", 0).error().message == "invalid duration '-1d': write it without a sign, like 5m");
    CHECK(parse_time_point("1969-12-31", 0).error().message ==
          "invalid time '1969-12-31': before 1970, where Unix time begins");
}
