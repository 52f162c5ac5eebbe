#include "netns.h"

#include <net/if.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

namespace bpftest {

namespace {

bool same_netns_inode(const struct stat& a) {
  struct stat b{};
  if (stat("/proc/self/ns/net", &b) != 0) return true;  // cannot tell: treat as not moved
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

bool write_sysctl(const char* path, const char* value, std::string& why) {
  std::ofstream f(path);
  if (!(f << value) || !f.flush()) {
    why = std::string("cannot write ") + path;
    return false;
  }
  return true;
}

TestNet make() {
  TestNet t;
  struct stat before{};
  if (stat("/proc/self/ns/net", &before) != 0) {
    t.why = std::string("stat /proc/self/ns/net: ") + std::strerror(errno);
    return t;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    t.why = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
    return t;
  }
  // Safety: from here on every command changes the namespace it runs in. Never run one
  // unless the move to a fresh namespace is certain.
  if (same_netns_inode(before)) {
    t.why = "unshare(CLONE_NEWNET) returned 0 but /proc/self/ns/net did not change";
    return t;
  }
  const std::vector<std::string> cmds = {
      "ip link set lo up",
      "ip link add n0 address 02:50:00:00:00:11 type veth peer name n0peer address 02:50:00:00:00:10",
      "ip link add n1 address 02:51:00:00:00:11 type veth peer name n1peer address 02:51:00:00:00:10",
      "ip link add pod0 address 02:10:00:00:00:01 type veth peer name pod0peer address 02:10:00:00:00:02",
      "ip link set n0peer up",
      "ip link set n1peer up",
      "ip link set pod0peer up",
      "ip link set n0 up",
      "ip link set n1 mtu 1400",  // a smaller way out: "fragmentation needed" cases
      "ip link set n1 up",
      "ip link set pod0 up",
      "ip addr add 192.168.50.11/24 dev n0",
      "ip -6 addr add fd50::11/64 dev n0 nodad",
      "ip addr add 192.168.51.11/24 dev n1",
      "ip -6 addr add fd51::11/64 dev n1 nodad",
      "ip neigh replace 192.168.50.1 lladdr 02:50:00:00:00:01 dev n0 nud permanent",
      "ip neigh replace 192.168.50.12 lladdr 02:50:00:00:00:12 dev n0 nud permanent",
      "ip neigh replace 192.168.51.13 lladdr 02:51:00:00:00:13 dev n1 nud permanent",
      "ip -6 neigh replace fd50::1 lladdr 02:50:00:00:00:01 dev n0 nud permanent",
      "ip -6 neigh replace fd50::12 lladdr 02:50:00:00:00:12 dev n0 nud permanent",
      "ip -6 neigh replace fd51::13 lladdr 02:51:00:00:00:13 dev n1 nud permanent",
      "ip route add 10.201.2.0/24 via 192.168.50.12 dev n0",
      "ip route add 10.201.3.0/24 via 192.168.51.13 dev n1",
      "ip route add 10.201.4.0/24 via 192.168.50.14 dev n0",
      "ip route add 10.201.1.0/24 dev pod0",
      "ip -6 route add fd01:2::/64 via fd50::12 dev n0",
      "ip -6 route add fd01:3::/64 via fd51::13 dev n1",
      "ip -6 route add fd01:4::/64 via fd50::14 dev n0",
      "ip -6 route add fd01:1::/64 dev pod0",
  };
  if (!run_commands(cmds, t.why)) return t;
  if (!write_sysctl("/proc/sys/net/ipv4/ip_forward", "1", t.why) ||
      !write_sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1", t.why))
    return t;
  t.n0 = if_nametoindex("n0");
  t.n1 = if_nametoindex("n1");
  t.pod0 = if_nametoindex("pod0");
  if (t.n0 == 0 || t.n1 == 0 || t.pod0 == 0) {
    t.why = "if_nametoindex found no n0/n1/pod0";
    return t;
  }
  t.ok = true;
  return t;
}

}  // namespace

bool run_commands(const std::vector<std::string>& cmds, std::string& why) {
  for (const std::string& c : cmds) {
    const std::string quiet = c + " 2>&1";
    FILE* p = popen(quiet.c_str(), "r");
    if (p == nullptr) {
      why = "popen(" + c + "): " + std::strerror(errno);
      return false;
    }
    std::string out;
    char buf[256];
    while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
    const int st = pclose(p);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      why = "'" + c + "' failed: " + out;
      return false;
    }
  }
  return true;
}

const TestNet& test_net() {
  static const TestNet t = make();
  return t;
}

}  // namespace bpftest
