#include "graph/nat.hpp"

#include <algorithm>
#include <map>
#include <tuple>

#include "graph/rows.hpp"

namespace depgraph {
namespace {

// Schema 3 added nat_translations; an older file opened read-only has none.
constexpr int64_t kFirstVersionWithNat = 3;
// Translations are stamped per bucket, edges too; allow a flush's worth of skew.
constexpr int64_t kTimeSlack = 300;

constexpr std::string_view kTranslations = R"sql(
SELECT host, client_addr, nat_addr, dialled_addr, dialled_port, server_addr, server_port,
       sum(flows), max(open), min(bucket_start), max(bucket_start + bucket_seconds)
FROM nat_translations
WHERE bucket_start >= ?1 AND bucket_start < ?2
GROUP BY host, netns, client_addr, nat_addr, dialled_addr, dialled_port, server_addr, server_port
)sql";

auto identity_of(const TranslationRecord& t) {
    return std::tie(t.host, t.client_addr, t.nat_addr, t.dialled_addr, t.dialled_port, t.server_addr,
                    t.server_port);
}

bool overlaps(const TranslationRecord& t, const EdgeRecord& e) {
    return t.first_seen <= e.last_seen + kTimeSlack && t.last_seen >= e.first_seen - kTimeSlack;
}

// The far end of `e` as each of `targets` (address, port), weighted by flows.
std::vector<EdgeRecord> split_edge(const EdgeRecord& e,
                                   const std::map<std::pair<std::string_view, int>, int64_t>& targets) {
    std::vector<int64_t> weights;
    for (const auto& [target, weight] : targets) weights.push_back(std::max<int64_t>(weight, 1));
    auto parts = split_record(e, weights);
    size_t i = 0;
    for (const auto& [target, weight] : targets) {
        parts[i].remote_addr = target.first;
        parts[i].port = target.second;
        i++;
    }
    return parts;
}

// "198.18.5.5:80", "[2001:2::5]:80".
std::string address_and_port(std::string_view addr, int port) {
    bool v6 = addr.find(':') != std::string::npos;
    std::string text(addr);
    return (v6 ? "[" + text + "]" : text) + ":" + std::to_string(port);
}

}  // namespace

Result<std::vector<TranslationRecord>> load_translations(const std::vector<std::string>& db_paths,
                                                         const Window& window) {
    std::map<std::tuple<std::string, std::string, std::string, std::string, int, std::string, int>,
             TranslationRecord>
        by_identity;
    for (const auto& path : db_paths) {
        auto db = Database::open_read_only(path);
        if (!db) return db.error();
        auto version = db->prepare("PRAGMA user_version");
        if (!version) return version.error();
        if (auto row = version->step(); !row || !*row || version->column_int(0) < kFirstVersionWithNat) continue;
        auto stmt = db->prepare(kTranslations);
        if (!stmt) return stmt.error();
        stmt->bind(1, window.since).bind(2, window.until);
        auto read = for_each_row(*db, *stmt, [&](Statement& row) {
            TranslationRecord t{row.column_text(0), row.column_text(1), row.column_text(2), row.column_text(3),
                                static_cast<int>(row.column_int(4)), row.column_text(5),
                                static_cast<int>(row.column_int(6)), row.column_int(7), row.column_int(8),
                                row.column_int(9), row.column_int(10)};
            auto [it, inserted] = by_identity.try_emplace(identity_of(t), t);
            if (inserted) return;
            auto& kept = it->second;
            kept.flows = std::max(kept.flows, t.flows);
            kept.open = std::max(kept.open, t.open);
            kept.first_seen = std::min(kept.first_seen, t.first_seen);
            kept.last_seen = std::max(kept.last_seen, t.last_seen);
        });
        if (!read) return read.error();
    }
    std::vector<TranslationRecord> out;
    for (auto& [key, t] : by_identity) out.push_back(std::move(t));
    return out;
}

void resolve_nat(Records& records, const std::vector<TranslationRecord>& translations) {
    if (translations.empty()) return;
    auto& edges = records.edges;
    // Indexed by the three fields an edge is matched on, so that a fleet's
    // edges are not each compared with every translation.
    using MatchKey = std::tuple<std::string_view, std::string_view, int>;
    std::multimap<MatchKey, const TranslationRecord*> by_dialled;  // (client, dialled address, dialled port)
    std::multimap<MatchKey, const TranslationRecord*> by_nat;      // (NAT address, server address, server port)
    for (const auto& t : translations) {
        if (t.dnat()) by_dialled.emplace(MatchKey{t.client_addr, t.dialled_addr, t.dialled_port}, &t);
        if (t.snat()) by_nat.emplace(MatchKey{t.nat_addr, t.server_addr, t.server_port}, &t);
    }
    std::vector<EdgeRecord> resolved;
    resolved.reserve(edges.size());
    for (const auto& e : edges) {
        // Where the client's dialled address really went, or whom the
        // server's NAT address really was: (address, port) -> flows.
        // The addresses are the translations'; their parts' copies go into the records' text.
        std::map<std::pair<std::string_view, int>, int64_t> actual;
        if (!e.loopback) {
            const auto& index = e.outgoing() ? by_dialled : by_nat;
            auto key = e.outgoing() ? MatchKey{e.local_addr, e.remote_addr, e.port}
                                    : MatchKey{e.remote_addr, e.local_addr, e.port};
            auto [begin, end] = index.equal_range(key);
            for (auto it = begin; it != end; ++it) {
                const auto& t = *it->second;
                if (!overlaps(t, e)) continue;
                auto target = e.outgoing() ? std::pair<std::string_view, int>{t.server_addr, t.server_port}
                                           : std::pair<std::string_view, int>{t.client_addr, e.port};
                actual[target] += t.flows > 0 ? t.flows : t.open;
            }
        }
        if (actual.empty()) {
            resolved.push_back(e);
            continue;
        }
        for (auto& part : split_edge(e, actual)) {
            part.remote_addr = records.text.intern(part.remote_addr);
            if (e.outgoing()) part.via = records.text.intern(address_and_port(e.remote_addr, e.port));
            resolved.push_back(std::move(part));
        }
    }
    edges = std::move(resolved);
}

}  // namespace depgraph
