// The incremental planner: equal to plan() after every step of random change sequences, reports
// exactly the frontend keys that changed, and re-plans only what a change touches.
#include "agent/planner/plan_cache.h"

#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "agent/planner/planner.h"
#include "test_helpers.h"

namespace sluice {

namespace {

using test::add;
using test::ip;
using test::make_endpoint;
using test::make_service;
using test::make_slice;
using test::slice_port;
using test::svc_port;

constexpr const char* here = "node-a";

// The keys whose frontend differs between two merged states.
std::set<frontend_key> differing(const std::map<frontend_key, desired_frontend>& before,
                                 const std::map<frontend_key, desired_frontend>& after) {
  std::set<frontend_key> out;
  for (const auto& [key, f] : before) {
    const auto found = after.find(key);
    if (found == after.end() || found->second != f) {
      out.insert(key);
    }
  }
  for (const auto& [key, f] : after) {
    if (!before.contains(key)) {
      out.insert(key);
    }
  }
  return out;
}

std::map<frontend_key, desired_frontend> by_key(const desired_state& state) {
  std::map<frontend_key, desired_frontend> out;
  for (const desired_frontend& f : state.frontends) {
    out.emplace(f.key(), f);
  }
  return out;
}

// Random cluster objects drawn from small pools, so that conflicts, shared slices, renames of
// a slice's owner and node-dependent results all happen often.
class generator {
 public:
  explicit generator(uint32_t seed) : rng_(seed) {}

  size_t pick(size_t n) { return rng_() % n; }
  bool coin(unsigned percent = 50) { return pick(100) < percent; }
  template <typename T>
  const T& one_of(const std::vector<T>& items) {
    return items[pick(items.size())];
  }

  object_key service_key() { return {one_of(namespaces_), one_of(service_names_)}; }
  object_key slice_key() {
    return {one_of(namespaces_), one_of(service_names_) + "-" + std::to_string(pick(3))};
  }
  object_key pod_key() { return {one_of(namespaces_), "pod-" + std::to_string(pick(4))}; }

  service make_service_at(const object_key& key) {
    std::vector<std::string> ips;
    const size_t families = pick(3);  // 0 = v4, 1 = v6, 2 = both
    if (families != 1) {
      ips.push_back(one_of(v4_vips_));
    }
    if (families != 0) {
      ips.push_back(one_of(v6_vips_));
    }
    std::vector<service_port> ports;
    for (size_t i = 0, n = 1 + pick(2); i < n; ++i) {
      service_port port = svc_port(one_of(port_names_), static_cast<uint16_t>(80 + pick(2)),
                                   coin(80) ? IPPROTO_TCP : (coin() ? IPPROTO_UDP : IPPROTO_SCTP));
      if (coin(40)) {
        port.node_port = static_cast<uint16_t>(30000 + pick(3));
      }
      ports.push_back(port);
    }
    service svc = make_service(key.namespace_, key.name, ips, ports);
    svc.type = coin(30) ? service_type::load_balancer
                        : (coin(30) ? service_type::node_port : service_type::cluster_ip);
    if (coin(5)) {
      svc.type = service_type::external_name;
    }
    if (coin(5)) {
      svc.labels[std::string(label_service_proxy_name)] = "other";
    }
    if (coin(30)) {
      svc.external_ips.push_back(ip(coin() ? "192.168.99.1" : "2001:db8:99::1"));
    }
    if (coin(30)) {
      svc.lb_ingress.push_back({ip(coin() ? "1.2.3.4" : "2001:db8:1b::1"), coin(20)});
    }
    if (coin(30)) {
      svc.lb_source_ranges.push_back(coin() ? ip_prefix{ip("192.168.0.0"), 16}
                                            : ip_prefix{ip("203.0.113.0"), 25});
    }
    svc.external_policy = coin() ? traffic_policy::local : traffic_policy::cluster;
    svc.internal_policy = coin(30) ? traffic_policy::local : traffic_policy::cluster;
    if (coin(30)) {
      svc.session_affinity_client_ip = true;
      svc.affinity_timeout_s = coin() ? 10800 : 60;
    }
    if (coin(50)) {
      svc.health_check_node_port = static_cast<uint16_t>(32000 + pick(2));
    }
    return svc;
  }

  endpoint_slice make_slice_at(const object_key& key) {
    const bool v6 = coin(30);
    std::vector<endpoint> endpoints;
    for (size_t i = 0, n = pick(4); i < n; ++i) {
      const std::string addr = v6 ? "fd00:10::" + std::to_string(1 + pick(4))
                                  : "10.180.0." + std::to_string(1 + pick(4));
      endpoint ep = make_endpoint(addr, maybe_bool(), maybe_bool(), maybe_bool());
      ep.node_name = coin() ? here : "node-b";
      if (coin(40)) {
        ep.hints_for_zones = {coin() ? "zone-a" : "zone-b"};
      }
      if (coin(20)) {
        ep.hints_for_nodes = {coin() ? here : "node-b"};
      }
      endpoints.push_back(ep);
    }
    std::vector<endpoint_port> ports;
    for (size_t i = 0, n = 1 + pick(2); i < n; ++i) {
      ports.push_back(slice_port(one_of(port_names_), static_cast<uint16_t>(8080 + pick(2)),
                                 coin(80) ? IPPROTO_TCP : IPPROTO_UDP));
    }
    // The owner is usually the slice's name prefix, sometimes another service (a relabel).
    std::string owner = key.name.substr(0, key.name.rfind('-'));
    if (coin(15)) {
      owner = one_of(service_names_);
    }
    endpoint_slice slice =
        make_slice(key.namespace_, key.name, owner,
                   v6 ? slice_address_type::ipv6 : slice_address_type::ipv4, endpoints, ports);
    if (coin(5)) {
      slice.labels[std::string(label_headless)] = "";
    }
    return slice;
  }

  pod make_pod_at(const object_key& key) {
    pod p;
    p.namespace_ = key.namespace_;
    p.name = key.name;
    p.node_name = coin(70) ? here : "node-b";
    p.pod_ips.push_back(ip("10.180.1." + std::to_string(1 + pick(3))));
    if (coin(30)) {
      p.pod_ips.push_back(ip("fd00:10::1:" + std::to_string(1 + pick(3))));
    }
    p.finished = coin(10);
    p.host_network = coin(10);
    pod_port port;
    port.container_port = 80;
    port.host_port = coin(80) ? static_cast<uint16_t>(30000 + pick(3)) : 0;
    port.protocol = coin(80) ? IPPROTO_TCP : IPPROTO_UDP;
    if (coin(30)) {
      port.host_ip = ip("192.168.0.2");
    }
    p.ports.push_back(port);
    return p;
  }

  node make_node() {
    node self;
    self.name = here;
    if (coin(70)) {
      self.labels[std::string(label_zone)] = coin() ? "zone-a" : "zone-b";
    }
    self.internal_ips.push_back(ip("192.168.0.2"));
    if (coin()) {
      self.internal_ips.push_back(ip("2001:db8::1"));
    }
    if (coin(30)) {
      self.external_ips.push_back(ip("203.0.113.9"));
    }
    return self;
  }

 private:
  std::optional<bool> maybe_bool() {
    const size_t v = pick(3);
    return v == 0 ? std::nullopt : std::optional<bool>(v == 1);
  }

  std::mt19937 rng_;
  std::vector<std::string> namespaces_{"a", "b"};
  std::vector<std::string> service_names_{"s0", "s1", "s2", "s3"};
  std::vector<std::string> port_names_{"", "http", "dns"};
  std::vector<std::string> v4_vips_{"172.30.0.1", "172.30.0.2", "192.168.0.2"};
  std::vector<std::string> v6_vips_{"fd00:10:96::1", "fd00:10:96::2"};
};

}  // namespace

TEST_CASE("plan_cache: random change sequences match plan() and report exact key sets") {
  for (const uint32_t seed : {1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u}) {
    CAPTURE(seed);
    generator gen(seed);
    cluster state;
    state.self_node = gen.make_node();
    plan_options options{here, {}};
    plan_cache cache;
    std::map<frontend_key, desired_frontend> previous;
    size_t incremental_steps = 0;

    for (int step = 0; step < 400; ++step) {
      CAPTURE(step);
      plan_changes changes;
      switch (step == 0 ? 9 : gen.pick(10)) {
        case 0:
        case 1: {  // add or modify a service
          const object_key key = gen.service_key();
          state.services[key] = gen.make_service_at(key);
          changes.services.insert(key);
          break;
        }
        case 2: {  // remove a service (maybe one that does not exist)
          const object_key key = gen.service_key();
          state.services.erase(key);
          changes.services.insert(key);
          break;
        }
        case 3:
        case 4: {  // add or modify a slice
          const object_key key = gen.slice_key();
          state.endpoint_slices[key] = gen.make_slice_at(key);
          changes.slices.insert(key);
          break;
        }
        case 5: {  // remove a slice
          const object_key key = gen.slice_key();
          state.endpoint_slices.erase(key);
          changes.slices.insert(key);
          break;
        }
        case 6: {  // add, modify or remove a pod
          const object_key key = gen.pod_key();
          if (gen.coin(30)) {
            state.pods.erase(key);
          } else {
            state.pods[key] = gen.make_pod_at(key);
          }
          changes.pods = true;
          break;
        }
        case 7: {  // our node changes (or disappears)
          if (gen.coin(10)) {
            state.self_node.reset();
          } else {
            state.self_node = gen.make_node();
          }
          changes.node = true;
          break;
        }
        case 8: {  // options change
          options.nodeport_addresses.clear();
          if (gen.coin()) {
            options.nodeport_addresses.push_back({ip("0.0.0.0"), 0});
          }
          break;
        }
        default: {  // several objects at once
          for (int i = 0; i < 3; ++i) {
            const object_key svc_key = gen.service_key();
            state.services[svc_key] = gen.make_service_at(svc_key);
            changes.services.insert(svc_key);
            const object_key slice_key = gen.slice_key();
            state.endpoint_slices[slice_key] = gen.make_slice_at(slice_key);
            changes.slices.insert(slice_key);
          }
          break;
        }
      }

      const std::set<frontend_key> reported = cache.update(state, options, changes);
      const desired_state expected = plan(state, options);
      REQUIRE(cache.state() == expected);
      const std::map<frontend_key, desired_frontend> now = by_key(expected);
      REQUIRE(reported == differing(previous, now));
      previous = now;
      incremental_steps += cache.last_stats().full ? 0 : 1;
    }
    // Most steps must have been incremental, or the test would not test the cache.
    CHECK(incremental_steps > 250);
  }
}

TEST_CASE("plan_cache: one changed slice re-plans only its service") {
  cluster state;
  node self;
  self.name = here;
  self.internal_ips = {ip("192.168.0.2")};
  state.self_node = self;
  // 1000 services with 100 endpoints each in 10 slices: 100k endpoints in 10k slices.
  for (int s = 0; s < 1000; ++s) {
    const std::string name = "svc-" + std::to_string(s);
    service svc = make_service("default", name, {fmt::format("172.30.{}.{}", s / 250, s % 250 + 1)},
                               {svc_port("http", 80)});
    svc.type = service_type::node_port;
    svc.ports[0].node_port = static_cast<uint16_t>(30000 + s);
    add(state, svc);
    for (int k = 0; k < 10; ++k) {
      std::vector<endpoint> endpoints;
      for (int e = 0; e < 10; ++e) {
        const int n = s * 100 + k * 10 + e;
        endpoints.push_back(
            make_endpoint(fmt::format("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256)));
      }
      add(state, make_slice("default", name + "-" + std::to_string(k), name,
                            slice_address_type::ipv4, endpoints, {slice_port("http", 8080)}));
    }
  }
  plan_cache cache;
  const std::set<frontend_key> first = cache.update(state, {here, {}}, {.all = true});
  CHECK(first.size() == 2000);
  CHECK(cache.last_stats().full);
  CHECK(cache.last_stats().services_planned == 1000);

  // Make one endpoint of svc-123 not ready.
  const object_key slice_key{"default", "svc-123-4"};
  state.endpoint_slices.at(slice_key).endpoints[3].ready = false;
  const std::set<frontend_key> changed = cache.update(state, {here, {}}, {.slices = {slice_key}});
  CHECK_FALSE(cache.last_stats().full);
  CHECK(cache.last_stats().services_planned == 1);
  CHECK(cache.last_stats().slices_read == 10);
  CHECK(cache.last_stats().pods_planned == 0);
  CHECK(changed == std::set<frontend_key>{{ip("172.30.0.124"), 80, IPPROTO_TCP},
                                          {ip("192.168.0.2"), 30123, IPPROTO_TCP}});
  CHECK(cache.frontends().at({ip("172.30.0.124"), 80, IPPROTO_TCP}).backends.size() == 99);

  // Nothing changed: nothing is re-planned, nothing reported.
  CHECK(cache.update(state, {here, {}}, {}).empty());
  CHECK(cache.last_stats().services_planned == 0);
}

TEST_CASE("plan_cache: a removed or relabelled slice is attributed to its former service") {
  cluster state;
  add(state, make_service("default", "a", {"172.30.0.1"}, {svc_port("http", 80)}));
  add(state, make_service("default", "b", {"172.30.0.2"}, {svc_port("http", 80)}));
  add(state, make_slice("default", "shared", "a", slice_address_type::ipv4,
                        {make_endpoint("10.180.0.1")}, {slice_port("http", 8080)}));
  plan_cache cache;
  cache.update(state, {here, {}}, {.all = true});
  const frontend_key a{ip("172.30.0.1"), 80, IPPROTO_TCP};
  const frontend_key b{ip("172.30.0.2"), 80, IPPROTO_TCP};
  CHECK(cache.frontends().at(a).backends.size() == 1);

  // Relabel to b: both services change.
  state.endpoint_slices.at({"default", "shared"}).service_name = "b";
  state.endpoint_slices.at({"default", "shared"}).labels[std::string(label_service_name)] = "b";
  CHECK(cache.update(state, {here, {}}, {.slices = {{"default", "shared"}}}) ==
        std::set<frontend_key>{a, b});
  CHECK(cache.frontends().at(a).backends.empty());
  CHECK(cache.frontends().at(b).backends.size() == 1);

  // Remove it: only b changes.
  state.endpoint_slices.clear();
  CHECK(cache.update(state, {here, {}}, {.slices = {{"default", "shared"}}}) ==
        std::set<frontend_key>{b});
  CHECK(cache.frontends().at(b).backends.empty());
  CHECK(cache.state() == plan(state, {here, {}}));
}

}  // namespace sluice

namespace sluice {
namespace {

TEST_CASE("plan_cache: Services not proxied are tracked and reported as changed only when they change") {
  cluster state;
  add(state, test::make_service("default", "web", {"10.96.0.1"}, {test::svc_port("http", 80)}));
  service db = test::make_service("default", "db", {}, {test::svc_port("pg", 5432)});
  db.headless = true;
  add(state, db);
  plan_cache cache;
  cache.update(state, {}, {.all = true});
  CHECK(cache.unproxied_changed());
  REQUIRE(cache.unproxied().size() == 1);
  CHECK(cache.unproxied().begin()->second.reason == unproxied_reason::headless);
  CHECK(cache.state().unproxied.size() == 1);

  // Another Service changes: the set does not.
  state.services.at({"default", "web"}).ports[0].port = 81;
  cache.update(state, {}, {.services = {{"default", "web"}}});
  CHECK_FALSE(cache.unproxied_changed());

  // db becomes an ExternalName, then a proxied ClusterIP.
  state.services.at({"default", "db"}).type = service_type::external_name;
  state.services.at({"default", "db"}).external_name = "db.example.com";
  cache.update(state, {}, {.services = {{"default", "db"}}});
  CHECK(cache.unproxied_changed());
  CHECK(cache.unproxied().begin()->second.external_name == "db.example.com");
  state.services.at({"default", "db"}) =
      test::make_service("default", "db", {"10.96.0.2"}, {test::svc_port("pg", 5432)});
  cache.update(state, {}, {.services = {{"default", "db"}}});
  CHECK(cache.unproxied_changed());
  CHECK(cache.unproxied().empty());
  CHECK(cache.state() == plan(state, {}));
}

}  // namespace
}  // namespace sluice
