// doctest main for the bpf tier: loading programs and BPF_PROG_TEST_RUN need root
// (CAP_BPF, CAP_NET_ADMIN); without it the whole tier is skipped with ctest's code 77.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "bpf tests need root (CAP_BPF, CAP_NET_ADMIN): skipped\n");
    return 77;
  }
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  return ctx.run();
}
