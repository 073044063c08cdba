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

// Rewrites the records' edges in place, by the records' translations. An edge that NAT sent to several backends
// is split among them in proportion to the translated flows (exact when all
// its connections were seen by conntrack, the usual case); the parts add up
// to the original counts exactly. New addresses go into the records' text.
void resolve_nat(Records& records);

}  // namespace depgraph
