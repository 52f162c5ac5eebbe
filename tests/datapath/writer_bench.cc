// Not a test: how long the writer takes to program 10k frontends / 100k backends per family
// (the "list to programmed maps" budget is 2 s), plus the restore, a no-op resync, a sweep of
// empty conntrack maps and map_fill; and the cost of Maglev tables. Prints one line per step.
// Needs root.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "agent/datapath/ct_gc.h"
#include "agent/datapath/datapath.h"
#include "agent/datapath/map_writer.h"
#include "helpers.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

template <typename Fn>
double ms(Fn&& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

TEST_CASE("writer bench: 10k frontends / 100k backends per family") {
  dptest::temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  const auto want = dptest::scale_state(10'000, 10);
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  const double plan_ms = ms([&] { (void)reconcile(w.mirror(), want); });
  sync_report rep;
  const double sync_ms = ms([&] { rep = w.sync(want); });
  REQUIRE(rep.failed_ops == 0);
  std::printf("reconcile only (empty maps -> 20k frontends, 200k backends): %.0f ms\n", plan_ms);
  std::printf("first sync (plan + %zu ops in %zu syscalls): %.0f ms\n", rep.ops, rep.syscalls,
              sync_ms);
  map_writer again(dp->skel());
  const double restore_ms = ms([&] { REQUIRE(again.restore()); });
  const double noop_ms = ms([&] { rep = again.sync(want); });
  std::printf("restore from pins: %.0f ms; unchanged resync (%zu ops): %.0f ms\n", restore_ms,
              rep.ops, noop_ms);
  result<map_fill> fill;
  const double fill_ms = ms([&] { fill = read_map_fill(dp->skel()); });
  REQUIRE(fill);
  std::printf("map_fill (%zu + %zu service entries, %zu + %zu backends): %.1f ms\n",
              fill->services4, fill->services6, fill->backends4, fill->backends6, fill_ms);
  const double sweep_ms = ms([&] { REQUIRE(ct_sweep(dp->skel(), again.mirror())); });
  std::printf("ct_sweep of empty flow maps: %.2f ms\n", sweep_ms);

  // 100k UDP flows (200k conntrack entries) on the first 100k v4 backends.
  std::vector<lb4_ct_key> keys;
  std::vector<lb4_ct_value> values;
  const uint64_t now = [] {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  }();
  for (const auto& [key, f] : again.mirror().frontends) {
    if (key.vip.family != ip_family::v4) {
      continue;
    }
    for (uint32_t id : f.slots) {
      const backend_record& b = again.mirror().backends.at(id);
      lb4_ct_key fk{}, rk{};
      lb4_ct_value fv{}, rv{};
      std::memcpy(&fk.saddr, "\x0a\x00\x00\x02", 4);
      std::memcpy(&fk.daddr, key.vip.bytes.data(), 4);
      fk.sport = htons(static_cast<uint16_t>(1024 + keys.size() / 2 % 60000));
      fk.dport = htons(key.port);
      fk.proto = IPPROTO_UDP;
      fv.state = {.dir = LB_CT_FORWARD,
                  .flags = 0,
                  .nat_port = htons(b.port),
                  .backend_id = id,
                  .svc_id = f.svc_id,
                  .pad = 0,
                  .created_ns = now,
                  .last_seen_ns = now};
      std::memcpy(&fv.nat_addr, b.addr.bytes.data(), 4);
      rk.saddr = fv.nat_addr;
      rk.daddr = fk.saddr;
      rk.sport = fv.state.nat_port;
      rk.dport = fk.sport;
      rk.proto = IPPROTO_UDP;
      rv.state = fv.state;
      rv.state.dir = LB_CT_REPLY;
      rv.state.nat_port = fk.dport;
      rv.nat_addr = fk.daddr;
      keys.push_back(fk);
      values.push_back(fv);
      keys.push_back(rk);
      values.push_back(rv);
    }
  }
  auto count = static_cast<__u32>(keys.size());
  REQUIRE(bpf_map_update_batch(bpf_map__fd(dp->skel()->maps.lb4_ct_v2), keys.data(), values.data(),
                               &count, nullptr) == 0);
  ct_sweep_counts c;
  const double full_ms = ms([&] {
    auto r = ct_sweep(dp->skel(), again.mirror());
    REQUIRE(r);
    c = *r;
  });
  std::printf("ct_sweep over %zu live conntrack entries: %.0f ms (scanned %llu, deleted %llu)\n",
              keys.size(), full_ms, static_cast<unsigned long long>(c.scanned),
              static_cast<unsigned long long>(c.expired + c.udp_stale));
  REQUIRE(again.sync(desired_state{}).failed_ops == 0);
  const double stale_ms = ms([&] {
    auto r = ct_sweep(dp->skel(), again.mirror());
    REQUIRE(r);
    c = *r;
  });
  std::printf("ct_sweep after every service went: %.0f ms (udp_stale %llu)\n", stale_ms,
              static_cast<unsigned long long>(c.udp_stale));
  (void)cleanup(fs.root());
}

TEST_CASE("writer bench: 1000 Maglev frontends (10 backends each, default table size)") {
  dptest::temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  auto want = dptest::scale_state(500, 10);  // 500 per family
  for (auto& f : want.frontends) {
    f.kind = frontend_kind::node_port;
  }
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  const reconcile_options opts{.algorithm = lb_algorithm::maglev};
  map_writer w(dp->skel(), opts);
  REQUIRE(w.restore());
  sync_report rep;
  const double sync_ms = ms([&] { rep = w.sync(want); });
  REQUIRE(rep.failed_ops == 0);
  std::printf("first sync with %zu Maglev tables of %u: %.0f ms (%zu syscalls)\n",
              rep.maglev_tables, opts.maglev.table_size, sync_ms, rep.syscalls);
  map_writer again(dp->skel(), opts);
  const double restore_ms = ms([&] { REQUIRE(again.restore()); });
  const double noop_ms = ms([&] { rep = again.sync(want); });
  std::printf("restore with table checks: %.0f ms; unchanged resync (%zu ops): %.0f ms\n",
              restore_ms, rep.ops, noop_ms);
  (void)cleanup(fs.root());
}

}  // namespace
}  // namespace sluice
