// Packet fuzzing: every program (lb_pod_ingress, lb_node_xdp, lb_node_ingress, lb_node_egress)
// through BPF_PROG_TEST_RUN with random frames, valid packets of a realistic service set, the
// answers and ICMP errors that what the datapath sent would draw, and structure-aware mutations of
// all of them (fuzz_gen.h), in the test network namespace, once per --lb-mode. After every run:
//   1. the kernel ran it (it refuses frames shorter than Ethernet: then nothing may move);
//   2. exactly one verdict counter moved, by one packet and the output's length;
//   3. the verdict is one the program returns and agrees with that counter;
//   4. a pass verdict left the frame byte-identical;
//   5. a packet that is not for a service, matches no conntrack entry and is not an ICMP error
//      about one passed byte-identical (the test's own reading of the frame decides, not the
//      datapath's);
//   6. the per-service counters moved as the verdict says, for one service the maps hold;
//   7. a translated frame (forward, reply, ICMP error, RST or unreachable answer) has valid
//      checksums when the input had (the independent verifier of packet.cc);
//   8. a forwarded frame goes to a backend of the service whose counters moved, and for a new
//      flow that is the service of the packet's own destination, served at that hook; from
//      outside, an eTP Local frontend's local backends only, and a source-ranges frontend's
//      clients in range only; a new source is a node address (SNAT) or the frontend (hairpin);
//      a DSR option names the frontend;
//   9. a reply leaves from its frontend; a refusal goes back to the sender; a rerouted ICMP
//      error goes to a backend or a client conntrack knows.
// Deterministic: SLUICE_FUZZ_SEED or --seed=N (default below), SLUICE_FUZZ_RUNS or --runs=N (per
// mode); SLUICE_FUZZ_SECONDS (per mode, default below) stops a run early on a slow machine, and
// says so. A longer local run: bpf_tests -tc='fuzz_*' --runs=1000000 (SLUICE_FUZZ_SECONDS=0 for
// no time bound). The datapath's
// own random choices (backend, SNAT port) are not seeded, so a failure prints the runs since the
// last clean state (conntrack, affinity, fragments flushed) as replay lines; run them again with
// SLUICE_FUZZ_REPLAY=FILE bpf_tests -tc='fuzz_*'. SLUICE_FUZZ_KEEP_GOING=1 reports every failure.
#include <doctest/doctest.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "agent/datapath/map_access.h"
#include "cases.h"
#include "fuzz_gen.h"

using namespace bpftest;
using namespace bpftest::fuzz;

namespace {

constexpr std::uint64_t kDefaultSeed = 0x5eed51ce;
constexpr std::uint64_t kDefaultRuns = 12000;
constexpr std::uint64_t kDefaultSeconds = 18;  // per mode: three modes stay under a minute in CI
constexpr std::size_t kEpisode = 64;  // runs between flushes of the flow state

std::uint64_t env_u64(const char* name, std::uint64_t dflt) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0' ? dflt : std::strtoull(v, nullptr, 0);
}

// ---- counters --------------------------------------------------------------------------------

struct Counters {
  std::vector<lb_stat_value> stat;      // LB_STATS_SLOTS, summed over CPUs
  std::vector<lb_svc_stat_value> svc;   // 0..max svc id
};

// Elements 0..n-1 of a per-CPU array, summed over CPUs: one batched lookup.
template <typename Value>
std::vector<Value> read_percpu(int fd, std::uint32_t n) {
  const auto ncpu = static_cast<std::size_t>(libbpf_num_possible_cpus());
  const std::size_t stride = (sizeof(Value) + 7) / 8 * 8;
  std::vector<std::uint32_t> keys(n);
  std::vector<std::uint8_t> vals(n * ncpu * stride);
  std::uint32_t count = n, out_batch = 0;
  LIBBPF_OPTS(bpf_map_batch_opts, opts);
  std::vector<Value> sum(n);
  const int rc = bpf_map_lookup_batch(fd, nullptr, &out_batch, keys.data(), vals.data(), &count, &opts);
  if ((rc == 0 || errno == ENOENT) && count == n) {
    for (std::uint32_t i = 0; i < n; ++i)
      for (std::size_t c = 0; c < ncpu; ++c) {
        Value v{};
        std::memcpy(&v, vals.data() + (i * ncpu + c) * stride, sizeof(Value));
        sluice::accumulate(sum[keys[i]], v);
      }
    return sum;
  }
  for (std::uint32_t i = 0; i < n; ++i) REQUIRE(sluice::percpu_sum(fd, i, sum[i]));
  return sum;
}

Counters read_counters(const Fixture& fx, const World& w) {
  return {read_percpu<lb_stat_value>(bpf_map__fd(fx.skel()->maps.lb_stats_v3), LB_STATS_SLOTS),
          read_percpu<lb_svc_stat_value>(bpf_map__fd(fx.skel()->maps.lb_svc_stats_v1), w.max_svc_id + 1)};
}

const char* const kStatNames[] = LB_STAT_NAMES_INIT;

std::string stat_str(std::size_t s) {
  return s < LB_STAT_MAX && kStatNames[s] != nullptr ? kStatNames[s] : "stat#" + std::to_string(s);
}

// ---- conntrack as it is ----------------------------------------------------------------------

struct CtSnap {
  std::vector<std::pair<IpAddr, IpAddr>> pairs;  // (saddr, daddr) of every key
  std::vector<IpAddr> addrs;                     // every address in keys and values
};

IpAddr addr_of(const void* p, bool v6) {
  IpAddr a;
  a.v6 = v6;
  std::memcpy(a.b.data(), p, a.size());
  return a;
}

CtSnap ct_snapshot(const Fixture& fx) {
  CtSnap s;
  auto add = [&](const IpAddr& a) {
    if (std::find(s.addrs.begin(), s.addrs.end(), a) == s.addrs.end()) s.addrs.push_back(a);
  };
  sluice::for_each_entry_batched<lb4_ct_key, lb4_ct_value>(
      bpf_map__fd(fx.skel()->maps.lb4_ct_v2), [&](const lb4_ct_key& k, const lb4_ct_value& v) {
        s.pairs.emplace_back(addr_of(&k.saddr, false), addr_of(&k.daddr, false));
        for (const void* p : {static_cast<const void*>(&k.saddr), static_cast<const void*>(&k.daddr),
                              static_cast<const void*>(&v.nat_addr), static_cast<const void*>(&v.snat_addr)})
          add(addr_of(p, false));
      });
  sluice::for_each_entry_batched<lb6_ct_key, lb6_ct_value>(
      bpf_map__fd(fx.skel()->maps.lb6_ct_v2), [&](const lb6_ct_key& k, const lb6_ct_value& v) {
        s.pairs.emplace_back(addr_of(k.saddr, true), addr_of(k.daddr, true));
        for (const void* p : {static_cast<const void*>(k.saddr), static_cast<const void*>(k.daddr),
                              static_cast<const void*>(v.nat_addr), static_cast<const void*>(v.snat_addr)})
          add(addr_of(p, true));
      });
  return s;
}

// Whether the bytes of `a` appear in f at or after `from`.
bool contains(const Bytes& f, std::size_t from, const IpAddr& a) {
  if (from >= f.size()) return false;
  return std::search(f.begin() + static_cast<long>(from), f.end(), a.b.begin(),
                     a.b.begin() + static_cast<long>(a.size())) != f.end();
}

// ---- property 5: what must pass untouched ----------------------------------------------------

struct Expect {
  bool untouched = false;
  std::string why;
};

bool external(Prog p) { return p == Prog::NodeXdp || p == Prog::NodeIngress; }

Expect oracle(const World& w, const Fixture& fx, Prog prog, const Bytes& in) {
  const View v = view(in);
  if (!v.ip) return {true, "no IPv4/IPv6 header"};
  if (!v.chain_ok) return {true, "the IP header or extension chain runs past the frame"};
  const std::size_t inner = 14 + (v.v6 ? 40 : 20);
  if (v.icmp() && !v.later) {
    // An ICMP error is sluice's only if it quotes a flow conntrack holds.
    for (const IpAddr& a : ct_snapshot(fx).addrs)
      if (contains(in, inner, a)) return {false, "ICMP quoting an address conntrack holds"};
    return {true, "ICMP, quoting no address conntrack holds"};
  }
  if (!v.tcp_or_udp()) return {true, "protocol " + std::to_string(v.proto) + " (or a later ICMP fragment)"};
  if (v.l4_ok) {
    const Front* f = w.front_of(v.dst, v.dport, v.proto);
    if (f != nullptr && prog == Prog::PodIngress) return {false, "for " + f->what};
    if (f != nullptr && external(prog) && f->external()) return {false, "for " + f->what};
    if (fx.ct(CtKey{v.src, v.dst, v.sport, v.dport, v.proto})) return {false, "its tuple is in conntrack"};
    return {true, f != nullptr ? "for " + f->what + ", not served at " + prog_name(prog)
                               : "not a service tuple, not in conntrack"};
  }
  // A later fragment or a cut L4 header: judged by addresses alone.
  if (w.is_vip(v.dst)) return {false, "a fragment or cut header to a service address"};
  const CtSnap ct = ct_snapshot(fx);
  if (std::find(ct.pairs.begin(), ct.pairs.end(), std::pair{v.src, v.dst}) != ct.pairs.end())
    return {false, "a fragment or cut header between the addresses of a conntrack entry"};
  return {true, "a fragment or cut header, no service address, no conntrack entry"};
}

// ---- the properties ----------------------------------------------------------------------------

bool pass_stat(std::size_t s) {
  return s == LB_STAT_PASS || s == LB_STAT_PASS_FRAG_UNKNOWN || s == LB_STAT_PASS_MALFORMED ||
         s == LB_STAT_PASS_ROUTING_HDR || s == LB_STAT_PASS_TO_STACK || s == LB_STAT_DSR_LEARNT;
}

bool fwd_stat(std::size_t s) {
  return s == LB_STAT_FWD_NEW || s == LB_STAT_FWD_ESTABLISHED || s == LB_STAT_FWD_REMOTE_NEW ||
         s == LB_STAT_FWD_REMOTE;
}

// What each program may count (bpf/sluice.bpf.c: lb_pod_ingress never sends to another node,
// XDP never answers, tc egress translates only replies and ICMP errors).
bool stat_allowed(Prog prog, std::size_t s) {
  switch (prog) {
    case Prog::PodIngress:
      return s != LB_STAT_FWD_REMOTE_NEW && s != LB_STAT_FWD_REMOTE && s != LB_STAT_DSR_LEARNT &&
             s != LB_STAT_PASS_TO_STACK && s != LB_STAT_DROP_SNAT_PORTS && s != LB_STAT_DROP_FRAG_NEEDED &&
             s != LB_STAT_DROP_TOO_BIG;
    case Prog::NodeXdp:
      return s != LB_STAT_REJECT && s != LB_STAT_DROP_FRAG_NEEDED && s != LB_STAT_DROP_ICMP_FAILED;
    case Prog::NodeIngress: return true;
    case Prog::NodeEgress:
      return pass_stat(s) ? s != LB_STAT_PASS_TO_STACK && s != LB_STAT_DSR_LEARNT
                          : s == LB_STAT_REPLY || s == LB_STAT_ICMP_XLATE || s == LB_STAT_DROP_UDP6_ZERO_CSUM ||
                                s == LB_STAT_DROP_REWRITE;
  }
  return false;
}

bool verdict_allowed(Prog prog, std::size_t s, std::uint32_t v) {
  const bool drop = s >= LB_STAT_DROP_FIRST;
  switch (prog) {
    case Prog::PodIngress:
      if (s == LB_STAT_REJECT) return v == kTcActRedirect;
      return drop ? v == kTcActShot : v == kTcActOk || v == kTcActRedirect;
    case Prog::NodeXdp: return drop ? v == kXdpDrop : v == kXdpPass || v == kXdpTx || v == kXdpRedirect;
    case Prog::NodeIngress:
      if (s == LB_STAT_REJECT || s == LB_STAT_DROP_FRAG_NEEDED) return v == kTcActRedirect;
      return drop ? v == kTcActShot : v == kTcActOk || v == kTcActRedirect;
    case Prog::NodeEgress: return drop ? v == kTcActShot : v == kTcActOk;
  }
  return false;
}

bool pass_verdict(Prog prog, std::uint32_t v) { return prog == Prog::NodeXdp ? v == kXdpPass : v == kTcActOk; }

std::string addr_port(const IpAddr& a, std::optional<std::uint16_t> port) {
  return a.str() + (port ? ":" + std::to_string(*port) : "");
}

struct Outcome {
  std::size_t stat = LB_STATS_SLOTS;  // the counter that moved (LB_STATS_SLOTS: none or several)
  std::vector<std::string> errors;
};

Outcome check(const World& w, const Fixture& fx, const Shot& s, const RunResult& r, const Counters& c0,
              const Counters& c1, const Expect& e) {
  Outcome o;
  auto fail = [&](std::string m) { o.errors.push_back(std::move(m)); };
  // 1. The kernel ran it, unless it refuses the frame before any program runs: shorter than an
  // Ethernet header, or (skb programs) an IPv4/IPv6 ethertype without the fixed IP header.
  const std::uint16_t type = s.in.size() >= 14 ? static_cast<std::uint16_t>(s.in[12] << 8 | s.in[13]) : 0;
  const bool refused = s.in.size() < 14 || (s.prog != Prog::NodeXdp && ((type == 0x0800 && s.in.size() < 14 + 20) ||
                                                                          (type == 0x86dd && s.in.size() < 14 + 40)));
  if (refused) {
    if (r.err != -EINVAL) fail("a frame of " + std::to_string(s.in.size()) + " bytes was not refused with EINVAL");
    for (std::size_t i = 0; i < c0.stat.size(); ++i)
      if (c0.stat[i].packets != c1.stat[i].packets) fail("counters moved for a frame the kernel refused");
    return o;
  }
  if (r.err != 0) {
    fail("BPF_PROG_TEST_RUN failed: " + std::string(std::strerror(-r.err)));
    return o;
  }
  // 2. Exactly one verdict counter, by one packet and the output's length.
  for (std::size_t i = 0; i < c0.stat.size(); ++i) {
    const std::uint64_t dp = c1.stat[i].packets - c0.stat[i].packets, db = c1.stat[i].bytes - c0.stat[i].bytes;
    if (dp == 0 && db == 0) continue;
    if (o.stat != LB_STATS_SLOTS) fail("a second counter moved: " + stat_str(i));
    o.stat = i;
    if (dp != 1) fail(stat_str(i) + " moved by " + std::to_string(dp) + " packets");
    if (db != r.out.size())
      fail(stat_str(i) + " moved by " + std::to_string(db) + " bytes, the output has " + std::to_string(r.out.size()));
  }
  if (o.stat == LB_STATS_SLOTS) {
    fail("no verdict counter moved");
    return o;
  }
  const std::size_t st = o.stat;
  if (st >= LB_STAT_MAX) fail("counter " + std::to_string(st) + " is past enum lb_stat");
  // 3. A verdict the program returns, agreeing with the counter.
  if (!stat_allowed(s.prog, st)) fail(prog_name(s.prog) + " never counts " + stat_str(st));
  if (!verdict_allowed(s.prog, st, r.retval))
    fail("verdict " + std::to_string(r.retval) + " does not go with " + stat_str(st) + " at " + prog_name(s.prog));
  if (s.prog == Prog::NodeXdp) {
    const bool marked = r.meta.size() == sizeof(kXdpDoneMark) &&
                        std::memcmp(r.meta.data(), &kXdpDoneMark, sizeof(kXdpDoneMark)) == 0;
    if (marked != (r.retval == kXdpPass && st != LB_STAT_PASS_TO_STACK))
      fail(std::string("XDP 'handled' mark ") + (marked ? "on" : "missing on") + " a frame counted " + stat_str(st));
  }
  // 4. and 5. What passes is untouched; what is not sluice's passes.
  if (pass_stat(st)) {
    if (!pass_verdict(s.prog, r.retval)) fail(stat_str(st) + " without a pass verdict");
    if (r.out != s.in) fail(stat_str(st) + " but the frame changed:\n" + hex_diff(s.in, r.out));
  }
  if (e.untouched && !pass_stat(st)) fail("not sluice's (" + e.why + ") but counted " + stat_str(st));

  // 6. Per-service counters.
  std::vector<std::pair<std::uint32_t, lb_svc_stat_value>> moved;
  for (std::uint32_t id = 0; id < c1.svc.size(); ++id) {
    const lb_svc_stat_value& a = c0.svc[id];
    const lb_svc_stat_value& b = c1.svc[id];
    const lb_svc_stat_value d{b.fwd_packets - a.fwd_packets, b.fwd_bytes - a.fwd_bytes,
                              b.reply_packets - a.reply_packets, b.reply_bytes - a.reply_bytes,
                              b.new_flows - a.new_flows, b.rejected - a.rejected};
    constexpr lb_svc_stat_value zero{};
    if (std::memcmp(&d, &zero, sizeof(d)) != 0) moved.emplace_back(id, d);
  }
  const std::uint64_t len = r.out.size();
  lb_svc_stat_value want{};
  bool one = true;
  if (st == LB_STAT_FWD_NEW || st == LB_STAT_FWD_REMOTE_NEW) want = {1, len, 0, 0, 1, 0};
  else if (st == LB_STAT_FWD_ESTABLISHED || st == LB_STAT_FWD_REMOTE) want = {1, len, 0, 0, 0, 0};
  else if (st == LB_STAT_REJECT) want = {0, 0, 0, 0, 0, 1};
  else if (st == LB_STAT_REPLY) want = {0, 0, 1, len, 0, 0};
  else one = false;
  const Front* svc = nullptr;
  if (!one || (st == LB_STAT_REPLY && moved.empty())) {
    if (!moved.empty()) fail("service " + std::to_string(moved[0].first) + "'s counters moved on " + stat_str(st));
  } else if (moved.size() != 1) {
    fail(std::to_string(moved.size()) + " services' counters moved on " + stat_str(st));
  } else if (std::memcmp(&moved[0].second, &want, sizeof(want)) != 0) {
    fail("service " + std::to_string(moved[0].first) + "'s counters moved unlike " + stat_str(st) + " says");
  } else if ((svc = w.by_id(moved[0].first)) == nullptr) {
    fail("counters of service id " + std::to_string(moved[0].first) + ", which the maps do not hold");
  }

  // 7. Checksums of what was translated.
  const View iv = view(s.in), ov = view(r.out);
  const bool answered = st == LB_STAT_REJECT || (st == LB_STAT_DROP_FRAG_NEEDED && r.retval == kTcActRedirect);
  if (fwd_stat(st) || st == LB_STAT_REPLY || st == LB_STAT_ICMP_XLATE || answered) {
    const bool rst = st == LB_STAT_REJECT && iv.proto == kProtoTcp;
    if (rst || verify_checksums(s.in).ok()) {
      const CsumReport rep = verify_checksums(r.out);
      if (!rep.ok()) fail(stat_str(st) + " output fails the checksum verifier: " + rep.str());
    }
    if (!ov.ip || ov.v6 != iv.v6) fail(stat_str(st) + " output is no IP packet of the input's family");
  }
  if (!ov.ip || !iv.ip) return o;

  // 8. Where forwarded frames go.
  const std::optional<std::uint16_t> oport =
      ov.l4_ok && ov.tcp_or_udp() ? std::optional<std::uint16_t>(ov.dport) : std::nullopt;
  if (fwd_stat(st) && svc != nullptr) {
    if (!svc->backend(ov.dst, oport))
      fail("forwarded to " + addr_port(ov.dst, oport) + ", not a backend of " + svc->what);
    const bool fresh = st == LB_STAT_FWD_NEW || st == LB_STAT_FWD_REMOTE_NEW;
    if (fresh && iv.l4_ok && iv.tcp_or_udp() && w.front_of(iv.dst, iv.dport, iv.proto) != svc)
      fail("a new flow of " + svc->what + " from a packet to " + addr_port(iv.dst, iv.dport));
    if (fresh && external(s.prog)) {
      if (!svc->external()) fail("a new flow of " + svc->what + " from outside the node");
      if ((svc->all.flags & LB_SVC_F_EXT_LOCAL) && !svc->ext_backend(ov.dst, oport))
        fail("externalTrafficPolicy Local: a new flow from outside went to " + addr_port(ov.dst, oport) + " (" +
             svc->what + ")");
    }
    if (fresh && (svc->all.flags & LB_SVC_F_SOURCE_RANGES) && !svc->in_ranges(iv.src))
      fail("source ranges: a new flow of " + svc->what + " from " + iv.src.str() + ", outside them");
    if (ov.src != iv.src && !w.is_node(ov.src) && ov.src != svc->all.vip)
      fail("forwarded with source " + ov.src.str() + ": neither the client, a node address nor the frontend");
    const auto dsr_in = dsr_option_of(s.in), dsr_out = dsr_option_of(r.out);
    if (dsr_out && !dsr_in && (dsr_out->first != svc->all.vip || dsr_out->second != svc->all.port))
      fail("DSR option names " + addr_port(dsr_out->first, dsr_out->second) + ", not " + svc->what);
  }
  // 9. Replies, refusals, ICMP errors.
  if (st == LB_STAT_REPLY && svc != nullptr) {
    const std::optional<std::uint16_t> sport =
        ov.l4_ok && ov.tcp_or_udp() ? std::optional<std::uint16_t>(ov.sport) : std::nullopt;
    if (ov.src != svc->all.vip || (sport && *sport != svc->all.port))
      fail("a reply of " + svc->what + " from " + addr_port(ov.src, sport));
  }
  if (answered && (ov.src != iv.dst || ov.dst != iv.src))
    fail(stat_str(st) + ": the answer goes " + ov.src.str() + " -> " + ov.dst.str() + ", not back to the sender");
  if (st == LB_STAT_REJECT && svc != nullptr && !svc->all.backends.empty())
    fail("refused a new flow of " + svc->what + ", which has backends");
  if (st == LB_STAT_ICMP_XLATE && ov.dst != iv.dst) {
    bool known = false;
    for (const Front& f : w.fronts) known = known || f.backend(ov.dst, std::nullopt);
    const CtSnap ct = ct_snapshot(fx);
    known = known || std::find(ct.addrs.begin(), ct.addrs.end(), ov.dst) != ct.addrs.end();
    if (!known) fail("an ICMP error rerouted to " + ov.dst.str() + ", neither a backend nor a known client");
  }
  return o;
}

// ---- runs and replay ---------------------------------------------------------------------------

std::string replay_line(const std::string& mode, const Shot& s) {
  std::string h;
  char buf[3];
  for (std::uint8_t b : s.in) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    h += buf;
  }
  return mode + " " + prog_name(s.prog) + " " + dev_name(s.dev) + " " + h;
}

std::optional<Shot> parse_replay(const std::string& line, const std::string& mode) {
  std::istringstream in(line);
  std::string m, prog, dev, h;
  if (!(in >> m >> prog >> dev) || m != mode) return std::nullopt;
  in >> h;
  Shot s;
  s.how = "replay";
  for (Prog p : {Prog::PodIngress, Prog::NodeXdp, Prog::NodeIngress, Prog::NodeEgress})
    if (prog_name(p) == prog) s.prog = p;
  for (Dev d : {Dev::None, Dev::N0, Dev::N1, Dev::Pod0})
    if (dev_name(d) == dev) s.dev = d;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    s.in.push_back(static_cast<std::uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
  return s;
}

bool require_net() {
  if (test_net().ok) return true;
  const char* req = std::getenv("SLUICE_BPF_REQUIRE_NETNS");
  if (req != nullptr && std::string(req) == "1") FAIL("cannot create the test network namespace: " << test_net().why);
  MESSAGE("SKIPPED: cannot create the test network namespace: " << test_net().why);
  return false;
}

// The (program, counter) pairs a mode's runs must reach: a generator that stopped reaching the
// datapath's paths would otherwise pass while testing nothing.
std::vector<std::pair<Prog, std::size_t>> must_reach(std::uint32_t lb_mode) {
  std::vector<std::pair<Prog, std::size_t>> v = {
      {Prog::PodIngress, LB_STAT_FWD_NEW},        {Prog::PodIngress, LB_STAT_FWD_ESTABLISHED},
      {Prog::PodIngress, LB_STAT_REPLY},          {Prog::PodIngress, LB_STAT_REJECT},
      {Prog::PodIngress, LB_STAT_ICMP_XLATE},     {Prog::PodIngress, LB_STAT_PASS_MALFORMED},
      {Prog::NodeXdp, LB_STAT_FWD_NEW},           {Prog::NodeXdp, LB_STAT_FWD_REMOTE_NEW},
      {Prog::NodeXdp, LB_STAT_FWD_REMOTE},        {Prog::NodeXdp, LB_STAT_DSR_LEARNT},
      {Prog::NodeXdp, LB_STAT_ICMP_XLATE},        {Prog::NodeXdp, LB_STAT_PASS_TO_STACK},
      {Prog::NodeXdp, LB_STAT_DROP_SOURCE_RANGE}, {Prog::NodeXdp, LB_STAT_DROP_NO_LOCAL_ENDPOINT},
      {Prog::NodeIngress, LB_STAT_FWD_NEW},       {Prog::NodeIngress, LB_STAT_FWD_REMOTE_NEW},
      {Prog::NodeIngress, LB_STAT_REJECT},        {Prog::NodeIngress, LB_STAT_ICMP_XLATE},
      {Prog::NodeEgress, LB_STAT_REPLY},          {Prog::NodeEgress, LB_STAT_PASS},
  };
  if (lb_mode != LB_MODE_DSR) v.emplace_back(Prog::NodeXdp, LB_STAT_REPLY);
  return v;
}

void fuzz_mode(const std::string& mode, std::uint32_t lb_mode) {
  if (!require_net()) return;
  const std::uint64_t seed = env_u64("SLUICE_FUZZ_SEED", kDefaultSeed);
  const std::uint64_t runs = env_u64("SLUICE_FUZZ_RUNS", kDefaultRuns);
  const bool keep_going = env_u64("SLUICE_FUZZ_KEEP_GOING", 0) != 0;
  const std::uint64_t max_secs = env_u64("SLUICE_FUZZ_SECONDS", kDefaultSeconds);
  std::vector<Shot> replay;
  if (const char* file = std::getenv("SLUICE_FUZZ_REPLAY"); file != nullptr && *file != '\0') {
    std::ifstream f(file);
    REQUIRE_MESSAGE(f.good(), "cannot read " << file);
    for (std::string line; std::getline(f, line);)
      if (auto s = parse_replay(line, mode)) replay.push_back(*s);
    if (replay.empty()) return;
  }

  const World w = make_world();
  FixtureOptions opts;
  opts.lb_mode = lb_mode;
  opts.maglev_size = kMaglevSize;
  Fixture fx(opts);
  w.install(fx);
  Generator gen(w, seed ^ std::hash<std::string>{}(mode));
  const std::uint64_t total = replay.empty() ? runs : replay.size();
  MESSAGE("packet fuzzing, --lb-mode " << mode << ": seed " << seed << " (--seed / SLUICE_FUZZ_SEED), " << total
                                       << std::string(replay.empty() ? " runs" : " runs replayed"));

  std::map<std::pair<Prog, std::size_t>, std::uint64_t> reached;
  std::vector<std::string> episode;
  std::size_t failures = 0, untouched = 0;
  Counters before = read_counters(fx, w);
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t done = 0;
  for (std::uint64_t i = 0; i < total; ++i, done = i) {
    if (replay.empty() && max_secs != 0 && i % kEpisode == 0 &&
        std::chrono::steady_clock::now() - t0 > std::chrono::seconds(max_secs))
      break;
    if (replay.empty() && i % kEpisode == 0) {
      fx.clear_flows();
      gen.forget();
      episode.clear();
    }
    const Shot s = replay.empty() ? gen.next() : replay[i];
    const Expect e = oracle(w, fx, s.prog, s.in);
    const RunResult r = fx.run(s.prog, s.in, s.dev == Dev::None ? 0 : test_net().ifindex(s.dev));
    Counters after = read_counters(fx, w);
    episode.push_back(replay_line(mode, s));
    const Outcome o = check(w, fx, s, r, before, after, e);
    untouched += e.untouched;
    if (!o.errors.empty()) {
      ++failures;
      std::ostringstream m;
      m << "packet fuzzing, --lb-mode " << mode << ", seed " << seed << ", run " << i << ": " << prog_name(s.prog)
        << " on " << dev_name(s.dev) << ", " << s.how << "; verdict " << r.retval << ", counted "
        << (o.stat < LB_STATS_SLOTS ? stat_str(o.stat) : "?") << "; oracle: " << e.why << "\n";
      for (const std::string& err : o.errors) m << "  - " << err << "\n";
      m << "in:\n" << hex(s.in) << "\nout:\n" << hex(r.out) << "\nreplay (SLUICE_FUZZ_REPLAY=FILE, from a clean state):\n";
      for (const std::string& line : episode) m << line << "\n";
      FAIL_CHECK(m.str());
      if (!keep_going || failures >= 50) break;
    }
    if (o.stat < LB_STATS_SLOTS) ++reached[{s.prog, o.stat}];
    if (fwd_stat(o.stat) || o.stat == LB_STAT_REPLY)
      gen.sent({.prog = s.prog, .dev = s.dev, .in = s.desc, .out = r.out});
    before = std::move(after);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ostringstream sum;
  sum << "packet fuzzing, --lb-mode " << mode << ": " << done << " runs in " << secs << " s, " << untouched
      << " judged not sluice's by the test; verdicts:";
  for (const auto& [k, n] : reached) sum << " " << prog_name(k.first) << "/" << stat_str(k.second) << "=" << n;
  MESSAGE(sum.str());
  if (!replay.empty() || failures != 0) return;
  if (done < total) {
    // A slow machine: the paths reached depend on how far the seeded sequence got.
    MESSAGE("stopped after " << max_secs << " s (SLUICE_FUZZ_SECONDS), " << done << " of " << total
                             << " runs: coverage of the verdicts not checked");
    return;
  }
  for (const auto& k : must_reach(lb_mode))
    CHECK_MESSAGE(reached.contains(k), "no run reached " << stat_str(k.second) << " at " << prog_name(k.first));
}

}  // namespace

TEST_CASE("fuzz_packets_snat") { fuzz_mode("snat", LB_MODE_SNAT); }
TEST_CASE("fuzz_packets_dsr") { fuzz_mode("dsr", LB_MODE_DSR); }
TEST_CASE("fuzz_packets_hybrid") { fuzz_mode("hybrid", LB_MODE_HYBRID); }
