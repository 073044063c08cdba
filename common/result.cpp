#include "common/result.hpp"

#include <cstring>

namespace depgraph {

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

Error errno_error(const std::string& what, int err) { return Error{what + ": " + errno_text(err)}; }

}  // namespace depgraph
