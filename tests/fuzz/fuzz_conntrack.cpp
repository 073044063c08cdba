// libFuzzer target for the conntrack batch parser: any datagram the kernel
// (or anyone able to send to our socket) could hand us must give flows or an
// error, never a crash, an overrun or undefined behaviour.
// Built and run by run_fuzz.sh with clang (the project itself builds with g++).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "agent/conntrack.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // libFuzzer's buffer is exactly `size` bytes from operator new[], so it is
    // aligned for nlmsghdr and any read past it is an ASan report.
    std::vector<depgraph::ConntrackFlow> flows;
    // seq = portid = 0 checks neither, as for events: the parser sees every message.
    auto done = depgraph::parse_conntrack_batch(data, size, 0, 0, flows);
    for (const auto& f : flows) {
        // Results must be usable, whatever came in.
        if (f.dnat() && f.snat() && f.family == 0) __builtin_trap();
    }
    (void)done;
    return 0;
}
