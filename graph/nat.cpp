#include "graph/nat.hpp"

#include <algorithm>
#include <map>
#include <tuple>

#include "common/address.hpp"

namespace depgraph {
namespace {

// Translations are stamped per bucket, edges too; allow a flush's worth of skew.
constexpr int64_t kTimeSlack = 300;

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

}  // namespace

void resolve_nat(Records& records) {
    const auto& translations = records.translations;
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
