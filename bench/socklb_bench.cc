// socklb_bench: the measuring end of bench/socklb_bench.py. A small TCP server and a client that
// times connect() and whole requests on new connections, so the socket-LB programs' cost is
// not drowned in an interpreter's. No root needed by itself; the driver runs it in network
// namespaces and a cgroup.
//
//   socklb_bench server PORT                      accept, read one line, answer "ok\n", close
//   socklb_bench connect ADDR PORT N [--cgroup D] N x (socket, connect, close): connect() time
//   socklb_bench request ADDR PORT N [--cgroup D] N x (socket, connect, "GET\n", read the
//                                                 answer, close): request time and rate
//   socklb_bench uconnect ADDR PORT N [--cgroup D] N x (UDP socket, connect, close): no packet
//                                                 is sent, so the time is the syscalls' and
//                                                 the socket program's alone
//
// The clients print one JSON line: {"n", "p50_ns", "p90_ns", "p99_ns", "mean_ns", "per_s",
// "per_s_wall"}: per_s = 1 / the mean time without the slowest 5% (scheduling stalls),
// per_s_wall = N / the wall time of the whole measure.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
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

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "socklb_bench: %s: %s\n", what.c_str(), std::strerror(errno));
  std::exit(1);
}

struct target {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
};

target parse_target(const char* addr, const char* port) {
  target t;
  const auto p = static_cast<uint16_t>(std::atoi(port));
  auto* in = reinterpret_cast<sockaddr_in*>(&t.ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&t.ss);
  if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(p);
    t.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(p);
    t.len = sizeof(sockaddr_in6);
    t.family = AF_INET6;
  } else {
    errno = EINVAL;
    die(std::string("bad address ") + addr);
  }
  return t;
}

int serve(uint16_t port) {
  const int l = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1, zero = 0;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(port);
  sa.sin6_addr = in6addr_any;
  if (bind(l, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) die("bind");
  if (listen(l, 1024) != 0) die("listen");
  std::printf("listening on %u\n", port);
  std::fflush(stdout);
  char buf[256];
  for (;;) {
    const int c = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR) continue;
      die("accept");
    }
    // One line in, one line out: the client's read ends at our close.
    size_t got = 0;
    while (got < sizeof buf) {
      const ssize_t n = read(c, buf + got, sizeof buf - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
      if (std::memchr(buf, '\n', got) != nullptr) {
        if (write(c, "ok\n", 3) != 3) break;
        break;
      }
    }
    close(c);
  }
}

void report(std::vector<uint64_t>& ns, uint64_t wall_ns) {
  std::sort(ns.begin(), ns.end());
  const auto at = [&](double q) { return ns[std::min(ns.size() - 1, static_cast<size_t>(q * ns.size()))]; };
  uint64_t sum = 0;
  for (uint64_t v : ns) sum += v;
  // The rate of one sequential client is 1 / its mean time per request; without the slowest
  // 5%, which on a shared machine are scheduling stalls of either side, not the datapath.
  const size_t kept = ns.size() - ns.size() / 20;
  uint64_t kept_sum = 0;
  for (size_t i = 0; i < kept; ++i) kept_sum += ns[i];
  std::printf("{\"n\": %zu, \"p50_ns\": %llu, \"p90_ns\": %llu, \"p99_ns\": %llu, \"mean_ns\": %llu, "
              "\"per_s\": %.1f, \"per_s_wall\": %.1f}\n",
              ns.size(), static_cast<unsigned long long>(at(0.50)),
              static_cast<unsigned long long>(at(0.90)), static_cast<unsigned long long>(at(0.99)),
              static_cast<unsigned long long>(sum / ns.size()),
              static_cast<double>(kept) * 1e9 / static_cast<double>(kept_sum),
              static_cast<double>(ns.size()) * 1e9 / static_cast<double>(wall_ns));
}

enum class mode { connect, request, uconnect };

int client(mode m, const target& t, int n) {
  const bool request = m == mode::request;
  std::vector<uint64_t> ns;
  ns.reserve(static_cast<size_t>(n));
  char buf[64];
  const uint64_t start = now_ns();
  for (int i = 0; i < n; ++i) {
    const uint64_t t0 = now_ns();
    const int s =
        socket(t.family, (m == mode::uconnect ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket");
    if (connect(s, reinterpret_cast<const sockaddr*>(&t.ss), t.len) != 0) die("connect");
    if (request) {
      if (write(s, "GET\n", 4) != 4) die("write");
      ssize_t r;
      while ((r = read(s, buf, sizeof buf)) > 0) {
      }
      if (r < 0) die("read");
    }
    const uint64_t t1 = now_ns();
    if (m == mode::connect) {
      // The client closes first here: a reset instead of TIME_WAIT, or tens of thousands of
      // connections to one backend address would use up the ephemeral ports.
      const linger lg{1, 0};
      setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(s);  // outside the timed part
    ns.push_back(t1 - t0);
  }
  report(ns, now_ns() - start);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // --cgroup DIR: move into the cgroup first (socket-LB acts on the sockets of its cgroup).
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--cgroup") {
      std::ofstream procs(args[i + 1] + "/cgroup.procs");
      if (!(procs << getpid() << std::flush)) die("move into " + args[i + 1]);
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      break;
    }
  }
  if (args.size() == 2 && args[0] == "server") return serve(static_cast<uint16_t>(std::atoi(args[1].c_str())));
  if (args.size() == 4 && (args[0] == "connect" || args[0] == "request" || args[0] == "uconnect")) {
    const mode m = args[0] == "request"    ? mode::request
                   : args[0] == "uconnect" ? mode::uconnect
                                           : mode::connect;
    return client(m, parse_target(args[1].c_str(), args[2].c_str()), std::atoi(args[3].c_str()));
  }
  std::fprintf(stderr, "usage: socklb_bench server PORT | {connect|request|uconnect} ADDR PORT N "
                       "[--cgroup DIR]\n");
  return 2;
}
