// doctest main for the bpf tier: loading programs and BPF_PROG_TEST_RUN need root
// (CAP_BPF, CAP_NET_ADMIN); without it the whole tier is skipped with ctest's code 77.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "bpf tests need root (CAP_BPF, CAP_NET_ADMIN): skipped\n");
    return 77;
  }
  // The packet fuzzer's own options (fuzz_test.cc), as the environment it reads; doctest
  // ignores options it does not know.
  for (int i = 1; i < argc; ++i) {
    for (const auto& [opt, env] : {std::pair{"--seed=", "SLUICE_FUZZ_SEED"}, std::pair{"--runs=", "SLUICE_FUZZ_RUNS"}}) {
      if (std::strncmp(argv[i], opt, std::strlen(opt)) == 0) setenv(env, argv[i] + std::strlen(opt), 1);
    }
  }
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
