#include "cases.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace bpftest {

namespace {

// Our own names (not the ABI's table) so messages stay readable even if the ABI's drift.
std::string stat_name(std::size_t i) {
  switch (i) {
    case LB_STAT_PASS: return "PASS";
    case LB_STAT_FWD_NEW: return "FWD_NEW";
    case LB_STAT_FWD_ESTABLISHED: return "FWD_ESTABLISHED";
    case LB_STAT_REPLY: return "REPLY";
    case LB_STAT_REJECT: return "REJECT";
    case LB_STAT_PASS_FRAG_UNKNOWN: return "PASS_FRAG_UNKNOWN";
    case LB_STAT_PASS_MALFORMED: return "PASS_MALFORMED";
    case LB_STAT_PASS_ROUTING_HDR: return "PASS_ROUTING_HDR";
    case LB_STAT_DROP_NO_BACKEND: return "DROP_NO_BACKEND";
    case LB_STAT_DROP_CT_INSERT: return "DROP_CT_INSERT";
    case LB_STAT_DROP_REWRITE: return "DROP_REWRITE";
    case LB_STAT_DROP_UDP6_ZERO_CSUM: return "DROP_UDP6_ZERO_CSUM";
    case LB_STAT_DROP_ICMP_FAILED: return "DROP_ICMP_FAILED";
    case LB_STAT_DROP_NO_LOCAL_ENDPOINT: return "DROP_NO_LOCAL_ENDPOINT";
    case LB_STAT_FWD_REMOTE_NEW: return "FWD_REMOTE_NEW";
    case LB_STAT_FWD_REMOTE: return "FWD_REMOTE";
    case LB_STAT_DSR_LEARNT: return "DSR_LEARNT";
    case LB_STAT_ICMP_XLATE: return "ICMP_XLATE";
    case LB_STAT_PASS_TO_STACK: return "PASS_TO_STACK";
    case LB_STAT_DROP_SOURCE_RANGE: return "DROP_SOURCE_RANGE";
    case LB_STAT_DROP_SNAT_PORTS: return "DROP_SNAT_PORTS";
    case LB_STAT_DROP_FIB: return "DROP_FIB";
    default: return "?";
  }
}

std::string verdict_name(Prog prog, std::uint32_t v) {
  if (prog == Prog::NodeXdp) {
    switch (v) {
      case kXdpAborted: return "XDP_ABORTED(0)";
      case kXdpDrop: return "XDP_DROP(1)";
      case kXdpPass: return "XDP_PASS(2)";
      case kXdpTx: return "XDP_TX(3)";
      case kXdpRedirect: return "XDP_REDIRECT(4)";
      default: return "verdict(" + std::to_string(v) + ")";
    }
  }
  switch (v) {
    case kTcActOk: return "TC_ACT_OK(0)";
    case kTcActShot: return "TC_ACT_SHOT(2)";
    case kTcActRedirect: return "TC_ACT_REDIRECT(7)";
    default: return "verdict(" + std::to_string(v) + ")";
  }
}

std::uint32_t test_net_ifindex(Dev d) {
  if (d == Dev::None) return 0;
  const TestNet& n = test_net();
  REQUIRE_MESSAGE(n.ok, "test network namespace: " << n.why);
  return n.ifindex(d);
}

std::size_t differing_bytes(const Bytes& a, const Bytes& b) {
  std::size_t n = std::max(a.size(), b.size()) - std::min(a.size(), b.size());
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += a[i] != b[i];
  return n;
}

}  // namespace

Backend backend(const Fam& f, std::uint8_t proto, int i) {
  Backend b;
  b.id = backend_id(f, proto, i);
  b.addr = f.be[i];
  b.port = bport(proto);
  return b;
}

Service service(const Fam& f, std::uint8_t proto, std::vector<int> backend_idx, std::uint16_t flags,
                std::uint32_t affinity_timeout) {
  Service s{.vip = f.vip,
            .port = vport(proto),
            .proto = proto,
            .svc_id = svc_id(f, proto),
            .backends = {},
            .flags = flags,
            .affinity_timeout = affinity_timeout,
            .count = std::nullopt};
  for (int i : backend_idx) s.backends.push_back(backend(f, proto, i));
  return s;
}

// Non-default TTL/hop limit, TOS/traffic class, DF, id and flow label: the datapath must
// leave them all as they are.
Pkt client_pkt(const Fam& f, std::uint8_t proto, std::uint16_t cport) {
  Pkt p = l4(proto, f.client, cport, f.vip, vport(proto));
  p.ttl = 61;
  p.tos = 0x28;
  p.df = true;
  p.ip_id = 0x1c46;
  p.hop_limit = 61;
  p.tclass = 0x28;
  p.flow_label = 0x12345;
  return p;
}

Pkt to_backend(const Pkt& p, const Fam& f, int i) { return p.to(f.be[i], bport(p.proto)); }

Pkt client_next(const Fam& f, std::uint8_t proto, std::uint16_t cport) {
  Pkt p = client_pkt(f, proto, cport);
  if (proto == kProtoTcp) {
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

Pkt answer_pkt(std::uint8_t proto, IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport, Mac smac,
               Mac dmac) {
  Pkt p = l4(proto, src, sport, dst, dport).macs(smac, dmac);
  p.ttl = 62;
  p.tos = 0x10;
  p.df = true;
  p.ip_id = 0x7a11;
  p.hop_limit = 62;
  p.tclass = 0x10;
  p.flow_label = 0xabcde;
  if (proto == kProtoTcp) {
    p.tcp_flags = kSyn | kAck;
    p.seq = 7000;
    p.ack_seq = 1001;
  } else {
    p.payload = {'a', 'n', 's', 'w', 'e', 'r', '!'};
  }
  return p;
}

Pkt reply_pkt(const Fam& f, std::uint8_t proto, int i, std::uint16_t cport) {
  return answer_pkt(proto, f.be[i], bport(proto), f.client, cport, kMacBackend, kMacHost);
}

Pkt from_vip(const Pkt& reply, const Fam& f) { return reply.from(f.vip, vport(reply.proto)); }

Pkt with_dsr(Pkt p, const IpAddr& vip, std::uint16_t vport) {
  const std::uint8_t hi = static_cast<std::uint8_t>(vport >> 8), lo = static_cast<std::uint8_t>(vport);
  if (!vip.v6) {
    p.ip_options = {LB_DSR_OPT4_TYPE, 8, hi, lo, vip.b[0], vip.b[1], vip.b[2], vip.b[3]};
    return p;
  }
  Ext6 e;
  e.kind = Ext6::DestOpts;
  e.opts = {LB_DSR_OPT6_TYPE, 18};
  e.opts.insert(e.opts.end(), vip.b.begin(), vip.b.end());
  e.opts.insert(e.opts.end(), {hi, lo, 0, 0});  // port, then Pad1 Pad1
  p.ext = {e};
  return p;
}

Pkt icmp_error(const IpAddr& src, const IpAddr& dst, std::uint8_t type, std::uint8_t code, std::uint32_t info,
               Bytes quote, Mac smac, Mac dmac) {
  Pkt p = l4(src.v6 ? kProtoIcmp6 : kProtoIcmp, src, static_cast<std::uint16_t>(info >> 16), dst,
             static_cast<std::uint16_t>(info))
              .macs(smac, dmac);
  p.icmp_type = type;
  p.icmp_code = code;
  p.payload = std::move(quote);
  p.ttl = 63;
  p.hop_limit = 63;
  return p;
}

Case mk(const char* name, std::vector<Service> services, std::vector<Step> steps,
        std::function<void(Fixture&, const std::vector<Bytes>&)> body) {
  Case c;
  c.name = name;
  c.services = std::move(services);
  c.steps = std::move(steps);
  c.body = std::move(body);
  return c;
}

Step with_before(Step s, std::function<void(Fixture&)> before) {
  s.before = std::move(before);
  return s;
}

Step with_after(Step s, std::function<void(Fixture&)> after) {
  s.after = std::move(after);
  return s;
}

Step pass_step(std::string what, Bytes in, lb_stat stat, CsumExpect csum) {
  Step s;
  s.what = std::move(what);
  s.in = in;
  s.verdict = kTcActOk;
  s.out = std::move(in);
  s.stat = stat;
  s.csum = csum;
  return s;
}

Step fwd_new_step(std::string what, const Pkt& in, const Pkt& out, std::uint32_t svc) {
  Step s;
  s.what = std::move(what);
  s.in = build(in);
  s.out = build(out);
  s.stat = LB_STAT_FWD_NEW;
  s.svc = svc;
  s.delta = SvcDelta{.fwd_packets = 1, .new_flows = 1};
  return s;
}

Step fwd_est_step(std::string what, const Pkt& in, const Pkt& out, std::uint32_t svc) {
  Step s;
  s.what = std::move(what);
  s.in = build(in);
  s.out = build(out);
  s.stat = LB_STAT_FWD_ESTABLISHED;
  s.svc = svc;
  s.delta = SvcDelta{.fwd_packets = 1};
  return s;
}

Step reply_step(std::string what, const Pkt& in, const Pkt& out, std::uint32_t svc) {
  Step s;
  s.what = std::move(what);
  s.in = build(in);
  s.out = build(out);
  s.stat = LB_STAT_REPLY;
  s.svc = svc;
  s.delta = SvcDelta{.reply_packets = 1};
  return s;
}

Step reject_step(std::string what, const Pkt& in, std::uint32_t svc) {
  Step s;
  s.what = std::move(what);
  s.in = build(in);
  s.verdict = kTcActRedirect;
  s.out = in.proto == kProtoTcp ? tcp_reset(in) : icmp_port_unreachable(in);
  s.stat = LB_STAT_REJECT;
  s.svc = svc;
  s.delta = SvcDelta{.rejected = 1};
  return s;
}

Bytes run_step(Fixture& fx, const Step& s, const std::vector<std::uint32_t>& svcs) {
  INFO("step: " << s.what);
  if (s.before) s.before(fx);
  const StatArray st0 = fx.stats();
  std::vector<lb_svc_stat_value> sv0;
  for (std::uint32_t id : svcs) sv0.push_back(fx.svc_stats(id));

  const std::uint32_t ifindex = test_net_ifindex(s.dev);
  const RunResult r = fx.run(s.prog, s.in, ifindex);

  if (s.expect_err != 0) {
    CHECK_MESSAGE(r.err == s.expect_err, "BPF_PROG_TEST_RUN returned " << r.err << " ("
                                             << std::string(std::strerror(r.err < 0 ? -r.err : r.err)) << "), expected "
                                             << s.expect_err);
    CHECK_MESSAGE(fx.stats() == st0, "counters moved although the program never ran");
    return {};
  }
  if (s.tolerated_err != 0 && r.err == s.tolerated_err) {
    MESSAGE("kernel refused the input with " << r.err << " before the program ran (" << s.what << ")");
    CHECK_MESSAGE(fx.stats() == st0, "counters moved although the program never ran");
    return {};
  }
  REQUIRE_MESSAGE(r.err == 0, "BPF_PROG_TEST_RUN failed: " << std::string(std::strerror(-r.err)));

  CHECK_MESSAGE(r.retval == s.verdict,
                "verdict " << verdict_name(s.prog, r.retval) << ", expected " << verdict_name(s.prog, s.verdict));
  if (s.prog == Prog::NodeXdp) {
    // A frame XDP handled and passes up is marked so tc ingress skips it; one left for tc is not.
    const bool marked = r.meta.size() == sizeof(kXdpDoneMark) &&
                        std::memcmp(r.meta.data(), &kXdpDoneMark, sizeof(kXdpDoneMark)) == 0;
    const bool want = r.retval == kXdpPass && s.stat != LB_STAT_PASS_TO_STACK;
    CHECK_MESSAGE(marked == want, "XDP metadata mark " << std::string(marked ? "present" : "absent") << " (" << r.meta.size()
                                                       << " bytes), expected " << std::string(want ? "present" : "absent"));
  }

  if (!s.out_any.empty()) {
    const auto best = std::min_element(s.out_any.begin(), s.out_any.end(), [&](const Bytes& a, const Bytes& b) {
      return differing_bytes(a, r.out) < differing_bytes(b, r.out);
    });
    CHECK_MESSAGE(*best == r.out, "output is none of the " << s.out_any.size()
                                                           << " allowed packets; closest:\n"
                                                           << hex_diff(*best, r.out));
  } else {
    CHECK_MESSAGE(r.out == s.out, "output differs from the expected packet:\n" << hex_diff(s.out, r.out));
  }

  if (s.csum != CsumExpect::Skip) {
    const CsumReport rep = verify_checksums(r.out);
    if (s.csum == CsumExpect::Valid)
      CHECK_MESSAGE(rep.ok(), "checksum verifier rejects the output: " << rep.str());
    else
      CHECK_MESSAGE(!rep.ok(), "checksum verifier accepts an output that must be invalid: " << rep.str());
  }

  const StatArray st1 = fx.stats();
  std::ostringstream sm;
  bool stats_ok = true;
  for (std::size_t i = 0; i < LB_STAT_MAX; ++i) {
    const std::uint64_t want = st0[i] + (i == static_cast<std::size_t>(s.stat) ? 1 : 0);
    if (st1[i] != want) {
      stats_ok = false;
      sm << " " << stat_name(i) << " moved by " << static_cast<std::int64_t>(st1[i] - st0[i])
         << " (expected " << static_cast<std::int64_t>(want - st0[i]) << ");";
    }
  }
  CHECK_MESSAGE(stats_ok, "lb_stats_v3 (expected only " << stat_name(s.stat) << " +1):" << sm.str());

  for (std::size_t k = 0; k < svcs.size(); ++k) {
    const lb_svc_stat_value now = fx.svc_stats(svcs[k]);
    const SvcDelta want = svcs[k] == s.svc ? s.delta : SvcDelta{};
    const SvcDelta got{.fwd_packets = now.fwd_packets - sv0[k].fwd_packets,
                       .reply_packets = now.reply_packets - sv0[k].reply_packets,
                       .new_flows = now.new_flows - sv0[k].new_flows,
                       .rejected = now.rejected - sv0[k].rejected};
    CHECK_MESSAGE((got.fwd_packets == want.fwd_packets && got.reply_packets == want.reply_packets &&
                   got.new_flows == want.new_flows && got.rejected == want.rejected),
                  "lb_svc_stats_v1[" << svcs[k] << "] moved by fwd_packets " << got.fwd_packets
                                     << " reply_packets " << got.reply_packets << " new_flows "
                                     << got.new_flows << " rejected " << got.rejected << "; expected "
                                     << want.fwd_packets << "/" << want.reply_packets << "/"
                                     << want.new_flows << "/" << want.rejected);
  }

  if (s.after) s.after(fx);
  return r.out;
}

void run_case(const Case& c) {
  if (c.needs_net && !test_net().ok) {
    // Without a namespace of our own there is no FIB to ask. CI (root) sets
    // SLUICE_BPF_REQUIRE_NETNS=1 so that a broken set-up fails instead of skipping.
    const char* req = std::getenv("SLUICE_BPF_REQUIRE_NETNS");
    if (req != nullptr && std::string(req) == "1")
      FAIL("cannot create the test network namespace: " << test_net().why);
    MESSAGE("SKIPPED " << c.name << ": cannot create the test network namespace: " << test_net().why);
    return;
  }
  Fixture fx(c.opts);
  if (c.setup) c.setup(fx);
  std::vector<std::uint32_t> svcs;
  for (const Service& s : c.services) {
    fx.add_service(s);
    if (std::find(svcs.begin(), svcs.end(), s.svc_id) == svcs.end()) svcs.push_back(s.svc_id);
  }
  std::vector<Bytes> outs;
  for (const Step& s : c.steps) outs.push_back(run_step(fx, s, svcs));
  if (c.body) c.body(fx, outs);
}

void check_ct_pair(Fixture& fx, const Pkt& in, const Pkt& out, std::uint32_t backend, std::uint32_t svc) {
  const std::uint64_t now = monotonic_ns();
  const auto fwd = fx.ct(CtKey{in.src, in.dst, in.sport, in.dport, in.proto});
  REQUIRE_MESSAGE(fwd.has_value(), "no FORWARD conntrack entry keyed by the original tuple "
                                       << in.src.str() << ":" << in.sport << " -> " << in.dst.str() << ":"
                                       << in.dport);
  CHECK(fwd->dir == LB_CT_FORWARD);
  CHECK_MESSAGE(fwd->nat_addr == out.dst, "FORWARD nat_addr " << fwd->nat_addr.str() << " expected " << out.dst.str());
  CHECK(fwd->nat_port == out.dport);
  CHECK(fwd->backend_id == backend);
  CHECK(fwd->svc_id == svc);
  CHECK(fwd->created_ns > 0);
  CHECK(fwd->created_ns <= now);

  const auto rep = fx.ct(CtKey{out.dst, out.src, out.dport, out.sport, in.proto});
  REQUIRE_MESSAGE(rep.has_value(), "no REPLY conntrack entry keyed by "
                                       << out.dst.str() << ":" << out.dport << " -> " << out.src.str() << ":"
                                       << out.sport);
  CHECK(rep->dir == LB_CT_REPLY);
  CHECK_MESSAGE(rep->nat_addr == in.dst, "REPLY nat_addr " << rep->nat_addr.str() << " expected " << in.dst.str());
  CHECK(rep->nat_port == in.dport);
  CHECK(rep->svc_id == svc);
}

}  // namespace bpftest
