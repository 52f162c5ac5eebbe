// North-south: lb_node_xdp (XDP on native devices), lb_node_ingress (tc ingress) and
// lb_node_egress (tc egress), run in the test network namespace (netns.h) so that
// bpf_fib_lookup() has devices, routes and neighbours to answer from. NodePort to backends on
// this node (DNAT) and on other nodes (SNAT, DSR, hybrid), DSR learning on the backend's node,
// unresolved neighbours, external traffic policy Local, source ranges, Maglev, ClusterIPs and
// other traffic left alone, ICMP errors about translated flows either way, packets too big for
// their way out.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "cases.h"

using namespace bpftest;

namespace {

constexpr std::uint8_t TCP = kProtoTcp;
constexpr std::uint8_t UDP = kProtoUdp;

constexpr std::uint16_t kTcpNPort = 30080;  // NodePort, TCP
constexpr std::uint16_t kUdpNPort = 30053;  // NodePort, UDP
constexpr std::uint16_t kSnatPort = 61000;  // the only SNAT port of the default options

constexpr std::uint16_t nport(std::uint8_t proto) { return proto == TCP ? kTcpNPort : kUdpNPort; }

// Addresses of one family in the test network (netns.h).
struct NFam {
  const char* tag;
  IpAddr node;        // n0's address: the NodePort address and n0's SNAT source
  IpAddr node_n1;     // n1's address: SNAT source of flows leaving by n1
  IpAddr client;      // on n0's link
  IpAddr router;      // on n0's link, sends ICMP errors
  IpAddr node2;       // the load-balancing node of the DSR learning cases
  IpAddr local[3];    // pods of this node (behind pod0)
  IpAddr remote;      // a pod of node2 (behind n0)
  IpAddr far;         // a pod of node3 (behind n1)
  IpAddr unresolved;  // behind a gateway without neighbour entry
  IpAddr cluster_ip;  // a ClusterIP (no LB_SVC_F_EXTERNAL)
  IpAddr client_net;  // a prefix that holds the client
  std::uint32_t client_len;
  IpAddr other_net;   // a prefix that does not
  std::uint32_t other_len;
  std::uint32_t svc_tcp, svc_udp;
};

constexpr NFam kN4{"lb4",
                   ip("192.168.50.11"),
                   ip("192.168.51.11"),
                   ip("192.168.50.1"),
                   ip("192.168.50.254"),
                   ip("192.168.50.12"),
                   {ip("10.201.1.5"), ip("10.201.1.6"), ip("10.201.1.7")},
                   ip("10.201.2.5"),
                   ip("10.201.3.5"),
                   ip("10.201.4.5"),
                   ip("10.96.0.10"),
                   ip("192.168.50.0"),
                   24,
                   ip("10.0.0.0"),
                   8,
                   11,
                   12};
constexpr NFam kN6{"lb6",
                   ip("fd50::11"),
                   ip("fd51::11"),
                   ip("fd50::1"),
                   ip("fd50::fe"),
                   ip("fd50::12"),
                   {ip("fd01:1::5"), ip("fd01:1::6"), ip("fd01:1::7")},
                   ip("fd01:2::5"),
                   ip("fd01:3::5"),
                   ip("fd01:4::5"),
                   ip("fd96::10"),
                   ip("fd50::"),
                   64,
                   ip("fd99::"),
                   16,
                   13,
                   14};

enum Where : std::uint8_t { L0, L1, L2, REMOTE, FAR, UNRESOLVED };

IpAddr where_addr(const NFam& f, Where w) {
  switch (w) {
    case L0: return f.local[0];
    case L1: return f.local[1];
    case L2: return f.local[2];
    case REMOTE: return f.remote;
    case FAR: return f.far;
    case UNRESOLVED: return f.unresolved;
  }
  return {};
}

constexpr std::uint32_t nsvc(const NFam& f, std::uint8_t proto) { return proto == TCP ? f.svc_tcp : f.svc_udp; }
constexpr std::uint32_t nbid(const NFam& f, std::uint8_t proto, Where w) {
  return nsvc(f, proto) * 100 + static_cast<std::uint32_t>(w) + 1;
}

Backend nbackend(const NFam& f, std::uint8_t proto, Where w) {
  Backend b;
  b.id = nbid(f, proto, w);
  b.addr = where_addr(f, w);
  b.port = bport(proto);
  return b;
}

// node:NodePort/proto, LB_SVC_F_EXTERNAL (+ extra flags), backends in slot order.
Service nodeport(const NFam& f, std::uint8_t proto, std::vector<Where> ws, std::uint16_t extra = 0) {
  Service s;
  s.vip = f.node;
  s.port = nport(proto);
  s.proto = proto;
  s.svc_id = nsvc(f, proto);
  s.flags = static_cast<std::uint16_t>(LB_SVC_F_EXTERNAL | extra);
  for (Where w : ws) s.backends.push_back(nbackend(f, proto, w));
  return s;
}

// ---- packets -----------------------------------------------------------------------------

// client:cport -> node:NodePort as it arrives on n0. Fields the datapath must keep are not
// defaults (TTL, TOS, DF, id, traffic class, flow label).
Pkt nclient(const NFam& f, std::uint8_t proto, std::uint16_t cport = kCPort) {
  Pkt p = l4(proto, f.client, cport, f.node, nport(proto)).macs(kMacNClient, kMacN0);
  p.ttl = 61;
  p.tos = 0x28;
  p.df = true;
  p.ip_id = 0x1c46;
  p.hop_limit = 61;
  p.tclass = 0x28;
  p.flow_label = 0x12345;
  return p;
}

// A later packet of that flow (TCP: ACK with data; UDP: another datagram).
Pkt nclient_next(const NFam& f, std::uint8_t proto, std::uint16_t cport = kCPort) {
  Pkt p = nclient(f, proto, cport);
  if (proto == TCP) {
    p.tcp_flags = kAck | kPsh;
    p.seq = 1001;
    p.ack_seq = 7001;
    const std::string d = "GET / HTTP/1.0\r\n\r\n";
    p.payload.assign(d.begin(), d.end());
  } else {
    const std::string d = "second datagram";
    p.payload.assign(d.begin(), d.end());
  }
  return p;
}

// An answer from src:sport to dst:dport (TCP: SYN+ACK).
Pkt nanswer(std::uint8_t proto, IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport, Mac smac, Mac dmac) {
  return answer_pkt(proto, src, sport, dst, dport, smac, dmac);
}

Pkt dnat(const Pkt& in, const IpAddr& be) { return in.to(be, bport(in.proto)); }

// To another node with SNAT: source = the egress device's address and the SNAT port.
Pkt snat_out(const Pkt& in, const IpAddr& be, const IpAddr& src, Mac smac, Mac dmac) {
  return in.from(src, kSnatPort).to(be, bport(in.proto)).macs(smac, dmac);
}

// To another node with DSR: destination = backend, client kept, option after the IP header.
Pkt dsr_out(const Pkt& in, const NFam& f, const IpAddr& be, Mac dmac, bool option) {
  const Pkt o = in.to(be, bport(in.proto)).macs(kMacN0, dmac);
  return option ? with_dsr(o, f.node, nport(in.proto)) : o;
}

// The IP datagram of a frame (what an ICMP error quotes), optionally cut after `len` bytes.
Bytes quote_of(const Pkt& p, std::optional<std::size_t> len = std::nullopt) {
  const Bytes b = build(p);
  Bytes q(b.begin() + 14, b.end());
  if (len && *len < q.size()) q.resize(*len);
  return q;
}

// ---- steps ------------------------------------------------------------------------------

bool is_xdp(Prog p) { return p == Prog::NodeXdp; }
std::uint32_t v_local(Prog p) { return is_xdp(p) ? kXdpPass : kTcActOk; }
// Out of the device it came in by (XDP_TX) or another one (XDP_REDIRECT); tc redirects both.
std::uint32_t v_send(Prog p, bool same_dev) { return is_xdp(p) ? (same_dev ? kXdpTx : kXdpRedirect) : kTcActRedirect; }

Step nstep(std::string what, Prog prog, Dev dev, const Pkt& in, std::uint32_t verdict, const Pkt& out, lb_stat stat,
           std::uint32_t svc = 0, SvcDelta delta = {}) {
  Step s;
  s.what = std::move(what);
  s.prog = prog;
  s.dev = dev;
  s.in = build(in);
  s.verdict = verdict;
  s.out = build(out);
  s.stat = stat;
  s.svc = svc;
  s.delta = delta;
  return s;
}

// Left byte-identical with `stat`.
Step nsame(std::string what, Prog prog, Dev dev, const Pkt& in, std::uint32_t verdict, lb_stat stat) {
  return nstep(std::move(what), prog, dev, in, verdict, in, stat);
}

constexpr SvcDelta kNew{.fwd_packets = 1, .new_flows = 1};
constexpr SvcDelta kFwd{.fwd_packets = 1};
constexpr SvcDelta kReply{.reply_packets = 1};

// ---- conntrack expectations -------------------------------------------------------------

struct CtWant {
  std::uint8_t dir = 0, flags = 0;
  IpAddr nat{};
  std::uint16_t nat_port = 0;
  IpAddr snat{};  // compared only with LB_CT_F_SNAT
  std::uint16_t snat_port = 0;
  std::uint32_t backend_id = 0, svc_id = 0;
  // LB_CT_F_VIP_LOCAL: the service address is the node's own (NodePort on n0's address, as in
  // every case here), except in entries learnt from a DSR option.
  bool vip_local = true;
};

std::string flag_str(std::uint8_t fl) {
  std::string s;
  const std::pair<std::uint8_t, const char*> names[] = {
      {LB_CT_F_SNAT, "SNAT"}, {LB_CT_F_FIN_FWD, "FIN_FWD"}, {LB_CT_F_FIN_REPLY, "FIN_REPLY"}, {LB_CT_F_RST, "RST"},
      {LB_CT_F_SEEN_REPLY, "SEEN_REPLY"}, {LB_CT_F_DSR, "DSR"}, {LB_CT_F_REMOTE, "REMOTE"},
      {LB_CT_F_VIP_LOCAL, "VIP_LOCAL"}};
  for (const auto& [bit, name] : names)
    if (fl & bit) s += (s.empty() ? "" : "|") + std::string(name);
  return s.empty() ? "0" : s;
}

void expect_ct(Fixture& fx, const CtKey& k, const CtWant& w) {
  const auto v = fx.ct(k);
  REQUIRE_MESSAGE(v.has_value(), "no conntrack entry keyed by " << k.saddr.str() << ":" << k.sport << " -> "
                                                                 << k.daddr.str() << ":" << k.dport);
  INFO("conntrack entry " << k.saddr.str() << ":" << k.sport << " -> " << k.daddr.str() << ":" << k.dport);
  CHECK(v->dir == w.dir);
  const auto want = static_cast<std::uint8_t>(w.flags | (w.vip_local ? LB_CT_F_VIP_LOCAL : 0));
  CHECK_MESSAGE(v->flags == want, "flags " << flag_str(v->flags) << ", expected " << flag_str(want));
  CHECK_MESSAGE(v->nat_addr == w.nat, "nat_addr " << v->nat_addr.str() << ", expected " << w.nat.str());
  CHECK(v->nat_port == w.nat_port);
  if (w.flags & LB_CT_F_SNAT) {
    CHECK_MESSAGE(v->snat_addr == w.snat, "snat_addr " << v->snat_addr.str() << ", expected " << w.snat.str());
    CHECK(v->snat_port == w.snat_port);
  }
  CHECK(v->backend_id == w.backend_id);
  CHECK(v->svc_id == w.svc_id);
  CHECK(v->created_ns > 0);
  CHECK(v->created_ns <= monotonic_ns());
}

CtKey key_of(const Pkt& p) { return CtKey{p.src, p.dst, p.sport, p.dport, p.proto}; }

void expect_entries(Fixture& fx, bool v6, std::size_t n) {
  CHECK_MESSAGE(fx.ct_entries(v6) == n, "conntrack holds " << fx.ct_entries(v6) << " entries, expected " << n);
}

// ---- cases ------------------------------------------------------------------------------

FixtureOptions snat_opts(std::uint32_t mode = LB_MODE_SNAT) {
  FixtureOptions o;
  o.lb_mode = mode;
  o.snat_port_min = kSnatPort;
  o.snat_port_max = kSnatPort;
  return o;
}

// Every case: n0 and n1 are native devices with both families' addresses.
Case nmk(const char* name, std::vector<Service> svcs, std::vector<Step> steps, FixtureOptions o = snat_opts(),
         std::function<void(Fixture&)> extra = {}) {
  Case c = mk(name, std::move(svcs), std::move(steps));
  c.opts = o;
  c.needs_net = true;
  c.setup = [extra](Fixture& fx) {
    const TestNet& n = test_net();
    fx.put_device(n.n0, kN4.node, kN6.node);
    fx.put_device(n.n1, kN4.node_n1, kN6.node_n1);
    if (extra) extra(fx);
  };
  return c;
}

// The pod's answer from n0's own address (NodePort): translated at its device and sent out of
// n0 by FIB redirect (L2 filled in), because the stack would drop a packet arriving with one
// of its own addresses as source (IPv4 martian).
Step answer_from_node_addr(const Pkt& ans, const NFam& f, std::uint8_t proto, std::uint32_t svc) {
  Step s = reply_step("the pod's answer at its device: out of n0", ans,
                      ans.from(f.node, nport(proto)).macs(kMacN0, kMacNClient), svc);
  s.verdict = kTcActRedirect;
  return s;
}

// NodePort to a backend of this node: DNAT only, handed to the stack; the pod's answer is
// translated at its device from the REPLY entry.
Case local_backend(const char* name, const NFam& f, std::uint8_t proto, Prog prog) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  const Pkt out = dnat(in, f.local[0]);
  const Pkt next = nclient_next(f, proto);
  const Pkt ans = nanswer(proto, f.local[0], bport(proto), f.client, kCPort, kMacBackend, kMacHost);
  return nmk(name, {nodeport(f, proto, {L0})},
             {with_after(nstep("first packet: DNAT to the local pod", prog, Dev::N0, in, v_local(prog), out,
                               LB_STAT_FWD_NEW, svc, kNew),
                         [=](Fixture& fx) {
                           expect_ct(fx, key_of(in),
                                     {.dir = LB_CT_FORWARD, .flags = 0, .nat = f.local[0], .nat_port = bport(proto),
                                      .backend_id = nbid(f, proto, L0), .svc_id = svc});
                           expect_ct(fx, CtKey{f.local[0], f.client, bport(proto), kCPort, proto},
                                     {.dir = LB_CT_REPLY, .flags = 0, .nat = f.node, .nat_port = nport(proto),
                                      .backend_id = nbid(f, proto, L0), .svc_id = svc});
                           expect_entries(fx, f.node.v6, 2);
                         }),
              nstep("later packet from conntrack", prog, Dev::N0, next, v_local(prog), dnat(next, f.local[0]),
                    LB_STAT_FWD_ESTABLISHED, svc, kFwd),
              answer_from_node_addr(ans, f, proto, svc)});
}

// NodePort to another node's backend with SNAT: first packet, later packet, the answer.
Case snat_remote(const char* name, const NFam& f, std::uint8_t proto, Prog prog) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  const Pkt next = nclient_next(f, proto);
  const Pkt ans = nanswer(proto, f.remote, bport(proto), f.node, kSnatPort, kMacNode2, kMacN0);
  const Pkt ans_out = ans.from(f.node, nport(proto)).to(f.client, kCPort).macs(kMacN0, kMacNClient);
  const CtKey rkey{f.remote, f.node, bport(proto), kSnatPort, proto};
  const CtWant rwant{.dir = LB_CT_REPLY, .flags = LB_CT_F_SNAT | LB_CT_F_REMOTE, .nat = f.node,
                     .nat_port = nport(proto), .snat = f.client, .snat_port = kCPort,
                     .backend_id = nbid(f, proto, REMOTE), .svc_id = svc};
  return nmk(name, {nodeport(f, proto, {REMOTE})},
             {with_after(nstep("first packet: SNAT to node2's pod, L2 from the FIB", prog, Dev::N0, in,
                               v_send(prog, true), snat_out(in, f.remote, f.node, kMacN0, kMacNode2),
                               LB_STAT_FWD_REMOTE_NEW, svc, kNew),
                         [=](Fixture& fx) {
                           expect_ct(fx, key_of(in),
                                     {.dir = LB_CT_FORWARD, .flags = LB_CT_F_SNAT | LB_CT_F_REMOTE, .nat = f.remote,
                                      .nat_port = bport(proto), .snat = f.node, .snat_port = kSnatPort,
                                      .backend_id = nbid(f, proto, REMOTE), .svc_id = svc});
                           expect_ct(fx, rkey, rwant);
                           expect_entries(fx, f.node.v6, 2);
                         }),
              nstep("later packet from conntrack", prog, Dev::N0, next, v_send(prog, true),
                    snat_out(next, f.remote, f.node, kMacN0, kMacNode2), LB_STAT_FWD_REMOTE, svc, kFwd),
              with_after(nstep("node2's answer: back to the client from the NodePort", prog, Dev::N0, ans,
                               v_send(prog, true), ans_out, LB_STAT_REPLY, svc, kReply),
                         [=](Fixture& fx) {
                           CtWant seen = rwant;
                           seen.flags |= LB_CT_F_SEEN_REPLY;
                           expect_ct(fx, rkey, seen);
                         })});
}

// A backend behind the other native device: SNAT from n1's address, XDP_REDIRECT both ways.
Case snat_other_device(const char* name, const NFam& f, std::uint8_t proto, Prog prog) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  const Pkt ans = nanswer(proto, f.far, bport(proto), f.node_n1, kSnatPort, kMacNode3, kMacN1);
  const Pkt ans_out = ans.from(f.node, nport(proto)).to(f.client, kCPort).macs(kMacN0, kMacNClient);
  return nmk(name, {nodeport(f, proto, {FAR})},
             {with_after(nstep("first packet: out of n1, SNAT from n1's address", prog, Dev::N0, in,
                               v_send(prog, false), snat_out(in, f.far, f.node_n1, kMacN1, kMacNode3),
                               LB_STAT_FWD_REMOTE_NEW, svc, kNew),
                         [=](Fixture& fx) {
                           expect_ct(fx, CtKey{f.far, f.node_n1, bport(proto), kSnatPort, proto},
                                     {.dir = LB_CT_REPLY, .flags = LB_CT_F_SNAT | LB_CT_F_REMOTE, .nat = f.node,
                                      .nat_port = nport(proto), .snat = f.client, .snat_port = kCPort,
                                      .backend_id = nbid(f, proto, FAR), .svc_id = svc});
                         }),
              nstep("node3's answer arrives on n1, leaves by n0", prog, Dev::N1, ans, v_send(prog, false), ans_out,
                    LB_STAT_REPLY, svc, kReply)});
}

// One SNAT port, taken: the next flow to the same backend finds none and is dropped.
Case snat_ports_exhausted(const char* name, const NFam& f) {
  const std::uint32_t svc = nsvc(f, TCP);
  const Pkt a = nclient(f, TCP);
  const Pkt b = nclient(f, TCP, kCPort + 1);
  return nmk(name, {nodeport(f, TCP, {REMOTE})},
             {nstep("first flow takes the only port", Prog::NodeXdp, Dev::N0, a, kXdpTx,
                    snat_out(a, f.remote, f.node, kMacN0, kMacNode2), LB_STAT_FWD_REMOTE_NEW, svc, kNew),
              with_after(nstep("second flow: no port left", Prog::NodeXdp, Dev::N0, b, kXdpDrop, b,
                               LB_STAT_DROP_SNAT_PORTS),
                         [=](Fixture& fx) {
                           expect_entries(fx, f.node.v6, 2);
                           CHECK_MESSAGE(!fx.ct(key_of(b)).has_value(), "the dropped flow left a FORWARD entry");
                         })});
}

// DSR: TCP SYN (and its retransmission) carry the option, later segments do not; every UDP
// datagram carries it. No REPLY entry: the answer does not come back through this node.
Case dsr(const char* name, const NFam& f, std::uint8_t proto, Prog prog) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  const Pkt next = nclient_next(f, proto);
  std::vector<Step> steps = {
      with_after(nstep(proto == TCP ? "SYN: DNAT + DSR option" : "first datagram: DNAT + DSR option", prog, Dev::N0,
                       in, v_send(prog, true), dsr_out(in, f, f.remote, kMacNode2, true), LB_STAT_FWD_REMOTE_NEW,
                       svc, kNew),
                 [=](Fixture& fx) {
                   expect_ct(fx, key_of(in),
                             {.dir = LB_CT_FORWARD, .flags = LB_CT_F_DSR | LB_CT_F_REMOTE, .nat = f.remote,
                              .nat_port = bport(proto), .backend_id = nbid(f, proto, REMOTE), .svc_id = svc});
                   expect_entries(fx, f.node.v6, 1);
                 }),
      nstep(proto == TCP ? "later segment: no option" : "later datagram: option again", prog, Dev::N0, next,
            v_send(prog, true), dsr_out(next, f, f.remote, kMacNode2, proto == UDP), LB_STAT_FWD_REMOTE, svc, kFwd)};
  if (proto == TCP)
    steps.push_back(nstep("retransmitted SYN: option again", prog, Dev::N0, in, v_send(prog, true),
                          dsr_out(in, f, f.remote, kMacNode2, true), LB_STAT_FWD_REMOTE, svc, kFwd));
  return nmk(name, {nodeport(f, proto, {REMOTE})}, std::move(steps), snat_opts(LB_MODE_DSR));
}

// Hybrid: DSR for TCP, SNAT for UDP.
Case hybrid(const char* name, const NFam& f, Prog prog) {
  const Pkt t = nclient(f, TCP);
  const Pkt u = nclient(f, UDP);
  return nmk(name, {nodeport(f, TCP, {REMOTE}), nodeport(f, UDP, {REMOTE})},
             {nstep("TCP SYN: DSR", prog, Dev::N0, t, v_send(prog, true), dsr_out(t, f, f.remote, kMacNode2, true),
                    LB_STAT_FWD_REMOTE_NEW, nsvc(f, TCP), kNew),
              with_after(nstep("UDP: SNAT", prog, Dev::N0, u, v_send(prog, true),
                               snat_out(u, f.remote, f.node, kMacN0, kMacNode2), LB_STAT_FWD_REMOTE_NEW, nsvc(f, UDP),
                               kNew),
                         [=](Fixture& fx) {
                           const auto tf = fx.ct(key_of(t));
                           const auto uf = fx.ct(key_of(u));
                           REQUIRE(tf.has_value());
                           REQUIRE(uf.has_value());
                           CHECK_MESSAGE(tf->flags == (LB_CT_F_DSR | LB_CT_F_REMOTE | LB_CT_F_VIP_LOCAL), "TCP " << flag_str(tf->flags));
                           CHECK_MESSAGE(uf->flags == (LB_CT_F_SNAT | LB_CT_F_REMOTE | LB_CT_F_VIP_LOCAL), "UDP " << flag_str(uf->flags));
                           expect_entries(fx, f.node.v6, 3);  // TCP: FORWARD; UDP: FORWARD + REPLY
                         })},
             snat_opts(LB_MODE_HYBRID));
}

// On the backend's node: the option makes a REPLY entry (backend -> client answers from the
// service address named in the option); the packet goes on unchanged.
Case dsr_learn(const char* name, const NFam& f, std::uint8_t proto, Prog prog) {
  const Pkt plain = nclient(f, proto).to(f.local[0], bport(proto)).macs(kMacNode2, kMacN0);
  const Pkt in = with_dsr(plain, f.node2, nport(proto));
  const Pkt next = nclient_next(f, proto).to(f.local[0], bport(proto)).macs(kMacNode2, kMacN0);
  const Pkt ans = nanswer(proto, f.local[0], bport(proto), f.client, kCPort, kMacBackend, kMacHost);
  const CtKey rkey{f.local[0], f.client, bport(proto), kCPort, proto};
  const CtWant rwant{.dir = LB_CT_REPLY, .flags = LB_CT_F_DSR, .nat = f.node2, .nat_port = nport(proto),
                     .vip_local = false};
  std::vector<Step> steps = {with_after(nsame("packet with the DSR option", prog, Dev::N0, in, v_local(prog),
                                              LB_STAT_DSR_LEARNT),
                                        [=](Fixture& fx) {
                                          expect_ct(fx, rkey, rwant);
                                          expect_entries(fx, f.node.v6, 1);
                                        })};
  if (proto == TCP)
    steps.push_back(nsame("later segment without option: not ours", prog, Dev::N0, next, v_local(prog), LB_STAT_PASS));
  else
    steps.push_back(with_after(nsame("next datagram, option again", prog, Dev::N0, with_dsr(next, f.node2, nport(proto)),
                                     v_local(prog), LB_STAT_DSR_LEARNT),
                               [=](Fixture& fx) { expect_entries(fx, f.node.v6, 1); }));
  Step r = reply_step("the pod answers: from node2's NodePort", ans, ans.from(f.node2, nport(proto)), 0);
  r.delta = {};
  steps.push_back(r);
  return nmk(name, {}, std::move(steps));
}

// The backend's node is behind a gateway without neighbour entry: XDP leaves the packet to tc
// untouched, tc translates it and lets bpf_redirect_neigh() resolve.
Case neigh_unresolved(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  return nmk(name, {nodeport(f, proto, {UNRESOLVED})},
             {with_after(nsame("XDP: neighbour unresolved, left to the stack", Prog::NodeXdp, Dev::N0, in, kXdpPass,
                               LB_STAT_PASS_TO_STACK),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); }),
              with_after(nstep("tc ingress: SNAT, L2 left to redirect_neigh", Prog::NodeIngress, Dev::N0, in,
                               kTcActRedirect, in.from(f.node, kSnatPort).to(f.unresolved, bport(proto)),
                               LB_STAT_FWD_REMOTE_NEW, svc, kNew),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 2); })});
}

// externalTrafficPolicy Local: the ALL scope has node2's pod, the EXTERNAL scope this node's.
Case etp_local(const char* name, const NFam& f, std::uint8_t proto, bool has_local) {
  const std::uint32_t svc = nsvc(f, proto);
  Service all = nodeport(f, proto, {REMOTE}, LB_SVC_F_EXT_LOCAL);
  Service ext = has_local ? nodeport(f, proto, {L0}) : nodeport(f, proto, {}, LB_SVC_F_DROP_EMPTY);
  ext.scope = LB_SCOPE_EXTERNAL;
  const Pkt in = nclient(f, proto);
  Step s = has_local ? nstep("external client: this node's pod, client address kept", Prog::NodeXdp, Dev::N0, in,
                             kXdpPass, dnat(in, f.local[0]), LB_STAT_FWD_NEW, svc, kNew)
                     : nsame("external client, no local endpoint: dropped", Prog::NodeXdp, Dev::N0, in, kXdpDrop,
                             LB_STAT_DROP_NO_LOCAL_ENDPOINT);
  s = with_after(s, [=](Fixture& fx) { expect_entries(fx, f.node.v6, has_local ? 2 : 0); });
  std::vector<Step> steps = {s};
  if (!has_local)
    steps.push_back(nsame("tc ingress drops it too", Prog::NodeIngress, Dev::N0, in, kTcActShot,
                          LB_STAT_DROP_NO_LOCAL_ENDPOINT));
  return nmk(name, {all, ext}, std::move(steps));
}

// loadBalancerSourceRanges: the client's prefix under the service's id, or not.
Case source_ranges(const char* name, const NFam& f, std::uint8_t proto, bool allowed) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  Step s = allowed ? nstep("client inside a source range", Prog::NodeXdp, Dev::N0, in, kXdpPass,
                           dnat(in, f.local[0]), LB_STAT_FWD_NEW, svc, kNew)
                   : nsame("client outside every source range of the service", Prog::NodeXdp, Dev::N0, in, kXdpDrop,
                           LB_STAT_DROP_SOURCE_RANGE);
  s = with_after(s, [=](Fixture& fx) { expect_entries(fx, f.node.v6, allowed ? 2 : 0); });
  return nmk(name, {nodeport(f, proto, {L0}, LB_SVC_F_SOURCE_RANGES)}, {s}, snat_opts(), [=](Fixture& fx) {
    fx.put_src_range(svc, f.other_net, f.other_len);
    if (allowed)
      fx.put_src_range(svc, f.client_net, f.client_len);
    else
      fx.put_src_range(svc + 1000, f.client_net, f.client_len);  // another service's range
  });
}

// Maglev: the slots only hold L0; the table says L1, then (swapped) L2.
constexpr std::uint32_t kMaglevSize = 7;

Case maglev(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt a = nclient(f, proto);
  const Pkt b = nclient(f, proto, kCPort + 1);
  const Pkt a2 = nclient_next(f, proto);
  FixtureOptions o = snat_opts();
  o.maglev_size = kMaglevSize;
  return nmk(name, {nodeport(f, proto, {L0}, LB_SVC_F_MAGLEV)},
             {with_after(nstep("table full of L1", Prog::NodeXdp, Dev::N0, a, kXdpPass, dnat(a, f.local[1]),
                               LB_STAT_FWD_NEW, svc, kNew),
                         [=](Fixture& fx) {
                           expect_ct(fx, key_of(a),
                                     {.dir = LB_CT_FORWARD, .nat = f.local[1], .nat_port = bport(proto),
                                      .backend_id = nbid(f, proto, L1), .svc_id = svc});
                         }),
              with_before(nstep("new flow after the table was swapped for one full of L2", Prog::NodeXdp, Dev::N0, b,
                                kXdpPass, dnat(b, f.local[2]), LB_STAT_FWD_NEW, svc, kNew),
                          [=](Fixture& fx) {
                            fx.put_maglev(svc, std::vector<std::uint32_t>(kMaglevSize, nbid(f, proto, L2)));
                          }),
              nstep("the first flow stays with L1", Prog::NodeXdp, Dev::N0, a2, kXdpPass, dnat(a2, f.local[1]),
                    LB_STAT_FWD_ESTABLISHED, svc, kFwd)},
             o, [=](Fixture& fx) {
               fx.put_backend(nbackend(f, proto, L1), proto, svc);
               fx.put_backend(nbackend(f, proto, L2), proto, svc);
               fx.put_maglev(svc, std::vector<std::uint32_t>(kMaglevSize, nbid(f, proto, L1)));
             });
}

// A ClusterIP is not served from outside; traffic not for a service is not touched.
Case cluster_ip_untouched(const char* name, const NFam& f) {
  Service cip;
  cip.vip = f.cluster_ip;
  cip.port = 80;
  cip.proto = TCP;
  cip.svc_id = 40;
  cip.backends = {nbackend(f, TCP, L0)};
  const Pkt in = nclient(f, TCP).to(f.cluster_ip, 80);
  return nmk(name, {cip},
             {nsame("ClusterIP at XDP", Prog::NodeXdp, Dev::N0, in, kXdpPass, LB_STAT_PASS),
              with_after(nsame("ClusterIP at tc ingress", Prog::NodeIngress, Dev::N0, in, kTcActOk, LB_STAT_PASS),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); })});
}

Case not_a_service(const char* name, const NFam& f) {
  const Pkt ssh = nclient(f, TCP).to(f.node, 22);
  const Pkt dns = nclient(f, UDP).to(f.node, 53);
  return nmk(name, {nodeport(f, TCP, {REMOTE}), nodeport(f, UDP, {REMOTE})},
             {nsame("TCP to the node's port 22 at XDP", Prog::NodeXdp, Dev::N0, ssh, kXdpPass, LB_STAT_PASS),
              nsame("UDP to the node's port 53 at tc ingress", Prog::NodeIngress, Dev::N0, dns, kTcActOk, LB_STAT_PASS),
              with_after(nsame("the node's own TCP at tc egress", Prog::NodeEgress, Dev::N0,
                               ssh.from(f.node, 22).to(f.client, kCPort).macs(kMacN0, kMacNClient), kTcActOk,
                               LB_STAT_PASS),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); })});
}

// ICMP fragmentation needed / packet too big from a router about a SNATed flow's packet:
// the quote becomes the client's packet again and the error goes to the client.
Case icmp_snat(const char* name, const NFam& f, std::uint8_t proto, std::optional<std::size_t> quote_len,
               Prog prog = Prog::NodeXdp) {
  const Pkt in = nclient(f, proto);
  const Pkt sent = snat_out(in, f.remote, f.node, kMacN0, kMacNode2);
  const bool v6 = f.node.v6;
  const std::uint8_t type = v6 ? 2 : 3, code = v6 ? 0 : 4;
  const std::uint32_t info = v6 ? 1280 : 1400;  // MTU
  const Pkt err = icmp_error(f.router, f.node, type, code, info, quote_of(sent, quote_len), kMacRouter, kMacN0);
  Pkt out = err;
  out.dst = f.client;
  out.payload = quote_of(in, quote_len);
  out = out.macs(kMacN0, kMacNClient);
  Step s = nstep("ICMP error about the SNATed packet", prog, Dev::N0, err, v_send(prog, true), out, LB_STAT_ICMP_XLATE);
  s = with_after(s, [=](Fixture& fx) { expect_entries(fx, v6, 2); });
  return nmk(name, {nodeport(f, proto, {REMOTE})},
             {nstep("first packet", prog, Dev::N0, in, v_send(prog, true), sent, LB_STAT_FWD_REMOTE_NEW, nsvc(f, proto),
                    kNew),
              s});
}

// An ICMP error quoting a flow this node never translated, and an echo request: not ours.
Case icmp_unrelated(const char* name, const NFam& f) {
  const Pkt other = nclient(f, TCP).from(f.node, 45000).to(f.remote, 443).macs(kMacN0, kMacNode2);
  const Pkt err = icmp_error(f.router, f.node, f.node.v6 ? 2 : 3, f.node.v6 ? 0 : 4, f.node.v6 ? 1280 : 1400,
                             quote_of(other), kMacRouter, kMacN0);
  const Pkt echo = icmp_echo(f.client, f.node).macs(kMacNClient, kMacN0);
  return nmk(name, {nodeport(f, TCP, {REMOTE})},
             {nsame("ICMP error about a flow without conntrack", Prog::NodeXdp, Dev::N0, err, kXdpPass, LB_STAT_PASS),
              nsame("echo request to the node", Prog::NodeXdp, Dev::N0, echo, kXdpPass, LB_STAT_PASS),
              with_after(nsame("the same error at tc ingress", Prog::NodeIngress, Dev::N0, err, kTcActOk, LB_STAT_PASS),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); })});
}

// An ICMP error the node itself sends about a DNATed packet to a local pod (host or port
// unreachable): at tc egress the quote is turned back into what the client sent.
Case icmp_egress(const char* name, const NFam& f, std::uint8_t proto) {
  const Pkt in = nclient(f, proto);
  const Pkt fwd = dnat(in, f.local[0]);
  const bool v6 = f.node.v6;
  const std::uint8_t type = v6 ? 1 : 3, code = v6 ? 3 : 1;  // address / host unreachable
  const Pkt err = icmp_error(f.node, f.client, type, code, 0, quote_of(fwd), kMacN0, kMacNClient);
  Pkt out = err;
  out.payload = quote_of(in);
  return nmk(name, {nodeport(f, proto, {L0})},
             {nstep("first packet, DNAT to the local pod", Prog::NodeXdp, Dev::N0, in, kXdpPass, fwd, LB_STAT_FWD_NEW,
                    nsvc(f, proto), kNew),
              nstep("the node's ICMP error about it, at tc egress", Prog::NodeEgress, Dev::N0, err, kTcActOk, out,
                    LB_STAT_ICMP_XLATE)});
}

// A socket of this node owns node:61000 (towards any peer): the SNAT port allocator skips it.
class OwnedPort {
 public:
  OwnedPort(const IpAddr& a, std::uint16_t port, std::uint8_t proto) {
    fd_ = socket(a.v6 ? AF_INET6 : AF_INET, proto == TCP ? SOCK_STREAM : SOCK_DGRAM, 0);
    REQUIRE_MESSAGE(fd_ >= 0, "socket: " << std::strerror(errno));
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = -1;
    if (a.v6) {
      sockaddr_in6 sa{};
      sa.sin6_family = AF_INET6;
      sa.sin6_port = htons(port);
      std::memcpy(&sa.sin6_addr, a.b.data(), 16);
      rc = bind(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    } else {
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(port);
      std::memcpy(&sa.sin_addr, a.b.data(), 4);
      rc = bind(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    }
    REQUIRE_MESSAGE(rc == 0, "bind " << a.str() << ":" << port << ": " << std::strerror(errno));
    if (proto == TCP) REQUIRE_MESSAGE(listen(fd_, 1) == 0, "listen: " << std::strerror(errno));
  }
  ~OwnedPort() { close(fd_); }
  OwnedPort(const OwnedPort&) = delete;
  OwnedPort& operator=(const OwnedPort&) = delete;

 private:
  int fd_ = -1;
};

Case snat_skips_socket_port(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  auto owned = std::make_shared<std::unique_ptr<OwnedPort>>();
  FixtureOptions o = snat_opts();
  o.snat_port_max = kSnatPort + 1;
  Step s = nstep("first packet: port 61000 belongs to a local socket, 61001 is used", Prog::NodeXdp, Dev::N0, in,
                 kXdpTx, in.from(f.node, kSnatPort + 1).to(f.remote, bport(proto)).macs(kMacN0, kMacNode2),
                 LB_STAT_FWD_REMOTE_NEW, svc, kNew);
  s.before = [=](Fixture&) { *owned = std::make_unique<OwnedPort>(f.node, kSnatPort, proto); };
  s.after = [=](Fixture& fx) {
    owned->reset();
    CHECK(fx.ct(CtKey{f.remote, f.node, bport(proto), kSnatPort + 1, proto}).has_value());
    CHECK_FALSE(fx.ct(CtKey{f.remote, f.node, bport(proto), kSnatPort, proto}).has_value());
  };
  return nmk(name, {nodeport(f, proto, {REMOTE})}, {s}, o);
}

// A NodePort without endpoints: XDP leaves the refusal to tc, which answers (RST / ICMP).
Case no_endpoints(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  Step r;
  r.what = "tc ingress refuses it";
  r.prog = Prog::NodeIngress;
  r.dev = Dev::N0;
  r.in = build(in);
  r.verdict = kTcActRedirect;
  r.out = proto == TCP ? tcp_reset(in) : icmp_port_unreachable(in);
  r.stat = LB_STAT_REJECT;
  r.svc = svc;
  r.delta = SvcDelta{.rejected = 1};
  return nmk(name, {nodeport(f, proto, {})},
             {nsame("XDP leaves it to the stack", Prog::NodeXdp, Dev::N0, in, kXdpPass, LB_STAT_PASS_TO_STACK),
              with_after(r, [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); })});
}

// A hostNetwork backend (the node's own address: the FIB says "local"): DNAT only; its answer
// leaves by tc egress and is translated there.
Case host_network_backend(const char* name, const NFam& f, std::uint8_t proto, Prog prog) {
  const std::uint32_t svc = nsvc(f, proto);
  Service s = nodeport(f, proto, {});
  Backend b;
  b.id = nbid(f, proto, L0);
  b.addr = f.node;
  b.port = bport(proto);
  s.backends.push_back(b);
  const Pkt in = nclient(f, proto);
  const Pkt ans = nanswer(proto, f.node, bport(proto), f.client, kCPort, kMacN0, kMacNClient);
  return nmk(name, {s},
             {with_after(nstep("first packet: DNAT to the node's own port", prog, Dev::N0, in, v_local(prog),
                               dnat(in, f.node), LB_STAT_FWD_NEW, svc, kNew),
                         [=](Fixture& fx) {
                           expect_ct(fx, key_of(in),
                                     {.dir = LB_CT_FORWARD, .nat = f.node, .nat_port = bport(proto),
                                      .backend_id = b.id, .svc_id = svc});
                           expect_entries(fx, f.node.v6, 2);
                         }),
              nstep("the answer at tc egress: from the NodePort", Prog::NodeEgress, Dev::N0, ans, kTcActOk,
                    ans.from(f.node, nport(proto)), LB_STAT_REPLY, svc, kReply)});
}

// DSR needs room next to a bare IP header: with IPv4 options or IPv6 extension headers the
// flow falls back to SNAT (options / extension headers kept).
Case dsr_falls_back_to_snat(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  Pkt in = nclient(f, proto);
  if (f.node.v6)
    in = in.with_ext({dest_opts()});
  else
    in = in.with_options({0x94, 0x04, 0x00, 0x00});  // Router Alert
  return nmk(name, {nodeport(f, proto, {REMOTE})},
             {with_after(nstep("DSR mode, no room for the option: SNAT", Prog::NodeXdp, Dev::N0, in, kXdpTx,
                               snat_out(in, f.remote, f.node, kMacN0, kMacNode2), LB_STAT_FWD_REMOTE_NEW, svc, kNew),
                         [=](Fixture& fx) {
                           const auto fwd = fx.ct(key_of(in));
                           REQUIRE(fwd.has_value());
                           CHECK_MESSAGE(fwd->flags == (LB_CT_F_SNAT | LB_CT_F_REMOTE | LB_CT_F_VIP_LOCAL), flag_str(fwd->flags));
                           expect_entries(fx, f.node.v6, 2);
                         })},
             snat_opts(LB_MODE_DSR));
}

// What the node itself sends to a service address leaves tc egress untouched (only replies
// are translated there).
Case egress_forward_untouched(const char* name, const NFam& f) {
  const Pkt own = l4(TCP, f.node, 45000, f.node2, kTcpNPort).macs(kMacN0, kMacNode2);
  Service s = nodeport(f, TCP, {REMOTE});
  s.vip = f.node2;  // a frontend on node2's address, as an ExternalIP would be everywhere
  return nmk(name, {s},
             {with_after(nsame("the node's own SYN to a NodePort frontend", Prog::NodeEgress, Dev::N0, own, kTcActOk,
                               LB_STAT_PASS),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); })});
}

// ---- DSR flows end without the backend's FIN ---------------------------------------------

// The load-balancing node never sees the backend's FIN: a DSR FORWARD entry that saw the
// client's FIN is over 120 s after its last packet (not after the 6 h TCP timeout); one
// without a FIN stays. An expired entry is a new flow for the next packet.
Case dsr_fin_ages(const char* name, const NFam& f) {
  const std::uint32_t svc = nsvc(f, TCP);
  const Pkt open_syn = nclient(f, TCP, kCPort + 1);
  const Pkt open_next = nclient_next(f, TCP, kCPort + 1);
  const Pkt syn = nclient(f, TCP);
  Pkt fin = nclient_next(f, TCP);
  fin.tcp_flags = kFin | kAck;
  fin.payload.clear();
  const Pkt next = nclient_next(f, TCP);
  auto age = [=](Fixture& fx) {
    const std::uint64_t old = (LB_CT_TCP_FIN_S + 1) * 1'000'000'000ull;
    const std::uint64_t now = monotonic_ns();
    REQUIRE_MESSAGE(now > old, "CLOCK_MONOTONIC too small to fake an old entry");
    fx.set_ct_last_seen(key_of(syn), now - old);
    fx.set_ct_last_seen(key_of(open_syn), now - old);
  };
  return nmk(name, {nodeport(f, TCP, {REMOTE})},
             {nstep("SYN of a flow that stays open", Prog::NodeXdp, Dev::N0, open_syn, kXdpTx,
                    dsr_out(open_syn, f, f.remote, kMacNode2, true), LB_STAT_FWD_REMOTE_NEW, svc, kNew),
              nstep("SYN", Prog::NodeXdp, Dev::N0, syn, kXdpTx, dsr_out(syn, f, f.remote, kMacNode2, true),
                    LB_STAT_FWD_REMOTE_NEW, svc, kNew),
              with_after(nstep("the client's FIN", Prog::NodeXdp, Dev::N0, fin, kXdpTx, dsr_out(fin, f, f.remote, kMacNode2, false),
                               LB_STAT_FWD_REMOTE, svc, kFwd),
                         [=](Fixture& fx) {
                           const auto e = fx.ct(key_of(fin));
                           REQUIRE(e.has_value());
                           CHECK_MESSAGE((e->flags & LB_CT_F_FIN_FWD), flag_str(e->flags));
                         }),
              with_before(nstep("121 s later the open flow is still known", Prog::NodeXdp, Dev::N0, open_next, kXdpTx,
                                dsr_out(open_next, f, f.remote, kMacNode2, false), LB_STAT_FWD_REMOTE, svc, kFwd),
                          age),
              nstep("the closed one is over: its next packet is a new flow", Prog::NodeXdp, Dev::N0, next, kXdpTx,
                    dsr_out(next, f, f.remote, kMacNode2, false), LB_STAT_FWD_REMOTE_NEW, svc, kNew)},
             snat_opts(LB_MODE_DSR));
}

// ---- too big for the way out -------------------------------------------------------------

// A UDP datagram from the client whose IP datagram is l3_len bytes (n1, node3's way, has MTU 1400).
Pkt nbig(const NFam& f, std::size_t l3_len, std::uint16_t cport = kCPort) {
  Pkt p = nclient(f, UDP, cport);
  p.payload.assign(l3_len - (f.node.v6 ? 40 : 20) - 8, 0x5a);
  return p;
}

constexpr std::size_t kN1Mtu = 1400;

// "fragmentation needed" / "packet too big" from the NodePort address, as tc ingress answers.
Step too_big_answer(const Pkt& in, std::uint16_t mtu) {
  Step s = nstep("tc ingress: too big, answered with the MTU that fits", Prog::NodeIngress, Dev::N0, in,
                 kTcActRedirect, in, LB_STAT_DROP_FRAG_NEEDED);
  s.out = icmp_too_big(in, mtu);
  return s;
}

// DSR to node3's pod (out of n1, MTU 1400): a datagram that fits only without the option is
// left to tc by XDP and answered there, announcing the MTU less the option; one that fits with
// it goes out as usual. Nothing is tracked for the refused one.
Case dsr_too_big(const char* name, const NFam& f) {
  const std::uint32_t svc = nsvc(f, UDP);
  const std::size_t room = f.node.v6 ? sizeof(lb_dsr_opt6) : sizeof(lb_dsr_opt4);
  const Pkt big = nbig(f, kN1Mtu);
  const Pkt fits = nbig(f, kN1Mtu - room, kCPort + 1);
  const Pkt fits_out = with_dsr(fits.to(f.far, bport(UDP)).macs(kMacN1, kMacNode3), f.node, nport(UDP));
  return nmk(name, {nodeport(f, UDP, {FAR})},
             {nsame("XDP: too big with the option, left to tc", Prog::NodeXdp, Dev::N0, big, kXdpPass,
                    LB_STAT_PASS_TO_STACK),
              with_after(too_big_answer(big, static_cast<std::uint16_t>(kN1Mtu - room)),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); }),
              nstep("XDP: a datagram that fits with the option", Prog::NodeXdp, Dev::N0, fits, kXdpRedirect, fits_out,
                    LB_STAT_FWD_REMOTE_NEW, svc, kNew)},
             snat_opts(LB_MODE_DSR));
}

// SNAT adds nothing: the device's MTU is announced as it is.
Case snat_too_big(const char* name, const NFam& f) {
  const Pkt big = nbig(f, kN1Mtu + 50);
  return nmk(name, {nodeport(f, UDP, {FAR})},
             {nsame("XDP: too big for n1, left to tc", Prog::NodeXdp, Dev::N0, big, kXdpPass, LB_STAT_PASS_TO_STACK),
              with_after(too_big_answer(big, kN1Mtu), [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); })});
}

// IPv4 without DF may be fragmented: with DSR the client stays the source, so tc translates
// it (option included) and hands it to the stack, which fragments it; with SNAT the stack
// would drop it (a local source from outside), so it is dropped and counted.
Case no_df_too_big(const char* name, const NFam& f, bool dsr_mode) {
  const std::uint32_t svc = nsvc(f, UDP);
  // DSR: fits n1 without the option only; SNAT: does not fit at all
  Pkt big = nbig(f, dsr_mode ? kN1Mtu : kN1Mtu + 50);
  big.df = false;
  if (!dsr_mode)
    return nmk(name, {nodeport(f, UDP, {FAR})},
               {nsame("XDP: IPv4 without DF, too big after SNAT", Prog::NodeXdp, Dev::N0, big, kXdpDrop,
                      LB_STAT_DROP_TOO_BIG),
                with_after(nsame("tc ingress: the same", Prog::NodeIngress, Dev::N0, big, kTcActShot,
                                 LB_STAT_DROP_TOO_BIG),
                           [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); })});
  const Pkt out = with_dsr(big.to(f.far, bport(UDP)), f.node, nport(UDP));
  return nmk(name, {nodeport(f, UDP, {FAR})},
             {nsame("XDP: left to tc", Prog::NodeXdp, Dev::N0, big, kXdpPass, LB_STAT_PASS_TO_STACK),
              with_after(nstep("tc ingress: DNAT + option, handed to the stack to fragment", Prog::NodeIngress,
                               Dev::N0, big, kTcActOk, out, LB_STAT_FWD_REMOTE_NEW, svc, kNew),
                         [=](Fixture& fx) {
                           expect_ct(fx, key_of(big),
                                     {.dir = LB_CT_FORWARD, .flags = LB_CT_F_DSR | LB_CT_F_REMOTE, .nat = f.far,
                                      .nat_port = bport(UDP), .backend_id = nbid(f, UDP, FAR), .svc_id = nsvc(f, UDP)});
                           expect_entries(fx, f.node.v6, 1);
                         })},
             snat_opts(LB_MODE_DSR));
}

// ---- ICMP errors about answers (the client's side) ----------------------------------------

// A router on the client's side cannot forward an answer: v4 fragmentation needed, v6 packet too big.
Pkt router_too_big(const NFam& f, const Pkt& answer_sent) {
  const bool v6 = f.node.v6;
  return icmp_error(f.router, f.node, v6 ? 2 : 3, v6 ? 0 : 4, 1300, quote_of(answer_sent), kMacRouter, kMacN0);
}

// The error as the backend must see it: to the backend, quoting what the backend sent.
Pkt to_backend_err(const Pkt& err, const IpAddr& be, const Pkt& answer, Mac smac, Mac dmac) {
  Pkt o = err;
  o.dst = be;
  o.payload = quote_of(answer);
  return o.macs(smac, dmac);
}

// SNAT: node2's answer went out as node:NodePort -> client; the router's error about it goes
// back to node2's pod, quoting the answer as the pod sent it (to node:61000).
Case icmp_answer_snat(const char* name, const NFam& f, std::uint8_t proto, Prog prog) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  const Pkt ans = nanswer(proto, f.remote, bport(proto), f.node, kSnatPort, kMacNode2, kMacN0);
  const Pkt ans_out = ans.from(f.node, nport(proto)).to(f.client, kCPort).macs(kMacN0, kMacNClient);
  const Pkt err = router_too_big(f, ans_out);
  return nmk(name, {nodeport(f, proto, {REMOTE})},
             {nstep("first packet", prog, Dev::N0, in, v_send(prog, true),
                    snat_out(in, f.remote, f.node, kMacN0, kMacNode2), LB_STAT_FWD_REMOTE_NEW, svc, kNew),
              nstep("node2's answer", prog, Dev::N0, ans, v_send(prog, true), ans_out, LB_STAT_REPLY, svc, kReply),
              with_after(nstep("the router's error about the answer: to node2's pod", prog, Dev::N0, err,
                               v_send(prog, true), to_backend_err(err, f.remote, ans, kMacN0, kMacNode2),
                               LB_STAT_ICMP_XLATE),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 2); })});
}

// A local backend: its answer left as node:NodePort -> client; the error goes to the pod.
Case icmp_answer_local(const char* name, const NFam& f, std::uint8_t proto) {
  const Pkt in = nclient(f, proto);
  const Pkt ans = nanswer(proto, f.local[0], bport(proto), f.client, kCPort, kMacBackend, kMacHost);
  const Pkt err = router_too_big(f, ans.from(f.node, nport(proto)));
  return nmk(name, {nodeport(f, proto, {L0})},
             {nstep("first packet: DNAT to the local pod", Prog::NodeXdp, Dev::N0, in, kXdpPass,
                    dnat(in, f.local[0]), LB_STAT_FWD_NEW, nsvc(f, proto), kNew),
              nstep("the router's error about the pod's answer: to the pod, by the stack", Prog::NodeXdp, Dev::N0,
                    err, kXdpPass, to_backend_err(err, f.local[0], ans, kMacRouter, kMacN0), LB_STAT_ICMP_XLATE)});
}

// DSR: node2 answered the client directly from node:NodePort; an error about that answer
// reaches this node (the service address is its own) and goes on to node2's pod.
Case icmp_answer_dsr(const char* name, const NFam& f, std::uint8_t proto) {
  const Pkt in = nclient(f, proto);
  const Pkt ans = nanswer(proto, f.remote, bport(proto), f.client, kCPort, kMacNode2, kMacNClient);
  const Pkt err = router_too_big(f, ans.from(f.node, nport(proto)));
  return nmk(name, {nodeport(f, proto, {REMOTE})},
             {nstep("first packet: DSR", Prog::NodeXdp, Dev::N0, in, kXdpTx, dsr_out(in, f, f.remote, kMacNode2, true),
                    LB_STAT_FWD_REMOTE_NEW, nsvc(f, proto), kNew),
              nstep("the router's error about node2's answer: to node2's pod", Prog::NodeXdp, Dev::N0, err, kXdpTx,
                    to_backend_err(err, f.remote, ans, kMacN0, kMacNode2), LB_STAT_ICMP_XLATE)},
             snat_opts(LB_MODE_DSR));
}

// Pod devices: a backend pod refuses a client's datagram (port unreachable): the quote becomes
// what the client sent (to the NodePort), so the client's socket learns of it.
Case icmp_pod_refuses(const char* name, const NFam& f) {
  const Pkt in = nclient(f, UDP);
  const Pkt fwd = dnat(in, f.local[0]);
  const bool v6 = f.node.v6;
  const Pkt err = icmp_error(f.local[0], f.client, v6 ? 1 : 3, v6 ? 4 : 3, 0, quote_of(fwd), kMacBackend, kMacHost);
  Pkt out = err;
  out.payload = quote_of(in);
  return nmk(name, {nodeport(f, UDP, {L0})},
             {nstep("first datagram: DNAT to the local pod", Prog::NodeXdp, Dev::N0, in, kXdpPass, fwd,
                    LB_STAT_FWD_NEW, nsvc(f, UDP), kNew),
              nstep("the pod's port unreachable, at its device", Prog::PodIngress, Dev::Pod0, err, kTcActOk, out,
                    LB_STAT_ICMP_XLATE)});
}

// Pod devices, the other way: a client pod refuses an answer from the service (its socket is
// gone): the error goes to the backend, quoting the answer as the backend sent it. At tc
// egress of a native device the node's own error about an answer is left alone.
Case icmp_pod_refuses_answer(const char* name, const NFam& f) {
  const IpAddr cl = f.local[1];
  const Pkt in = l4(UDP, cl, kCPort, f.node, nport(UDP)).macs(kMacClient, kMacHost);
  const Pkt ans = nanswer(UDP, f.remote, bport(UDP), cl, kCPort, kMacNode2, kMacN0);
  const Pkt ans_in = ans.from(f.node, nport(UDP));
  const bool v6 = f.node.v6;
  const Pkt err = icmp_error(cl, f.node, v6 ? 1 : 3, v6 ? 4 : 3, 0, quote_of(ans_in), kMacClient, kMacHost);
  Pkt out = err;
  out.dst = f.remote;
  out.payload = quote_of(ans);
  const Pkt own = icmp_error(f.node, f.node2, v6 ? 1 : 3, v6 ? 4 : 3, 0, quote_of(ans_in), kMacN0, kMacNode2);
  return nmk(name, {nodeport(f, UDP, {REMOTE})},
             {nstep("a pod's datagram to the NodePort: DNAT", Prog::PodIngress, Dev::Pod0, in, kTcActOk,
                    in.to(f.remote, bport(UDP)), LB_STAT_FWD_NEW, nsvc(f, UDP), kNew),
              nstep("the pod's port unreachable about the answer: to node2's pod", Prog::PodIngress, Dev::Pod0, err,
                    kTcActOk, out, LB_STAT_ICMP_XLATE),
              nsame("the node's own error about the answer at tc egress: left alone", Prog::NodeEgress, Dev::N0,
                    own, kTcActOk, LB_STAT_PASS)});
}

// ---- found by the packet fuzzer (fuzz_test.cc) ----------------------------------------------

// An EXTERNAL master as the agent writes it: only affinity and "drop when empty" (reconcile.cc
// external_flags()); the frontend's north-south flags stay on the ALL master.
Service external_scope(const NFam& f, std::uint8_t proto, std::vector<Where> ws) {
  Service s = nodeport(f, proto, std::move(ws));
  s.flags = 0;
  s.scope = LB_SCOPE_EXTERNAL;
  return s;
}

// externalTrafficPolicy Local with source ranges: the ranges hold for traffic that picks from
// the EXTERNAL scope too (they were read from the EXTERNAL master, which never has the flag).
Case etp_local_source_ranges(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  return nmk(name,
             {nodeport(f, proto, {REMOTE}, LB_SVC_F_EXT_LOCAL | LB_SVC_F_SOURCE_RANGES),
              external_scope(f, proto, {L0})},
             {nsame("client outside the ranges at XDP", Prog::NodeXdp, Dev::N0, in, kXdpDrop,
                    LB_STAT_DROP_SOURCE_RANGE),
              with_after(nsame("and at tc ingress", Prog::NodeIngress, Dev::N0, in, kTcActShot,
                               LB_STAT_DROP_SOURCE_RANGE),
                         [=](Fixture& fx) { expect_entries(fx, f.node.v6, 0); }),
              with_before(nstep("the client's prefix added: this node's pod", Prog::NodeXdp, Dev::N0, in, kXdpPass,
                                dnat(in, f.local[0]), LB_STAT_FWD_NEW, svc, kNew),
                          [=](Fixture& fx) { fx.put_src_range(svc, f.client_net, f.client_len); })},
             snat_opts(), [=](Fixture& fx) { fx.put_src_range(svc, f.other_net, f.other_len); });
}

// externalTrafficPolicy Local with Maglev: the agent builds the table over the local endpoints
// and flags the ALL master; the datapath must use it (not a random EXTERNAL slot).
Case etp_local_maglev(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  FixtureOptions o = snat_opts();
  o.maglev_size = kMaglevSize;
  return nmk(name,
             {nodeport(f, proto, {REMOTE}, LB_SVC_F_EXT_LOCAL | LB_SVC_F_MAGLEV), external_scope(f, proto, {L0})},
             {nstep("the table's backend (L1), not the slot's (L0)", Prog::NodeXdp, Dev::N0, in, kXdpPass,
                    dnat(in, f.local[1]), LB_STAT_FWD_NEW, svc, kNew)},
             o, [=](Fixture& fx) {
               fx.put_backend(nbackend(f, proto, L1), proto, svc);
               fx.put_maglev(svc, std::vector<std::uint32_t>(kMaglevSize, nbid(f, proto, L1)));
             });
}

// An ICMP error in a frame with bytes after the IP datagram (link-layer padding): the quote
// (IP header + 8 bytes) ends before the quoted TCP/UDP checksum, so nothing past the datagram
// is rewritten and the ICMP checksum stays that of the message.
Case icmp_snat_padded(const char* name, const NFam& f, std::uint8_t proto) {
  const bool v6 = f.node.v6;
  const std::size_t quote = (v6 ? 40 : 20) + 8;
  const Pkt in = nclient(f, proto);
  const Pkt sent = snat_out(in, f.remote, f.node, kMacN0, kMacNode2);
  const Pkt err = icmp_error(f.router, f.node, v6 ? 2 : 3, v6 ? 0 : 4, v6 ? 1280 : 1400, quote_of(sent, quote),
                             kMacRouter, kMacN0);
  Pkt out = err;
  out.dst = f.client;
  out.payload = quote_of(in, quote);
  const Bytes pad = {0xa5, 0x5a, 0xa5, 0x5a, 0xa5, 0x5a, 0xa5, 0x5a, 0xa5, 0x5a, 0xa5, 0x5a};
  Step s = nstep("ICMP error about the SNATed packet, 12 bytes of padding after it", Prog::NodeXdp, Dev::N0, err,
                 kXdpTx, out.macs(kMacN0, kMacNClient), LB_STAT_ICMP_XLATE);
  s.in.insert(s.in.end(), pad.begin(), pad.end());
  s.out.insert(s.out.end(), pad.begin(), pad.end());
  return nmk(name, {nodeport(f, proto, {REMOTE})},
             {nstep("first packet", Prog::NodeXdp, Dev::N0, in, kXdpTx, sent, LB_STAT_FWD_REMOTE_NEW, nsvc(f, proto),
                    kNew),
              s});
}

// A DSR flow's packet that would carry the option but has IPv4 options / IPv6 extension
// headers: the option does not fit after the fixed header, so it goes without (the first
// packet taught the backend's node); the header stays what it was.
Case dsr_no_room(const char* name, const NFam& f, std::uint8_t proto) {
  const std::uint32_t svc = nsvc(f, proto);
  const Pkt in = nclient(f, proto);
  Pkt later = proto == TCP ? in : nclient_next(f, proto);  // a retransmitted SYN, another datagram
  later = f.node.v6 ? later.with_ext({hop_by_hop()}) : later.with_options({0x94, 0x04, 0x00, 0x00});
  return nmk(name, {nodeport(f, proto, {REMOTE})},
             {nstep("first packet: DNAT + DSR option", Prog::NodeXdp, Dev::N0, in, kXdpTx,
                    dsr_out(in, f, f.remote, kMacNode2, true), LB_STAT_FWD_REMOTE_NEW, svc, kNew),
              nstep(f.node.v6 ? "with a hop-by-hop header: DNAT, no option" : "with IP options: DNAT, no option",
                    Prog::NodeXdp, Dev::N0, later, kXdpTx, dsr_out(later, f, f.remote, kMacNode2, false),
                    LB_STAT_FWD_REMOTE, svc, kFwd)},
             snat_opts(LB_MODE_DSR));
}

// ---- the table ----------------------------------------------------------------------------

constexpr Prog XDP = Prog::NodeXdp;
constexpr Prog TCI = Prog::NodeIngress;

const std::array kCases = std::to_array<Case>({
    // NodePort to a backend on this node
    local_backend("np_lb4_tcp_local_backend_xdp", kN4, TCP, XDP),
    local_backend("np_lb4_udp_local_backend_xdp", kN4, UDP, XDP),
    local_backend("np_lb6_tcp_local_backend_xdp", kN6, TCP, XDP),
    local_backend("np_lb6_udp_local_backend_xdp", kN6, UDP, XDP),
    local_backend("np_lb4_tcp_local_backend_tc", kN4, TCP, TCI),
    local_backend("np_lb4_udp_local_backend_tc", kN4, UDP, TCI),
    local_backend("np_lb6_tcp_local_backend_tc", kN6, TCP, TCI),
    local_backend("np_lb6_udp_local_backend_tc", kN6, UDP, TCI),
    host_network_backend("np_lb4_tcp_host_network_backend_xdp", kN4, TCP, XDP),
    host_network_backend("np_lb6_udp_host_network_backend_tc", kN6, UDP, TCI),
    // without endpoints
    no_endpoints("np_lb4_tcp_no_endpoints_rst_at_tc", kN4, TCP),
    no_endpoints("np_lb6_udp_no_endpoints_icmp6_at_tc", kN6, UDP),
    // to another node, SNAT
    snat_remote("np_lb4_tcp_snat_remote_xdp", kN4, TCP, XDP),
    snat_remote("np_lb4_udp_snat_remote_xdp", kN4, UDP, XDP),
    snat_remote("np_lb6_tcp_snat_remote_xdp", kN6, TCP, XDP),
    snat_remote("np_lb6_udp_snat_remote_xdp", kN6, UDP, XDP),
    snat_remote("np_lb4_tcp_snat_remote_tc", kN4, TCP, TCI),
    snat_remote("np_lb4_udp_snat_remote_tc", kN4, UDP, TCI),
    snat_remote("np_lb6_tcp_snat_remote_tc", kN6, TCP, TCI),
    snat_remote("np_lb6_udp_snat_remote_tc", kN6, UDP, TCI),
    snat_other_device("np_lb4_tcp_snat_other_device_xdp_redirect", kN4, TCP, XDP),
    snat_other_device("np_lb6_udp_snat_other_device_xdp_redirect", kN6, UDP, XDP),
    snat_other_device("np_lb4_udp_snat_other_device_tc", kN4, UDP, TCI),
    snat_ports_exhausted("np_lb4_tcp_snat_ports_exhausted", kN4),
    snat_skips_socket_port("np_lb4_tcp_snat_skips_local_socket_port", kN4, TCP),
    snat_skips_socket_port("np_lb6_udp_snat_skips_local_socket_port", kN6, UDP),
    snat_ports_exhausted("np_lb6_tcp_snat_ports_exhausted", kN6),
    // DSR, hybrid
    dsr("np_lb4_tcp_dsr_xdp", kN4, TCP, XDP),
    dsr("np_lb4_udp_dsr_xdp", kN4, UDP, XDP),
    dsr("np_lb6_tcp_dsr_xdp", kN6, TCP, XDP),
    dsr("np_lb6_udp_dsr_xdp", kN6, UDP, XDP),
    dsr("np_lb4_tcp_dsr_tc", kN4, TCP, TCI),
    dsr("np_lb4_udp_dsr_tc", kN4, UDP, TCI),
    dsr("np_lb6_tcp_dsr_tc", kN6, TCP, TCI),
    dsr("np_lb6_udp_dsr_tc", kN6, UDP, TCI),
    hybrid("np_lb4_hybrid_tcp_dsr_udp_snat_xdp", kN4, XDP),
    hybrid("np_lb6_hybrid_tcp_dsr_udp_snat_xdp", kN6, XDP),
    hybrid("np_lb4_hybrid_tcp_dsr_udp_snat_tc", kN4, TCI),
    dsr_falls_back_to_snat("np_lb4_tcp_dsr_ip_options_falls_back_to_snat", kN4, TCP),
    dsr_falls_back_to_snat("np_lb6_udp_dsr_ext_header_falls_back_to_snat", kN6, UDP),
    // DSR learning on the backend's node
    dsr_learn("np_lb4_tcp_dsr_learn_xdp", kN4, TCP, XDP),
    dsr_learn("np_lb4_udp_dsr_learn_xdp", kN4, UDP, XDP),
    dsr_learn("np_lb6_tcp_dsr_learn_xdp", kN6, TCP, XDP),
    dsr_learn("np_lb6_udp_dsr_learn_xdp", kN6, UDP, XDP),
    dsr_learn("np_lb4_tcp_dsr_learn_tc", kN4, TCP, TCI),
    dsr_learn("np_lb6_udp_dsr_learn_tc", kN6, UDP, TCI),
    // neighbour unresolved
    neigh_unresolved("np_lb4_tcp_neigh_unresolved", kN4, TCP),
    neigh_unresolved("np_lb6_udp_neigh_unresolved", kN6, UDP),
    // externalTrafficPolicy Local
    etp_local("np_lb4_tcp_etp_local_with_local_backend", kN4, TCP, true),
    etp_local("np_lb6_udp_etp_local_with_local_backend", kN6, UDP, true),
    etp_local("np_lb4_udp_etp_local_without_local_backend", kN4, UDP, false),
    etp_local("np_lb6_tcp_etp_local_without_local_backend", kN6, TCP, false),
    // loadBalancerSourceRanges
    source_ranges("np_lb4_tcp_source_range_allowed", kN4, TCP, true),
    source_ranges("np_lb4_tcp_source_range_denied", kN4, TCP, false),
    source_ranges("np_lb6_udp_source_range_allowed", kN6, UDP, true),
    source_ranges("np_lb6_udp_source_range_denied", kN6, UDP, false),
    // Maglev
    maglev("np_lb4_tcp_maglev_table_used", kN4, TCP),
    maglev("np_lb6_udp_maglev_table_used", kN6, UDP),
    // left alone
    cluster_ip_untouched("np_lb4_cluster_ip_untouched", kN4),
    cluster_ip_untouched("np_lb6_cluster_ip_untouched", kN6),
    not_a_service("np_lb4_not_a_service_untouched", kN4),
    not_a_service("np_lb6_not_a_service_untouched", kN6),
    egress_forward_untouched("np_lb4_egress_own_traffic_untouched", kN4),
    egress_forward_untouched("np_lb6_egress_own_traffic_untouched", kN6),
    // ICMP errors
    icmp_snat("np_lb4_tcp_icmp_frag_needed_snat_xdp", kN4, TCP, std::nullopt),
    icmp_snat("np_lb4_udp_icmp_frag_needed_snat_xdp", kN4, UDP, std::nullopt),
    icmp_snat("np_lb4_tcp_icmp_frag_needed_short_quote_xdp", kN4, TCP, 28),
    icmp_snat("np_lb6_tcp_icmp6_packet_too_big_snat_xdp", kN6, TCP, std::nullopt),
    icmp_snat("np_lb6_udp_icmp6_packet_too_big_snat_xdp", kN6, UDP, std::nullopt),
    icmp_snat("np_lb4_tcp_icmp_frag_needed_snat_tc", kN4, TCP, std::nullopt, TCI),
    icmp_snat("np_lb6_udp_icmp6_packet_too_big_snat_tc", kN6, UDP, std::nullopt, TCI),
    icmp_unrelated("np_lb4_icmp_unrelated_untouched", kN4),
    icmp_unrelated("np_lb6_icmp6_unrelated_untouched", kN6),
    icmp_egress("np_lb4_tcp_icmp_host_unreachable_egress", kN4, TCP),
    icmp_egress("np_lb4_udp_icmp_host_unreachable_egress", kN4, UDP),
    icmp_egress("np_lb6_tcp_icmp6_addr_unreachable_egress", kN6, TCP),
    icmp_egress("np_lb6_udp_icmp6_addr_unreachable_egress", kN6, UDP),
    icmp_answer_snat("np_lb4_tcp_icmp_about_answer_snat_xdp", kN4, TCP, XDP),
    icmp_answer_snat("np_lb6_udp_icmp6_about_answer_snat_xdp", kN6, UDP, XDP),
    icmp_answer_snat("np_lb4_udp_icmp_about_answer_snat_tc", kN4, UDP, TCI),
    icmp_answer_snat("np_lb6_tcp_icmp6_about_answer_snat_tc", kN6, TCP, TCI),
    icmp_answer_local("np_lb4_tcp_icmp_about_answer_local_backend", kN4, TCP),
    icmp_answer_local("np_lb6_udp_icmp6_about_answer_local_backend", kN6, UDP),
    icmp_answer_dsr("np_lb4_tcp_icmp_about_answer_dsr", kN4, TCP),
    icmp_answer_dsr("np_lb6_tcp_icmp6_about_answer_dsr", kN6, TCP),
    icmp_pod_refuses("np_lb4_udp_icmp_port_unreachable_from_pod", kN4),
    icmp_pod_refuses("np_lb6_udp_icmp6_port_unreachable_from_pod", kN6),
    icmp_pod_refuses_answer("np_lb4_udp_icmp_client_pod_refuses_answer", kN4),
    icmp_pod_refuses_answer("np_lb6_udp_icmp6_client_pod_refuses_answer", kN6),
    dsr_fin_ages("np_lb4_tcp_dsr_entry_ends_after_client_fin", kN4),
    dsr_fin_ages("np_lb6_tcp_dsr_entry_ends_after_client_fin", kN6),
    // too big for the way out
    dsr_too_big("np_lb4_udp_dsr_too_big_frag_needed", kN4),
    dsr_too_big("np_lb6_udp_dsr_too_big_packet_too_big", kN6),
    snat_too_big("np_lb4_udp_snat_too_big_frag_needed", kN4),
    snat_too_big("np_lb6_udp_snat_too_big_packet_too_big", kN6),
    no_df_too_big("np_lb4_udp_no_df_too_big_dsr_stack_fragments", kN4, true),
    no_df_too_big("np_lb4_udp_no_df_too_big_snat_dropped", kN4, false),
    // found by the packet fuzzer
    etp_local_source_ranges("np_lb4_tcp_etp_local_source_ranges", kN4, TCP),
    etp_local_source_ranges("np_lb6_udp_etp_local_source_ranges", kN6, UDP),
    etp_local_maglev("np_lb4_udp_etp_local_maglev_table_used", kN4, UDP),
    etp_local_maglev("np_lb6_tcp_etp_local_maglev_table_used", kN6, TCP),
    icmp_snat_padded("np_lb4_tcp_icmp_frag_needed_padded_frame", kN4, TCP),
    icmp_snat_padded("np_lb6_tcp_icmp6_packet_too_big_padded_frame", kN6, TCP),
    dsr_no_room("np_lb4_udp_dsr_later_datagram_with_ip_options", kN4, UDP),
    dsr_no_room("np_lb4_tcp_dsr_syn_retransmit_with_ip_options", kN4, TCP),
    dsr_no_room("np_lb6_udp_dsr_later_datagram_with_ext_header", kN6, UDP),
});

[[maybe_unused]] const int kRegistered = register_table<kCases>(__FILE__);

}  // namespace
