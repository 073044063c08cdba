// The main() of every integration test: they need root. Without it they say
// why on stderr and exit with kSkipExitCode, which meson reads as "skipped".
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/integration/netns_fixture.hpp"

int main(int argc, char* argv[]) {
    if (!depgraph::test::can_run_as_root(argv[0])) return depgraph::test::kSkipExitCode;
    return Catch::Session().run(argc, argv);
}
