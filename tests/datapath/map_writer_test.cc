// The map writer on real, pinned maps: what it writes is what the datapath reads, a restarted
// agent (new skeleton reusing the pins) restores the same ids, and an unchanged state costs no
// write. Each case mounts its own bpffs and removes it.
#include "agent/datapath/map_writer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "agent/datapath/datapath.h"
#include "helpers.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

using dptest::temp_bpffs;
using dptest::v4;
using dptest::v6;

desired_state two_services() {
  desired_frontend web{.vip = v4("10.96.0.10"), .port = 80, .proto = IPPROTO_TCP,
                       .name = "default/web:http",
                       .backends = {{v4("10.244.0.12"), 8080, false},
                                    {v4("10.244.0.13"), 8080, false}}};
  desired_frontend dns{.vip = v6("fd00:96::10"), .port = 53, .proto = IPPROTO_UDP,
                       .name = "default/web:dns", .affinity_timeout_s = 10800,
                       .backends = {{v6("fd00:244::12"), 5353, false}}};
  return {{web, dns}};
}

TEST_CASE("map writer: the maps hold master, slots and backends as the datapath reads them") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  auto rep = w.sync(two_services());
  CHECK(rep.failed_ops == 0);
  CHECK(rep.frontends == 2);
  CHECK(rep.backends == 3);

  lb4_svc_key k{};
  inet_pton(AF_INET, "10.96.0.10", &k.vip);
  k.port = htons(80);
  k.proto = IPPROTO_TCP;
  lb_svc_value master{};
  REQUIRE(bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb4_services_v1), &k, &master) == 0);
  CHECK(master.count == 2);
  CHECK(master.svc_id != 0);
  for (uint16_t slot = 1; slot <= 2; ++slot) {
    k.slot = slot;
    lb_svc_value sv{};
    REQUIRE(bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb4_services_v1), &k, &sv) == 0);
    CHECK(sv.svc_id == master.svc_id);
    lb4_backend be{};
    REQUIRE(bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb4_backends_v1), &sv.backend_id,
                                &be) == 0);
    CHECK(be.svc_id == master.svc_id);
    CHECK(ntohs(be.port) == 8080);
    CHECK(be.proto == IPPROTO_TCP);
  }
  k.slot = 3;
  lb_svc_value none{};
  CHECK(bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb4_services_v1), &k, &none) != 0);

  lb6_svc_key k6{};
  inet_pton(AF_INET6, "fd00:96::10", &k6.vip);
  k6.port = htons(53);
  k6.proto = IPPROTO_UDP;
  REQUIRE(bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb6_services_v1), &k6, &master) == 0);
  CHECK(master.count == 1);
  CHECK(master.flags == LB_SVC_F_AFFINITY);
  CHECK(master.affinity_timeout == 10800);
}

TEST_CASE("map writer: a restarted agent restores ids from the pins and writes nothing") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  map_state first;
  {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
    map_writer w(dp->skel());
    REQUIRE(w.restore());
    REQUIRE(w.sync(two_services()).failed_ops == 0);
    first = w.mirror();
  }
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  CHECK(w.mirror() == first);
  auto rep = w.sync(two_services());
  CHECK(rep.ops == 0);

  // And a change after the restart keeps the untouched frontend's ids.
  auto less = two_services();
  less.frontends[0].backends.pop_back();
  rep = w.sync(less);
  CHECK(rep.failed_ops == 0);
  const frontend_key web{v4("10.96.0.10"), 80, IPPROTO_TCP};
  CHECK(w.mirror().frontends.at(web).svc_id == first.frontends.at(web).svc_id);
  CHECK(w.mirror().frontends.at(web).slots[0] == first.frontends.at(web).slots[0]);
  CHECK(w.mirror().backends.size() == 2);
}

// bpftool's named fields for every pinned map: tests/ctl/maps_test.cc.

TEST_CASE("cleanup: unpins every map and leaves the kernel's own bpffs files alone") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
  }
  CHECK(std::filesystem::exists(fs.root() + "/" LB4_CT_MAP));
  auto done = cleanup(fs.root());
  REQUIRE(done);
  CHECK(done->size() >= 12);
  CHECK_FALSE(std::filesystem::exists(fs.root()));
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// The control-plane budget case (10k frontends / 100k backends per family): correctness only,
// the time is reported by datapath_writer_bench.
TEST_CASE("map writer: 10k frontends with 100k backends per family, then restart and edits") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  const auto want = dptest::scale_state(10'000, 10);
  map_state written;
  {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
    map_writer w(dp->skel());
    REQUIRE(w.restore());
    const auto rep = w.sync(want);
    CHECK(rep.failed_ops == 0);
    CHECK(rep.errors.empty());
    CHECK(rep.frontends == 20'000);
    CHECK(rep.backends == 200'000);
    // Per frontend: its name, master, slots and backends.
    CHECK(rep.ops == 2 * (10'000 + 10'000 + 100'000 + 100'000));
    // Batched: far fewer syscalls than entries (one per run of same-map ops + counter resets).
    CHECK(rep.syscalls < rep.ops / 5);
    auto fill = read_map_fill(dp->skel());
    REQUIRE(fill);
    CHECK(fill->services4 == 110'000);
    CHECK(fill->services6 == 110'000);
    CHECK(fill->backends4 == 100'000);
    CHECK(fill->backends6 == 100'000);
    CHECK(fill->ct4 == 0);
    CHECK(fill->affinity6 == 0);
    written = w.mirror();
  }
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  CHECK(w.mirror() == written);
  CHECK(w.sync(want).ops == 0);

  // Incremental: one frontend loses a backend, one is removed, one is added.
  std::map<frontend_key, desired_frontend> by_key;
  for (const auto& f : want.frontends) {
    by_key.emplace(f.key(), f);
  }
  const frontend_key shrunk = want.frontends[5].key();
  const frontend_key removed = want.frontends[10'007].key();
  desired_frontend added = want.frontends[0];
  added.port = 443;
  by_key.at(shrunk).backends.pop_back();
  by_key.erase(removed);
  by_key.emplace(added.key(), added);
  const auto rep = w.sync_subset(by_key, {shrunk, removed, added.key()});
  CHECK(rep.failed_ops == 0);
  // shrunk: master, surplus slot, backend; removed: master, 10 slots, name, 10 backends;
  // added: 10 backends, 10 slots, name, master.
  CHECK(rep.ops == 3 + 22 + 22);
  auto fill = read_map_fill(dp->skel());
  REQUIRE(fill);
  CHECK(fill->services4 == 110'000 - 1 + 11);
  CHECK(fill->services6 == 110'000 - 11);
  CHECK(fill->backends4 == 100'000 - 1 + 10);
  CHECK(fill->backends6 == 100'000 - 10);
  CHECK(w.mirror().frontends.size() == 20'000);
  CHECK(w.mirror().backends.size() == 200'000 - 1 - 10 + 10);

  // The full sync of the same desired state agrees: nothing left to do.
  desired_state full;
  for (const auto& [k, f] : by_key) {
    full.frontends.push_back(f);
  }
  CHECK(w.sync(full).ops == 0);
}

TEST_CASE("map writer: the DROP flag reaches the master entry") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  desired_frontend f{
      .vip = v4("10.96.0.10"), .port = 80, .proto = IPPROTO_TCP, .name = "default/local:http"};
  f.when_empty = empty_verdict::drop;
  REQUIRE(w.sync(desired_state{{f}}).failed_ops == 0);
  lb4_svc_key k{};
  inet_pton(AF_INET, "10.96.0.10", &k.vip);
  k.port = htons(80);
  k.proto = IPPROTO_TCP;
  lb_svc_value master{};
  REQUIRE(bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb4_services_v1), &k, &master) == 0);
  CHECK(master.count == 0);
  CHECK(master.flags == LB_SVC_F_DROP_EMPTY);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST_CASE("load: the pin of the replaced lb_stats_v1 is removed, lb_stats_v3 has headroom") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  const int fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "lb_stats_v1", 4, sizeof(lb_stat_value),
                                LB_STAT_MAX, nullptr);
  REQUIRE(fd >= 0);
  const std::string old = fs.root() + "/lb_stats_v1";
  REQUIRE(bpf_obj_pin(fd, old.c_str()) == 0);
  close(fd);
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  CHECK_FALSE(std::filesystem::exists(old));
  CHECK(std::filesystem::exists(fs.root() + "/" LB_STATS_MAP));
  CHECK(bpf_map__max_entries(dp->skel()->maps.lb_stats_v3) == LB_STATS_SLOTS);
}

TEST_CASE("map writer: a large sync that overflows the backends map leaves a mirror of the kernel") {
  // Above parallel_apply_min_ops the mirror is updated on a second thread during the writes;
  // when some writes fail it must still end up equal to what the maps hold. The writer leaves
  // out what does not fit by itself (map_full), so the kernel is made to refuse writes the
  // writer expected to fit: entries it does not know about fill the backends map first.
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  auto want = dptest::scale_state(2'000, 10);  // 20k backends per family
  std::erase_if(want.frontends,
                [](const desired_frontend& f) { return f.vip.family == ip_family::v6; });
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  const int fd = bpf_map__fd(dp->skel()->maps.lb4_backends_v1);
  const lb4_backend junk{};
  for (uint32_t id = 0x7f000000; id < 0x7f000000 + LB_MAX_BACKENDS - 15'000; ++id) {
    REQUIRE(bpf_map_update_elem(fd, &id, &junk, BPF_NOEXIST) == 0);
  }
  const auto rep = w.sync(want);
  CHECK(rep.failed_ops > 0);
  CHECK(rep.errors.empty());
  map_writer fresh(dp->skel());
  REQUIRE(fresh.restore());
  CHECK(fresh.mirror() == w.mirror());
}

TEST_CASE("map writer: what does not fit the maps is reported per frontend, never half written") {
  // 2 x 10 backends per family fit 64 backend entries; the IPv4 services map (16 entries)
  // takes one master + 10 slots once: the second frontend of each family is left out whole.
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  auto want = dptest::scale_state(2, 10);
  auto dp = datapath::load(fs.root(), {.services_max = 16, .backends_max = 64});
  REQUIRE(dp);
  CHECK(bpf_map__max_entries(dp->skel()->maps.lb4_services_v1) == 16);
  CHECK(bpf_map__max_entries(dp->skel()->maps.lb6_backends_v1) == 64);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  auto rep = w.sync(want);
  CHECK(rep.failed_ops == 0);
  REQUIRE(rep.errors.size() == 2);
  for (const auto& e : rep.errors) {
    CHECK(e.reason == not_programmed_reason::map_full);
    CHECK(e.what.find("_services_v1 is full") != std::string::npos);
  }
  CHECK(w.mirror().frontends.size() == 2);
  CHECK(w.mirror().backends.size() == 20);
  auto n = count_entries(bpf_map__fd(dp->skel()->maps.lb4_services_v1));
  REQUIRE(n);
  CHECK(*n == 11);
  n = count_entries(bpf_map__fd(dp->skel()->maps.lb4_backends_v1));
  REQUIRE(n);
  CHECK(*n == 10);  // nothing of the frontend left out
  map_writer fresh(dp->skel());
  REQUIRE(fresh.restore());
  CHECK(fresh.mirror() == w.mirror());
  // Unchanged: reported again, nothing written.
  rep = w.sync(want);
  CHECK(rep.ops == 0);
  CHECK(rep.errors.size() == 2);
}

}  // namespace
}  // namespace sluice
