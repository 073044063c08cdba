// A synthetic fleet for the depgraph benchmark: hosts in roles laid out in
// tiers, a few hubs that most of the fleet calls, a month of one-minute
// buckets (sparse: each edge is busy in a few dozen of them), both halves of
// every connection recorded as the two hosts' agents would, each bucket added
// to its day's rollup (edge_days) as the agent adds it.
//
//   generate_fleet OUT.db [--hosts 1000] [--roles 40] [--edges 20000] [--hubs 3]
//                  [--hub-fan-in 600] [--days 30] [--seed 1]
#include <CLI/CLI.hpp>

#include <iostream>
#include <map>
#include <random>
#include <set>

#include "common/time.hpp"
#include "tests/graph/fixture_db.hpp"

using namespace depgraph;

namespace {

constexpr const char* kRoleNames[] = {
    "edge", "web", "gateway", "admin", "api", "auth", "cart", "search", "catalog", "pricing",
    "orders", "payments", "billing", "shipping", "inventory", "reviews", "profile", "notify", "mailer", "sms",
    "media", "thumbs", "reports", "export", "import", "scheduler", "worker", "recommend", "ads", "geo",
    "session", "config", "metrics", "logs", "search-index", "object-store", "queue", "postgres", "redis", "kafka"};
constexpr int kTiers = 4;

struct Host {
    std::string name;
    std::string addr;
    int role = 0;
};

struct Connection {
    int client = 0;
    int server = -1;  // -1: an external address
    std::string external_addr;
    int port = 0;
};

std::string address_of(int index) {
    int n = index + 1;
    return "198.18." + std::to_string(n / 256) + "." + std::to_string(n % 256);
}

}  // namespace

int main(int argc, char** argv) {
    std::string out;
    int host_count = 1000, role_count = 40, edge_count = 20000, hubs = 3, hub_fan_in = 600, days = 30;
    unsigned seed = 1;
    CLI::App app{"generate a synthetic fleet database for the depgraph benchmark"};
    app.add_option("out", out, "the database to write (must not exist)")->required();
    app.add_option("--hosts", host_count)->capture_default_str();
    app.add_option("--roles", role_count)->capture_default_str()->check(CLI::Range(kTiers, 40));
    app.add_option("--edges", edge_count, "client host -> service host connections")->capture_default_str();
    app.add_option("--hubs", hubs, "services that most of the fleet calls")->capture_default_str();
    app.add_option("--hub-fan-in", hub_fan_in, "distinct client hosts per hub")->capture_default_str();
    app.add_option("--days", days)->capture_default_str();
    app.add_option("--seed", seed)->capture_default_str();
    CLI11_PARSE(app, argc, argv);

    if (host_count < role_count) {
        std::fprintf(stderr, "generate_fleet: %d hosts cannot fill %d roles\n", host_count, role_count);
        return 1;
    }
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    std::vector<Host> hosts;
    std::vector<std::vector<int>> by_role(static_cast<size_t>(role_count));
    std::map<int, int> seen_per_role;
    for (int i = 0; i < host_count; i++) {
        int role = i % role_count;
        char name[64];
        std::snprintf(name, sizeof name, "%s-%02d", kRoleNames[role], ++seen_per_role[role]);
        hosts.push_back({name, address_of(i), role});
        by_role[static_cast<size_t>(role)].push_back(i);
    }
    auto tier = [&](int role) { return role * kTiers / role_count; };
    auto port_of = [&](int role) { return 8000 + role; };

    std::vector<Connection> connections;
    std::set<std::pair<int, int>> taken;
    auto add = [&](int client, int server) {
        if (client == server || !taken.insert({client, server}).second) return false;
        connections.push_back({client, server, "", port_of(hosts[static_cast<size_t>(server)].role)});
        return true;
    };
    // Drawn at random, a pair can come up again and again: past this many
    // draws per connection wanted, the fleet has no room for that many.
    int64_t draws_left = 1000 * (int64_t{edge_count} + int64_t{hubs} * hub_fan_in);
    auto no_room = [&] {
        std::fprintf(stderr, "generate_fleet: %d hosts have no room for %d connections with %d hubs of fan-in %d\n",
                     host_count, edge_count, hubs, hub_fan_in);
        return 1;
    };
    if (hubs > role_count || hub_fan_in >= host_count) return no_room();
    // Hubs: the first host of the last roles (the databases and queues).
    for (int h = 0; h < hubs; h++) {
        int hub = by_role[static_cast<size_t>(role_count - 1 - h)][0];
        for (int added = 0; added < hub_fan_in; draws_left--) {
            if (draws_left == 0) return no_room();
            added += add(pick(host_count), hub);
        }
    }
    while (static_cast<int>(connections.size()) < edge_count) {
        if (draws_left-- == 0) return no_room();
        int client = pick(host_count);
        int client_role = hosts[static_cast<size_t>(client)].role;
        if (pick(100) < 2) {  // the outside world: an API on the internet
            int api = 1 + pick(20);
            if (taken.insert({client, -api}).second) {
                connections.push_back({client, -1, "203.0.113." + std::to_string(api), 443});
            }
            continue;
        }
        // Mostly down the tiers; 2% call back up, which makes the cycles real fleets have.
        int lowest = pick(100) < 2 ? 0 : std::min(tier(client_role) + 1, kTiers - 1);
        int role = lowest * role_count / kTiers + pick(role_count - lowest * role_count / kTiers);
        const auto& members = by_role[static_cast<size_t>(role)];
        add(client, members[static_cast<size_t>(pick(static_cast<int>(members.size())))]);
    }

    // Buckets: each connection is busy in 4 to 43 random minutes of the month.
    const int64_t end = unix_now() / 60 * 60;
    const int64_t start = end - int64_t{days} * 86400;
    struct Busy {
        int64_t bucket;
        int64_t count;
    };
    std::vector<std::vector<Busy>> busy(connections.size());
    for (auto& minutes : busy) {
        int n = 4 + pick(40);
        for (int k = 0; k < n; k++) minutes.push_back({start + int64_t{pick(days * 1440)} * 60, 1 + pick(20)});
        std::sort(minutes.begin(), minutes.end(), [](auto& a, auto& b) { return a.bucket < b.bucket; });
        minutes.erase(std::unique(minutes.begin(), minutes.end(), [](auto& a, auto& b) { return a.bucket == b.bucket; }),
                      minutes.end());
    }
    std::vector<std::vector<size_t>> outgoing(hosts.size()), incoming(hosts.size());
    for (size_t c = 0; c < connections.size(); c++) {
        outgoing[static_cast<size_t>(connections[c].client)].push_back(c);
        if (connections[c].server >= 0) incoming[static_cast<size_t>(connections[c].server)].push_back(c);
    }

    int64_t rows = 0;
    try {
        for (size_t h = 0; h < hosts.size(); h++) {
            const auto& host = hosts[h];
            fixture::HostDb db(out, host.name);
            db.begin();
            db.run("run-" + host.name, start, 0, end);
            db.address(host.addr, start, end);
            const std::string process = kRoleNames[host.role];
            for (size_t c : outgoing[h]) {
                const auto& conn = connections[c];
                auto remote = conn.server >= 0 ? hosts[static_cast<size_t>(conn.server)].addr : conn.external_addr;
                auto edge = db.edge("out", process, host.addr, remote, conn.port);
                for (const auto& b : busy[c]) {
                    db.bucket(edge, b.bucket, {.connects = b.count, .closes = b.count, .bytes_sent = b.count * 700,
                                               .bytes_received = b.count * 9000});
                    rows++;
                }
            }
            for (size_t c : incoming[h]) {
                const auto& conn = connections[c];
                auto edge = db.edge("in", process, host.addr, hosts[static_cast<size_t>(conn.client)].addr, conn.port);
                for (const auto& b : busy[c]) {
                    db.bucket(edge, b.bucket, {.accepts = b.count, .closes = b.count, .bytes_sent = b.count * 9000,
                                               .bytes_received = b.count * 700});
                    rows++;
                }
            }
            db.commit();
        }
    } catch (const std::exception& e) {
        std::cerr << "generate_fleet: error: " << e.what() << '\n';
        return 1;
    }
    std::cerr << "wrote " << hosts.size() << " hosts, " << connections.size() << " connections, " << rows
              << " bucket rows to " << out << '\n';
    return 0;
}
