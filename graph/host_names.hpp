// Names for the addresses no agent reports for, from /etc/hosts only: a
// resolver lookup (getnameinfo, even with NI_NAMEREQD) may ask DNS, and
// rendering a graph must not send a query per external address.
#pragma once

#include <map>
#include <string>

#include "graph/model.hpp"

namespace depgraph {

inline constexpr const char* kHostsFile = "/etc/hosts";

// The store's spelling of an address: "::ffff:10.0.0.1" is "10.0.0.1", IPv6
// compressed and in lower case. "" when `text` is not an address.
std::string store_form(const std::string& text);

class HostNames {
public:
    // A missing or unreadable file names nothing: names are a nicety.
    static HostNames load(const std::string& path = kHostsFile);
    // hosts(5): "ADDRESS CANONICAL_NAME [ALIASES...]", '#' starts a comment.
    // An address listed twice keeps its first line's name, as the resolver does.
    static HostNames parse(const std::string& text);

    // The canonical name of `addr` (in the store's form), or "".
    std::string name_of(const std::string& addr) const;

private:
    std::map<std::string, std::string> names_;  // by address in the store's form
};

// Gives each external node the name its address has, if any.
void name_external_nodes(Graph& graph, const HostNames& names);

}  // namespace depgraph
