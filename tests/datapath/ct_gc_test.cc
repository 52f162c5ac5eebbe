// Conntrack GC and kube-proxy's UDP cleanup on real maps: flows are created by running packets
// through lb_pod_ingress (BPF_PROG_TEST_RUN), services are programmed by the map writer, then
// ct_sweep runs and the test checks exactly which entries remain. Time is moved forward by
// passing `now` to the sweep, never by sleeping.
#include "agent/datapath/ct_gc.h"

#include <doctest/doctest.h>
#include <time.h>

#include <optional>
#include <set>

#include "agent/datapath/datapath.h"
#include "agent/datapath/map_writer.h"
#include "helpers.h"
#include "packet.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

using dptest::temp_bpffs;
using dptest::v4;
using dptest::v6;

constexpr uint64_t k_sec = 1'000'000'000ull;
constexpr uint32_t k_tc_act_ok = 0;
constexpr uint32_t k_tc_act_shot = 2;
constexpr uint32_t k_tc_act_redirect = 7;

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * k_sec + static_cast<uint64_t>(ts.tv_nsec);
}

bpftest::IpAddr pkt_addr(const ip_addr& a) {
  bpftest::IpAddr p;
  p.v6 = a.family == ip_family::v6;
  p.b = a.bytes;
  return p;
}

// A loaded datapath on a private bpffs with a writer whose mirror is restored.
struct node {
  temp_bpffs fs;
  std::optional<datapath> dp;
  std::optional<map_writer> w;

  node() {
    REQUIRE(ensure_bpffs(fs.root()));
    auto d = datapath::load(fs.root());
    REQUIRE(d);
    dp.emplace(std::move(*d));
    w.emplace(dp->skel());
    REQUIRE(w->restore());
  }
  ~node() {
    w.reset();
    dp.reset();
    (void)cleanup(fs.root());
  }

  void sync(const desired_state& d) {
    const auto rep = w->sync(d);
    REQUIRE(rep.failed_ops == 0);
    REQUIRE(rep.errors.empty());
  }

  // client:cport -> vip:vport; returns the verdict and the packet as it left.
  dptest::run_result send(uint8_t proto, const ip_addr& client, uint16_t cport, const ip_addr& vip,
                          uint16_t vport, uint8_t tcp_flags = bpftest::kSyn) {
    auto p = bpftest::l4(proto, pkt_addr(client), cport, pkt_addr(vip), vport);
    if (proto == IPPROTO_TCP) {
      p = p.flags(tcp_flags);
    } else {
      p = p.with_payload({'q', 'u', 'e', 'r', 'y'});
    }
    return dptest::run_packet(dp->pod_ingress_fd(), bpftest::build(p));
  }

  size_t ct_entries(bool six = false) {
    auto n =
        count_entries(bpf_map__fd(six ? dp->skel()->maps.lb6_ct_v2 : dp->skel()->maps.lb4_ct_v2));
    REQUIRE(n);
    return *n;
  }

  size_t affinity_entries() {
    auto n = count_entries(bpf_map__fd(dp->skel()->maps.lb4_affinity_v1));
    REQUIRE(n);
    return *n;
  }

  ct_sweep_counts sweep(uint64_t at = 0) {
    auto c = ct_sweep(dp->skel(), w->mirror(), at);
    REQUIRE(c);
    CHECK(c->complete);
    return *c;
  }

  std::optional<lb4_ct_value> ct4(const ip_addr& s, uint16_t sp, const ip_addr& d, uint16_t dp_,
                                  uint8_t proto) {
    lb4_ct_key k{};
    std::memcpy(&k.saddr, s.bytes.data(), 4);
    std::memcpy(&k.daddr, d.bytes.data(), 4);
    k.sport = htons(sp);
    k.dport = htons(dp_);
    k.proto = proto;
    lb4_ct_value v{};
    if (bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb4_ct_v2), &k, &v) != 0) {
      return std::nullopt;
    }
    return v;
  }

  void put_ct4(const lb4_ct_key& k, const lb4_ct_value& v) {
    REQUIRE(bpf_map_update_elem(bpf_map__fd(dp->skel()->maps.lb4_ct_v2), &k, &v, BPF_ANY) == 0);
  }
};

// The packet went to this backend address (IPv4 destination at offset 14 + 16).
bool sent_to(const dptest::run_result& r, const ip_addr& be) {
  return r.verdict == k_tc_act_ok && r.out.size() >= 34 &&
         std::memcmp(&r.out[30], be.bytes.data(), 4) == 0;
}

const ip_addr k_client = v4("10.0.0.2");
const ip_addr k_udp_vip = v4("10.96.0.53");
const ip_addr k_tcp_vip = v4("10.96.0.80");
const ip_addr k_be_a = v4("10.244.0.1");
const ip_addr k_be_b = v4("10.244.0.2");

desired_frontend udp_fe(std::vector<desired_backend> bs) {
  desired_frontend f{
      .vip = k_udp_vip, .port = 53, .proto = IPPROTO_UDP, .name = "kube-system/dns:dns"};
  f.backends = std::move(bs);
  return f;
}

desired_frontend tcp_fe(std::vector<desired_backend> bs) {
  desired_frontend f{
      .vip = k_tcp_vip, .port = 80, .proto = IPPROTO_TCP, .name = "default/web:http"};
  f.affinity_timeout_s = 60;
  f.backends = std::move(bs);
  return f;
}

desired_state both(std::vector<desired_backend> bs) { return {{udp_fe(bs), tcp_fe(bs)}}; }

TEST_CASE("ct_sweep: a removed backend's UDP flows go at once, TCP flows drain, affinity goes") {
  node n;
  n.sync(both({{k_be_a, 8080, false}}));
  REQUIRE(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_be_a));
  REQUIRE(sent_to(n.send(IPPROTO_TCP, k_client, 40001, k_tcp_vip, 80), k_be_a));
  REQUIRE(n.ct_entries() == 4);
  REQUIRE(n.affinity_entries() == 1);

  // Nothing is stale or old yet.
  auto c = n.sweep();
  CHECK(c.scanned == 5);
  CHECK(c.expired == 0);
  CHECK(c.udp_stale == 0);
  CHECK(c.affinity_stale == 0);
  CHECK(c.affinity_expired == 0);

  n.sync(both({{k_be_b, 8080, false}}));  // A removed
  c = n.sweep();
  CHECK(c.scanned == 5);
  CHECK(c.udp_stale == 2);
  CHECK(c.affinity_stale == 1);
  CHECK(c.expired == 0);
  CHECK(n.ct_entries() == 2);
  CHECK(n.affinity_entries() == 0);
  CHECK_FALSE(n.ct4(k_client, 40000, k_udp_vip, 53, IPPROTO_UDP));
  CHECK_FALSE(n.ct4(k_be_a, 8080, k_client, 40000, IPPROTO_UDP));
  // The TCP flow keeps its backend, both ways.
  const auto fwd = n.ct4(k_client, 40001, k_tcp_vip, 80, IPPROTO_TCP);
  REQUIRE(fwd);
  CHECK(std::memcmp(&fwd->nat_addr, k_be_a.bytes.data(), 4) == 0);
  CHECK(n.ct4(k_be_a, 8080, k_client, 40001, IPPROTO_TCP));
  CHECK(sent_to(n.send(IPPROTO_TCP, k_client, 40001, k_tcp_vip, 80, bpftest::kAck), k_be_a));
  // The UDP sender's next datagram is balanced again, onto B.
  CHECK(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_be_b));
  CHECK(n.ct_entries() == 4);
}

TEST_CASE("ct_sweep: a terminating backend that still serves keeps its UDP and TCP flows") {
  node n;
  n.sync(both({{k_be_a, 8080, false}}));
  REQUIRE(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_be_a));
  REQUIRE(sent_to(n.send(IPPROTO_TCP, k_client, 40001, k_tcp_vip, 80), k_be_a));
  n.sync(both({{k_be_a, 8080, true}}));
  const auto c = n.sweep();
  CHECK(c.udp_stale == 0);
  CHECK(c.affinity_stale == 0);
  CHECK(c.expired == 0);
  CHECK(n.ct_entries() == 4);
  CHECK(n.affinity_entries() == 1);
}

TEST_CASE("ct_sweep: a removed service's UDP flows go, its TCP flows stay until they end") {
  node n;
  n.sync(both({{k_be_a, 8080, false}}));
  REQUIRE(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_be_a));
  REQUIRE(sent_to(n.send(IPPROTO_TCP, k_client, 40001, k_tcp_vip, 80), k_be_a));
  n.sync(desired_state{});
  const auto c = n.sweep();
  CHECK(c.udp_stale == 2);
  CHECK(c.affinity_stale == 1);
  CHECK(n.ct_entries() == 2);
  CHECK(n.ct4(k_client, 40001, k_tcp_vip, 80, IPPROTO_TCP));
}

TEST_CASE("ct_sweep: a UDP hairpin flow (client is the backend) is removed whole") {
  node n;
  n.sync(both({{k_client, 8080, false}}));
  REQUIRE(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_client));
  REQUIRE(n.ct_entries() == 2);
  // The REPLY entry is keyed backend:8080 -> VIP:40000 (the client hides behind the VIP).
  REQUIRE(n.ct4(k_client, 8080, k_udp_vip, 40000, IPPROTO_UDP));
  n.sync(both({{k_be_b, 8080, false}}));
  const auto c = n.sweep();
  CHECK(c.udp_stale == 2);
  CHECK(n.ct_entries() == 0);
}

TEST_CASE("ct_sweep: no state survives a service going from 0 to N endpoints") {
  node n;
  desired_frontend dropped = udp_fe({});
  dropped.vip = v4("10.96.0.54");
  dropped.when_empty = empty_verdict::drop;
  n.sync(desired_state{{udp_fe({}), dropped}});
  // REJECT (ICMP port unreachable, sent back out) and DROP: neither leaves conntrack state.
  CHECK(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53).verdict == k_tc_act_redirect);
  CHECK(n.send(IPPROTO_UDP, k_client, 40000, dropped.vip, 53).verdict == k_tc_act_shot);
  CHECK(n.ct_entries() == 0);
  CHECK(n.sweep().scanned == 0);

  dropped.backends = {{k_be_b, 8080, false}};
  n.sync(desired_state{{udp_fe({{k_be_a, 8080, false}}), dropped}});
  // The very next datagram of the same sockets reaches the new endpoints.
  CHECK(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_be_a));
  CHECK(sent_to(n.send(IPPROTO_UDP, k_client, 40000, dropped.vip, 53), k_be_b));
  const auto c = n.sweep();
  CHECK(c.scanned == 4);
  CHECK(c.udp_stale + c.expired == 0);
  CHECK(n.ct_entries() == 4);
}

TEST_CASE("ct_sweep: expiry follows the datapath's rules, per flow") {
  node n;
  n.sync(both({{k_be_a, 8080, false}}));
  const uint64_t t0 = now_ns();
  REQUIRE(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_be_a));
  REQUIRE(sent_to(n.send(IPPROTO_TCP, k_client, 40001, k_tcp_vip, 80), k_be_a));
  // A TCP flow that ended with a RST from the client: 10 s close timeout.
  REQUIRE(sent_to(n.send(IPPROTO_TCP, k_client, 40002, k_tcp_vip, 80), k_be_a));
  REQUIRE(sent_to(
      n.send(IPPROTO_TCP, k_client, 40002, k_tcp_vip, 80, bpftest::kRst | bpftest::kAck), k_be_a));
  REQUIRE(n.ct_entries() == 6);

  // 5 s later: nothing.
  auto c = n.sweep(t0 + 5 * k_sec);
  CHECK(c.expired == 0);
  CHECK(n.ct_entries() == 6);
  // 12 s: the reset flow (both entries).
  c = n.sweep(t0 + 12 * k_sec);
  CHECK(c.expired == 2);
  CHECK_FALSE(n.ct4(k_client, 40002, k_tcp_vip, 80, IPPROTO_TCP));
  CHECK_FALSE(n.ct4(k_be_a, 8080, k_client, 40002, IPPROTO_TCP));
  // 125 s: the UDP flow (120 s); the established TCP flow stays (6 h).
  c = n.sweep(t0 + 125 * k_sec);
  CHECK(c.expired == 2);
  CHECK(n.ct_entries() == 2);
  CHECK(n.ct4(k_client, 40001, k_tcp_vip, 80, IPPROTO_TCP));
  // 6 h + 5 s: the established TCP flow as well. The affinity entry (60 s) went long before.
  c = n.sweep(t0 + (LB_CT_TCP_TIMEOUT_S + 5) * k_sec);
  CHECK(c.expired == 2);
  CHECK(n.ct_entries() == 0);
}

TEST_CASE("ct_sweep: one fresh direction keeps the whole flow; orphan entries expire alone") {
  node n;
  n.sync(both({{k_be_a, 8080, false}}));
  const uint64_t t0 = now_ns();
  REQUIRE(sent_to(n.send(IPPROTO_UDP, k_client, 40000, k_udp_vip, 53), k_be_a));
  // A one-way sender: 200 s later its FORWARD entry is fresh, the REPLY entry is not.
  const uint64_t later = t0 + 200 * k_sec;
  auto fwd = n.ct4(k_client, 40000, k_udp_vip, 53, IPPROTO_UDP);
  REQUIRE(fwd);
  lb4_ct_key fk{};
  std::memcpy(&fk.saddr, k_client.bytes.data(), 4);
  std::memcpy(&fk.daddr, k_udp_vip.bytes.data(), 4);
  fk.sport = htons(40000);
  fk.dport = htons(53);
  fk.proto = IPPROTO_UDP;
  fwd->state.last_seen_ns = later - k_sec;
  n.put_ct4(fk, *fwd);
  auto c = n.sweep(later);
  CHECK(c.expired == 0);
  CHECK(n.ct_entries() == 2);
  // Once the sender stops too, the flow goes whole.
  c = n.sweep(later + 121 * k_sec);
  CHECK(c.expired == 2);
  CHECK(n.ct_entries() == 0);

  // A REPLY entry whose FORWARD entry the LRU evicted: it expires on its own.
  lb4_ct_key rk{};
  std::memcpy(&rk.saddr, k_be_a.bytes.data(), 4);
  std::memcpy(&rk.daddr, k_client.bytes.data(), 4);
  rk.sport = htons(8080);
  rk.dport = htons(41000);
  rk.proto = IPPROTO_TCP;
  lb4_ct_value rv{};
  rv.state.dir = LB_CT_REPLY;
  rv.state.nat_port = htons(80);
  rv.state.backend_id = n.w->mirror().frontends.at({k_tcp_vip, 80, IPPROTO_TCP}).slots[0];
  rv.state.svc_id = n.w->mirror().frontends.at({k_tcp_vip, 80, IPPROTO_TCP}).svc_id;
  rv.state.created_ns = t0;
  rv.state.last_seen_ns = t0;
  std::memcpy(&rv.nat_addr, k_tcp_vip.bytes.data(), 4);
  n.put_ct4(rk, rv);
  c = n.sweep(t0 + 60 * k_sec);
  CHECK(c.expired == 0);
  c = n.sweep(t0 + (LB_CT_TCP_TIMEOUT_S + 1) * k_sec);
  CHECK(c.expired == 1);
  CHECK(n.ct_entries() == 0);
}

TEST_CASE("ct_sweep: a DSR entry goes 120 s after the FIN of its own direction") {
  // The load-balancing node keeps only a FORWARD entry of a DSR flow and never sees the
  // backend's FIN; the backend's node keeps only the learnt REPLY entry and never sees the
  // client's. Without this rule both would live for the 6 h TCP timeout.
  node n;
  n.sync(both({{k_be_a, 8080, false}}));
  const uint64_t t0 = now_ns();
  auto put = [&](uint16_t sport, uint8_t dir, uint8_t flags) {
    lb4_ct_key k{};
    std::memcpy(&k.saddr, k_client.bytes.data(), 4);
    std::memcpy(&k.daddr, k_tcp_vip.bytes.data(), 4);
    k.sport = htons(sport);
    k.dport = htons(80);
    k.proto = IPPROTO_TCP;
    lb4_ct_value v{};
    v.state.dir = dir;
    v.state.flags = flags;
    v.state.nat_port = htons(8080);
    v.state.created_ns = t0;
    v.state.last_seen_ns = t0;
    std::memcpy(&v.nat_addr, k_be_a.bytes.data(), 4);
    n.put_ct4(k, v);
  };
  put(41001, LB_CT_FORWARD, LB_CT_F_DSR | LB_CT_F_REMOTE | LB_CT_F_FIN_FWD);  // client said FIN
  put(41002, LB_CT_REPLY, LB_CT_F_DSR | LB_CT_F_FIN_REPLY);                  // backend said FIN
  put(41003, LB_CT_FORWARD, LB_CT_F_DSR | LB_CT_F_REMOTE);                   // still open
  put(41004, LB_CT_FORWARD, LB_CT_F_REMOTE | LB_CT_F_FIN_FWD);               // SNAT, half closed
  REQUIRE(n.ct_entries() == 4);
  auto c = n.sweep(t0 + (LB_CT_TCP_FIN_S - 5) * k_sec);
  CHECK(c.expired == 0);
  c = n.sweep(t0 + (LB_CT_TCP_FIN_S + 5) * k_sec);
  CHECK(c.expired == 2);
  CHECK_FALSE(n.ct4(k_client, 41001, k_tcp_vip, 80, IPPROTO_TCP));
  CHECK_FALSE(n.ct4(k_client, 41002, k_tcp_vip, 80, IPPROTO_TCP));
  CHECK(n.ct4(k_client, 41003, k_tcp_vip, 80, IPPROTO_TCP));
  CHECK(n.ct4(k_client, 41004, k_tcp_vip, 80, IPPROTO_TCP));
}

TEST_CASE("ct_sweep: affinity entries expire with the service's timeout") {
  node n;
  n.sync(both({{k_be_a, 8080, false}}));
  const uint64_t t0 = now_ns();
  REQUIRE(sent_to(n.send(IPPROTO_TCP, k_client, 40001, k_tcp_vip, 80), k_be_a));
  REQUIRE(n.affinity_entries() == 1);
  auto c = n.sweep(t0 + 30 * k_sec);
  CHECK(c.affinity_expired == 0);
  c = n.sweep(t0 + 61 * k_sec);
  CHECK(c.affinity_expired == 1);
  CHECK(n.affinity_entries() == 0);
  CHECK(n.ct_entries() == 2);  // the connection itself is untouched
}

TEST_CASE("ct_sweep: a budget spreads one pass over several calls; v6 flows too") {
  node n;
  const ip_addr vip6 = v6("fd00:96::53");
  const ip_addr be6 = v6("fd00:244::1");
  const ip_addr client6 = v6("fd00::2");
  auto fe6 = udp_fe({{be6, 5353, false}});
  fe6.vip = vip6;
  n.sync(desired_state{{udp_fe({{k_be_a, 8080, false}}), fe6}});
  for (uint16_t p = 0; p < 60; ++p) {
    REQUIRE(sent_to(n.send(IPPROTO_UDP, k_client, static_cast<uint16_t>(30000 + p), k_udp_vip, 53),
                    k_be_a));
    REQUIRE(n.send(IPPROTO_UDP, client6, static_cast<uint16_t>(30000 + p), vip6, 53).verdict ==
            k_tc_act_ok);
  }
  REQUIRE(n.ct_entries(false) == 120);
  REQUIRE(n.ct_entries(true) == 120);
  n.sync(desired_state{});

  ct_sweeper s(n.dp->skel());
  ct_sweep_counts total;
  int calls = 0;
  for (;;) {
    auto c = s.sweep(n.w->mirror(), ct_sweep_options{.budget = 16});
    REQUIRE(c);
    ++calls;
    CHECK(c->scanned <= 16 + 8);  // a hash bucket is returned whole
    total.scanned += c->scanned;
    total.udp_stale += c->udp_stale;
    if (c->complete) {
      break;
    }
    REQUIRE(calls < 100);
  }
  CHECK(calls > 5);
  CHECK(total.udp_stale == 240);
  CHECK(total.scanned <= 240);
  CHECK(n.ct_entries(false) == 0);
  CHECK(n.ct_entries(true) == 0);
}

}  // namespace
}  // namespace sluice
