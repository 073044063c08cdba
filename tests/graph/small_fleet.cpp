#include "tests/graph/small_fleet.hpp"

#include "tests/graph/fixture_db.hpp"

namespace depgraph::fixture {

std::vector<std::string> write_small_fleet(const TempDir& dir) {
    const int64_t end = kT0 + 3600;
    {
        HostDb h(dir.file("web-01.db"), "web-01");
        h.run("run-web-01", kT0, 0, end);
        h.address("198.18.0.11", kT0, end);
        h.address("127.0.0.1", kT0, end);
        h.bucket(h.edge("in", "nginx", "198.18.0.11", "203.0.113.5", 80), kT0,
                 {.accepts = 40, .bytes_sent = 4000, .bytes_received = 400});
        h.bucket(h.edge("out", "nginx", "127.0.0.1", "127.0.0.1", 8080, true), kT0, {.connects = 40});
        h.bucket(h.edge("in", "app", "127.0.0.1", "127.0.0.1", 8080, true), kT0, {.accepts = 40});
        h.bucket(h.edge("out", "app", "198.18.0.11", "198.18.0.21", 5432), kT0,
                 {.connects = 10, .bytes_sent = 1000, .bytes_received = 5000, .open = 2});
        h.bucket(h.edge("out", "app", "198.18.0.11", "198.18.0.31", 6379), kT0, {.connects = 10});
        h.bucket(h.edge("out", "app", "198.18.0.11", "93.184.216.34", 443), kT0, {.connects = 3, .failed = 1});
    }
    {
        HostDb h(dir.file("web-02.db"), "web-02");
        h.run("run-web-02", kT0, 0, end);
        h.address("198.18.0.12", kT0, end);
        h.address("127.0.0.1", kT0, end);
        h.bucket(h.edge("out", "app", "198.18.0.12", "198.18.0.21", 5432), kT0, {.connects = 6, .failed = 2});
    }
    {
        HostDb h(dir.file("db-01.db"), "db-01");
        h.run("run-db-01", kT0, 0, end);
        h.address("198.18.0.21", kT0, end);
        h.bucket(h.edge("in", "postgres", "198.18.0.21", "198.18.0.11", 5432), kT0,
                 {.accepts = 10, .bytes_sent = 5000, .bytes_received = 1000, .open = 2});
        h.bucket(h.edge("in", "postgres", "198.18.0.21", "198.18.0.12", 5432), kT0, {.accepts = 6});
        h.bucket(h.edge("in", "postgres", "198.18.0.21", "198.18.0.13", 5432), kT0, {.accepts = 4});
    }
    {
        HostDb h(dir.file("cache-01.db"), "cache-01");
        h.run("run-cache-01", kT0, 0, end);
        h.address("198.18.0.31", kT0, end);
        h.bucket(h.edge("in", "redis", "198.18.0.31", "198.18.0.11", 6379), kT0, {.accepts = 12});
        h.bucket(h.edge("in", "redis", "198.18.0.31", "198.18.0.77", 6379), kT0, {.accepts = 1});
    }
    {
        HostDb h(dir.file("batch-01.db"), "batch-01");
        h.run("run-batch-01", kT0, kT0 + 60, kT0 + 60);
        h.address("198.18.0.13", kT0, end);
        h.loss("run-batch-01", kT0, "edge_map_full", 7);
    }
    return {dir.file("web-01.db"), dir.file("web-02.db"), dir.file("db-01.db"), dir.file("cache-01.db"),
            dir.file("batch-01.db")};
}

std::vector<std::string> write_cycle_fleet(const TempDir& dir) {
    struct Spec {
        const char* host;
        const char* process;
        const char* addr;
        int listen_port;
    };
    const Spec a{"a-01", "alpha", "198.18.1.1", 7000}, b{"b-01", "beta", "198.18.1.2", 7001},
        c{"c-01", "gamma", "198.18.1.3", 0};
    auto calls = [&](HostDb& db, const Spec& from, const Spec& to, int64_t n) {
        db.bucket(db.edge("out", from.process, from.addr, to.addr, to.listen_port), kT0, {.connects = n});
    };
    auto accepts = [&](HostDb& db, const Spec& from, const Spec& to, int64_t n) {
        db.bucket(db.edge("in", to.process, to.addr, from.addr, to.listen_port), kT0, {.accepts = n});
    };
    std::vector<std::string> paths;
    for (const auto* s : {&a, &b, &c}) {
        paths.push_back(dir.file(std::string(s->host) + ".db"));
        HostDb db(paths.back(), s->host);
        db.address(s->addr, kT0, kT0 + 3600);
        if (s == &a) {
            calls(db, a, b, 5);
            accepts(db, b, a, 7);
            accepts(db, c, a, 2);
        } else if (s == &b) {
            calls(db, b, a, 7);
            accepts(db, a, b, 5);
        } else {
            calls(db, c, a, 2);
        }
    }
    return paths;
}

std::vector<std::string> db_args(const std::vector<std::string>& paths) {
    std::vector<std::string> args;
    for (const auto& p : paths) {
        args.push_back("--db");
        args.push_back(p);
    }
    return args;
}

nlohmann::json find_edge(const nlohmann::json& graph, const std::string& source, const std::string& target) {
    for (const auto& e : graph["edges"]) {
        if (e["source"] == source && e["target"] == target) return e;
    }
    return nullptr;
}

nlohmann::json find_node(const nlohmann::json& graph, const std::string& id) {
    for (const auto& n : graph["nodes"]) {
        if (n["id"] == id) return n;
    }
    return nullptr;
}

}  // namespace depgraph::fixture
