// The cross-host join: each host's outgoing half of a connection meets the
// incoming half recorded by the host that owned the address at the time.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "graph/model.hpp"
#include "graph/records.hpp"

namespace depgraph {

// The process name given to the side of a connection whose agent saw nothing
// (it was down, or nothing listened on the port).
inline constexpr const char* kUnknownProcess = "(unknown)";

// Which agent hosts owned an address: those whose record overlaps [from, to].
// The hosts are views of the records' text.
class AddressBook {
public:
    explicit AddressBook(const std::vector<AddressRecord>& addresses);
    std::set<std::string_view> owners(std::string_view addr, int64_t from, int64_t to) const;
    // The same into `hosts`, in name order: the join asks this of every
    // record, and a set allocates for each.
    void owners(std::string_view addr, int64_t from, int64_t to, std::vector<std::string_view>& hosts) const;
    // How many seconds of [from, to] `host` owned `addr`.
    int64_t time_owned(std::string_view addr, std::string_view host, int64_t from, int64_t to) const;

private:
    const std::vector<AddressRecord>& records_of(std::string_view addr) const;

    std::unordered_map<std::string_view, std::vector<AddressRecord>> by_addr_;
};

// One node per (host, process); external nodes for addresses no agent owns.
Graph build_graph(const Records& records, const Window& window);

}  // namespace depgraph
