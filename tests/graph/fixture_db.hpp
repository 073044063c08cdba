// Synthetic agent databases for tests and the fleet benchmark: written through
// Database::open_for_write, so they carry exactly the schema the agent writes.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "store/database.hpp"

namespace depgraph::fixture {

// 2025-11-26T00:00:00Z: fixtures use fixed times so outputs are exact.
inline constexpr int64_t kT0 = 1764115200;
// The network namespace an agent's own host runs in (the root one's inode).
inline constexpr int64_t kRootNetns = 4026531840;

struct Bucket {
    int64_t connects = 0;
    int64_t failed = 0;
    int64_t refused = 0;
    int64_t accepts = 0;
    int64_t closes = 0;
    int64_t bytes_sent = 0;
    int64_t bytes_received = 0;
    int64_t open = 0;
};

// One host's database. Failures throw: a broken fixture is a broken test.
class HostDb {
public:
    HostDb(const std::string& path, std::string host);

    // An agent run from `started` to `stopped` (0: still running), in network namespace `netns`.
    void run(const std::string& run_id, int64_t started, int64_t stopped, int64_t last_report,
             int64_t netns = kRootNetns);
    void address(const std::string& addr, int64_t first_seen, int64_t last_seen, int64_t netns = kRootNetns);
    // An edge, by default in the host's root network namespace; returns its edge_id.
    int64_t edge(const std::string& direction, const std::string& process, const std::string& local_addr,
                 const std::string& remote_addr, int port, bool loopback = false, const std::string& cgroup = "",
                 int64_t netns = kRootNetns);
    // A new bucket, also added to its day's row of edge_days as the agent does.
    void bucket(int64_t edge_id, int64_t bucket_start, const Bucket& counts, int64_t bucket_seconds = 60);
    void loss(const std::string& run_id, int64_t bucket_start, const std::string& counter, int64_t value);
    // What conntrack saw in a bucket: `client` dialled `dialled`:port and reached `server`:port, seen from `nat`.
    void translation(int64_t bucket_start, const std::string& client, const std::string& nat,
                     const std::string& dialled, const std::string& server, int port, int64_t flows, int64_t open = 0);
    // Wraps many inserts in one transaction (the fleet generator writes millions).
    void begin();
    void commit();

    Database& database() { return db_; }

private:
    Statement& statement(int which, std::string_view sql);
    void refresh_totals();

    Database db_;
    std::string host_;
    // Prepared once per kind of insert: the fleet generator writes millions of rows.
    std::vector<std::optional<Statement>> statements_;
    std::set<int64_t> touched_;  // edges whose buckets changed since their totals were refreshed
};

// Every row of `table` in `path`, its columns quoted as SQL writes them and
// joined by spaces, sorted: for comparing what two files hold.
std::vector<std::string> table_rows(const std::string& path, const std::string& table);

}  // namespace depgraph::fixture
