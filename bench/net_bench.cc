// netbench: the TCP server and clients of the network-namespace benchmark (bench/netns_bench.py).
// One thread, epoll, fixed-size messages: a request of kReqSize bytes is answered with
// kRespSize bytes, so nothing is parsed and both ends cost the same whatever path the packets take.
//
//   netbench server --port P [--ready-file F] [--max-seconds S]
//   netbench crr --targets [NAME@NETNS_PATH@]IP:PORT[,IP:PORT...] [--targets ...]
//                [--concurrency C] [--count N] [--seconds S]
//   netbench rr  --targets ... [--concurrency C] [--count N] [--seconds S]
//   netbench selftest        (root: a private network namespace, server and both clients on lo)
//
// crr: a new connection per request (connect, request, answer, close with RST: SO_LINGER 0, so
// no TIME_WAIT piles up); the latency is connect() to the last byte of the answer. rr: C
// connections kept open, one request in flight on each; the latency is request to answer.
// Targets are used in turn. Several --targets groups, each optionally in a network namespace
// given by path (sockets are made there), take turns connection by connection, so variants are
// compared interleaved A B A B within one run. The client stops after N answers in all or S
// seconds, whichever is first, and prints one JSON line per group: answers, errors, seconds,
// rate (answers/s), latency percentiles (us).
// Every connection has a 2 s deadline; a run with more than 1% errors exits 1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kReqSize = 64;
constexpr std::size_t kRespSize = 128;
constexpr std::uint64_t kConnDeadlineNs = 2'000'000'000ull;

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "netbench: %s\n", msg.c_str());
  std::exit(2);
}

[[noreturn]] void die_errno(const std::string& what) { die(what + ": " + std::strerror(errno)); }

sockaddr_in parse_target(const std::string& s) {
  const std::size_t colon = s.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  if (colon == std::string::npos || inet_pton(AF_INET, s.substr(0, colon).c_str(), &a.sin_addr) != 1)
    die("bad target '" + s + "' (IPv4:port)");
  const int port = std::atoi(s.c_str() + colon + 1);
  if (port <= 0 || port > 65535) die("bad port in '" + s + "'");
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  return a;
}

// ---- server -------------------------------------------------------------------------------

struct ServerConn {
  std::size_t have = 0;  // request bytes received towards the next answer
};

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

int serve(std::uint16_t port, const std::string& ready_file, unsigned max_seconds) {
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die_errno("socket");
  const int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die_errno("bind");
  if (listen(lfd, 4096) != 0) die_errno("listen");
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die_errno("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  if (!ready_file.empty()) {
    std::ofstream(ready_file) << "ready\n";
  }
  std::vector<ServerConn> conns;
  char req[4096];
  char resp[kRespSize];
  std::memset(resp, 'r', sizeof resp);
  const std::uint64_t end = max_seconds ? now_ns() + max_seconds * 1'000'000'000ull : 0;
  epoll_event evs[256];
  while (!g_stop && (end == 0 || now_ns() < end)) {
    const int n = epoll_wait(ep, evs, 256, 200);
    if (n < 0 && errno != EINTR) die_errno("epoll_wait");
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          const int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (static_cast<std::size_t>(c) >= conns.size()) conns.resize(static_cast<std::size_t>(c) + 1);
          conns[static_cast<std::size_t>(c)] = {};
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLRDHUP;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      bool drop = (evs[i].events & (EPOLLERR | EPOLLHUP)) != 0;
      while (!drop) {
        const ssize_t r = read(fd, req, sizeof req);
        if (r > 0) {
          ServerConn& sc = conns[static_cast<std::size_t>(fd)];
          sc.have += static_cast<std::size_t>(r);
          while (sc.have >= kReqSize) {
            sc.have -= kReqSize;
            // Answers are small: the socket buffer always takes one whole.
            if (write(fd, resp, sizeof resp) != static_cast<ssize_t>(sizeof resp)) drop = true;
          }
        } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
          drop = true;
        } else {
          break;
        }
      }
      if (drop) close(fd);  // also leaves the epoll set
    }
  }
  return 0;
}

// ---- clients ------------------------------------------------------------------------------

// Targets of one kind, optionally in another network namespace: sockets are created there
// (setns() before socket()), so one client can alternate between several topologies.
struct Group {
  std::string name;
  int netns_fd = -1;  // -1: the process's own namespace
  std::vector<sockaddr_in> targets;
  std::size_t next_target = 0;
  std::uint64_t answers = 0, errors = 0;
  std::vector<std::uint32_t> lat_ns;
};

struct Slot {
  int fd = -1;
  bool connecting = false;
  std::size_t group = 0;
  std::size_t got = 0;
  std::uint64_t t0 = 0, deadline = 0;
};

class Client {
 public:
  Client(std::vector<Group>& groups, bool keep_alive, unsigned concurrency)
      : groups_(groups), keep_(keep_alive), slots_(concurrency) {
    std::memset(req_, 'q', sizeof req_);
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) die_errno("epoll_create1");
  }
  ~Client() { close(ep_); }

  // Until `count` answers in all or `seconds`; returns the seconds it ran.
  double run(std::uint64_t count, double seconds) {
    signal(SIGPIPE, SIG_IGN);
    for (Group& g : groups_) g.lat_ns.reserve(std::min<std::uint64_t>(count / groups_.size() + 1, 10'000'000));
    const std::uint64_t start = now_ns();
    const std::uint64_t end = start + static_cast<std::uint64_t>(seconds * 1e9);
    count_ = count;
    for (std::size_t i = 0; i < slots_.size(); ++i) open_slot(i);
    epoll_event evs[256];
    while (answers_ < count_ && now_ns() < end) {
      const int n = epoll_wait(ep_, evs, 256, 50);
      if (n < 0 && errno != EINTR) die_errno("epoll_wait");
      for (int i = 0; i < n; ++i) on_event(evs[i].data.u64, evs[i].events);
      const std::uint64_t t = now_ns();
      for (std::size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].fd >= 0 && t > slots_[i].deadline) fail(i);
      }
    }
    for (Slot& s : slots_) {
      if (s.fd >= 0) close(s.fd);
      s.fd = -1;
    }
    return static_cast<double>(now_ns() - start) / 1e9;
  }

 private:
  void open_slot(std::size_t i) {
    if (issued_ >= count_) return;
    Slot& s = slots_[i];
    s = {};
    s.group = next_group_++ % groups_.size();  // connections alternate between the groups
    Group& g = groups_[s.group];
    if (g.netns_fd >= 0 && setns(g.netns_fd, CLONE_NEWNET) != 0) die_errno("setns " + g.name);
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) die_errno("socket");
    const int one = 1;
    setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!keep_) {
      const linger lg{1, 0};  // close() sends RST: no TIME_WAIT on either side
      setsockopt(s.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    const sockaddr_in& a = g.targets[g.next_target++ % g.targets.size()];
    s.t0 = now_ns();
    s.deadline = s.t0 + kConnDeadlineNs;
    s.connecting = true;
    ++issued_;
    if (connect(s.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
      fail(i);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_ADD, s.fd, &ev);
  }

  void send_request(std::size_t i) {
    Slot& s = slots_[i];
    if (write(s.fd, req_, sizeof req_) != static_cast<ssize_t>(sizeof req_)) {
      fail(i);
      return;
    }
    s.got = 0;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = i;
    epoll_ctl(ep_, EPOLL_CTL_MOD, s.fd, &ev);
  }

  void on_event(std::uint64_t i, std::uint32_t events) {
    Slot& s = slots_[i];
    if (s.fd < 0) return;
    if (s.connecting) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
        fail(i);
        return;
      }
      if (!(events & EPOLLOUT)) return;
      s.connecting = false;
      send_request(i);
      return;
    }
    char buf[4096];
    for (;;) {
      const ssize_t r = read(s.fd, buf, sizeof buf);
      if (r > 0) {
        s.got += static_cast<std::size_t>(r);
        if (s.got < kRespSize) continue;
        const std::uint64_t t = now_ns();
        Group& g = groups_[s.group];
        g.lat_ns.push_back(static_cast<std::uint32_t>(std::min<std::uint64_t>(t - s.t0, UINT32_MAX)));
        ++g.answers;
        ++answers_;
        if (keep_ && issued_ < count_) {
          ++issued_;
          s.t0 = t;
          s.deadline = t + kConnDeadlineNs;
          send_request(i);
        } else {
          close(s.fd);
          s.fd = -1;
          if (!keep_) open_slot(i);
        }
        return;
      }
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
      fail(i);  // EOF or an error before the whole answer
      return;
    }
  }

  void fail(std::size_t i) {
    Slot& s = slots_[i];
    ++groups_[s.group].errors;
    if (s.fd >= 0) close(s.fd);
    s.fd = -1;
    open_slot(i);
  }

  std::vector<Group>& groups_;
  bool keep_;
  std::vector<Slot> slots_;
  int ep_ = -1;
  char req_[kReqSize];
  std::uint64_t count_ = 0, issued_ = 0, answers_ = 0;
  std::size_t next_group_ = 0;
};

double pct_us(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k] / 1000.0;
}

// One JSON line per group; exit status 1 if a group got no answer or more than 1% errors.
int report(const char* mode, unsigned concurrency, std::vector<Group>& groups, double seconds) {
  int rc = 0;
  for (Group& g : groups) {
    double mean = 0;
    for (std::uint32_t x : g.lat_ns) mean += x;
    mean = g.lat_ns.empty() ? 0 : mean / static_cast<double>(g.lat_ns.size()) / 1000.0;
    const double p50 = pct_us(g.lat_ns, 50), p90 = pct_us(g.lat_ns, 90), p99 = pct_us(g.lat_ns, 99);
    const double max = g.lat_ns.empty() ? 0 : *std::max_element(g.lat_ns.begin(), g.lat_ns.end()) / 1000.0;
    std::printf(
        "{\"mode\":\"%s\",\"group\":\"%s\",\"concurrency\":%u,\"answers\":%llu,\"errors\":%llu,"
        "\"seconds\":%.4f,\"rate\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,"
        "\"max_us\":%.1f}\n",
        mode, g.name.c_str(), concurrency, static_cast<unsigned long long>(g.answers),
        static_cast<unsigned long long>(g.errors), seconds,
        seconds > 0 ? static_cast<double>(g.answers) / seconds : 0.0, p50, p90, p99, mean, max);
    if (g.answers == 0 || g.errors * 100 > g.answers + g.errors) {
      std::fprintf(stderr, "netbench %s %s: %llu errors for %llu answers\n", mode, g.name.c_str(),
                   static_cast<unsigned long long>(g.errors), static_cast<unsigned long long>(g.answers));
      rc = 1;
    }
  }
  std::fflush(stdout);
  return rc;
}

// "IP:PORT[,IP:PORT...]", optionally "NAME@NETNS_PATH@IP:PORT,...".
Group parse_group(const std::string& spec) {
  Group g;
  std::string list = spec;
  const std::size_t at1 = spec.find('@');
  if (at1 != std::string::npos) {
    const std::size_t at2 = spec.find('@', at1 + 1);
    if (at2 == std::string::npos) die("bad --targets '" + spec + "' (NAME@NETNS_PATH@IP:PORT,...)");
    g.name = spec.substr(0, at1);
    const std::string path = spec.substr(at1 + 1, at2 - at1 - 1);
    g.netns_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (g.netns_fd < 0) die_errno("open " + path);
    list = spec.substr(at2 + 1);
  }
  for (std::size_t at = 0; at <= list.size();) {
    const std::size_t comma = list.find(',', at);
    g.targets.push_back(parse_target(list.substr(at, comma == std::string::npos ? std::string::npos : comma - at)));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return g;
}

int run_client(const char* mode, std::vector<Group> groups, unsigned concurrency, std::uint64_t count,
               double seconds) {
  const double secs = Client(groups, std::strcmp(mode, "rr") == 0, concurrency).run(count, seconds);
  const int rc = report(mode, concurrency, groups, secs);
  for (Group& g : groups) {
    if (g.netns_fd >= 0) close(g.netns_fd);
  }
  return rc;
}

// ---- self test: a private network namespace, lo up, a server child and both clients --------

int selftest() {
  if (geteuid() != 0) {
    std::fprintf(stderr, "netbench selftest needs root (a network namespace of its own): skipped\n");
    return 77;
  }
  if (unshare(CLONE_NEWNET) != 0) die_errno("unshare(CLONE_NEWNET)");
  const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) die_errno("SIOCGIFFLAGS lo");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) die_errno("SIOCSIFFLAGS lo");
  close(s);
  char ready[] = "/tmp/netbench-selftest.XXXXXX";
  const int rfd = mkstemp(ready);
  if (rfd < 0) die_errno("mkstemp");
  close(rfd);
  unlink(ready);
  const pid_t pid = fork();
  if (pid < 0) die_errno("fork");
  if (pid == 0) _exit(serve(18080, ready, 30));
  const std::uint64_t wait_end = now_ns() + 5'000'000'000ull;
  while (access(ready, F_OK) != 0 && now_ns() < wait_end) usleep(10'000);
  unlink(ready);
  int rc = 0;
  const Group lo = parse_group("127.0.0.1:18080");
  rc |= run_client("crr", {lo}, 1, 300, 10);
  rc |= run_client("crr", {lo}, 4, 1000, 10);
  rc |= run_client("rr", {lo}, 4, 2000, 10);
  // Two groups alternate: the second in a namespace opened by path (this one's).
  Group self = parse_group("b@/proc/self/ns/net@127.0.0.1:18080");
  Group a = lo;
  a.name = "a";
  rc |= run_client("crr", {a, self}, 1, 200, 10);
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) rc = 1;
  std::printf("netbench selftest: %s\n", rc == 0 ? "ok" : "FAILED");
  return rc;
}

constexpr const char* kUsage =
    "usage: netbench server --port P [--ready-file F] [--max-seconds S]\n"
    "       netbench crr|rr --targets [NAME@NETNS_PATH@]IP:PORT[,...] [--targets ...]\n"
    "                       [--concurrency C] [--count N] [--seconds S]\n"
    "       netbench selftest\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die(kUsage);
  const std::string mode = argv[1];
  if (mode == "selftest") return selftest();
  std::string ready;
  std::vector<Group> groups;
  unsigned port = 0, max_seconds = 0, concurrency = 1;
  std::uint64_t count = 1000;
  double seconds = 10;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die(a + " needs a value\n" + kUsage);
    const char* v = argv[++i];
    if (a == "--port") port = static_cast<unsigned>(std::atoi(v));
    else if (a == "--ready-file") ready = v;
    else if (a == "--max-seconds") max_seconds = static_cast<unsigned>(std::atoi(v));
    else if (a == "--targets") groups.push_back(parse_group(v));
    else if (a == "--concurrency") concurrency = static_cast<unsigned>(std::atoi(v));
    else if (a == "--count") count = std::strtoull(v, nullptr, 10);
    else if (a == "--seconds") seconds = std::atof(v);
    else die("unknown argument " + a + "\n" + kUsage);
  }
  if (mode == "server") {
    if (port == 0 || port > 65535) die("server needs --port");
    return serve(static_cast<std::uint16_t>(port), ready, max_seconds);
  }
  if (mode != "crr" && mode != "rr") die(kUsage);
  if (groups.empty() || concurrency == 0 || concurrency > 256 || count == 0 || seconds <= 0)
    die("bad client arguments\n" + std::string(kUsage));
  return run_client(mode.c_str(), std::move(groups), concurrency, count, seconds);
}
