// The map writer's north-south entries on real, pinned maps: the LB_SCOPE_EXTERNAL master and
// slots, source-range LPM entries, Maglev inner tables in lb_maglev_v2; read back with bpf
// syscalls as the datapath would read them, then restored by a restarted writer.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "agent/datapath/datapath.h"
#include "agent/datapath/map_writer.h"
#include "agent/planner/maglev.h"
#include "helpers.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

using dptest::temp_bpffs;
using dptest::v4;
using dptest::v6;

const frontend_key lb_key{v4("192.0.2.10"), 80, IPPROTO_TCP};
const frontend_key np_key{v6("fd00:18::2"), 30053, IPPROTO_UDP};

// A LoadBalancer VIP with externalTrafficPolicy Local and source ranges (.12 local and ready,
// .13 remote, .14 local and terminating), and an IPv6 NodePort without either.
desired_state north_south() {
  desired_frontend lb{.vip = lb_key.vip, .port = 80, .proto = IPPROTO_TCP,
                      .kind = frontend_kind::load_balancer, .name = "default/web:http",
                      .affinity_timeout_s = 300,
                      .backends = {{v4("10.244.0.12"), 8080, false},
                                   {v4("10.244.0.13"), 8080, false}},
                      .external_local = true,
                      .external_backends = {{v4("10.244.0.12"), 8080, false},
                                            {v4("10.244.0.14"), 8080, true}},
                      .source_ranges = {{v4("198.51.100.0"), 24}, {v4("203.0.113.128"), 25}}};
  desired_frontend np{.vip = np_key.vip, .port = 30053, .proto = IPPROTO_UDP,
                      .kind = frontend_kind::node_port, .name = "default/dns:dns",
                      .backends = {{v6("fd00:244::12"), 5353, false},
                                   {v6("fd00:244::13"), 5353, false},
                                   {v6("fd00:244::14"), 5353, false}}};
  return {{lb, np}};
}

lb_svc_value lookup4(int fd, const frontend_key& f, uint16_t slot, uint8_t scope) {
  lb4_svc_key k{};
  std::memcpy(&k.vip, f.vip.bytes.data(), 4);
  k.port = htons(f.port);
  k.slot = slot;
  k.proto = f.proto;
  k.scope = scope;
  lb_svc_value v{};
  REQUIRE(bpf_map_lookup_elem(fd, &k, &v) == 0);
  return v;
}

bool range_hit4(int fd, uint32_t svc_id, const char* client) {
  lb4_src_range_key k{};
  k.prefixlen = LB_SRC_RANGE_KEY_PREFIX + 32;  // a full address, as the datapath looks up
  k.svc_id = svc_id;
  REQUIRE(inet_pton(AF_INET, client, &k.addr) == 1);
  uint8_t v = 0;
  return bpf_map_lookup_elem(fd, &k, &v) == 0 && v == 1;
}

bool range_hit6(int fd, uint32_t svc_id, const char* client) {
  lb6_src_range_key k{};
  k.prefixlen = LB_SRC_RANGE_KEY_PREFIX + 128;
  k.svc_id = svc_id;
  REQUIRE(inet_pton(AF_INET6, client, &k.addr) == 1);
  uint8_t v = 0;
  return bpf_map_lookup_elem(fd, &k, &v) == 0 && v == 1;
}

struct inner_table {
  uint32_t max_entries = 0;
  uint32_t map_flags = 0;
  std::vector<uint32_t> ids;
};

// lb_maglev_v2[svc_id] read back the way an operator would: the outer value is the inner map's
// id (user space never sees the pointer the datapath gets).
std::optional<inner_table> read_maglev(::sluice_bpf* skel, uint32_t svc_id) {
  uint32_t inner_id = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.lb_maglev_v2), &svc_id, &inner_id) != 0) {
    return std::nullopt;
  }
  const int fd = bpf_map_get_fd_by_id(inner_id);
  REQUIRE(fd >= 0);
  bpf_map_info info{};
  __u32 len = sizeof(info);
  REQUIRE(bpf_obj_get_info_by_fd(fd, &info, &len) == 0);
  REQUIRE(info.max_entries == 1);
  inner_table t{info.value_size / 4, info.map_flags, std::vector<uint32_t>(info.value_size / 4)};
  const uint32_t zero = 0;
  REQUIRE(bpf_map_lookup_elem(fd, &zero, t.ids.data()) == 0);
  close(fd);
  return t;
}

// build_maglev_table() over the backends behind `ids` (as the mirror knows them), mapped to ids.
std::vector<uint32_t> expected_table(const map_state& mirror, std::vector<uint32_t> ids,
                                     const maglev_options& opts) {
  std::sort(ids.begin(), ids.end());
  std::vector<maglev_backend> backends;
  for (uint32_t id : ids) {
    const auto& b = mirror.backends.at(id);
    backends.push_back({.addr = b.addr, .port = b.port, .proto = b.proto});
  }
  const auto table = build_maglev_table(backends, opts);
  REQUIRE(table.has_value());
  std::vector<uint32_t> out;
  for (uint32_t i : *table) {
    out.push_back(ids[i]);
  }
  return out;
}

TEST_CASE("map writer: eTP=Local, source ranges and Maglev tables as the datapath reads them") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  const reconcile_options opts{.algorithm = lb_algorithm::maglev};  // default size and seed
  REQUIRE(opts.maglev.table_size == LB_MAGLEV_DEFAULT_SIZE);
  map_state first;
  {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
    auto* skel = dp->skel();
    map_writer w(skel, opts);
    REQUIRE(w.restore());
    const auto rep = w.sync(north_south());
    CHECK(rep.failed_ops == 0);
    CHECK(rep.errors.empty());
    CHECK(rep.maglev_tables == 2);
    CHECK(rep.src_ranges == 2);
    first = w.mirror();

    // ALL master: every north-south flag; EXTERNAL master: the local set, same svc_id.
    const int svc4 = bpf_map__fd(skel->maps.lb4_services_v1);
    const lb_svc_value all = lookup4(svc4, lb_key, 0, LB_SCOPE_ALL);
    CHECK(all.count == 2);
    CHECK(all.flags == (LB_SVC_F_AFFINITY | LB_SVC_F_EXTERNAL | LB_SVC_F_SOURCE_RANGES |
                        LB_SVC_F_EXT_LOCAL | LB_SVC_F_MAGLEV));
    const lb_svc_value ext = lookup4(svc4, lb_key, 0, LB_SCOPE_EXTERNAL);
    CHECK(ext.svc_id == all.svc_id);
    CHECK(ext.count == 2);
    CHECK(ext.flags == LB_SVC_F_AFFINITY);
    CHECK(ext.affinity_timeout == 300);
    const int be4 = bpf_map__fd(skel->maps.lb4_backends_v1);
    std::vector<uint32_t> ext_ids;
    std::vector<std::string> ext_addrs;
    for (uint16_t slot = 1; slot <= ext.count; ++slot) {
      const lb_svc_value s = lookup4(svc4, lb_key, slot, LB_SCOPE_EXTERNAL);
      CHECK(s.svc_id == all.svc_id);
      lb4_backend b{};
      REQUIRE(bpf_map_lookup_elem(be4, &s.backend_id, &b) == 0);
      CHECK(b.svc_id == all.svc_id);
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &b.addr, text, sizeof(text));
      ext_addrs.emplace_back(text);
      CHECK(b.state == (ext_addrs.back() == "10.244.0.14" ? LB_BACKEND_TERMINATING
                                                           : LB_BACKEND_ACTIVE));
      ext_ids.push_back(s.backend_id);
    }
    CHECK(ext_addrs == std::vector<std::string>{"10.244.0.12", "10.244.0.14"});
    // The endpoint in both sets is one backend id.
    CHECK(lookup4(svc4, lb_key, 1, LB_SCOPE_ALL).backend_id == ext_ids[0]);
    lb4_svc_key beyond{};
    std::memcpy(&beyond.vip, lb_key.vip.bytes.data(), 4);
    beyond.port = htons(80);
    beyond.proto = IPPROTO_TCP;
    beyond.scope = LB_SCOPE_EXTERNAL;
    beyond.slot = 3;
    lb_svc_value none{};
    CHECK(bpf_map_lookup_elem(svc4, &beyond, &none) != 0);

    // Source ranges: longest-prefix lookups of full client addresses under the svc_id.
    const int r4 = bpf_map__fd(skel->maps.lb4_src_ranges_v1);
    CHECK(range_hit4(r4, all.svc_id, "198.51.100.77"));
    CHECK(range_hit4(r4, all.svc_id, "203.0.113.200"));
    CHECK_FALSE(range_hit4(r4, all.svc_id, "203.0.113.5"));   // the other half of that /24
    CHECK_FALSE(range_hit4(r4, all.svc_id, "198.51.101.1"));
    CHECK_FALSE(range_hit4(r4, all.svc_id + 1, "198.51.100.77"));  // another service's key

    // Maglev: the LB's table over its local set, the NodePort's over all its backends.
    const auto t = read_maglev(skel, all.svc_id);
    REQUIRE(t.has_value());
    CHECK(t->max_entries == LB_MAGLEV_DEFAULT_SIZE);
    CHECK(t->map_flags == LB_MAGLEV_TABLE_FLAGS);
    CHECK(t->ids == expected_table(w.mirror(), ext_ids, opts.maglev));
    const auto& np = w.mirror().frontends.at(np_key);
    CHECK((np.flags & LB_SVC_F_MAGLEV) != 0);
    CHECK((np.flags & LB_SVC_F_EXT_LOCAL) == 0);
    const auto t6 = read_maglev(skel, np.svc_id);
    REQUIRE(t6.has_value());
    CHECK(t6->ids == expected_table(w.mirror(), np.slots, opts.maglev));
    CHECK_FALSE(range_hit6(bpf_map__fd(skel->maps.lb6_src_ranges_v1), np.svc_id, "2001:db8::1"));
  }

  SUBCASE("a restarted writer restores everything and writes nothing") {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
    map_writer w(dp->skel(), opts);
    REQUIRE(w.restore());
    CHECK(w.mirror() == first);
    const auto rep = w.sync(north_south());
    CHECK(rep.ops == 0);
    CHECK(rep.syscalls == 0);

    // And a later change: the local endpoint goes, so does its slot, its table entry changes.
    auto less = north_south();
    less.frontends[0].external_backends.pop_back();
    less.frontends[0].source_ranges.pop_back();
    const auto rep2 = w.sync(less);
    CHECK(rep2.failed_ops == 0);
    CHECK(rep2.maglev_tables == 1);
    const auto& rec = w.mirror().frontends.at(lb_key);
    CHECK(rec.svc_id == first.frontends.at(lb_key).svc_id);
    const auto t = read_maglev(dp->skel(), rec.svc_id);
    REQUIRE(t.has_value());
    CHECK(std::all_of(t->ids.begin(), t->ids.end(),
                      [&](uint32_t id) { return id == rec.external->slots[0]; }));
    CHECK_FALSE(range_hit4(bpf_map__fd(dp->skel()->maps.lb4_src_ranges_v1), rec.svc_id,
                           "203.0.113.200"));
    CHECK(range_hit4(bpf_map__fd(dp->skel()->maps.lb4_src_ranges_v1), rec.svc_id,
                     "198.51.100.77"));
  }
  SUBCASE("another seed or table size: every table is rebuilt, nothing else is written") {
    reconcile_options other = opts;
    SUBCASE("seed") { other.maglev.seed = *parse_maglev_seed("AAECAwQFBgcICQoL"); }
    SUBCASE("size") { other.maglev.table_size = 16381; }
    // the agent loads the program and writes the tables with the same size, as here; a pinned
    // lb_maglev_v2 for another size is dropped at load (its template is fixed)
    auto dp = datapath::load(fs.root(), {.maglev_table_size = other.maglev.table_size});
    REQUIRE(dp);
    map_writer w(dp->skel(), other);
    REQUIRE(w.restore());
    CHECK(w.mirror().frontends == first.frontends);
    CHECK(w.mirror().backends == first.backends);
    for (const auto& [svc_id, ids] : w.mirror().maglev) {
      CHECK(ids.empty());  // unverified
    }
    const auto rep = w.sync(north_south());
    CHECK(rep.failed_ops == 0);
    CHECK(rep.ops == 2);
    CHECK(rep.maglev_tables == 2);
    const auto& np = w.mirror().frontends.at(np_key);
    const auto t = read_maglev(dp->skel(), np.svc_id);
    REQUIRE(t.has_value());
    CHECK(t->max_entries == other.maglev.table_size);
    CHECK(t->ids == expected_table(w.mirror(), np.slots, other.maglev));
    CHECK(w.sync(north_south()).ops == 0);
  }
  SUBCASE("a table the writer did not name is read back and checked entry by entry") {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
    auto* skel = dp->skel();
    const uint32_t svc = first.frontends.at(lb_key).svc_id;
    const auto good = read_maglev(skel, svc);
    REQUIRE(good.has_value());
    std::vector<uint32_t> content = good->ids;
    bool corrupt = false;
    SUBCASE("same content") {}
    SUBCASE("one entry wrong") {
      corrupt = true;
      content[7] = content[7] == first.frontends.at(lb_key).external->slots[0]
                       ? first.frontends.at(lb_key).external->slots[1]
                       : first.frontends.at(lb_key).external->slots[0];
    }
    // Swap in a copy under a name that is no fingerprint, as another tool might.
    LIBBPF_OPTS(bpf_map_create_opts, create, .map_flags = LB_MAGLEV_TABLE_FLAGS);
    const int inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "handmade", 4,
                                     LB_MAGLEV_TABLE_BYTES(static_cast<uint32_t>(content.size())),
                                     1, &create);
    REQUIRE(inner >= 0);
    const uint32_t zero = 0;
    REQUIRE(bpf_map_update_elem(inner, &zero, content.data(), BPF_ANY) == 0);
    REQUIRE(bpf_map_update_elem(bpf_map__fd(skel->maps.lb_maglev_v2), &svc, &inner, BPF_ANY) ==
            0);
    close(inner);
    map_writer w(skel, opts);
    REQUIRE(w.restore());
    CHECK(w.mirror().maglev.at(svc).empty() == corrupt);
    const auto rep = w.sync(north_south());
    CHECK(rep.ops == (corrupt ? 1 : 0));
    CHECK(w.mirror() == first);
    CHECK(read_maglev(skel, svc)->ids == good->ids);
  }
  SUBCASE("random again, then removed: tables, ranges and EXTERNAL entries go") {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
    auto* skel = dp->skel();
    map_writer w(skel);  // --lb-algorithm random
    REQUIRE(w.restore());
    const auto rep = w.sync(north_south());
    CHECK(rep.failed_ops == 0);
    CHECK(rep.ops == 4);  // two masters without LB_SVC_F_MAGLEV, two table deletes
    const uint32_t svc = first.frontends.at(lb_key).svc_id;
    CHECK_FALSE(read_maglev(skel, svc).has_value());
    CHECK(lookup4(bpf_map__fd(skel->maps.lb4_services_v1), lb_key, 0, LB_SCOPE_ALL).flags ==
          (LB_SVC_F_AFFINITY | LB_SVC_F_EXTERNAL | LB_SVC_F_SOURCE_RANGES | LB_SVC_F_EXT_LOCAL));

    CHECK(w.sync(desired_state{}).failed_ops == 0);
    CHECK(count_entries(bpf_map__fd(skel->maps.lb4_services_v1)).value() == 0);
    CHECK(count_entries(bpf_map__fd(skel->maps.lb4_backends_v1)).value() == 0);
    CHECK_FALSE(range_hit4(bpf_map__fd(skel->maps.lb4_src_ranges_v1), svc, "198.51.100.77"));
    uint32_t key = 0;
    CHECK(bpf_map_get_next_key(bpf_map__fd(skel->maps.lb_maglev_v2), nullptr, &key) != 0);
    map_writer again(skel);
    REQUIRE(again.restore());
    CHECK(again.mirror() == map_state{});
  }
}

}  // namespace
}  // namespace sluice
