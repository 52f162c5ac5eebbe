#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "datapath tests need root (CAP_BPF, CAP_SYS_ADMIN for bpffs): skipped\n");
    return 77;
  }
  return doctest::Context(argc, argv).run();
}
