// Table-driven cases for lb_pod_ingress and the north-south programs. A Case is data: the
// services to install and a list of Steps (packet in -> program, verdict, exact packet out,
// checksums, counters). Each row of a table is registered as its own doctest test case (named
// tc_pod_... / np_...) and runs on its own Fixture.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fixture.h"
#include "netns.h"
#include "packet.h"

namespace bpftest {

// ---- the test network ----------------------------------------------------------------------

inline constexpr Mac kMacClient = mac("02:00:00:00:00:02");   // the pod's side of the veth
inline constexpr Mac kMacHost = mac("02:00:00:00:00:01");     // host side
inline constexpr Mac kMacBackend = mac("02:00:00:00:01:01");  // a backend pod

inline constexpr std::uint16_t kCPort = 40000;     // client source port
inline constexpr std::uint16_t kTcpVPort = 80;     // TCP service port
inline constexpr std::uint16_t kUdpVPort = 53;     // UDP service port
inline constexpr std::uint16_t kTcpBPort = 8080;   // TCP backend port
inline constexpr std::uint16_t kUdpBPort = 5353;   // UDP backend port
inline constexpr std::uint32_t kAffinityTimeout = 10;  // seconds

// Addresses of one family.
struct Fam {
  const char* tag;       // "lb4" / "lb6"
  IpAddr client;
  IpAddr vip;
  IpAddr other;          // an address that is no service
  IpAddr be[4];          // backends
  IpAddr far;            // a routing header's final destination
  std::uint32_t svc_tcp, svc_udp;  // svc ids of VIP:80/tcp and VIP:53/udp
};

inline constexpr Fam kV4{"lb4",
                         ip("10.0.0.2"),
                         ip("172.30.0.41"),
                         ip("10.200.0.9"),
                         {ip("10.180.0.1"), ip("10.180.0.2"), ip("10.180.0.3"), ip("10.180.0.4")},
                         ip("10.201.0.1"),
                         1,
                         2};
inline constexpr Fam kV6{"lb6",
                         ip("fd00::2"),
                         ip("fd00:30::41"),
                         ip("fd00:200::9"),
                         {ip("fd00:180::1"), ip("fd00:180::2"), ip("fd00:180::3"), ip("fd00:180::4")},
                         ip("fd00:201::1"),
                         3,
                         4};

constexpr std::uint16_t vport(std::uint8_t proto) { return proto == kProtoTcp ? kTcpVPort : kUdpVPort; }
constexpr std::uint16_t bport(std::uint8_t proto) { return proto == kProtoTcp ? kTcpBPort : kUdpBPort; }
constexpr std::uint32_t svc_id(const Fam& f, std::uint8_t proto) {
  return proto == kProtoTcp ? f.svc_tcp : f.svc_udp;
}
// Backend ids: svc_id * 100 + 1.. (ids are per family map, distinct per service).
constexpr std::uint32_t backend_id(const Fam& f, std::uint8_t proto, int i) {
  return svc_id(f, proto) * 100 + static_cast<std::uint32_t>(i) + 1;
}

// VIP:port/proto with backends f.be[idx...] on bport(proto).
Service service(const Fam& f, std::uint8_t proto, std::vector<int> backend_idx, std::uint16_t flags = 0,
                std::uint32_t affinity_timeout = 0);
Backend backend(const Fam& f, std::uint8_t proto, int i);

// client:cport -> VIP:vport
Pkt client_pkt(const Fam& f, std::uint8_t proto, std::uint16_t cport = kCPort);
// the same packet after translation to backend i
Pkt to_backend(const Pkt& p, const Fam& f, int i);
// a later packet of the client's flow (TCP: ACK with data; UDP: more data)
Pkt client_next(const Fam& f, std::uint8_t proto, std::uint16_t cport = kCPort);
// backend i:bport -> client:cport (TCP: SYN+ACK)
// An answer from src:sport to dst:dport with fixed header fields (TCP: SYN+ACK).
Pkt answer_pkt(std::uint8_t proto, IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport, Mac smac,
               Mac dmac);
Pkt reply_pkt(const Fam& f, std::uint8_t proto, int i, std::uint16_t cport = kCPort);
// the same reply after translation back to the service
Pkt from_vip(const Pkt& reply, const Fam& f);
// The DSR option naming vip:vport, as a load-balancing node writes it: IPv4 option 0x9a
// (8 bytes, the sole option) / IPv6 destination options header with option 0x1b (the only
// extension header).
Pkt with_dsr(Pkt p, const IpAddr& vip, std::uint16_t vport);
// An ICMP (ICMPv6) error src -> dst quoting `quote`; `info` is the 32 bits after the checksum.
Pkt icmp_error(const IpAddr& src, const IpAddr& dst, std::uint8_t type, std::uint8_t code, std::uint32_t info,
               Bytes quote, Mac smac, Mac dmac);

// ---- cases ---------------------------------------------------------------------------------

struct SvcDelta {
  std::uint64_t fwd_packets = 0, reply_packets = 0, new_flows = 0, rejected = 0;
};

enum class CsumExpect { Valid, Skip, Invalid };

struct Step {
  std::string what;
  std::function<void(Fixture&)> before;   // map changes before the packet
  Prog prog = Prog::PodIngress;           // the program the packet runs through
  Dev dev = Dev::None;                    // its device in test_net() (None: no context)
  Bytes in;
  int expect_err = 0;                     // nonzero: the test-run syscall must fail so
  int tolerated_err = 0;                  // nonzero: the kernel may refuse the input so (then
                                          // nothing may have run); otherwise checked as usual
  std::uint32_t verdict = kTcActOk;       // (kXdp* for Prog::NodeXdp)
  Bytes out;                              // exact expected output
  std::vector<Bytes> out_any;             // or: output must equal one of these
  lb_stat stat = LB_STAT_PASS;            // the one global counter that moves (+1 packet)
  std::uint32_t svc = 0;                  // service whose counters move by `delta`
  SvcDelta delta;
  CsumExpect csum = CsumExpect::Valid;
  std::function<void(Fixture&)> after;    // extra checks (conntrack, affinity, ...)
};

struct Case {
  const char* name;
  std::vector<Service> services;
  std::vector<Step> steps;
  // Procedural remainder, after the steps, with each step's output.
  std::function<void(Fixture&, const std::vector<Bytes>&)> body;
  FixtureOptions opts;                    // rodata for this case's fixture
  bool needs_net = false;                 // runs in test_net(); skipped if it cannot be made
  std::function<void(Fixture&)> setup;    // before the services (devices, ranges, Maglev)
};

Case mk(const char* name, std::vector<Service> services, std::vector<Step> steps,
        std::function<void(Fixture&, const std::vector<Bytes>&)> body = {});

// Step helpers
Step with_before(Step s, std::function<void(Fixture&)> before);
Step with_after(Step s, std::function<void(Fixture&)> after);
Step pass_step(std::string what, Bytes in, lb_stat stat = LB_STAT_PASS,
               CsumExpect csum = CsumExpect::Valid);
Step fwd_new_step(std::string what, const Pkt& in, const Pkt& out, std::uint32_t svc);
Step fwd_est_step(std::string what, const Pkt& in, const Pkt& out, std::uint32_t svc);
Step reply_step(std::string what, const Pkt& in, const Pkt& out, std::uint32_t svc);
Step reject_step(std::string what, const Pkt& in, std::uint32_t svc);

// Runs one step on `fx`; `svcs` are the svc ids whose counters are watched. Returns the output.
Bytes run_step(Fixture& fx, const Step& s, const std::vector<std::uint32_t>& svcs);
void run_case(const Case& c);

// Checks: FORWARD and REPLY conntrack entries of a translated flow.
void check_ct_pair(Fixture& fx, const Pkt& in, const Pkt& out, std::uint32_t backend, std::uint32_t svc);

// Registers every row of a std::array<Case, N> as a doctest test case named by Case::name. The
// "line" doctest reports for such a case is its row number in the table (1-based); rows run in
// table order. Run one with: bpf_tests -tc=tc_pod_lb4_tcp_first_packet
template <const auto& Table, std::size_t I>
void run_row() {
  run_case(Table[I]);
}

template <const auto& Table>
int register_table(const char* file) {
  constexpr std::size_t n = std::tuple_size_v<std::remove_cvref_t<decltype(Table)>>;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (doctest::detail::regTest(doctest::detail::TestCase(&run_row<Table, I>, file,
                                                        static_cast<unsigned>(I + 1),
                                                        doctest_detail_test_suite_ns::getCurrentTestSuite()) *
                              Table[I].name),
     ...);
  }(std::make_index_sequence<n>{});
  return 0;
}

}  // namespace bpftest
