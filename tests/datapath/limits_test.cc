// Map sizes and what happens at them: --conntrack-max and friends size the maps, a pin of
// another size is resized with its entries, and a full conntrack table keeps taking new flows
// while the datapath's created/deleted counts tell how many entries the LRU evicted.
#include <doctest/doctest.h>

#include <filesystem>
#include <optional>

#include "agent/datapath/datapath.h"
#include "agent/datapath/map_access.h"
#include "agent/datapath/map_writer.h"
#include "helpers.h"
#include "packet.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

using dptest::temp_bpffs;
using dptest::v4;

constexpr uint32_t k_tc_act_ok = 0;

bpftest::IpAddr pkt_addr(const ip_addr& a) {
  bpftest::IpAddr p;
  p.v6 = a.family == ip_family::v6;
  p.b = a.bytes;
  return p;
}

const ip_addr k_vip = v4("10.96.0.80");

desired_state web() {
  desired_frontend f{.vip = k_vip, .port = 80, .proto = IPPROTO_TCP, .name = "default/web:http"};
  f.backends = {{v4("10.244.0.1"), 8080, false}, {v4("10.244.0.2"), 8080, false}};
  return {{f}};
}

lb_ct_count ct_count(const datapath& dp, uint32_t family_index) {
  lb_ct_count c{};
  REQUIRE(percpu_sum(bpf_map__fd(dp.skel()->maps.lb_ct_counts_v1), family_index, c));
  return c;
}

size_t entries(int fd) {
  auto n = count_entries(fd);
  REQUIRE(n);
  return *n;
}

// A TCP SYN from 10.1.x.y:port to the VIP: a new flow each.
dptest::run_result syn(const datapath& dp, uint32_t i) {
  ip_addr client = v4("10.1.0.0");
  client.bytes[2] = static_cast<uint8_t>(i >> 8);
  client.bytes[3] = static_cast<uint8_t>(i);
  auto p = bpftest::l4(IPPROTO_TCP, pkt_addr(client), static_cast<uint16_t>(40000 + i % 1000),
                       pkt_addr(k_vip), 80)
               .flags(bpftest::kSyn);
  return dptest::run_packet(dp.pod_ingress_fd(), bpftest::build(p));
}

TEST_CASE("limits: a full conntrack table takes every new flow; the counts give the evictions") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  auto dp = datapath::load(fs.root(), {.conntrack_max = 256});
  REQUIRE(dp);
  const int ct = bpf_map__fd(dp->skel()->maps.lb4_ct_v2);
  CHECK(bpf_map__max_entries(dp->skel()->maps.lb4_ct_v2) == 256);
  CHECK(bpf_map__max_entries(dp->skel()->maps.lb6_ct_v2) == 256);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  REQUIRE(w.sync(web()).failed_ops == 0);
  // 1000 new flows, two entries each, into 256 entries: every SYN is forwarded (none dropped
  // for a failed conntrack insert), and every insert is counted.
  constexpr uint32_t flows = 1000;
  for (uint32_t i = 0; i < flows; ++i) {
    const auto r = syn(*dp, i);
    REQUIRE_MESSAGE(r.verdict == k_tc_act_ok, "flow " << i);
  }
  const lb_ct_count c = ct_count(*dp, 0);
  CHECK(c.created == 2 * flows);
  CHECK(c.deleted == 0);
  const size_t held = entries(ct);
  CHECK(held <= 256);
  CHECK(held > 0);
  // evicted = created - deleted - held: at least every entry beyond the table's size.
  CHECK(c.created - c.deleted - held >= 2 * flows - 256);
  lb_stat_value drops{};
  REQUIRE(percpu_sum(bpf_map__fd(dp->skel()->maps.lb_stats_v3), LB_STAT_DROP_CT_INSERT, drops));
  CHECK(drops.packets == 0);
  // IPv6 untouched.
  CHECK(ct_count(*dp, 1).created == 0);
  // The latest flow is tracked: its next packet is translated from conntrack, not picked anew.
  const auto again = syn(*dp, flows - 1);
  CHECK(again.verdict == k_tc_act_ok);
  CHECK(ct_count(*dp, 0).created == 2 * flows);
}

TEST_CASE("limits: a pinned map of another size is resized and keeps its entries") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  std::optional<datapath> dp;
  {
    auto d = datapath::load(fs.root(), {.conntrack_max = 256, .services_max = 64});
    REQUIRE(d);
    dp.emplace(std::move(*d));
  }
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  REQUIRE(w.sync(web()).failed_ops == 0);
  for (uint32_t i = 0; i < 10; ++i) {
    REQUIRE(syn(*dp, i).verdict == k_tc_act_ok);
  }
  REQUIRE(entries(bpf_map__fd(dp->skel()->maps.lb4_ct_v2)) == 20);
  const map_state before = w.mirror();
  // The next agent asks for bigger tables; the old programs (this skeleton) keep running until
  // it is done, and add a flow meanwhile.
  auto next = datapath::load(fs.root(), {.conntrack_max = 1024, .services_max = 128});
  REQUIRE(next);
  CHECK(bpf_map__max_entries(next->skel()->maps.lb4_ct_v2) == 1024);
  CHECK(bpf_map__max_entries(next->skel()->maps.lb4_services_v1) == 128);
  CHECK(entries(bpf_map__fd(next->skel()->maps.lb4_ct_v2)) == 20);
  REQUIRE(syn(*dp, 10).verdict == k_tc_act_ok);  // an old program, into the old table
  CHECK(entries(bpf_map__fd(next->skel()->maps.lb4_ct_v2)) == 20);
  CHECK(next->finish_resize() == 2);  // its two entries come over after the switch
  CHECK(entries(bpf_map__fd(next->skel()->maps.lb4_ct_v2)) == 22);
  // Ids and frontends as they were: the new agent writes nothing.
  map_writer w2(next->skel());
  REQUIRE(w2.restore());
  CHECK(w2.mirror() == before);
  CHECK(w2.sync(web()).ops == 0);
  // No pin left aside, the new maps pinned under their names.
  for (const auto& e : std::filesystem::directory_iterator(fs.root())) {
    CHECK_FALSE(e.path().filename().string().starts_with("resize_"));
  }
  // Both agents go (their skeletons closed); a third with the same sizes reuses the pins as
  // they are.
  { const datapath gone = std::move(*dp); }
  { const datapath gone = std::move(*next); }
  auto third = datapath::load(fs.root(), {.conntrack_max = 1024, .services_max = 128});
  REQUIRE(third);
  CHECK(entries(bpf_map__fd(third->skel()->maps.lb4_ct_v2)) == 22);
  CHECK(third->finish_resize() == 0);
  (void)cleanup(fs.root());
}

}  // namespace
}  // namespace sluice
