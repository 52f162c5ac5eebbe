// Socket-LB on the kernel side of the agent: the pinned cgroup links (attach, replace in place by
// a new agent, move to another --cgroup, detach, --cleanup) and the destruction of connected UDP
// sockets whose backend left. Each case uses its own bpffs and cgroups under the cgroup2 mount
// (removed also when a check fails); the socket case moves this process into a network
// namespace of its own first, where every address is on lo.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/datapath/datapath.h"
#include "agent/datapath/map_writer.h"
#include "agent/datapath/sock_destroy.h"
#include "agent/datapath/sock_lb.h"
#include "agent/model/model.h"
#include "helpers.h"
#include "maps/sluice_abi.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

using dptest::temp_bpffs;
using dptest::v4;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool put(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  return static_cast<bool>(out << text << std::flush);
}

// A cgroup of this test under the cgroup2 mount; with `enter`, this process is in it while the
// object lives.
class test_cgroup {
 public:
  test_cgroup(const std::string& name, bool enter) {
    const auto mnt = find_cgroup2_mount(slurp("/proc/self/mounts"));
    REQUIRE(mnt.has_value());
    path_ = *mnt + "/sluice-dptest-" + std::to_string(getpid()) + "-" + name;
    REQUIRE((mkdir(path_.c_str(), 0755) == 0 || errno == EEXIST));
    if (enter) {
      std::istringstream in(slurp("/proc/self/cgroup"));
      for (std::string line; std::getline(in, line);) {
        if (line.rfind("0::", 0) == 0) home_ = *mnt + line.substr(3);
      }
      REQUIRE(put(path_ + "/cgroup.procs", std::to_string(getpid())));
    }
  }
  ~test_cgroup() {
    if (!home_.empty()) put(home_ + "/cgroup.procs", std::to_string(getpid()));
    rmdir(path_.c_str());
  }
  test_cgroup(const test_cgroup&) = delete;
  test_cgroup& operator=(const test_cgroup&) = delete;
  const std::string& path() const { return path_; }

  // Ids of the programs attached here for one hook.
  std::vector<uint32_t> programs(bpf_attach_type type) const {
    const int fd = open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    std::vector<uint32_t> ids(16);
    uint32_t count = static_cast<uint32_t>(ids.size());
    const int rc = bpf_prog_query(fd, type, 0, nullptr, ids.data(), &count);
    close(fd);
    ids.resize(rc == 0 ? count : 0);
    return ids;
  }

 private:
  std::string path_, home_;
};

uint32_t prog_id(const bpf_program* p) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  REQUIRE(bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) == 0);
  return info.id;
}

uint32_t link_id(const std::string& pin) {
  const int fd = bpf_obj_get(pin.c_str());
  REQUIRE(fd >= 0);
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  REQUIRE(bpf_obj_get_info_by_fd(fd, &info, &len) == 0);
  close(fd);
  return info.id;
}

// Dropping a link's last reference detaches it from a kernel work item, a moment later: poll for
// the hook's program count (2 s at most).
size_t settled_count(const test_cgroup& cg, bpf_attach_type type, size_t want) {
  size_t n = cg.programs(type).size();
  for (int i = 0; i < 200 && n != want; ++i) {
    usleep(10 * 1000);
    n = cg.programs(type).size();
  }
  return n;
}

size_t count_containing(const std::vector<std::string>& lines, const std::string& what) {
  return static_cast<size_t>(std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.find(what) != std::string::npos;
  }));
}

}  // namespace

TEST_CASE("socket-LB: the cgroup2 mount is read from /proc/mounts") {
  CHECK(find_cgroup2_mount("sysfs /sys sysfs rw 0 0\n"
                           "tmpfs /sys/fs/cgroup tmpfs ro 0 0\n"
                           "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n"
                           "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n") ==
        std::optional<std::string>("/sys/fs/cgroup/unified"));
  CHECK(find_cgroup2_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n") ==
        std::optional<std::string>("/sys/fs/cgroup"));
  CHECK(find_cgroup2_mount("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n") == std::nullopt);
}

TEST_CASE("socket-LB: links are pinned, outlive the agent, are replaced in place and moved") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  test_cgroup cg1("a", false), cg2("b", false);
  const std::string pin = fs.root() + "/" LB_SOCK_LINK_PREFIX LB4_CONNECT_PROG;

  auto first = datapath::load(fs.root());
  REQUIRE(first);
  auto done = attach_sock_lb(first->skel(), fs.root(), cg1.path());
  REQUIRE(done);
  CHECK(count_containing(*done, "attached to") == 9);
  const uint32_t first_prog = prog_id(first->skel()->progs.lb4_connect);
  CHECK(cg1.programs(BPF_CGROUP_INET4_CONNECT) == std::vector<uint32_t>{first_prog});
  for (bpf_attach_type t : {BPF_CGROUP_INET6_CONNECT, BPF_CGROUP_UDP4_SENDMSG,
                            BPF_CGROUP_UDP6_SENDMSG, BPF_CGROUP_UDP4_RECVMSG,
                            BPF_CGROUP_UDP6_RECVMSG, BPF_CGROUP_INET4_GETPEERNAME,
                            BPF_CGROUP_INET6_GETPEERNAME}) {
    CHECK(cg1.programs(t).size() == 1);
  }
  const uint32_t link = link_id(pin);

  // The agent exits: the pins keep the programs attached.
  first = std::unexpected(error{});
  CHECK(cg1.programs(BPF_CGROUP_INET4_CONNECT) == std::vector<uint32_t>{first_prog});

  // A new agent: the same links get its programs, the cgroup is never without one.
  auto second = datapath::load(fs.root());
  REQUIRE(second);
  done = attach_sock_lb(second->skel(), fs.root(), cg1.path());
  REQUIRE(done);
  CHECK(count_containing(*done, "program replaced") == 9);
  CHECK(link_id(pin) == link);
  CHECK(cg1.programs(BPF_CGROUP_INET4_CONNECT) ==
        std::vector<uint32_t>{prog_id(second->skel()->progs.lb4_connect)});

  // Another --cgroup: off the old one, onto the new one.
  done = attach_sock_lb(second->skel(), fs.root(), cg2.path());
  REQUIRE(done);
  CHECK(count_containing(*done, "detached the link pinned for another cgroup") == 9);
  CHECK(count_containing(*done, "attached to") == 9);
  CHECK(settled_count(cg1, BPF_CGROUP_INET4_CONNECT, 0) == 0);
  CHECK(cg2.programs(BPF_CGROUP_UDP6_RECVMSG).size() == 1);

  // --socket-lb=false: unpinned, detached.
  done = detach_sock_lb(fs.root());
  REQUIRE(done);
  CHECK(done->size() == 9);
  CHECK(settled_count(cg2, BPF_CGROUP_INET4_CONNECT, 0) == 0);
  CHECK(access(pin.c_str(), F_OK) != 0);
  REQUIRE(detach_sock_lb(fs.root()));  // nothing left: no error

  // --cleanup removes every pin, links included.
  REQUIRE(attach_sock_lb(second->skel(), fs.root(), cg2.path()));
  CHECK(cg2.programs(BPF_CGROUP_INET4_CONNECT).size() == 1);
  second = std::unexpected(error{});
  REQUIRE(cleanup(fs.root()));
  CHECK(settled_count(cg2, BPF_CGROUP_INET4_CONNECT, 0) == 0);
}

TEST_CASE("socket-LB: connected UDP sockets whose backend left are destroyed, no other") {
  // A namespace of this process's own (the destroyer finds namespaces through /proc/PID, i.e.
  // the main thread's): every address below is on its lo.
  struct stat before {}, after {};
  REQUIRE(stat("/proc/self/ns/net", &before) == 0);
  REQUIRE(unshare(CLONE_NEWNET) == 0);
  REQUIRE(stat("/proc/self/ns/net", &after) == 0);
  REQUIRE(before.st_ino != after.st_ino);
  REQUIRE(std::system("ip link set lo up && ip addr add 10.250.0.1/32 dev lo && "
                      "ip addr add 10.250.0.2/32 dev lo") == 0);

  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  datapath_options opts;
  auto cookie = current_netns_cookie();
  REQUIRE(cookie);
  opts.host_netns_cookie = *cookie;
  auto dp = datapath::load(fs.root(), opts);
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  desired_frontend dns{.vip = v4("10.96.0.53"), .port = 53, .proto = IPPROTO_UDP,
                       .name = "kube-system/dns:dns",
                       .backends = {{v4("10.250.0.1"), 5353, false},
                                    {v4("10.250.0.2"), 5353, false}}};
  REQUIRE(w.sync(desired_state{{dns}}).failed_ops == 0);

  test_cgroup cg("sockets", true);
  REQUIRE(attach_sock_lb(dp->skel(), fs.root(), cg.path()));
  std::vector<int> servers;
  for (const char* a : {"10.250.0.1", "10.250.0.2"}) {
    const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(5353), .sin_addr = {}, .sin_zero = {}};
    inet_pton(AF_INET, a, &sa.sin_addr);
    REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    servers.push_back(s);
  }
  const auto connect_udp = [](const char* addr, uint16_t port) {
    const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {}, .sin_zero = {}};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    REQUIRE(connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    return s;
  };
  const auto cookie_of = [](int fd) {
    uint64_t c = 0;
    socklen_t len = sizeof c;
    REQUIRE(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len) == 0);
    return c;
  };
  // 32 sockets through the service (a slot each, by cookie), one straight to the backend.
  std::vector<int> via_service;
  for (int i = 0; i < 32; ++i) {
    via_service.push_back(connect_udp("10.96.0.53", 53));
  }
  const int direct = connect_udp("10.250.0.1", 5353);
  auto listed = list_connected_udp_sockets();
  REQUIRE(listed);
  std::map<uint64_t, std::string> peer;
  for (const udp_socket& s : *listed) {
    peer[s.cookie] = format_ip(s.peer) + ":" + std::to_string(s.peer_port);
  }
  std::vector<int> on_gone, on_kept;
  for (int fd : via_service) {
    const std::string& p = peer[cookie_of(fd)];
    REQUIRE((p == "10.250.0.1:5353" || p == "10.250.0.2:5353"));
    (p == "10.250.0.1:5353" ? on_gone : on_kept).push_back(fd);
  }
  CAPTURE(on_gone.size());
  REQUIRE(!on_gone.empty());  // P(none of 32 on it) = 2^-32 with a fair slot pick
  REQUIRE(!on_kept.empty());

  // Nothing stale yet: nothing destroyed.
  auto none = destroy_stale_udp_sockets(dp->skel(), w.mirror(), cg.path());
  REQUIRE(none);
  CHECK(none->entries == 32);
  CHECK(none->stale == 0);
  CHECK(none->destroyed == 0);

  dns.backends.erase(dns.backends.begin());  // 10.250.0.1 leaves the service
  REQUIRE(w.sync(desired_state{{dns}}).failed_ops == 0);
  auto done = destroy_stale_udp_sockets(dp->skel(), w.mirror(), cg.path());
  REQUIRE(done);
  CHECK(done->stale == on_gone.size());
  CHECK(done->namespaces == 1);
  CHECK(done->destroyed == on_gone.size());
  char buf[8];
  for (int fd : on_gone) {
    CHECK(recv(fd, buf, sizeof buf, MSG_DONTWAIT) == -1);
    CHECK(errno == ECONNABORTED);
  }
  for (int fd : on_kept) {
    CHECK(recv(fd, buf, sizeof buf, MSG_DONTWAIT) == -1);
    CHECK(errno == EAGAIN);
    CHECK(send(fd, "x", 1, 0) == 1);
  }
  CHECK(recv(direct, buf, sizeof buf, MSG_DONTWAIT) == -1);
  CHECK(errno == EAGAIN);  // not through the service: not ours to destroy
  auto entries = read_sock_revnat(dp->skel());
  REQUIRE(entries);
  CHECK(entries->size() == on_kept.size());
  auto again = destroy_stale_udp_sockets(dp->skel(), w.mirror(), cg.path());
  REQUIRE(again);
  CHECK(again->stale == 0);

  for (int fd : via_service) close(fd);
  for (int fd : servers) close(fd);
  close(direct);
  REQUIRE(detach_sock_lb(fs.root()));
}

}  // namespace sluice
