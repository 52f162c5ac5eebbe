// sluice's datapath cost per packet, side by side with the floor: an empty program of the same
// hook (bench/floor.bpf.c), both run with BPF_PROG_TEST_RUN on the same packets, in blocks
// interleaved A B A B. Method, matrix and limits: bench/README.md. Needs root (exit 77).
//
// The process first moves into a network namespace of its own (tests/bpf/netns.h: veths,
// routes, permanent neighbours), because lb_node_xdp asks bpf_fib_lookup() where a backend is.
// Nothing is attached to any device and every map is private to the process (the fixture
// unpins them), so nothing outlives it.
//
//   datapath_bench [--services 1,10000,100000] [--backends 1,100,1000] [--rounds N]
//                  [--runs N] [--repeat N] [--out-dir DIR] [--smoke]
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_floor.skel.h"
#include "fixture.h"
#include "netns.h"
#include "packet.h"

using namespace bpftest;

namespace {

// ---- options ------------------------------------------------------------------------------

struct Options {
  std::vector<std::uint32_t> services{1, 10000, 100000};
  std::vector<std::uint32_t> backends{1, 100, 1000};
  std::uint32_t rounds = 15;
  std::uint32_t runs = 1000;    // single runs per block (first packets: at most kFirstRunsMax)
  std::uint32_t repeat = 2000;  // iterations of one repeat-mode test run
  std::string out_dir;          // datapath.csv and datapath_rounds.csv; empty: none
  bool smoke = false;
};

constexpr const char* kUsage =
    "usage: datapath_bench [--services LIST] [--backends LIST] [--rounds N] [--runs N]\n"
    "                      [--repeat N] [--out-dir DIR] [--smoke]\n"
    "  --services LIST  ClusterIP services in the maps, comma separated (default 1,10000,100000)\n"
    "  --backends LIST  backends of each measured service (default 1,100,1000)\n"
    "  --rounds N       interleaved rounds over all cells (default 15)\n"
    "  --runs N         single test runs per block (default 1000; first packets: at most 500)\n"
    "  --repeat N       iterations of a repeat-mode run (default 2000)\n"
    "  --out-dir DIR    write DIR/datapath.csv (summary) and DIR/datapath_rounds.csv\n"
    "  --smoke          tiny matrix, 2 rounds: checks that every case runs as expected\n"
    "Needs root (exit 77 otherwise). See bench/README.md.\n";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "datapath_bench: %s\n%s", msg.c_str(), kUsage);
  std::exit(2);
}

std::uint32_t parse_u32(const std::string& s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const unsigned long v = std::strtoul(s.c_str(), &end, 10);
  if (s.empty() || errno != 0 || *end != '\0' || v == 0 || v > 10'000'000)
    usage_error(std::string("bad ") + what + " '" + s + "'");
  return static_cast<std::uint32_t>(v);
}

std::vector<std::uint32_t> parse_list(const std::string& s, const char* what) {
  std::vector<std::uint32_t> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    const std::size_t comma = s.find(',', at);
    out.push_back(parse_u32(s.substr(at, comma == std::string::npos ? std::string::npos : comma - at), what));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--services") o.services = parse_list(value(), "--services");
    else if (a == "--backends") o.backends = parse_list(value(), "--backends");
    else if (a == "--rounds") o.rounds = parse_u32(value(), "--rounds");
    else if (a == "--runs") o.runs = parse_u32(value(), "--runs");
    else if (a == "--repeat") o.repeat = parse_u32(value(), "--repeat");
    else if (a == "--out-dir") o.out_dir = value();
    else if (a == "--smoke") o.smoke = true;
    else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else usage_error("unknown argument '" + a + "'");
  }
  if (o.smoke) {
    o.services = {1, 1000};
    o.backends = {1, 10};
    o.rounds = 2;
    o.runs = 50;
    o.repeat = 100;
  }
  return o;
}

// ---- the measured frontends and their packets ----------------------------------------------

constexpr std::uint32_t kTargetsMax = 16;  // measured frontends of each kind, rotated
constexpr std::uint32_t kFlows = 64;       // established flows of each kind, rotated
constexpr std::uint32_t kWarmup = 32;      // runs of each program before a case's blocks
constexpr std::uint32_t kRepeatRuns = 5;   // repeat-mode runs per block
// New flows per round to one NodePort-remote backend must stay well inside the SNAT port range
// (LB_SNAT_PORT_MIN..MAX, 4535 ports; the datapath tries 16 random ports per flow).
constexpr std::uint32_t kFirstRunsMax = 500;
constexpr std::uint16_t kVport = 80, kBport = 8080;
constexpr std::uint16_t kLocalNodePort = 30000, kRemoteNodePort = 31000;
constexpr std::uint16_t kFlowPortBase = 1000, kWarmPortBase = 2000, kFirstPortBase = 10000;
constexpr std::uint32_t kWarmFlows = 8;    // warm flows of each kind (repeat mode), rotated
constexpr std::uint8_t TCP = kProtoTcp;

constexpr IpAddr kNode = ip("192.168.50.11");        // n0's address (netns.h): the NodePort
constexpr IpAddr kNodeClient = ip("192.168.50.1");   // a client on n0's link
constexpr IpAddr kPodClient = ip("10.250.0.2");      // a pod behind lb_pod_ingress
constexpr IpAddr kPodPeer = ip("10.250.0.3");        // another pod (not a service)
constexpr IpAddr kClusterIpBase = ip("10.96.0.10");  // ClusterIP i = base + i
constexpr IpAddr kServiceBackendBase = ip("10.244.1.1");
constexpr IpAddr kOtherBackendBase = ip("10.128.0.1");
constexpr IpAddr kLocalPods = ip("10.201.1.0");      // behind pod0: this node's pods
constexpr IpAddr kRemotePods = ip("10.201.2.0");     // node2's pods, behind n0

IpAddr plus(IpAddr a, std::uint32_t n) {
  std::uint32_t v = (std::uint32_t{a.b[0]} << 24 | std::uint32_t{a.b[1]} << 16 | std::uint32_t{a.b[2]} << 8 |
                     a.b[3]) + n;
  for (int i = 3; i >= 0; --i, v >>= 8) a.b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
  return a;
}

// Backend j of a pod range: 250 addresses, then the next port (a node's /24 holds them all).
IpAddr pod_addr(IpAddr net, std::uint32_t j) { return plus(net, 1 + j % 250); }
std::uint16_t pod_port(std::uint32_t j) { return static_cast<std::uint16_t>(kBport + j / 250); }

enum Kind : std::uint8_t { kClusterIp, kNodePortLocal, kNodePortRemote, kKinds };

struct Target {
  IpAddr vip;
  std::uint16_t port = 0;  // host order
};

Pkt with_data(Pkt p, std::size_t len) {
  p.tcp_flags = kAck | kPsh;
  p.seq = 1001;
  p.ack_seq = 7001;
  p.payload.assign(len, 'x');
  return p;
}

// The first packet of a flow of `kind` to target t from client port `port`.
Pkt first_pkt(Kind kind, const Target& t, std::uint16_t port) {
  if (kind == kClusterIp) return tcp(kPodClient, port, t.vip, t.port, kSyn);
  return tcp(kNodeClient, port, t.vip, t.port, kSyn).macs(kMacNClient, kMacN0);
}

// ---- cases ---------------------------------------------------------------------------------

enum class Hook : std::uint8_t { Tc, Xdp };
enum class Method : std::uint8_t { Single, Repeat };

struct Case {
  const char* name;
  Hook hook;
  std::uint32_t ret;  // expected verdict
  lb_stat stat;       // expected counter
  Kind kind;          // frontends of a first/established case
  // FirstSpread: first packets to services drawn at random from all of the cell's ClusterIPs.
  enum Source : std::uint8_t { Pass, First, FirstSpread, Established, Reply } source;
};

constexpr std::uint32_t kTcOk = 0;
constexpr Case kCases[] = {
    {"pass_tc", Hook::Tc, kTcOk, LB_STAT_PASS, kClusterIp, Case::Pass},
    {"clusterip_first", Hook::Tc, kTcOk, LB_STAT_FWD_NEW, kClusterIp, Case::First},
    {"clusterip_first_spread", Hook::Tc, kTcOk, LB_STAT_FWD_NEW, kClusterIp, Case::FirstSpread},
    {"clusterip_established", Hook::Tc, kTcOk, LB_STAT_FWD_ESTABLISHED, kClusterIp, Case::Established},
    {"clusterip_reply", Hook::Tc, kTcOk, LB_STAT_REPLY, kClusterIp, Case::Reply},
    {"pass_xdp", Hook::Xdp, kXdpPass, LB_STAT_PASS, kNodePortLocal, Case::Pass},
    {"nodeport_local_first", Hook::Xdp, kXdpPass, LB_STAT_FWD_NEW, kNodePortLocal, Case::First},
    {"nodeport_local_established", Hook::Xdp, kXdpPass, LB_STAT_FWD_ESTABLISHED, kNodePortLocal,
     Case::Established},
    {"nodeport_remote_first", Hook::Xdp, kXdpTx, LB_STAT_FWD_REMOTE_NEW, kNodePortRemote, Case::First},
    {"nodeport_remote_established", Hook::Xdp, kXdpTx, LB_STAT_FWD_REMOTE, kNodePortRemote,
     Case::Established},
};
constexpr std::size_t kNumCases = sizeof kCases / sizeof kCases[0];

// References (floor.bpf.c), measured like the cases on the "not a service" tc packet: the clock
// read sluice stamps flows with, the coarse clock, and one hit in an LRU hash of conntrack's
// layout and size.
constexpr Case kRefCases[] = {
    {"ref_clock", Hook::Tc, kTcOk, LB_STAT_PASS, kClusterIp, Case::Pass},
    {"ref_clock_coarse", Hook::Tc, kTcOk, LB_STAT_PASS, kClusterIp, Case::Pass},
    {"ref_ct_lookup", Hook::Tc, kTcOk, LB_STAT_PASS, kClusterIp, Case::Pass},
};
// The key ref_ct_lookup reads (the same constants as in floor.bpf.c).
constexpr lb4_ct_key kRefCtKey{.saddr = 0x0200fa0a, .daddr = 0x0a00600a, .sport = 0xe803, .dport = 0x5000,
                               .proto = 6, .pad = {}};

// ---- running a program ---------------------------------------------------------------------

struct Prog {
  int fd = -1;
  Hook hook = Hook::Tc;
};

struct RunOut {
  std::uint32_t ret = 0;
  std::uint32_t ns = 0;  // the kernel's duration: per iteration, its clock around the loop
  Bytes out;
};

std::uint32_t g_ifindex_n0 = 0;

// One BPF_PROG_TEST_RUN. XDP runs arrive on n0 (bpf_fib_lookup() needs the device); tc runs
// get no context, as the bpf tier's lb_pod_ingress cases.
RunOut test_run(const Prog& p, const Bytes& in, std::uint32_t repeat, bool want_out = false) {
  std::array<std::uint8_t, 512> buf{};
  xdp_md ctx{}, ctx_out{};
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.data(), .data_out = buf.data(),
              .data_size_in = static_cast<__u32>(in.size()), .data_size_out = static_cast<__u32>(buf.size()),
              .repeat = static_cast<int>(repeat));
  if (p.hook == Hook::Xdp) {
    ctx.data_end = static_cast<__u32>(in.size());
    ctx.ingress_ifindex = g_ifindex_n0;
    o.ctx_in = &ctx;
    o.ctx_size_in = sizeof ctx;
    // XDP output starts at data_meta (lb_node_xdp marks frames it passes up): ctx_out.data is
    // the length of the metadata in front of the frame.
    o.ctx_out = &ctx_out;
    o.ctx_size_out = sizeof ctx_out;
  }
  if (bpf_prog_test_run_opts(p.fd, &o) != 0)
    throw std::runtime_error(std::string("BPF_PROG_TEST_RUN: ") + std::strerror(errno));
  RunOut r{o.retval, o.duration, {}};
  if (want_out) {
    const std::size_t meta = p.hook == Hook::Xdp ? std::min<std::size_t>(ctx_out.data, o.data_size_out) : 0;
    r.out.assign(buf.begin() + static_cast<long>(meta), buf.begin() + o.data_size_out);
  }
  return r;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const std::size_t lo = static_cast<std::size_t>(pos);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// Runs each packet once (repeat 1) or `repeat` times in one run; every verdict must be `ret`.
// Returns the median duration in ns.
double block(const Prog& p, const std::vector<Bytes>& pkts, std::uint32_t repeat, std::uint32_t ret,
             const char* what) {
  std::vector<double> ns;
  ns.reserve(pkts.size());
  for (const Bytes& b : pkts) {
    const RunOut r = test_run(p, b, repeat);
    if (r.ret != ret)
      throw std::runtime_error(std::string(what) + ": verdict " + std::to_string(r.ret) + ", expected " +
                               std::to_string(ret));
    ns.push_back(r.ns);
  }
  return median(std::move(ns));
}

// ---- checks of what the datapath did (untimed) ---------------------------------------------

struct Frame {
  IpAddr src, dst;
  std::uint16_t sport = 0, dport = 0;
  Mac smac, dmac;
};

Frame parse_v4(const Bytes& f) {
  if (f.size() < 14 + 20 + 4) throw std::runtime_error("output frame too short");
  Frame r;
  std::copy(f.begin(), f.begin() + 6, r.dmac.b.begin());
  std::copy(f.begin() + 6, f.begin() + 12, r.smac.b.begin());
  const std::size_t ihl = static_cast<std::size_t>(f[14] & 0x0f) * 4;
  std::copy(f.begin() + 26, f.begin() + 30, r.src.b.begin());
  std::copy(f.begin() + 30, f.begin() + 34, r.dst.b.begin());
  r.sport = static_cast<std::uint16_t>(f.at(14 + ihl) << 8 | f.at(15 + ihl));
  r.dport = static_cast<std::uint16_t>(f.at(16 + ihl) << 8 | f.at(17 + ihl));
  return r;
}

void expect(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("check failed: " + what);
}

void expect_checksums(const Bytes& out, const char* what) {
  const CsumReport rep = verify_checksums(out);
  expect(rep.ok(), std::string(what) + ": " + rep.str());
}

// ---- a cell of the matrix: one loaded datapath with its maps filled --------------------------

struct Flow {
  Bytes fwd;    // client -> frontend, established
  Bytes reply;  // backend -> client (ClusterIP only)
  // The same paths on flows whose translation is the identity (repeat mode), see make_warm().
  Bytes warm_fwd, warm_reply;
};

lb4_ct_key ct_key(const IpAddr& s, std::uint16_t sport, const IpAddr& d, std::uint16_t dport) {
  lb4_ct_key k{};
  std::memcpy(&k.saddr, s.b.data(), 4);
  std::memcpy(&k.daddr, d.b.data(), 4);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = TCP;
  return k;
}

IpAddr addr_of(__be32 a) {
  IpAddr r;
  std::memcpy(r.b.data(), &a, 4);
  return r;
}

// Repeat mode runs the program again on its own output, so a packet it rewrites cannot be
// measured that way. A warm flow is a copy of a real flow's conntrack entries under a new client
// port whose NAT targets are the packet's own addresses: every iteration takes exactly the
// established (or reply) path of the real flow (same lookups, helpers, rewrites, counters) and
// leaves the packet as it was. NodePort-remote: the packet as it leaves (to the backend, node2's
// MAC), with the client as its own SNAT address.
void make_warm(Fixture& fx, Kind kind, const Pkt& syn, std::uint16_t wport, Flow& fl) {
  const int fd = bpf_map__fd(fx.skel()->maps.lb4_ct_v2);
  lb4_ct_key k = ct_key(syn.src, syn.sport, syn.dst, syn.dport);
  lb4_ct_value v{};
  if (bpf_map_lookup_elem(fd, &k, &v) != 0) throw std::runtime_error("warm flow: no conntrack entry");
  const IpAddr be = addr_of(v.nat_addr);
  const std::uint16_t bport = ntohs(v.state.nat_port);
  Pkt p;
  if (kind == kNodePortRemote) {
    p = with_data(tcp(syn.src, wport, be, bport, kAck), 18).macs(kMacN0, kMacNode2);
    std::memcpy(&v.snat_addr, syn.src.b.data(), 4);
    v.state.snat_port = htons(wport);
  } else {
    p = with_data(tcp(syn.src, wport, syn.dst, syn.dport, kAck), 18);
    if (kind == kNodePortLocal) p = p.macs(kMacNClient, kMacN0);
    std::memcpy(&v.nat_addr, syn.dst.b.data(), 4);
    v.state.nat_port = htons(syn.dport);
  }
  k = ct_key(p.src, p.sport, p.dst, p.dport);
  if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) != 0) throw std::runtime_error("warm flow: conntrack write");
  fl.warm_fwd = build(p);
  if (kind != kClusterIp) return;
  // The real REPLY entry already restores VIP:port; keyed by the answer's tuple it is the identity.
  lb4_ct_key rk = ct_key(be, bport, syn.src, syn.sport);
  lb4_ct_value rv{};
  if (bpf_map_lookup_elem(fd, &rk, &rv) != 0) throw std::runtime_error("warm flow: no REPLY entry");
  const Pkt r = with_data(tcp(syn.dst, syn.dport, syn.src, wport, kAck), 64);
  rk = ct_key(r.src, r.sport, r.dst, r.dport);
  if (bpf_map_update_elem(fd, &rk, &rv, BPF_ANY) != 0) throw std::runtime_error("warm flow: REPLY write");
  fl.warm_reply = build(r);
}

// Appends map entries and writes them with one batch per map.
class Filler {
 public:
  // A frontend and its backends (j -> address and port); slots 1..count.
  template <typename BackendFn>
  void frontend(const IpAddr& vip, std::uint16_t port, std::uint32_t svc_id, std::uint16_t flags,
                std::uint32_t count, BackendFn&& backend) {
    lb4_svc_key k{};
    std::memcpy(&k.vip, vip.b.data(), 4);
    k.port = htons(port);
    k.proto = TCP;
    k.scope = LB_SCOPE_ALL;
    for (std::uint32_t j = 0; j < count; ++j) {
      const auto [addr, bport] = backend(j);
      lb4_backend b{};
      std::memcpy(&b.addr, addr.b.data(), 4);
      b.port = htons(bport);
      b.proto = TCP;
      b.state = LB_BACKEND_ACTIVE;
      b.svc_id = svc_id;
      bk_.push_back(next_id_);
      bv_.push_back(b);
      k.slot = static_cast<std::uint16_t>(j + 1);
      sk_.push_back(k);
      sv_.push_back(lb_svc_value{.backend_id = next_id_, .svc_id = svc_id, .affinity_timeout = 0, .count = 0, .flags = 0});
      ++next_id_;
    }
    k.slot = 0;
    sk_.push_back(k);
    sv_.push_back(lb_svc_value{.backend_id = 0, .svc_id = svc_id, .affinity_timeout = 0,
                               .count = static_cast<std::uint16_t>(count), .flags = flags});
  }

  void commit(Skel* s) {
    batch(bpf_map__fd(s->maps.lb4_backends_v1), bk_.data(), bv_.data(), bk_.size(), "lb4_backends_v1");
    batch(bpf_map__fd(s->maps.lb4_services_v1), sk_.data(), sv_.data(), sk_.size(), "lb4_services_v1");
  }

 private:
  static void batch(int fd, const void* keys, const void* values, std::size_t n, const char* what) {
    auto count = static_cast<__u32>(n);
    LIBBPF_OPTS(bpf_map_batch_opts, o, .elem_flags = BPF_ANY);
    if (bpf_map_update_batch(fd, keys, values, &count, &o) != 0 || count != n)
      throw std::runtime_error(std::string("batch update of ") + what + ": " + std::strerror(errno) + " (" +
                               std::to_string(count) + " of " + std::to_string(n) + " written)");
  }
  std::vector<lb4_svc_key> sk_;
  std::vector<lb_svc_value> sv_;
  std::vector<std::uint32_t> bk_;
  std::vector<lb4_backend> bv_;
  std::uint32_t next_id_ = 1;
};

struct Cell {
  std::uint32_t services = 0;  // ClusterIP frontends in the maps
  std::uint32_t backends = 0;  // of each measured frontend
  std::uint32_t targets = 0;   // measured frontends of each kind
  std::size_t svc_entries = 0, backend_entries = 0;
  std::unique_ptr<Fixture> fx;
  Prog sluice_tc, sluice_xdp;
  std::array<std::vector<Target>, kKinds> target;
  // State of the current round.
  std::uint32_t next_port = 0;
  std::uint64_t rng = 0x9e3779b97f4a7c15ull;  // FirstSpread's service choice (splitmix64)
  std::array<std::vector<Flow>, kKinds> flows;

  std::string label() const { return std::to_string(services) + " services x " + std::to_string(backends) + " backends"; }
};

// Map entries a cell needs: masters + slots, and backends (ClusterIP targets and NodePort
// frontends have `backends` each, the other ClusterIPs one).
void size_cell(Cell& c) {
  c.targets = std::min(c.services, kTargetsMax);
  const std::size_t measured = static_cast<std::size_t>(3) * c.targets;
  const std::size_t others = c.services - c.targets;
  c.backend_entries = measured * c.backends + others;
  c.svc_entries = c.services + 2 * static_cast<std::size_t>(c.targets) + c.backend_entries;
}

void fill_cell(Cell& c, std::uint32_t n0) {
  c.fx = std::make_unique<Fixture>();
  c.sluice_tc = {bpf_program__fd(c.fx->skel()->progs.lb_pod_ingress), Hook::Tc};
  c.sluice_xdp = {bpf_program__fd(c.fx->skel()->progs.lb_node_xdp), Hook::Xdp};
  c.fx->put_device(n0, kNode, ip("fd50::11"));
  Filler fill;
  const std::uint32_t T = c.targets;
  // svc ids: measured frontends 1..3T; the other ClusterIPs share the rest of the id space
  // (LB_MAX_SERVICES ids cannot name 100k frontends; the datapath reads the id only for counters
  // and the backend's owner check, so a shared id changes nothing for a frontend without traffic).
  const std::uint32_t first_other_id = 1 + 3 * T;
  const std::uint32_t other_ids = LB_MAX_SERVICES - first_other_id;
  const std::uint32_t stride = c.services / T;
  std::uint32_t other = 0;
  for (std::uint32_t i = 0; i < c.services; ++i) {
    const IpAddr vip = plus(kClusterIpBase, i);
    if (i % stride == 0 && i / stride < T) {
      const std::uint32_t t = i / stride;
      c.target[kClusterIp].push_back({vip, kVport});
      fill.frontend(vip, kVport, 1 + t, 0, c.backends, [&](std::uint32_t j) {
        return std::pair{plus(kServiceBackendBase, j + t * c.backends), kBport};
      });
    } else {
      const std::uint32_t k = other++;
      fill.frontend(vip, kVport, first_other_id + k % other_ids, 0, 1,
                    [&](std::uint32_t) { return std::pair{plus(kOtherBackendBase, k), kBport}; });
    }
  }
  for (std::uint32_t t = 0; t < T; ++t) {
    const auto local = static_cast<std::uint16_t>(kLocalNodePort + t);
    const auto remote = static_cast<std::uint16_t>(kRemoteNodePort + t);
    c.target[kNodePortLocal].push_back({kNode, local});
    c.target[kNodePortRemote].push_back({kNode, remote});
    fill.frontend(kNode, local, 1 + T + t, LB_SVC_F_EXTERNAL, c.backends,
                  [](std::uint32_t j) { return std::pair{pod_addr(kLocalPods, j), pod_port(j)}; });
    fill.frontend(kNode, remote, 1 + 2 * T + t, LB_SVC_F_EXTERNAL, c.backends,
                  [](std::uint32_t j) { return std::pair{pod_addr(kRemotePods, j), pod_port(j)}; });
  }
  fill.commit(c.fx->skel());
  const std::size_t in_map = map_entries(c.fx->skel()->maps.lb4_services_v1);
  expect(in_map == c.svc_entries, c.label() + ": " + std::to_string(in_map) + " service entries in the map, " +
                                      std::to_string(c.svc_entries) + " written");
}

const Prog& sluice_prog(const Cell& c, Hook h) { return h == Hook::Xdp ? c.sluice_xdp : c.sluice_tc; }

// Starts a round: no flows, then kFlows established flows of each kind (a first packet, and for
// ClusterIP the backend's answer too), every output checked.
// Empties a flow map in one walk and one batch delete (the fixture's clear_map() restarts its
// walk after every delete, which scans the empty buckets again each time).
void clear_flow_map(const bpf_map* m) {
  const int fd = bpf_map__fd(m);
  const std::size_t ks = bpf_map__key_size(m);
  std::vector<std::uint8_t> keys;
  std::vector<std::uint8_t> cur(ks), next(ks);
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    keys.insert(keys.end(), next.begin(), next.end());
    cur = next;
    prev = cur.data();
  }
  auto n = static_cast<__u32>(keys.size() / ks);
  if (n == 0) return;
  const __u32 want = n;
  LIBBPF_OPTS(bpf_map_batch_opts, o);
  if (bpf_map_delete_batch(fd, keys.data(), &n, &o) != 0 || n != want)
    throw std::runtime_error(std::string("clear ") + bpf_map__name(m) + ": " + std::strerror(errno));
}

void prepare_round(Cell& c) {
  // The bench makes IPv4 TCP flows only: no affinity, fragments or IPv6 entries to clear.
  clear_flow_map(c.fx->skel()->maps.lb4_ct_v2);
  expect(map_entries(c.fx->skel()->maps.lb4_ct_v2) == 0, "conntrack not empty after clearing");
  c.next_port = 0;
  for (int k = 0; k < kKinds; ++k) {
    const Kind kind = static_cast<Kind>(k);
    const Prog& prog = sluice_prog(c, kind == kClusterIp ? Hook::Tc : Hook::Xdp);
    const std::uint32_t want = kind == kClusterIp ? kTcOk : kind == kNodePortLocal ? kXdpPass : kXdpTx;
    auto& flows = c.flows[static_cast<std::size_t>(k)];
    flows.clear();
    for (std::uint32_t f = 0; f < kFlows; ++f) {
      const Target& t = c.target[static_cast<std::size_t>(k)][f % c.targets];
      const auto port = static_cast<std::uint16_t>(kFlowPortBase + f);
      const Pkt syn = first_pkt(kind, t, port);
      const RunOut r = test_run(prog, build(syn), 1, true);
      const std::string what = c.label() + " flow " + std::to_string(f) + " kind " + std::to_string(k);
      expect(r.ret == want, what + ": first packet verdict " + std::to_string(r.ret));
      const auto ct = c.fx->ct(CtKey{syn.src, syn.dst, syn.sport, syn.dport, TCP});
      expect(ct && ct->dir == LB_CT_FORWARD, what + ": no FORWARD conntrack entry");
      // The frame that left: translated as its conntrack entry says, checksums right.
      const Frame out = parse_v4(r.out);
      expect(out.dst == ct->nat_addr && out.dport == ct->nat_port, what + ": destination not the backend");
      if (kind == kNodePortRemote) {
        expect(out.src == kNode && out.dmac == kMacNode2 && out.smac == kMacN0,
               what + ": not SNATed to the node and addressed to node2");
      } else {
        expect(out.src == syn.src && out.sport == syn.sport, what + ": source changed");
      }
      expect_checksums(r.out, what.c_str());
      Flow fl;
      fl.fwd = build(with_data(syn, 18));
      if (kind == kClusterIp) {
        Pkt ans = with_data(tcp(ct->nat_addr, ct->nat_port, syn.src, syn.sport, kAck), 64);
        fl.reply = build(ans);
        const RunOut a = test_run(prog, fl.reply, 1, true);
        expect(a.ret == kTcOk, what + ": answer verdict");
        const Frame back = parse_v4(a.out);
        expect(back.src == t.vip && back.sport == t.port && back.dst == syn.src,
               what + ": answer not from the service address");
        expect_checksums(a.out, (what + " answer").c_str());
      }
      if (f < kWarmFlows) {
        make_warm(*c.fx, kind, syn, static_cast<std::uint16_t>(kWarmPortBase + f), fl);
        // An identity translation must give back the very same frame, with the expected verdict.
        for (const Bytes* w : {&fl.warm_fwd, &fl.warm_reply}) {
          if (w->empty()) continue;
          const RunOut o = test_run(prog, *w, 1, true);
          expect(o.ret == want && o.out == *w, what + ": warm flow not translated into itself");
        }
      }
      flows.push_back(std::move(fl));
    }
  }
}

// The packets of one block of a case.
std::vector<Bytes> packets(Cell& c, const Case& cs, std::uint32_t n, bool warm) {
  // New flows differ by client port within a round (conntrack is emptied between rounds).
  if ((cs.source == Case::First || cs.source == Case::FirstSpread) && kFirstPortBase + c.next_port + n > 65535)
    throw std::runtime_error("more new flows in one round than client ports");
  std::vector<Bytes> out;
  out.reserve(n);
  const auto& flows = c.flows[cs.kind];
  const auto& targets = c.target[cs.kind];
  for (std::uint32_t i = 0; i < n; ++i) {
    switch (cs.source) {
      case Case::Pass:
        out.push_back(cs.hook == Hook::Tc
                          ? build(with_data(tcp(kPodClient, 40000, kPodPeer, kBport, kAck), 18))
                          : build(with_data(tcp(kNodeClient, 40000, kNode, 22, kAck), 18).macs(kMacNClient, kMacN0)));
        break;
      case Case::First:
        out.push_back(build(first_pkt(cs.kind, targets[i % c.targets],
                                      static_cast<std::uint16_t>(kFirstPortBase + c.next_port++))));
        break;
      case Case::FirstSpread: {
        std::uint64_t z = (c.rng += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        const auto svc = static_cast<std::uint32_t>((z ^ (z >> 31)) % c.services);
        out.push_back(build(first_pkt(kClusterIp, Target{plus(kClusterIpBase, svc), kVport},
                                      static_cast<std::uint16_t>(kFirstPortBase + c.next_port++))));
        break;
      }
      case Case::Established:
        out.push_back(warm ? flows[i % kWarmFlows].warm_fwd : flows[i % flows.size()].fwd);
        break;
      case Case::Reply:
        out.push_back(warm ? flows[i % kWarmFlows].warm_reply : flows[i % flows.size()].reply);
        break;
    }
  }
  return out;
}

struct RoundResult {
  std::uint32_t round = 0;
  const Cell* cell = nullptr;
  const Case* cs = nullptr;
  Method method = Method::Single;
  double floor_ns = 0, sluice_ns = 0;
};

std::uint64_t stat_total(const StatArray& a) {
  std::uint64_t s = 0;
  for (std::uint64_t v : a) s += v;
  return s;
}

// One case in one cell: floor, sluice, floor, sluice; the counters must show exactly the runs
// of the expected kind.
RoundResult measure(Cell& c, const Case& cs, Method m, const Prog& floor, const Options& o, std::uint32_t round) {
  const Prog& prog = sluice_prog(c, cs.hook);
  const bool first = cs.source == Case::First || cs.source == Case::FirstSpread;
  const std::uint32_t runs = m == Method::Repeat ? kRepeatRuns : first ? std::min(o.runs, kFirstRunsMax) : o.runs;
  const std::uint32_t repeat = m == Method::Repeat ? o.repeat : 1;
  const std::string what = c.label() + " " + cs.name;
  const std::uint32_t floor_ret = cs.hook == Hook::Xdp ? kXdpPass : kTcOk;
  const StatArray before = c.fx->stats();
  const bool rep = m == Method::Repeat;
  const std::vector<Bytes> warm = packets(c, cs, kWarmup, rep);
  (void)block(floor, warm, 1, floor_ret, "floor");
  (void)block(prog, warm, 1, cs.ret, what.c_str());
  double f = 0, s = 0;
  for (int ab = 0; ab < 2; ++ab) {
    const std::vector<Bytes> fp = packets(c, cs, runs, rep);
    f += block(floor, fp, repeat, floor_ret, "floor") / 2;
    const std::vector<Bytes> sp = packets(c, cs, runs, rep);
    s += block(prog, sp, repeat, cs.ret, what.c_str()) / 2;
  }
  const StatArray after = c.fx->stats();
  const std::uint64_t want = kWarmup + 2ull * runs * repeat;
  const std::uint64_t got = after[cs.stat] - before[cs.stat];
  expect(got == want && stat_total(after) - stat_total(before) == want,
         what + ": counter " + std::to_string(cs.stat) + " moved by " + std::to_string(got) + " (all counters by " +
             std::to_string(stat_total(after) - stat_total(before)) + "), expected " + std::to_string(want));
  return {round, &c, &cs, m, f, s};
}

// A reference program against the floor, as measure() does for a case (no counters to check).
RoundResult measure_ref(const Cell& refs, const Case& cs, Method m, const Prog& prog, const Prog& floor,
                        const Options& o, std::uint32_t round) {
  const std::uint32_t runs = m == Method::Repeat ? kRepeatRuns : o.runs;
  const std::uint32_t repeat = m == Method::Repeat ? o.repeat : 1;
  const std::vector<Bytes> pkts(runs, build(with_data(tcp(kPodClient, 40000, kPodPeer, kBport, kAck), 18)));
  (void)block(floor, pkts, 1, kTcOk, "floor");
  (void)block(prog, pkts, 1, cs.ret, cs.name);
  double f = 0, s = 0;
  for (int ab = 0; ab < 2; ++ab) {
    f += block(floor, pkts, repeat, kTcOk, "floor") / 2;
    s += block(prog, pkts, repeat, cs.ret, cs.name) / 2;
  }
  return {round, &refs, &cs, m, f, s};
}

const char* hook_name(Hook h) { return h == Hook::Xdp ? "xdp" : "tc"; }
const char* method_name(Method m) { return m == Method::Repeat ? "repeat" : "single"; }

struct Summary {
  const Cell* cell = nullptr;
  const Case* cs = nullptr;
  Method method = Method::Single;
  std::uint32_t rounds = 0;
  double floor_ns = 0, sluice_ns = 0, ratio = 0, ratio_p25 = 0, ratio_p75 = 0;
};

std::vector<Summary> summarise(const std::vector<RoundResult>& rs) {
  std::vector<Summary> out;
  for (const RoundResult& r : rs) {
    auto it = std::find_if(out.begin(), out.end(), [&](const Summary& s) {
      return s.cell == r.cell && s.cs == r.cs && s.method == r.method;
    });
    if (it == out.end()) out.push_back({r.cell, r.cs, r.method});
  }
  for (Summary& s : out) {
    std::vector<double> f, v, ratio;
    for (const RoundResult& r : rs) {
      if (r.cell != s.cell || r.cs != s.cs || r.method != s.method) continue;
      f.push_back(r.floor_ns);
      v.push_back(r.sluice_ns);
      ratio.push_back(r.sluice_ns / r.floor_ns);
    }
    s.rounds = static_cast<std::uint32_t>(ratio.size());
    s.floor_ns = median(f);
    s.sluice_ns = median(v);
    s.ratio = median(ratio);
    s.ratio_p25 = quantile(ratio, 0.25);
    s.ratio_p75 = quantile(ratio, 0.75);
  }
  return out;
}

void write_csv(const Options& o, const std::vector<RoundResult>& rs, const std::vector<Summary>& sum) {
  if (o.out_dir.empty()) return;
  std::ofstream r(o.out_dir + "/datapath_rounds.csv");
  r << "round,services,backends,case,hook,method,floor_ns,sluice_ns,ratio\n";
  for (const RoundResult& x : rs)
    r << x.round << ',' << x.cell->services << ',' << x.cell->backends << ',' << x.cs->name << ','
      << hook_name(x.cs->hook) << ',' << method_name(x.method) << ',' << x.floor_ns << ',' << x.sluice_ns << ','
      << x.sluice_ns / x.floor_ns << '\n';
  std::ofstream s(o.out_dir + "/datapath.csv");
  s << "services,backends,case,hook,method,rounds,floor_ns,sluice_ns,ratio,ratio_p25,ratio_p75\n";
  for (const Summary& x : sum)
    s << x.cell->services << ',' << x.cell->backends << ',' << x.cs->name << ',' << hook_name(x.cs->hook) << ','
      << method_name(x.method) << ',' << x.rounds << ',' << x.floor_ns << ',' << x.sluice_ns << ',' << x.ratio
      << ',' << x.ratio_p25 << ',' << x.ratio_p75 << '\n';
  if (!r || !s) throw std::runtime_error("cannot write the CSV files in " + o.out_dir);
}

int run(const Options& o) {
  const TestNet& net = test_net();
  if (!net.ok) {
    std::fprintf(stderr, "datapath_bench: network namespace setup failed: %s\n", net.why.c_str());
    return 1;
  }
  g_ifindex_n0 = net.n0;
  std::unique_ptr<bench_floor, void (*)(bench_floor*)> floor_skel(bench_floor::open_and_load(),
                                                                   [](bench_floor* s) { bench_floor::destroy(s); });
  if (!floor_skel) throw std::runtime_error(std::string("load bench_floor: ") + std::strerror(errno));
  const Prog floor_tc{bpf_program__fd(floor_skel->progs.floor_tc), Hook::Tc};
  const Prog floor_xdp{bpf_program__fd(floor_skel->progs.floor_xdp), Hook::Xdp};
  const Prog ref_progs[] = {{bpf_program__fd(floor_skel->progs.ref_clock), Hook::Tc},
                            {bpf_program__fd(floor_skel->progs.ref_clock_coarse), Hook::Tc},
                            {bpf_program__fd(floor_skel->progs.ref_ct_lookup), Hook::Tc}};
  const lb4_ct_value ref_value{};
  if (bpf_map_update_elem(bpf_map__fd(floor_skel->maps.ref_ct), &kRefCtKey, &ref_value, BPF_ANY) != 0)
    throw std::runtime_error(std::string("write ref_ct: ") + std::strerror(errno));
  Cell refs;  // the references' rows: 0 services, 0 backends

  std::vector<std::unique_ptr<Cell>> cells;
  for (std::uint32_t s : o.services) {
    for (std::uint32_t b : o.backends) {
      auto c = std::make_unique<Cell>();
      c->services = s;
      c->backends = b;
      size_cell(*c);
      if (c->svc_entries > LB_MAX_SVC_ENTRIES || c->backend_entries > LB_MAX_BACKENDS || b > LB_MAX_BACKENDS_PER_SVC) {
        std::printf("skipped %s: %zu service entries (max %d), %zu backends (max %d)\n", c->label().c_str(),
                    c->svc_entries, LB_MAX_SVC_ENTRIES, c->backend_entries, LB_MAX_BACKENDS);
        continue;
      }
      const auto t0 = std::chrono::steady_clock::now();
      fill_cell(*c, net.n0);
      std::printf("cell %s: %zu service entries, %zu backends, %u measured frontends per kind (%.0f ms)\n",
                  c->label().c_str(), c->svc_entries, c->backend_entries, c->targets,
                  std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      std::fflush(stdout);
      cells.push_back(std::move(c));
    }
  }
  if (cells.empty()) throw std::runtime_error("no cell fits the maps");

  // Program sizes: what a packet's path has to bring into the caches.
  if (!o.out_dir.empty()) {
    std::ofstream f(o.out_dir + "/datapath_progs.csv");
    f << "program,bytes_xlated,bytes_jited\n";
    for (const bpf_program* p : {cells[0]->fx->skel()->progs.lb_pod_ingress, cells[0]->fx->skel()->progs.lb_node_xdp,
                                 floor_skel->progs.floor_tc, floor_skel->progs.floor_xdp}) {
      bpf_prog_info info{};
      __u32 len = sizeof info;
      if (bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len) != 0)
        throw std::runtime_error(std::string("prog info: ") + std::strerror(errno));
      f << bpf_program__name(p) << ',' << info.xlated_prog_len << ',' << info.jited_prog_len << '\n';
      std::printf("program %s: %u bytes of BPF, %u bytes of JIT code\n", bpf_program__name(p), info.xlated_prog_len,
                  info.jited_prog_len);
    }
  }
  std::vector<RoundResult> results;
  for (std::uint32_t round = 0; round < o.rounds; ++round) {
    for (std::size_t i = 0; i < std::size(kRefCases); ++i) {
      for (Method m : {Method::Single, Method::Repeat})
        results.push_back(measure_ref(refs, kRefCases[i], m, ref_progs[i], floor_tc, o, round));
    }
    // Every round visits every cell, starting one further each time.
    for (std::size_t i = 0; i < cells.size(); ++i) {
      Cell& c = *cells[(i + round) % cells.size()];
      prepare_round(c);
      for (const Case& cs : kCases) {
        const Prog& floor = cs.hook == Hook::Xdp ? floor_xdp : floor_tc;
        results.push_back(measure(c, cs, Method::Single, floor, o, round));
        if (cs.source != Case::First && cs.source != Case::FirstSpread)
          results.push_back(measure(c, cs, Method::Repeat, floor, o, round));
      }
    }
    std::printf("round %u/%u done\n", round + 1, o.rounds);
    std::fflush(stdout);
  }
  const std::vector<Summary> sum = summarise(results);
  write_csv(o, results, sum);
  std::printf("%-9s %-8s %-28s %-5s %-7s %9s %9s %7s  %s\n", "services", "backends", "case", "hook", "method",
              "floor_ns", "sluice_ns", "ratio", "p25-p75");
  for (const Summary& x : sum)
    std::printf("%-9u %-8u %-28s %-5s %-7s %9.1f %9.1f %7.2f  %.2f-%.2f\n", x.cell->services, x.cell->backends,
                x.cs->name, hook_name(x.cs->hook), method_name(x.method), x.floor_ns, x.sluice_ns, x.ratio,
                x.ratio_p25, x.ratio_p75);
  std::printf("datapath_bench: %zu cells x %zu cases, %u rounds: every run gave the expected verdict and counter\n",
              cells.size(), kNumCases, o.rounds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  if (geteuid() != 0) {
    std::fprintf(stderr, "datapath_bench needs root (BPF_PROG_TEST_RUN, a network namespace): skipped\n");
    return 77;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "datapath_bench: %s\n", e.what());
    return 1;
  }
}
