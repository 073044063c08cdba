// What the agent writes: its runs, one transaction per flush with the edge
// counters of the current time bucket, the host's addresses over time and
// the loss counters.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "agent/edge_abi.hpp"
#include "store/database.hpp"

namespace depgraph {

struct EdgeIdentity {
    std::string direction;  // "out" or "in"
    uint32_t netns = 0;
    std::string process;
    std::string cgroup;
    std::string local_addr;
    std::string remote_addr;
    uint16_t port = 0;

    auto tie() const { return std::tie(direction, netns, process, cgroup, local_addr, remote_addr, port); }
    bool operator<(const EdgeIdentity& o) const { return tie() < o.tie(); }
    bool operator==(const EdgeIdentity& o) const { return tie() == o.tie(); }
};

struct EdgeCounts {
    dg_edge_counters sums{};  // deltas since the last flush
    int64_t open = 0;         // gauge, not a delta
};

struct AgentRun {
    std::string run_id;
    std::string host;
    int64_t started_at = 0;
    std::string version;
    std::string kernel;
    std::string scope;
    uint32_t netns = 0;
    // edges.source of the edges this run writes: 'ebpf' or 'conntrack'. An
    // edge keeps the source that first recorded it: it is not the edge's identity.
    std::string edge_source = "ebpf";
};

struct HostAddress {
    uint32_t netns = 0;
    std::string addr;
    bool operator<(const HostAddress& o) const { return std::tie(netns, addr) < std::tie(o.netns, o.addr); }
};

// One translation that this host's conntrack applied (DNAT, SNAT or both).
struct NatTranslation {
    uint32_t netns = 0;
    std::string client_addr;
    std::string nat_addr;
    std::string dialled_addr;
    uint16_t dialled_port = 0;
    std::string server_addr;
    uint16_t server_port = 0;

    auto tie() const {
        return std::tie(netns, client_addr, nat_addr, dialled_addr, dialled_port, server_addr, server_port);
    }
    bool operator<(const NatTranslation& o) const { return tie() < o.tie(); }
};

struct NatCounts {
    uint64_t flows = 0;  // began in this interval
    int64_t open = 0;    // gauge
};

struct Flush {
    int64_t now = 0;
    int64_t bucket_start = 0;
    int64_t bucket_seconds = 0;
    std::map<EdgeIdentity, EdgeCounts> edges;
    std::vector<HostAddress> addresses;
    std::map<NatTranslation, NatCounts> translations;
    std::map<std::string, uint64_t> loss_deltas;  // counter name -> increase since the last flush

    // Takes in a later flush of the same bucket that could not be written
    // before this one was: counters add up, gauges and addresses are the later's.
    void absorb(const Flush& later);
    size_t rows() const { return edges.size() + translations.size(); }
};

// A write either lands, or finds the database locked by another writer for
// longer than the busy timeout, or finds no space for it (a full file system
// or quota): then nothing was written, and the same flush can be written later.
enum class Written { yes, busy, full };

class EdgeStore {
public:
    static Result<EdgeStore> open(const std::string& path);

    // Not written (busy, full): the run's row goes with the first flush that is.
    Result<Written> begin_run(const AgentRun& run);
    // One transaction: all of it lands or none of it does.
    Result<Written> write(const Flush& flush);
    Result<Written> end_run(int64_t now);
    // This host's edges whose latest bucket says connections are open.
    Result<std::vector<EdgeIdentity>> open_edges_of_host(const std::string& host);

    Database& database() { return db_; }

private:
    EdgeStore(UniqueFd writer_lock, Database db) : writer_lock_(std::move(writer_lock)), db_(std::move(db)) {}
    Status write_rows(const Flush& flush, std::map<HostAddress, int64_t>& present);
    Status record_run();
    // After a failed statement: busy or full, or the error itself.
    Result<Written> unwritten(const Error& e);
    Result<int64_t> edge_id(const EdgeIdentity& edge, const std::string& host);

    // Held for the agent's life. Declared first, so closed after SQLite's
    // connection: closing a descriptor of the file drops the process's
    // fcntl locks on it, SQLite's included.
    UniqueFd writer_lock_;
    Database db_;
    AgentRun run_;
    bool run_recorded_ = false;
    // Ids of edges written lately, so that a flush need not ask SQLite for
    // each again. Bounded (about 270 bytes an entry): a public server sees
    // a new client address per edge, and a forgotten id costs one upsert.
    static constexpr size_t kMaxCachedEdgeIds = 65536;
    std::map<EdgeIdentity, int64_t> edge_ids_;
    std::map<HostAddress, int64_t> address_first_seen_;  // addresses present at the last flush
};

}  // namespace depgraph
