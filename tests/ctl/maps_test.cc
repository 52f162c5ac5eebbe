// sluicectl on real pinned maps that the test fills as the agent does (map writer: services,
// names, Services not proxied) plus counters and flows written directly: golden JSON and
// tables for service list, backend list, ct list (filters), ct flush, stats; exit codes and
// JSON errors; the agent's name maps survive a restart without a write; bpftool prints named
// fields for every pinned map.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "ctl_helpers.h"
#include "netns.h"
#include "tools/ctl/read.h"

namespace sluice::ctltest {
namespace {

desired_frontend fe(ip_addr vip, uint16_t port, uint8_t proto, frontend_kind kind,
                    std::string name, std::vector<desired_backend> backends) {
  desired_frontend f;
  f.vip = vip;
  f.port = port;
  f.proto = proto;
  f.kind = kind;
  f.name = std::move(name);
  f.backends = std::move(backends);
  return f;
}

// A small cluster as the planner would give it; svc ids follow (vip, port, proto) order.
desired_state cluster() {
  desired_state d;
  auto web = fe(v4("10.96.0.10"), 80, IPPROTO_TCP, frontend_kind::cluster_ip, "default/web:http",
                {{v4("10.244.1.5"), 8080, false}, {v4("10.244.2.7"), 8080, true}});
  web.affinity_timeout_s = 10800;
  auto empty = fe(v4("10.96.0.20"), 80, IPPROTO_TCP, frontend_kind::cluster_ip, "default/empty:",
                  {});
  auto np = fe(v4("192.168.50.11"), 30080, IPPROTO_TCP, frontend_kind::node_port,
               "default/web:http",
               {{v4("10.244.1.5"), 8080, false}, {v4("10.244.2.7"), 8080, true}});
  np.external_local = true;
  np.external_backends = {{v4("10.244.1.5"), 8080, false}};
  auto hp = fe(v4("192.168.50.11"), 8443, IPPROTO_TCP, frontend_kind::host_port,
               "default/pod-a:8443", {{v4("10.244.1.9"), 443, false}});
  auto lb = fe(v4("203.0.113.10"), 443, IPPROTO_TCP, frontend_kind::load_balancer,
               "shop/front:https", {{v4("10.244.3.4"), 8443, false}});
  lb.source_ranges = {{v4("10.0.0.0"), 8}, {v4("192.0.2.0"), 24}};
  auto dns = fe(v6("fd00:96::a"), 53, IPPROTO_UDP, frontend_kind::cluster_ip,
                "kube-system/dns:dns", {{v6("fd00:244::5"), 5353, false}});
  d.frontends = {web, empty, np, hp, lb, dns};
  d.unproxied = {{"default", "db", unproxied_reason::headless, ""},
                 {"default", "ext", unproxied_reason::external_name, "db.example.com"}};
  return d;
}

uint32_t svc_id_of(const agent& a, const char* vip, uint16_t port, uint8_t proto) {
  const ip_addr addr = std::string(vip).find(':') == std::string::npos ? v4(vip) : v6(vip);
  return a.writer->mirror().frontends.at({addr, port, proto}).svc_id;
}

template <typename Key, typename Value>
void put_ct(int fd, const Key& k, const Value& v) {
  REQUIRE(bpf_map_update_elem(fd, &k, &v, BPF_ANY) == 0);
}

// A TCP flow to web (FORWARD + REPLY) 30.5 s old, idle 2.5 s; a UDP flow to dns over IPv6
// idle 200.5 s (past the UDP timeout).
void fill_flows(const agent& a) {
  const uint64_t now = ctl::monotonic_ns();
  const uint64_t s = 1'000'000'000ull;
  const uint32_t web = svc_id_of(a, "10.96.0.10", 80, IPPROTO_TCP);
  const uint32_t dns = svc_id_of(a, "fd00:96::a", 53, IPPROTO_UDP);
  const uint32_t web_be = a.writer->mirror().frontends.at({v4("10.96.0.10"), 80, IPPROTO_TCP}).slots[0];
  const uint32_t dns_be = a.writer->mirror().frontends.at({v6("fd00:96::a"), 53, IPPROTO_UDP}).slots[0];
  const int ct4 = bpf_map__fd(a.skel()->maps.lb4_ct_v2);
  const int ct6 = bpf_map__fd(a.skel()->maps.lb6_ct_v2);

  lb4_ct_key fk{};
  inet_pton(AF_INET, "10.244.9.9", &fk.saddr);
  inet_pton(AF_INET, "10.96.0.10", &fk.daddr);
  fk.sport = htons(40000);
  fk.dport = htons(80);
  fk.proto = IPPROTO_TCP;
  lb4_ct_value fv{};
  fv.state = {.dir = LB_CT_FORWARD, .flags = 0, .nat_port = htons(8080), .backend_id = web_be,
              .svc_id = web, .created_ns = now - 30 * s - s / 2, .last_seen_ns = now - 2 * s - s / 2};
  inet_pton(AF_INET, "10.244.1.5", &fv.nat_addr);
  put_ct(ct4, fk, fv);
  lb4_ct_key rk{};
  rk.saddr = fv.nat_addr;
  rk.daddr = fk.saddr;
  rk.sport = htons(8080);
  rk.dport = htons(40000);
  rk.proto = IPPROTO_TCP;
  lb4_ct_value rv = fv;
  rv.state.dir = LB_CT_REPLY;
  rv.state.flags = LB_CT_F_SEEN_REPLY | LB_CT_F_FIN_REPLY;
  rv.state.nat_port = htons(80);
  rv.nat_addr = fk.daddr;
  put_ct(ct4, rk, rv);

  lb6_ct_key uk{};
  inet_pton(AF_INET6, "fd00:244::9", uk.saddr);
  inet_pton(AF_INET6, "fd00:96::a", uk.daddr);
  uk.sport = htons(5000);
  uk.dport = htons(53);
  uk.proto = IPPROTO_UDP;
  lb6_ct_value uv{};
  uv.state = {.dir = LB_CT_FORWARD, .flags = 0, .nat_port = htons(5353), .backend_id = dns_be,
              .svc_id = dns, .created_ns = now - 300 * s - s / 2, .last_seen_ns = now - 200 * s - s / 2};
  inet_pton(AF_INET6, "fd00:244::5", uv.nat_addr);
  put_ct(ct6, uk, uv);
}

// Counters: web's per-service ones on two CPUs (summed), and a few verdicts.
void fill_counters(const agent& a) {
  const uint32_t web = svc_id_of(a, "10.96.0.10", 80, IPPROTO_TCP);
  const uint32_t empty = svc_id_of(a, "10.96.0.20", 80, IPPROTO_TCP);
  const int svc_fd = bpf_map__fd(a.skel()->maps.lb_svc_stats_v1);
  std::vector<lb_svc_stat_value> cpus(2);
  cpus[0] = {.fwd_packets = 10, .fwd_bytes = 1000, .reply_packets = 8, .reply_bytes = 4000,
             .new_flows = 3, .rejected = 0};
  cpus[1] = {.fwd_packets = 5, .fwd_bytes = 500, .reply_packets = 4, .reply_bytes = 2000,
             .new_flows = 2, .rejected = 0};
  if (libbpf_num_possible_cpus() < 2) {
    cpus.resize(1);
    cpus[0] = {15, 1500, 12, 6000, 5, 0};
  }
  put_percpu(svc_fd, web, cpus);
  put_percpu(svc_fd, empty, std::vector<lb_svc_stat_value>{{.rejected = 4}});
  const int st_fd = bpf_map__fd(a.skel()->maps.lb_stats_v3);
  put_percpu(st_fd, LB_STAT_PASS, std::vector<lb_stat_value>{{100, 6400}});
  put_percpu(st_fd, LB_STAT_FWD_NEW, std::vector<lb_stat_value>{{5, 370}});
  put_percpu(st_fd, LB_STAT_REJECT, std::vector<lb_stat_value>{{4, 296}});
  put_percpu(st_fd, LB_STAT_DROP_SOURCE_RANGE, std::vector<lb_stat_value>{{2, 148}});
}

std::string pretty(const std::string& compact) {
  return nlohmann::ordered_json::parse(compact).dump(2) + "\n";
}

TEST_CASE("sluicectl on maps filled by the test: golden JSON and tables") {
  agent a;
  a.sync(cluster());
  fill_counters(a);
  fill_flows(a);

  const std::vector<std::pair<std::string, std::vector<std::string>>> commands = {
      {"service_list", {"service", "list"}},
      {"backend_list", {"backend", "list"}},
      {"stats", {"stats"}},
      {"ct_list", {"ct", "list"}},
      {"ct_list_service", {"ct", "list", "service", "default/web"}},
      {"ct_list_address", {"ct", "list", "address", "fd00:244::5"}},
      {"ct_list_port", {"ct", "list", "port", "8080"}},
  };
  for (const auto& [name, words] : commands) {
    SUBCASE(name.c_str()) {
      auto table = ctl(a, words);
      CHECK(table.code == 0);
      CHECK(table.err.empty());
      check_golden(name + ".txt", table.out);
      std::vector<std::string> j = words;
      j.insert(j.begin(), "-j");
      auto js = ctl(a, j);
      CHECK(js.code == 0);
      REQUIRE(nlohmann::json::accept(js.out));
      check_golden(name + ".json", pretty(js.out));
    }
  }
}

TEST_CASE("sluicectl ct flush: by service, then everything") {
  agent a;
  a.sync(cluster());
  fill_flows(a);
  // Without brackets the word is an IPv6 address without a port: no such frontend.
  auto out = ctl(a, {"-j", "ct", "flush", "service", "fd00:96::a:53/udp"});
  CHECK(out.code == 1);
  out = ctl(a, {"-j", "ct", "flush", "service", "[fd00:96::a]:53/udp"});
  CHECK(out.code == 0);
  CHECK(out.out == "{\"deleted\":1}\n");
  auto left = nlohmann::json::parse(ctl(a, {"-j", "ct", "list"}).out);
  CHECK(left.size() == 2);
  for (const auto& e : left) {
    CHECK(e["service"] == "default/web:http");
  }
  out = ctl(a, {"ct", "flush"});
  CHECK(out.code == 0);
  CHECK(out.out == "deleted 2 conntrack entries\n");
  CHECK(nlohmann::json::parse(ctl(a, {"-j", "ct", "list"}).out).empty());
}

TEST_CASE("sluicectl: exit codes 0 / 1 / 2, errors as JSON with -j") {
  agent a;
  a.sync(cluster());
  // 2: usage.
  auto o = ctl(a, {"service"});
  CHECK(o.code == 2);
  CHECK_FALSE(o.err.empty());
  o = ctl(a, {"-j", "frobnicate"});
  CHECK(o.code == 2);
  CHECK(nlohmann::json::parse(o.out).contains("error"));
  o = ctl(a, {"-j", "ct", "list", "colour", "red"});
  CHECK(o.code == 2);
  CHECK(nlohmann::json::parse(o.out)["error"] ==
        "unknown filter 'colour' (address, port, service)");
  o = ctl(a, {"trace", "tcp", "10.0.0.1:1"});
  CHECK(o.code == 2);
  CHECK(o.err.find("need a source and a destination") != std::string::npos);
  // 1: the command failed.
  o = ctl(a, {"-j", "ct", "list", "service", "nobody/here"});
  CHECK(o.code == 1);
  CHECK(nlohmann::json::parse(o.out)["error"] == "no frontend of service nobody/here in the maps");
  o = ctl::run({"--bpffs-root", a.root() + "/nowhere", "-j", "service", "list"});
  CHECK(o.code == 1);
  CHECK(nlohmann::json::parse(o.out)["error"].get<std::string>().find("is sluice-agent running") !=
        std::string::npos);
  o = ctl::run({"--bpffs-root", a.root() + "/nowhere", "stats"});
  CHECK(o.code == 1);
  CHECK(o.out.empty());
  CHECK(o.err.starts_with("Error: open "));
  // Options after the command, as bpftool allows.
  o = ctl(a, {"service", "list", "-j"});
  CHECK(o.code == 0);
  CHECK(nlohmann::json::parse(o.out).contains("frontends"));
  // 0: help.
  o = ctl(a, {"--help"});
  CHECK(o.code == 0);
  CHECK(o.out.find("trace") != std::string::npos);
}

TEST_CASE("names: a restarted agent restores lb_svc_info_v1 and lb_unproxied_v1 and writes nothing") {
  temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  {
    auto dp = datapath::load(fs.root());
    REQUIRE(dp);
    map_writer w(dp->skel());
    REQUIRE(w.restore());
    REQUIRE(w.sync(cluster()).failed_ops == 0);
  }
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);
  map_writer w(dp->skel());
  REQUIRE(w.restore());
  CHECK(w.mirror().info.size() == 6);
  CHECK(w.unproxied().size() == 2);
  auto rep = w.sync(cluster());
  CHECK(rep.ops == 0);
  // One Service becomes proxied, one is renamed: two writes of the unproxied map, and the
  // renamed frontend's name is rewritten without touching anything else.
  auto next = cluster();
  next.unproxied.erase(next.unproxied.begin());
  next.frontends[1].name = "default/empty2:";
  rep = w.sync(next);
  CHECK(rep.failed_ops == 0);
  CHECK(rep.ops == 2);
  lb_svc_info info{};
  const uint32_t id = w.mirror().frontends.at(next.frontends[1].key()).svc_id;
  REQUIRE(bpf_map_lookup_elem(bpf_map__fd(dp->skel()->maps.lb_svc_info_v1), &id, &info) == 0);
  CHECK(std::string(info.name) == "empty2");
  CHECK(info.kind == LB_KIND_CLUSTER_IP);
}

std::string shell(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
    out.append(buf, n);
  }
  pclose(f);
  return out;
}

TEST_CASE("bpftool map dump pinned prints named fields for every map the agent pins") {
  agent a;
  a.sync(cluster());
  fill_flows(a);
  // Flow maps the test has not filled get one zeroed entry each; the devices map one device.
  auto& m = a.skel()->maps;
  for (const auto& [map, sizes] : std::vector<std::pair<bpf_map*, std::pair<size_t, size_t>>>{
           {m.lb4_affinity_v1, {sizeof(lb4_affinity_key), sizeof(lb_affinity_value)}},
           {m.lb6_affinity_v1, {sizeof(lb6_affinity_key), sizeof(lb_affinity_value)}},
           {m.lb4_frags_v1, {sizeof(lb4_frag_key), sizeof(lb_frag_value)}},
           {m.lb6_frags_v1, {sizeof(lb6_frag_key), sizeof(lb_frag_value)}},
           {m.lb_devices_v1, {sizeof(uint32_t), sizeof(lb_device)}},
           {m.lb6_src_ranges_v1, {sizeof(lb6_src_range_key), sizeof(uint8_t)}},
           {m.lb4_sock_revnat_v1, {sizeof(lb4_sock_revnat_key), sizeof(lb4_sock_revnat_value)}},
           {m.lb6_sock_revnat_v1, {sizeof(lb6_sock_revnat_key), sizeof(lb6_sock_revnat_value)}},
           {m.lb_sock_affinity_v1, {sizeof(lb_sock_affinity_key), sizeof(lb_affinity_value)}}}) {
    std::vector<uint8_t> k(sizes.first), v(sizes.second);
    if (map == m.lb6_src_ranges_v1) {
      k[0] = LB_SRC_RANGE_KEY_PREFIX;  // prefixlen: the svc id only
    }
    REQUIRE(bpf_map__update_elem(map, k.data(), k.size(), v.data(), v.size(), BPF_ANY) == 0);
  }
  // A Maglev table for svc 1 (one element of M ids, as the writer makes them; the template's
  // size is the default).
  LIBBPF_OPTS(bpf_map_create_opts, inner_opts, .map_flags = LB_MAGLEV_TABLE_FLAGS);
  const int inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "mgtest", sizeof(uint32_t),
                                   LB_MAGLEV_TABLE_BYTES(LB_MAGLEV_DEFAULT_SIZE), 1, &inner_opts);
  REQUIRE(inner >= 0);
  const uint32_t svc1 = 1;
  REQUIRE(bpf_map_update_elem(bpf_map__fd(m.lb_maglev_v2), &svc1, &inner, BPF_ANY) == 0);
  close(inner);
  // A field each map's dump must name (BTF): every pin of the agent is listed here.
  const std::map<std::string, std::string> want = {
      {LB4_SERVICES_MAP, "\"slot\""},       {LB6_SERVICES_MAP, "\"affinity_timeout\""},
      {LB4_BACKENDS_MAP, "\"svc_id\""},     {LB6_BACKENDS_MAP, "\"state\""},
      {LB4_CT_MAP, "\"nat_addr\""},         {LB6_CT_MAP, "\"last_seen_ns\""},
      {LB4_AFFINITY_MAP, "\"client\""},     {LB6_AFFINITY_MAP, "\"last_used_ns\""},
      {LB4_FRAGS_MAP, "\"sport\""},         {LB6_FRAGS_MAP, "\"dport\""},
      {LB_STATS_MAP, "\"packets\""},        {LB_SVC_STATS_MAP, "\"new_flows\""},
      {LB4_SRC_RANGES_MAP, "\"prefixlen\""}, {LB6_SRC_RANGES_MAP, "\"prefixlen\""},
      {LB_MAGLEV_MAP, "\"key\""},           {LB_DEVICES_MAP, "\"addr4\""},
      {LB_SVC_INFO_MAP, "\"port_name\""},   {LB_UNPROXIED_MAP, "\"external_name\""},
      {LB_TRACE_MAP, "\"nonce\""},       {LB4_SOCK_REVNAT_MAP, "\"cookie\""},
      {LB6_SOCK_REVNAT_MAP, "\"netns_cookie\""}, {LB_SOCK_AFFINITY_MAP, "\"svc_id\""},
  };
  size_t maps = 0;
  for (const auto& e : std::filesystem::directory_iterator(a.root())) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(LB_PROG_PIN_PREFIX)) {
      continue;
    }
    ++maps;
    const auto it = want.find(name);
    REQUIRE_MESSAGE(it != want.end(), "pinned map " << name << " is not checked here: add it");
    const std::string out = shell("bpftool -j map dump pinned " + e.path().string() + " 2>&1");
    INFO(name << ": " << out.substr(0, 400));
    CHECK(nlohmann::json::accept(out));
    if (name != LB_MAGLEV_MAP) {  // values of a map of maps are inner map ids
      CHECK(out.find("\"formatted\"") != std::string::npos);
    }
    CHECK(out.find(it->second) != std::string::npos);
  }
  CHECK(maps == want.size());
  // The names are readable as text.
  const std::string info = shell("bpftool map dump pinned " + a.root() + "/" LB_SVC_INFO_MAP);
  CHECK(info.find("\"ns\": \"kube-system\"") != std::string::npos);
  CHECK(info.find("\"port_name\": \"https\"") != std::string::npos);
}

TEST_CASE("the agent pins every program, a restart replaces them, --cleanup removes them") {
  // cleanup() also detaches from every link of the network namespace: run it in the test's own.
  const bpftest::TestNet& n = bpftest::test_net();
  REQUIRE_MESSAGE(n.ok, n.why);
  agent a;
  for (const char* p : {LB_POD_INGRESS_PROG, LB_NODE_XDP_PROG, LB_NODE_INGRESS_PROG,
                        LB_NODE_EGRESS_PROG}) {
    CHECK(std::filesystem::exists(a.root() + "/" LB_PROG_PIN_PREFIX + p));
  }
  // A reload (agent restart) replaces the pins with the new programs.
  const int before = bpf_obj_get((a.root() + "/" LB_PROG_PIN_PREFIX LB_POD_INGRESS_PROG).c_str());
  REQUIRE(before >= 0);
  bpf_prog_info i1{};
  uint32_t len = sizeof(i1);
  REQUIRE(bpf_obj_get_info_by_fd(before, &i1, &len) == 0);
  close(before);
  auto again = datapath::load(a.root());
  REQUIRE(again);
  const int after = bpf_obj_get((a.root() + "/" LB_PROG_PIN_PREFIX LB_POD_INGRESS_PROG).c_str());
  REQUIRE(after >= 0);
  bpf_prog_info i2{};
  len = sizeof(i2);
  REQUIRE(bpf_obj_get_info_by_fd(after, &i2, &len) == 0);
  close(after);
  CHECK(i1.id != i2.id);
  CHECK(i2.id == [&] {
    bpf_prog_info i{};
    uint32_t l = sizeof(i);
    REQUIRE(bpf_obj_get_info_by_fd(bpf_program__fd(again->skel()->progs.lb_pod_ingress), &i, &l) == 0);
    return i.id;
  }());
  // --cleanup removes program pins with the maps.
  auto done = cleanup(a.root());
  REQUIRE(done);
  CHECK_FALSE(std::filesystem::exists(a.root()));
}

}  // namespace
}  // namespace sluice::ctltest
