#include "graph/nat.hpp"

#include <algorithm>
#include <limits>
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

// Where NAT sent an edge's connections: their weight, and from the first to
// the last bucket they were seen in.
struct Target {
    int64_t weight = 0;
    int64_t first_seen = std::numeric_limits<int64_t>::max();
    int64_t last_seen = std::numeric_limits<int64_t>::min();
};

// The far end of `e` as each of `targets` (address, port), weighted by flows,
// each part seen when its translations were (within the edge's own span).
std::vector<EdgeRecord> split_edge(const EdgeRecord& e,
                                   const std::map<std::pair<std::string_view, int>, Target>& targets) {
    std::vector<int64_t> weights;
    for (const auto& [address, target] : targets) weights.push_back(std::max<int64_t>(target.weight, 1));
    auto parts = split_record(e, weights);
    size_t i = 0;
    for (const auto& [address, target] : targets) {
        auto& part = parts[i++];
        part.remote_addr = address.first;
        part.port = address.second;
        part.narrow(target.first_seen, target.last_seen);
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
        std::map<std::pair<std::string_view, int>, Target> actual;
        if (!e.loopback) {
            const auto& index = e.outgoing() ? by_dialled : by_nat;
            auto key = e.outgoing() ? MatchKey{e.local_addr, e.remote_addr, e.port}
                                    : MatchKey{e.remote_addr, e.local_addr, e.port};
            auto [begin, end] = index.equal_range(key);
            std::vector<const TranslationRecord*> matched;
            for (auto it = begin; it != end; ++it) {
                if (overlaps(*it->second, e)) matched.push_back(it->second);
            }
            // Connections begin where flows did: a translation with none in the
            // window is an entry conntrack keeps after its connections closed,
            // or one only open throughout, which weighs by its open ones only
            // when no translation of the edge had new flows.
            bool any_flows = std::any_of(matched.begin(), matched.end(), [](auto* t) { return t->flows > 0; });
            for (const auto* t : matched) {
                int64_t weight = any_flows ? t->flows : t->open;
                if (any_flows && weight == 0) continue;
                auto& target = actual[e.outgoing() ? std::pair<std::string_view, int>{t->server_addr, t->server_port}
                                                   : std::pair<std::string_view, int>{t->client_addr, e.port}];
                target.weight += weight;
                target.first_seen = std::min(target.first_seen, t->first_seen);
                target.last_seen = std::max(target.last_seen, t->last_seen);
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
