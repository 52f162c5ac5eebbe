// doctest main of the sluicectl tests on real maps: loading the datapath, bpffs mounts,
// BPF_PROG_TEST_RUN and a network namespace of the process's own need root.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "sluicectl tests on real maps need root (bpffs, BPF, netns): skipped\n");
    return 77;
  }
  return doctest::Context(argc, argv).run();
}
