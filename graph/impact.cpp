#include "graph/impact.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <set>

#include "graph/host_names.hpp"
#include "graph/text.hpp"

namespace depgraph {
namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++) row[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// "web-01:8080" -> ("web-01", 8080); "[::1]:80" -> ("::1", 80); "[::1]" -> ("::1", none);
// a bare IPv6 address: no port. An address comes back in the store's spelling,
// so that "[2001:DB8:0::2]" names the node "2001:db8::2". What follows the
// colon of HOST:PORT must be a port: "db-01:0" is an error, not a name.
Result<std::pair<std::string, std::optional<int>>> split_port(const std::string& text) {
    std::string name = text;
    std::optional<int> port;
    auto colon = text.rfind(':');
    bool bracketed = !text.empty() && text.front() == '[';
    // A bare IPv6 address has colons too: it is only HOST:PORT if the rest has none.
    if (colon != std::string::npos && (bracketed ? colon > 0 && text[colon - 1] == ']' : text.find(':') == colon)) {
        int number = 0;
        auto digits = std::string_view(text).substr(colon + 1);
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
        bool is_port = !digits.empty() && std::isdigit(static_cast<unsigned char>(digits[0])) && ec == std::errc() &&
                       ptr == digits.data() + digits.size() && number > 0 && number <= 65535;
        if (!is_port) {
            return Error{"invalid port '" + std::string(digits) + "' in '" + text + "': a port is 1 to 65535"};
        }
        name = text.substr(0, colon);
        port = number;
    }
    if (name.size() > 2 && name.front() == '[' && name.back() == ']') name = name.substr(1, name.size() - 2);
    if (auto address = store_form(name); !address.empty()) name = address;
    return std::pair{name, port};
}

// Ranked by the name alone: "postgres01:5432" is closest to postgres-01, whatever the port.
std::string closest_matches(const Graph& graph, const std::string& name, const RoleRules& roles) {
    std::set<std::string> names;
    for (const auto& n : graph.nodes) {
        names.insert(n.id);
        names.insert(n.host);
        if (n.kind != NodeKind::external) names.insert(roles.role_of(n.host));
        if (!n.name.empty()) names.insert(n.name);
    }
    std::vector<std::pair<size_t, std::string>> ranked;
    // Host names are case-blind: POSTGRES-01 is nearest postgres-01.
    for (const auto& candidate : names) {
        ranked.emplace_back(edit_distance(lower_case(name), lower_case(candidate)), candidate);
    }
    std::sort(ranked.begin(), ranked.end());
    std::string list;
    for (size_t i = 0; i < ranked.size() && i < 3; i++) list += (i ? ", " : "") + ranked[i].second;
    return list.empty() ? "the graph is empty in this window" : "closest matches: " + list;
}

// "db-01 serves ports 5432, 6432": what a name that exists offers instead of the port asked for.
std::string ports_served(const Graph& graph, const std::vector<size_t>& nodes, const std::string& name) {
    std::set<int> ports;
    for (size_t n : nodes) ports.insert(graph.nodes[n].ports.begin(), graph.nodes[n].ports.end());
    if (ports.empty()) return name + " serves no port";
    std::string list;
    for (int port : ports) list += (list.empty() ? "" : ", ") + std::to_string(port);
    return name + " serves port" + (ports.size() > 1 ? "s " : " ") + list;
}

}  // namespace

Result<Target> resolve_target(const Graph& graph, const std::string& text, const AddressBook& book,
                              const RoleRules& roles) {
    auto split = split_port(text);
    if (!split) return split.error();
    auto [name, port] = *split;
    // An address names the hosts that owned it within the window, not one that gave it up before.
    auto hosts = book.owners(name, graph.window.since, graph.window.until);
    hosts.insert(name);
    // Names are compared as written first, then regardless of case (host
    // names are case-blind; DB-01 is db-01 when no node is called DB-01).
    bool blind = false;
    auto same = [&](std::string_view a, std::string_view b) {
        return blind ? lower_case(a) == lower_case(b) : a == b;
    };
    // What a name can be, most specific first: the first that names a node (serving `port`) wins.
    const std::function<bool(const Node&)> meanings[] = {
        [&](const Node& n) { return same(n.id, name); },
        [&](const Node& n) {
            if (n.kind == NodeKind::external) return false;
            return std::any_of(n.members.begin(), n.members.end(), [&](const auto& member) {
                return std::any_of(hosts.begin(), hosts.end(), [&](const auto& h) { return same(member, h); });
            });
        },
        [&](const Node& n) { return n.kind != NodeKind::external && same(roles.role_of(n.host), name); },
        // Last: /etc/hosts may also name a fleet host's address, and then the host is meant.
        [&](const Node& n) { return !n.name.empty() && same(n.name, name); },
    };
    auto named = [&](std::optional<int> wanted_port) {
        std::vector<size_t> nodes;
        for (bool case_blind : {false, true}) {
            blind = case_blind;
            for (const auto& meaning : meanings) {
                for (size_t i = 0; i < graph.nodes.size(); i++) {
                    const auto& n = graph.nodes[i];
                    if (meaning(n) && (!wanted_port || n.ports.count(*wanted_port))) nodes.push_back(i);
                }
                if (!nodes.empty()) return nodes;
            }
        }
        return nodes;
    };
    if (auto nodes = named(port); !nodes.empty()) return Target{std::move(nodes), port};
    std::string unknown = "no node matches '" + text + "' from " + window_text(graph.window) + "; ";
    if (auto without_port = port ? named(std::nullopt) : std::vector<size_t>{}; !without_port.empty()) {
        return Error{unknown + ports_served(graph, without_port, name)};
    }
    return Error{unknown + closest_matches(graph, name, roles)};
}

namespace {

// Breadth-first from the targets, each node listed once at its shortest depth
// with every edge to the level before; `arriving`: the edges by the node a
// walk arrives from (the service for dependents, the client for
// dependencies); `passes(n)`: whether the walk goes on from node n once
// reached. The targets are never listed.
std::vector<Reached> breadth_first(const Graph& graph, const std::vector<std::vector<size_t>>& arriving,
                                   const Target& target, Direction direction, int depth_limit,
                                   const std::function<bool(size_t)>& passes) {
    // Where each node sits in `reached`; SIZE_MAX: not reached.
    constexpr size_t kTarget = SIZE_MAX - 1;
    std::vector<size_t> position(graph.nodes.size(), SIZE_MAX);
    std::vector<size_t> frontier = target.nodes;
    for (size_t n : frontier) position[n] = kTarget;
    std::vector<Reached> reached;
    for (int depth = 1; !frontier.empty() && (depth_limit == 0 || depth <= depth_limit); depth++) {
        std::vector<size_t> next;
        for (size_t from : frontier) {
            for (size_t edge : arriving[from]) {
                const auto& e = graph.edges[edge];
                if (depth == 1 && target.port && direction == Direction::dependents && e.port != *target.port) continue;
                size_t other = direction == Direction::dependents ? e.source : e.target;
                if (position[other] == SIZE_MAX) {
                    position[other] = reached.size();
                    reached.push_back({other, depth, {edge}});
                    if (passes(other)) next.push_back(other);
                } else if (position[other] != kTarget && reached[position[other]].depth == depth) {
                    reached[position[other]].edges.push_back(edge);
                }
            }
        }
        frontier = std::move(next);
    }
    return reached;
}

}  // namespace

std::vector<Reached> walk(const Graph& graph, const Target& target, Direction direction, int depth_limit) {
    std::vector<std::vector<size_t>> arriving(graph.nodes.size());
    for (size_t i = 0; i < graph.edges.size(); i++) {
        const auto& e = graph.edges[i];
        arriving[direction == Direction::dependents ? e.target : e.source].push_back(i);
    }
    auto reached = breadth_first(graph, arriving, target, direction, depth_limit, [](size_t) { return true; });
    // A second walk that does not go on from an address no agent reports for, at any depth: what it
    // does not reach depends on the target only through such an address.
    std::vector<bool> by_agents(graph.nodes.size());
    auto agents_only = [&](size_t n) { return graph.nodes[n].kind != NodeKind::external; };
    for (const auto& r : breadth_first(graph, arriving, target, direction, 0, agents_only)) by_agents[r.node] = true;
    for (auto& r : reached) {
        std::stable_sort(r.edges.begin(), r.edges.end(), [&](size_t a, size_t b) {
            return graph.edges[a].traffic.attempts() > graph.edges[b].traffic.attempts();
        });
        r.through_external = !by_agents[r.node];
    }
    return reached;
}

}  // namespace depgraph
