// Socket-LB (bpf/lib/sock.h) with real sockets. BPF_PROG_TEST_RUN does not run cgroup sock_addr
// programs (the kernel answers ENOTSUPP, checked on 6.18), so each case attaches the fixture's
// nine socket programs to a cgroup of its own (made under the cgroup2 mount; this process moves
// into it and back, and it is removed, also when a check fails) and makes real connect,
// sendto, recvfrom and getpeername calls in the test's own network namespace (netns.h) against
// listeners on loopback addresses there. No packet leaves the namespace: every address is on lo.
// A thread that moves into a further namespace of its own plays a pod.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixture.h"
#include "netns.h"

namespace bpftest {
namespace {

constexpr IpAddr kVip4 = ip("10.96.0.10");
constexpr IpAddr kVip6 = ip("fd00:96::10");
constexpr IpAddr kBe4a = ip("10.250.0.1");
constexpr IpAddr kBe4b = ip("10.250.0.2");
constexpr IpAddr kBe6a = ip("fd00:250::1");
constexpr IpAddr kBe6b = ip("fd00:250::2");
constexpr IpAddr kForeign = ip("203.0.113.7");  // an ExternalIP that is not the node's
constexpr IpAddr kRanged = ip("203.0.113.8");   // a LoadBalancer IP with source ranges
constexpr IpAddr kLoopback = ip("127.0.0.1");

std::uint64_t netns_cookie() {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  std::uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  const int rc = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len);
  close(fd);
  return rc == 0 ? cookie : 0;
}

// ---- addresses ------------------------------------------------------------------------------

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
};

SockAddr sockaddr_of(const IpAddr& a, std::uint16_t port, bool mapped = false) {
  SockAddr s;
  if (a.v6 || mapped) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&s.ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    if (mapped) {
      in6->sin6_addr.s6_addr[10] = 0xff;
      in6->sin6_addr.s6_addr[11] = 0xff;
      std::memcpy(&in6->sin6_addr.s6_addr[12], a.b.data(), 4);
    } else {
      std::memcpy(&in6->sin6_addr, a.b.data(), 16);
    }
    s.len = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&s.ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, a.b.data(), 4);
    s.len = sizeof(sockaddr_in);
  }
  return s;
}

// "10.96.0.10:80", "[fd00:96::10]:80", "[::ffff:10.96.0.10]:80".
std::string text_of(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
  return "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
}

std::string text_of(const IpAddr& a, std::uint16_t port, bool mapped = false) {
  return text_of(sockaddr_of(a, port, mapped).ss);
}

// ---- sockets --------------------------------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

int family_of(const IpAddr& a, bool mapped) { return a.v6 || mapped ? AF_INET6 : AF_INET; }

Fd bound(int type, const IpAddr& a, std::uint16_t port) {
  Fd fd(socket(family_of(a, false), type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const SockAddr sa = sockaddr_of(a, port);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa.ss), sa.len) != 0)
    throw std::runtime_error("bind " + text_of(a, port) + ": " + std::strerror(errno));
  if (type == SOCK_STREAM && listen(fd.get(), 128) != 0)
    throw std::runtime_error("listen " + text_of(a, port) + ": " + std::strerror(errno));
  return fd;
}

// Listening TCP sockets or bound UDP sockets, by name ("a", "b", ...).
struct Servers {
  std::map<std::string, Fd> fds;
  void add(const std::string& name, int type, const IpAddr& a, std::uint16_t port) {
    fds.emplace(name, bound(type, a, port));
  }
};

// The server that has something to accept (TCP) or read (UDP) within 2 s, "" if none. UDP:
// the datagram is answered ("pong") from the server's socket to its sender.
std::string served_by(Servers& s, int type) {
  std::vector<pollfd> p;
  std::vector<std::string> names;
  for (auto& [name, fd] : s.fds) {
    p.push_back({fd.get(), POLLIN, 0});
    names.push_back(name);
  }
  if (poll(p.data(), p.size(), 2000) <= 0) return "";
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (!(p[i].revents & POLLIN)) continue;
    if (type == SOCK_STREAM) {
      Fd c(accept4(p[i].fd, nullptr, nullptr, SOCK_CLOEXEC));
    } else {
      char buf[64];
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      const ssize_t n = recvfrom(p[i].fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n > 0) sendto(p[i].fd, "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), len);
    }
    return names[i];
  }
  return "";
}

struct Call {
  Fd fd;
  int err = 0;  // errno of the failed call, 0 = success
};

// A blocking TCP connect (or UDP connect) to a:port; on loopback it completes at once.
Call connect_to(int type, const IpAddr& a, std::uint16_t port, bool mapped = false) {
  Call c{Fd(socket(family_of(a, mapped), type | SOCK_CLOEXEC, 0))};
  if (mapped) {
    const int zero = 0;
    setsockopt(c.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  }
  const timeval tv{2, 0};
  setsockopt(c.fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(c.fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const SockAddr sa = sockaddr_of(a, port, mapped);
  if (connect(c.fd.get(), reinterpret_cast<const sockaddr*>(&sa.ss), sa.len) != 0) c.err = errno;
  return c;
}

std::string peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    return std::string("getpeername: ") + std::strerror(errno);
  return text_of(ss);
}

// Waits (2 s) for a datagram on fd; returns "<payload> from <address>" or the error.
std::string receive(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 2000) <= 0) return "nothing within 2 s";
  char buf[64] = {};
  sockaddr_storage from{};
  socklen_t len = sizeof from;
  const ssize_t n = recvfrom(fd, buf, sizeof buf - 1, 0, reinterpret_cast<sockaddr*>(&from), &len);
  if (n < 0) return std::string("recvfrom: ") + std::strerror(errno);
  return std::string(buf, static_cast<std::size_t>(n)) + " from " + text_of(from);
}

// ---- the cgroup and the attached programs ----------------------------------------------------

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string cgroup2_mount() {
  std::istringstream in(read_all("/proc/self/mounts"));
  std::string source, target, type, rest;
  while (in >> source >> target >> type && std::getline(in, rest)) {
    if (type == "cgroup2") return target;
  }
  return "";
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  return static_cast<bool>(out << text << std::flush);
}

// A cgroup v2 of this test, this process inside it while the object lives, and the nine socket
// programs of a fixture attached to it by links (detached first on destruction).
class SockCgroup {
 public:
  explicit SockCgroup(Fixture& fx) {
    mount_ = cgroup2_mount();
    if (mount_.empty()) throw std::runtime_error("no cgroup2 mount in /proc/self/mounts");
    // "0::/path" is this process's cgroup v2.
    std::istringstream in(read_all("/proc/self/cgroup"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("0::", 0) == 0) home_ = mount_ + line.substr(3);
    }
    path_ = mount_ + "/sluice-bpftest-" + std::to_string(getpid());
    if (mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST)
      throw std::runtime_error("mkdir " + path_ + ": " + std::strerror(errno));
    if (!write_file(path_ + "/cgroup.procs", std::to_string(getpid()))) {
      rmdir(path_.c_str());
      throw std::runtime_error("cannot move into " + path_);
    }
    cg_ = Fd(open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    Skel* s = fx.skel();
    for (bpf_program* p : {s->progs.lb4_connect, s->progs.lb6_connect, s->progs.lb4_sendmsg,
                           s->progs.lb6_sendmsg, s->progs.lb4_recvmsg, s->progs.lb6_recvmsg,
                           s->progs.lb4_getpeername, s->progs.lb6_getpeername,
                           s->progs.lb_sock_release}) {
      bpf_link* l = bpf_program__attach_cgroup(p, cg_.get());
      if (l == nullptr) {
        const int err = errno;
        release();
        throw std::runtime_error(std::string("attach ") + bpf_program__name(p) + ": " + std::strerror(err));
      }
      links_.push_back(l);
    }
  }
  ~SockCgroup() { release(); }
  SockCgroup(const SockCgroup&) = delete;
  SockCgroup& operator=(const SockCgroup&) = delete;

 private:
  void release() {
    for (bpf_link* l : links_) bpf_link__destroy(l);
    links_.clear();
    cg_ = Fd();
    if (!home_.empty()) write_file(home_ + "/cgroup.procs", std::to_string(getpid()));
    rmdir(path_.c_str());
  }
  std::string mount_, home_, path_;
  Fd cg_;
  std::vector<bpf_link*> links_;
};

// The test's network namespace with the backends' addresses on lo (once per process).
bool sock_net(std::string& why) {
  static std::string failed;
  static const bool ok = [] {
    if (!test_net().ok) {
      failed = test_net().why;
      return false;
    }
    return run_commands({"ip addr add 10.250.0.1/32 dev lo", "ip addr add 10.250.0.2/32 dev lo",
                         "ip addr add 203.0.113.7/32 dev lo", "ip addr add 203.0.113.8/32 dev lo",
                         "ip -6 addr add fd00:250::1/128 dev lo nodad",
                         "ip -6 addr add fd00:250::2/128 dev lo nodad"},
                        failed);
  }();
  why = failed;
  return ok;
}

// Runs fn on a thread in a new network namespace with `setup` commands run there first (a pod).
// Results are returned, not asserted: assertions stay on the test's thread.
template <typename R>
R in_pod(const std::vector<std::string>& setup, const std::function<R()>& fn, std::string& why) {
  R out{};
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      why = std::string("unshare: ") + std::strerror(errno);
      return;
    }
    std::vector<std::string> cmds{"ip link set lo up"};
    cmds.insert(cmds.end(), setup.begin(), setup.end());
    if (!run_commands(cmds, why)) return;
    try {
      out = fn();
    } catch (const std::exception& e) {
      why = e.what();
    }
  });
  t.join();
  return out;
}

// A service with backends a and b. svc_id: TCP 7 (v6: 8), UDP 11 (v6: 12); backend ids: the
// svc_id * 10 + 1 and + 2 (a backend id belongs to one frontend).
Service web(std::uint8_t proto, bool v6 = false) {
  Service s;
  s.vip = v6 ? kVip6 : kVip4;
  s.port = proto == kProtoTcp ? 80 : 53;
  s.proto = proto;
  s.svc_id = (proto == kProtoTcp ? 7u : 11u) + (v6 ? 1u : 0u);
  const std::uint16_t bp = proto == kProtoTcp ? 8080 : 5353;
  s.backends = {{s.svc_id * 10 + 1, v6 ? kBe6a : kBe4a, bp},
                {s.svc_id * 10 + 2, v6 ? kBe6b : kBe4b, bp}};
  return s;
}

Servers backends(int type, bool v6 = false) {
  Servers s;
  const std::uint16_t port = type == SOCK_STREAM ? 8080 : 5353;
  s.add("a", type, v6 ? kBe6a : kBe4a, port);
  s.add("b", type, v6 ? kBe6b : kBe4b, port);
  return s;
}

std::uint64_t stat_of(const Fixture& fx, lb_stat s) { return fx.stats()[s]; }

#define SOCK_CASE_PREAMBLE()                                                            \
  std::string why_;                                                                      \
  if (!sock_net(why_)) {                                                                 \
    const char* req = std::getenv("SLUICE_BPF_REQUIRE_NETNS");                           \
    if (req != nullptr && std::string(req) == "1")                                       \
      FAIL("cannot set up the test network namespace: " << why_);                        \
    MESSAGE("SKIPPED: cannot set up the test network namespace: " << why_);             \
    return;                                                                              \
  }

}  // namespace

TEST_CASE("sock: TCP connect to a ClusterIP reaches a backend; getpeername shows the service") {
  SOCK_CASE_PREAMBLE();
  Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie()});
  fx.add_service(web(kProtoTcp));
  Servers srv = backends(SOCK_STREAM);
  SockCgroup cg(fx);
  std::map<std::string, int> seen;
  for (int i = 0; i < 40; ++i) {
    Call c = connect_to(SOCK_STREAM, kVip4, 80);
    REQUIRE(c.err == 0);
    CHECK(peer_of(c.fd.get()) == "10.96.0.10:80");
    ++seen[served_by(srv, SOCK_STREAM)];
  }
  // Both backends, nothing else: P(all 40 on one) = 2^-39.
  CHECK(seen.size() == 2);
  CHECK(seen.count("a") == 1);
  CHECK(seen.count("b") == 1);
  CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 40);
  CHECK(stat_of(fx, LB_STAT_SOCK_REVNAT) == 40);
  CHECK(fx.svc_stats(7).new_flows == 40);
  // close() (lb_sock_release) took each connection's reverse entry with it.
  CHECK(map_entries(fx.skel()->maps.lb4_sock_revnat_v1) == 0);
  {
    Call open = connect_to(SOCK_STREAM, kVip4, 80);
    REQUIRE(open.err == 0);
    CHECK(served_by(srv, SOCK_STREAM) != "");
    CHECK(map_entries(fx.skel()->maps.lb4_sock_revnat_v1) == 1);
  }
  CHECK(map_entries(fx.skel()->maps.lb4_sock_revnat_v1) == 0);
  // Nothing of the packet path: no conntrack state, no packet counted.
  CHECK(fx.ct_entries(false) == 0);
  CHECK(stat_of(fx, LB_STAT_FWD_NEW) == 0);

  SUBCASE("a destination that is no service is left alone and not counted") {
    Call c = connect_to(SOCK_STREAM, kBe4a, 8080);
    REQUIRE(c.err == 0);
    CHECK(peer_of(c.fd.get()) == "10.250.0.1:8080");
    CHECK(served_by(srv, SOCK_STREAM) == "a");
    CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 41);
    CHECK(stat_of(fx, LB_STAT_SOCK_REVNAT) == 40);
  }
}

TEST_CASE("sock: UDP sendto: one backend per socket, answers come from the service address") {
  SOCK_CASE_PREAMBLE();
  Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie()});
  fx.add_service(web(kProtoUdp));
  Servers srv = backends(SOCK_DGRAM);
  SockCgroup cg(fx);
  const SockAddr vip = sockaddr_of(kVip4, 53);
  std::set<std::string> over_sockets;
  for (int s = 0; s < 40; ++s) {
    Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    std::set<std::string> this_socket;
    for (int d = 0; d < 3; ++d) {
      REQUIRE(sendto(fd.get(), "ping", 4, 0, reinterpret_cast<const sockaddr*>(&vip.ss), vip.len) == 4);
      this_socket.insert(served_by(srv, SOCK_DGRAM));
      CHECK(receive(fd.get()) == "pong from 10.96.0.10:53");
    }
    CHECK(this_socket.size() == 1);  // the socket's cookie picks its slot
    over_sockets.insert(this_socket.begin(), this_socket.end());
  }
  CHECK(over_sockets == std::set<std::string>{"a", "b"});
  CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 120);
  CHECK(stat_of(fx, LB_STAT_SOCK_REVNAT) == 120);
  // One reverse entry per socket (the same datagram again does not rewrite it), kept after
  // close(): an unconnected socket's entries are the LRU's to drop.
  CHECK(map_entries(fx.skel()->maps.lb4_sock_revnat_v1) == 40);
}

TEST_CASE("sock: connected UDP: the peer is the service, datagrams come from it") {
  SOCK_CASE_PREAMBLE();
  Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie()});
  fx.add_service(web(kProtoUdp));
  Servers srv = backends(SOCK_DGRAM);
  SockCgroup cg(fx);
  Call c = connect_to(SOCK_DGRAM, kVip4, 53);
  REQUIRE(c.err == 0);
  CHECK(peer_of(c.fd.get()) == "10.96.0.10:53");
  REQUIRE(send(c.fd.get(), "ping", 4, 0) == 4);
  CHECK(served_by(srv, SOCK_DGRAM) != "");
  CHECK(receive(c.fd.get()) == "pong from 10.96.0.10:53");
  // connect() chose; send() on a connected socket runs no program.
  CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 1);

  SUBCASE("a reverse entry of a replaced service is dropped, not applied") {
    Service again = web(kProtoUdp);
    again.svc_id = 9;  // the frontend was deleted and made anew
    fx.put_master(again);
    const std::string peer = peer_of(c.fd.get());
    CHECK((peer == "10.250.0.1:5353" || peer == "10.250.0.2:5353"));
    CHECK(stat_of(fx, LB_STAT_SOCK_REVNAT_STALE) == 1);
    CHECK(map_entries(fx.skel()->maps.lb4_sock_revnat_v1) == 0);
  }
}

TEST_CASE("sock: no usable endpoint refuses at once; a Local policy without one is unreachable") {
  SOCK_CASE_PREAMBLE();
  Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie()});
  Service tcp = web(kProtoTcp);
  tcp.backends.clear();
  Service udp = web(kProtoUdp);
  udp.backends.clear();
  fx.add_service(tcp);
  fx.add_service(udp);
  SockCgroup cg(fx);
  CHECK(connect_to(SOCK_STREAM, kVip4, 80).err == ECONNREFUSED);
  CHECK(connect_to(SOCK_DGRAM, kVip4, 53).err == ECONNREFUSED);
  Fd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const SockAddr vip = sockaddr_of(kVip4, 53);
  CHECK(sendto(fd.get(), "ping", 4, 0, reinterpret_cast<const sockaddr*>(&vip.ss), vip.len) == -1);
  CHECK(errno == ECONNREFUSED);
  CHECK(stat_of(fx, LB_STAT_SOCK_REFUSED) == 3);
  CHECK(fx.svc_stats(7).rejected == 1);
  CHECK(fx.svc_stats(11).rejected == 2);

  tcp.flags = LB_SVC_F_DROP_EMPTY;
  fx.put_master(tcp);
  CHECK(connect_to(SOCK_STREAM, kVip4, 80).err == EHOSTUNREACH);
  CHECK(stat_of(fx, LB_STAT_SOCK_UNREACHABLE) == 1);
}

TEST_CASE("sock: ClientIP affinity holds per network namespace") {
  SOCK_CASE_PREAMBLE();
  const std::uint64_t host = netns_cookie();
  Fixture fx(FixtureOptions{.host_netns_cookie = host});
  Service s = web(kProtoTcp);
  s.flags = LB_SVC_F_AFFINITY;
  s.affinity_timeout = 3600;
  fx.add_service(s);
  Servers srv = backends(SOCK_STREAM);
  SockCgroup cg(fx);
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    Call c = connect_to(SOCK_STREAM, kVip4, 80);
    REQUIRE(c.err == 0);
    seen.insert(served_by(srv, SOCK_STREAM));
  }
  CHECK(seen.size() == 1);
  lb_sock_affinity_key k{};
  k.netns_cookie = host;
  k.svc_id = 7;
  lb_affinity_value v{};
  REQUIRE(bpf_map_lookup_elem(bpf_map__fd(fx.skel()->maps.lb_sock_affinity_v1), &k, &v) == 0);
  CHECK(v.backend_id == (*seen.begin() == "a" ? 71u : 72u));

  // A pod (another namespace): its own entry, its own backend kept (20 connections).
  std::string why;
  const auto pod_seen = in_pod<std::set<std::string>>(
      {"ip addr add 10.250.0.1/32 dev lo", "ip addr add 10.250.0.2/32 dev lo"},
      [] {
        Servers pod_srv = backends(SOCK_STREAM);
        std::set<std::string> out;
        for (int i = 0; i < 20; ++i) {
          Call c = connect_to(SOCK_STREAM, kVip4, 80);
          out.insert(c.err == 0 ? served_by(pod_srv, SOCK_STREAM) : std::strerror(c.err));
        }
        return out;
      },
      why);
  REQUIRE(why.empty());
  CHECK(pod_seen.size() == 1);
  CHECK((pod_seen == std::set<std::string>{"a"} || pod_seen == std::set<std::string>{"b"}));
  CHECK(map_entries(fx.skel()->maps.lb_sock_affinity_v1) == 2);
}

TEST_CASE("sock: IPv6, and v4-mapped addresses on IPv6 sockets") {
  SOCK_CASE_PREAMBLE();
  Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie()});
  fx.add_service(web(kProtoTcp, true));
  fx.add_service(web(kProtoUdp, true));
  fx.add_service(web(kProtoTcp));
  Servers srv6 = backends(SOCK_STREAM, true);
  Servers udp6 = backends(SOCK_DGRAM, true);
  Servers srv4 = backends(SOCK_STREAM);
  SockCgroup cg(fx);

  Call c = connect_to(SOCK_STREAM, kVip6, 80);
  REQUIRE(c.err == 0);
  CHECK(peer_of(c.fd.get()) == "[fd00:96::10]:80");
  CHECK(served_by(srv6, SOCK_STREAM) != "");
  CHECK(map_entries(fx.skel()->maps.lb6_sock_revnat_v1) == 1);

  Fd fd(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const SockAddr vip = sockaddr_of(kVip6, 53);
  REQUIRE(sendto(fd.get(), "ping", 4, 0, reinterpret_cast<const sockaddr*>(&vip.ss), vip.len) == 4);
  CHECK(served_by(udp6, SOCK_DGRAM) != "");
  CHECK(receive(fd.get()) == "pong from [fd00:96::10]:53");

  // Java and dual-stack servers: an IPv6 socket naming ::ffff:10.96.0.10 gets the v4 service.
  Call m = connect_to(SOCK_STREAM, kVip4, 80, true);
  REQUIRE(m.err == 0);
  CHECK(peer_of(m.fd.get()) == "[::ffff:10.96.0.10]:80");
  CHECK(served_by(srv4, SOCK_STREAM) != "");
  CHECK(map_entries(fx.skel()->maps.lb4_sock_revnat_v1) == 1);
  CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 3);
}

TEST_CASE("sock: a loopback NodePort is the node's only; pods keep their own 127.0.0.1") {
  SOCK_CASE_PREAMBLE();
  Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie()});
  Service np = web(kProtoTcp);
  np.vip = kLoopback;
  np.port = 30080;
  np.flags = LB_SVC_F_LOOPBACK;
  fx.add_service(np);
  Servers srv = backends(SOCK_STREAM);
  SockCgroup cg(fx);
  Call c = connect_to(SOCK_STREAM, kLoopback, 30080);
  REQUIRE(c.err == 0);
  CHECK(peer_of(c.fd.get()) == "127.0.0.1:30080");
  CHECK(served_by(srv, SOCK_STREAM) != "");

  std::string why;
  const std::string pod = in_pod<std::string>(
      {"ip addr add 10.250.0.1/32 dev lo", "ip addr add 10.250.0.2/32 dev lo"},
      [] {
        Servers own;
        own.add("pod-own", SOCK_STREAM, kLoopback, 30080);
        Servers pod_backends = backends(SOCK_STREAM);
        Call pc = connect_to(SOCK_STREAM, kLoopback, 30080);
        if (pc.err != 0) return std::string(std::strerror(pc.err));
        const std::string own_got = served_by(own, SOCK_STREAM);
        return own_got.empty() ? "not the pod's own listener: " + served_by(pod_backends, SOCK_STREAM)
                               : own_got;
      },
      why);
  REQUIRE(why.empty());
  CHECK(pod == "pod-own");
  CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 1);
}

TEST_CASE("sock: host-only leaves pods to the packet path; without it pods are translated too") {
  SOCK_CASE_PREAMBLE();
  // In the pod: the VIP itself on lo with a listener (reached only when not translated) and the
  // backends' addresses with listeners (reached only when translated).
  const std::vector<std::string> pod_net = {"ip addr add 10.96.0.10/32 dev lo",
                                            "ip addr add 10.250.0.1/32 dev lo",
                                            "ip addr add 10.250.0.2/32 dev lo"};
  const std::function<std::string()> pod_connect = [] {
    Servers vip_own;
    vip_own.add("untranslated", SOCK_STREAM, kVip4, 80);
    Servers be = backends(SOCK_STREAM);
    Call c = connect_to(SOCK_STREAM, kVip4, 80);
    if (c.err != 0) return std::string(std::strerror(c.err));
    const std::string own = served_by(vip_own, SOCK_STREAM);
    return own.empty() ? "translated to " + served_by(be, SOCK_STREAM) : own;
  };
  for (const bool host_only : {true, false}) {
    CAPTURE(host_only);
    Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie(), .sock_host_only = host_only});
    fx.add_service(web(kProtoTcp));
    Servers srv = backends(SOCK_STREAM);
    SockCgroup cg(fx);
    Call c = connect_to(SOCK_STREAM, kVip4, 80);  // the node's own process: always translated
    REQUIRE(c.err == 0);
    CHECK(served_by(srv, SOCK_STREAM) != "");
    std::string why;
    const std::string pod = in_pod<std::string>(pod_net, pod_connect, why);
    REQUIRE(why.empty());
    if (host_only) {
      CHECK(pod == "untranslated");
      CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 1);
    } else {
      CHECK(pod.rfind("translated to ", 0) == 0);
      CHECK(pod != "translated to ");
      CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 2);
    }
  }
}

TEST_CASE("sock: outside-only ExternalIPs and source-ranged LB IPs are not translated") {
  SOCK_CASE_PREAMBLE();
  Fixture fx(FixtureOptions{.host_netns_cookie = netns_cookie()});
  Service ext = web(kProtoTcp);
  ext.vip = kForeign;
  ext.svc_id = 20;
  ext.flags = LB_SVC_F_EXTERNAL | LB_SVC_F_OUTSIDE_ONLY;
  ext.backends = {{21, kBe4a, 8080}};
  fx.add_service(ext);
  Service ranged = ext;
  ranged.vip = kRanged;
  ranged.svc_id = 22;
  ranged.flags = LB_SVC_F_EXTERNAL | LB_SVC_F_SOURCE_RANGES;
  ranged.backends = {{23, kBe4a, 8080}};
  fx.add_service(ranged);
  Servers real;
  real.add("the address itself", SOCK_STREAM, kForeign, 80);
  real.add("the ranged address itself", SOCK_STREAM, kRanged, 80);
  real.add("backend", SOCK_STREAM, kBe4a, 8080);
  SockCgroup cg(fx);
  Call c = connect_to(SOCK_STREAM, kForeign, 80);
  REQUIRE(c.err == 0);
  CHECK(served_by(real, SOCK_STREAM) == "the address itself");
  Call r = connect_to(SOCK_STREAM, kRanged, 80);
  REQUIRE(r.err == 0);
  CHECK(served_by(real, SOCK_STREAM) == "the ranged address itself");
  CHECK(stat_of(fx, LB_STAT_SOCK_OUTSIDE_ONLY) == 1);
  CHECK(stat_of(fx, LB_STAT_SOCK_SOURCE_RANGES) == 1);
  CHECK(stat_of(fx, LB_STAT_SOCK_XLATE) == 0);
}

}  // namespace bpftest
