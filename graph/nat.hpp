// NAT, undone: a client's edge to the address it dialled (a VIP, a port
// mapping) becomes an edge to the backend that conntrack sent it to, with
// the dialled address kept as `via`; a server's edge from a NAT address
// (masquerade) becomes an edge from the real client. The translations come
// from whichever host's agent saw them: the client's own host for a local
// rule, the router for a forwarded flow.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "graph/records.hpp"

namespace depgraph {

// One translation seen in the window, its buckets folded together.
struct TranslationRecord {
    std::string host;  // whose conntrack saw it
    std::string client_addr;
    std::string nat_addr;  // the source the server saw
    std::string dialled_addr;
    int dialled_port = 0;
    std::string server_addr;  // the actual destination
    int server_port = 0;
    int64_t flows = 0;  // connections begun in the window
    int64_t open = 0;   // the largest open gauge in the window
    int64_t first_seen = 0;
    int64_t last_seen = 0;

    bool dnat() const { return dialled_addr != server_addr || dialled_port != server_port; }
    bool snat() const { return nat_addr != client_addr; }
};

// Reads nat_translations from every database (files older than schema 3 have
// none). The same translation in two files (a host's own and a merged one)
// counts once, with the larger numbers.
Result<std::vector<TranslationRecord>> load_translations(const std::vector<std::string>& db_paths,
                                                         const Window& window);

// Rewrites the records in place. An edge that NAT sent to several backends
// is split among them in proportion to the translated flows (exact when all
// its connections were seen by conntrack, the usual case); the parts add up
// to the original counts exactly. New addresses go into the records' text.
void resolve_nat(Records& records, const std::vector<TranslationRecord>& translations);

}  // namespace depgraph
