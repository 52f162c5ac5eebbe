// Pinned state is root's only: the bpffs directory the agent pins into is 0700 and every pin
// 0600, also for a --bpffs-root the user made beforehand with wider modes and under a umask
// that masks nothing (the kernel gives pins 0600 & ~umask; the directory's mode is chmod'ed).
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "agent/datapath/datapath.h"
#include "helpers.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using dptest::temp_bpffs;

// umask(0) for one test case: a mode the code gets right only through the umask would show.
class no_umask {
 public:
  no_umask() : old_(umask(0)) {}
  ~no_umask() { umask(old_); }
  no_umask(const no_umask&) = delete;
  no_umask& operator=(const no_umask&) = delete;

 private:
  mode_t old_;
};

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  REQUIRE_MESSAGE(lstat(p.c_str(), &st) == 0, "stat " << p);
  return st.st_mode & 07777;
}

std::string octal(mode_t m) {
  char b[8];
  std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m));
  return b;
}

// Loads the datapath into `root` and checks the directory and every pin in it.
void check_pins(const std::string& root) {
  REQUIRE(ensure_bpffs(root));
  auto dp = datapath::load(root);
  REQUIRE(dp);
  CHECK_MESSAGE(mode_of(root) == 0700, root << " has mode " << octal(mode_of(root)));
  size_t maps = 0, progs = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    CHECK_MESSAGE((mode_of(e.path()) & 077) == 0, name << " has mode " << octal(mode_of(e.path())));
    (name.starts_with(LB_PROG_PIN_PREFIX) ? progs : maps) += 1;
  }
  CHECK(maps >= 10);  // service, backend, conntrack, stats, ... maps
  CHECK(progs >= 4);  // lb_pod_ingress, lb_node_xdp, lb_node_ingress, lb_node_egress, ...
}

TEST_CASE("pins: a --bpffs-root made beforehand with mode 0755 becomes 0700, its pins 0600") {
  temp_bpffs bpffs;
  const no_umask um;
  REQUIRE(mkdir(bpffs.root().c_str(), 0755) == 0);
  REQUIRE(mode_of(bpffs.root()) == 0755);
  check_pins(bpffs.root());
}

TEST_CASE("pins: a --bpffs-root the agent creates, two levels deep, is 0700 under umask 0") {
  temp_bpffs bpffs;
  const no_umask um;
  check_pins(bpffs.root() + "/node/agent");
}

}  // namespace
}  // namespace sluice
