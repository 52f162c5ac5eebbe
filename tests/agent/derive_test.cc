// derive(): Endpoints mirroring, Pods -> EndpointSlices, cluster IP and node port allocation
// (stability across reloads and restarts, explicit values, collisions).
#include "agent/sources/derive.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "agent/planner/planner.h"
#include "agent/sources/manifest.h"
#include "test_helpers.h"

namespace sluice {

namespace {

using test::fixture;
using test::ip;

ip_prefix cidr(std::string_view text) {
  const std::optional<ip_prefix> p = parse_prefix(text);
  REQUIRE(p.has_value());
  return *p;
}

service make_svc(std::string name, service_type type = service_type::cluster_ip,
                 std::vector<service_port> ports = {test::svc_port("", 80)}) {
  service svc;
  svc.namespace_ = "default";
  svc.name = std::move(name);
  svc.type = type;
  svc.ports = std::move(ports);
  svc.source = "test.yaml";
  return svc;
}

pod make_pod(std::string name, std::vector<std::string> ips, bool ready,
             std::map<std::string, std::string> labels = {{"app", "web"}}) {
  pod p;
  p.name = std::move(name);
  for (const std::string& text : ips) {
    p.pod_ips.push_back(ip(text));
  }
  p.ready = ready;
  p.labels = std::move(labels);
  p.node_name = "node-1";
  p.ports.push_back(pod_port{"http", 8080, IPPROTO_TCP, 0, std::nullopt});
  return p;
}

cluster with(std::vector<service> services) {
  cluster c;
  for (service& svc : services) {
    test::add(c, std::move(svc));
  }
  return c;
}

const service& svc_of(const cluster& c, std::string name) {
  return c.services.at(object_key{"default", std::move(name)});
}

// The cluster IP `name` gets when it is alone and nothing is remembered: its hash home.
ip_addr home_ip(const std::string& name, const derive_options& opts) {
  cluster c = with({make_svc(name)});
  allocator fresh;
  derive(c, opts, fresh);
  return svc_of(c, name).cluster_ips.at(0);
}

std::string addresses(const endpoint_slice& slice) {
  std::string out;
  for (const endpoint& ep : slice.endpoints) {
    out += fmt::format(
        "{}{} ready={} serving={} terminating={} node={} zone={}\n", format_ip(ep.addresses.at(0)),
        "", ep.ready ? (*ep.ready ? "true" : "false") : "nil",
        ep.serving ? (*ep.serving ? "true" : "false") : "nil",
        ep.terminating ? (*ep.terminating ? "true" : "false") : "nil", ep.node_name, ep.zone);
  }
  return out;
}

}  // namespace

TEST_CASE("derive: a selector-less Service for an external database works end to end") {
  auto loaded = load_manifest_dir(fixture("standalone"));
  REQUIRE(loaded);
  REQUIRE(loaded->errors.empty());
  cluster& c = loaded->objects;
  allocator alloc;
  const derive_result r =
      derive(c, {.service_cidrs = {cidr("10.96.0.0/16")}, .nodes = &loaded->nodes}, alloc);
  CHECK(r.lines.empty());
  CHECK(r.rejected == 0);
  CHECK(r.mirrored_slices == 1);  // shop/legacy is labelled skip-mirror

  const service& db = c.services.at(object_key{"shop", "db"});
  REQUIRE(db.cluster_ips.size() == 1);
  CHECK(prefix_contains(cidr("10.96.0.0/16"), db.cluster_ips[0]));
  CHECK(db.ip_families == std::vector<ip_family>{ip_family::v4});

  const endpoint_slice& slice = c.endpoint_slices.at(object_key{"shop", "db-mirror-0"});
  CHECK(slice.service_name == "db");
  CHECK(slice.address_type == slice_address_type::ipv4);
  CHECK(slice.labels ==
        std::map<std::string, std::string>{
            {"endpointslice.kubernetes.io/managed-by", "endpointslicemirroring-controller.k8s.io"},
            {"kubernetes.io/service-name", "db"},
            {"team", "data"}});
  CHECK(addresses(slice) ==
        "192.0.2.10 ready=true serving=nil terminating=nil node= zone=\n"
        "192.0.2.11 ready=true serving=nil terminating=nil node= zone=\n"
        "192.0.2.12 ready=false serving=nil terminating=nil node= zone=\n");
  CHECK(slice.ports == std::vector<endpoint_port>{{"pg", 5432, IPPROTO_TCP}});
  CHECK(slice.source == fixture("standalone/external-db.yaml").string());
  for (const auto& [key, s] : c.endpoint_slices) {
    CHECK(s.service_name != "legacy");
  }

  // And the planner sends the ClusterIP to the two ready addresses outside the cluster.
  const desired_state plan_out = plan(c, {.node_name = "node-1"});
  std::string db_frontends;
  for (const desired_frontend& f : plan_out.frontends) {
    if (f.name.starts_with("shop/db")) {
      db_frontends += test::describe(f) + "\n";
    }
  }
  CHECK(db_frontends == fmt::format("{}:5432/TCP shop/db:pg affinity=0 -> 192.0.2.10:5432, "
                                    "192.0.2.11:5432\n",
                                    format_ip(db.cluster_ips[0])));
}

TEST_CASE("derive: Pods matching a selector become slices as the EndpointSlice controller makes") {
  auto loaded = load_manifest_dir(fixture("standalone"));
  REQUIRE(loaded);
  cluster& c = loaded->objects;
  allocator alloc;
  const derive_result r =
      derive(c, {.service_cidrs = {cidr("10.96.0.0/16")}, .nodes = &loaded->nodes}, alloc);
  CHECK(r.pod_slices == 3);

  // Grouped by resolved ports: http is a named targetPort, resolved per Pod; the hostNetwork
  // Pod has no port named http and is left out of that port only.
  const endpoint_slice& same = c.endpoint_slices.at(object_key{"shop", "web-pods-0"});
  CHECK(same.service_name == "web");
  CHECK(same.labels == std::map<std::string, std::string>{{"app", "web"},
                                                          {"endpointslice.kubernetes.io/managed-by",
                                                           "endpointslice-controller.k8s.io"},
                                                          {"kubernetes.io/service-name", "web"}});
  CHECK(same.ports ==
        std::vector<endpoint_port>{{"http", 8080, IPPROTO_TCP}, {"metrics", 9090, IPPROTO_TCP}});
  CHECK(addresses(same) ==
        "10.244.1.5 ready=true serving=true terminating=false node=node-1 zone=zone-a\n"
        "10.244.1.7 ready=false serving=true terminating=true node=node-1 zone=zone-a\n");

  const endpoint_slice& other_port = c.endpoint_slices.at(object_key{"shop", "web-pods-1"});
  CHECK(other_port.ports ==
        std::vector<endpoint_port>{{"http", 8081, IPPROTO_TCP}, {"metrics", 9090, IPPROTO_TCP}});
  CHECK(addresses(other_port) ==
        "10.244.2.6 ready=false serving=false terminating=false node=node-2 zone=zone-b\n");

  const endpoint_slice& host = c.endpoint_slices.at(object_key{"shop", "web-pods-2"});
  CHECK(host.ports == std::vector<endpoint_port>{{"metrics", 9090, IPPROTO_TCP}});
  CHECK(addresses(host) ==
        "172.18.0.3 ready=true serving=true terminating=false node=node-2 zone=zone-b\n");

  // Finished (web-d), other namespace (web-e) and IP-less (web-f) Pods are in no slice.
  std::size_t web_endpoints = 0;
  for (const auto& [key, s] : c.endpoint_slices) {
    if (s.service_name == "web") {
      web_endpoints += s.endpoints.size();
    }
  }
  CHECK(web_endpoints == 4);
}

TEST_CASE("derive: publishNotReadyAddresses, dual-stack Pods, chunks of 100, name clashes") {
  service svc = make_svc("web", service_type::cluster_ip,
                         {service_port{"http", IPPROTO_TCP, 80, std::string("http"), 0},
                          service_port{"raw", IPPROTO_UDP, 81, uint16_t{9000}, 0}});
  svc.selector = {{"app", "web"}};
  svc.publish_not_ready_addresses = true;
  svc.cluster_ips = {ip("10.96.0.10"), ip("fd00::10")};
  svc.ip_families = {ip_family::v4, ip_family::v6};
  cluster c = with({svc});
  pod terminating = make_pod("b", {"10.244.0.2", "fd00:244::2"}, true);
  terminating.terminating = true;
  terminating.namespace_ = "default";
  for (pod p : {make_pod("a", {"10.244.0.1"}, false), terminating,
                make_pod("c", {"10.244.0.3"}, true, {{"app", "db"}})}) {
    c.pods.emplace(p.key(), p);
  }
  // A hand-written slice that happens to use the first derived name is kept as it is.
  test::add(c, test::make_slice("default", "web-pods-0", "web", slice_address_type::ipv4,
                                {test::make_endpoint("10.9.9.9")}, {test::slice_port("http", 80)}));

  allocator alloc;
  const derive_result r = derive(c, {}, alloc);
  CHECK(r.pod_slices == 2);
  CHECK(c.endpoint_slices.at(object_key{"default", "web-pods-0"}).endpoints.size() == 1);
  const endpoint_slice& v4 = c.endpoint_slices.at(object_key{"default", "web-pods-1"});
  CHECK(v4.address_type == slice_address_type::ipv4);
  CHECK(addresses(v4) ==
        "10.244.0.1 ready=true serving=false terminating=false node=node-1 zone=\n"
        "10.244.0.2 ready=true serving=true terminating=true node=node-1 zone=\n");
  // The UDP port's numeric targetPort is used as is; the named TCP one is looked up by name
  // and protocol.
  CHECK(v4.ports ==
        std::vector<endpoint_port>{{"http", 8080, IPPROTO_TCP}, {"raw", 9000, IPPROTO_UDP}});
  const endpoint_slice& v6 = c.endpoint_slices.at(object_key{"default", "web-pods-2"});
  CHECK(v6.address_type == slice_address_type::ipv6);
  CHECK(addresses(v6) ==
        "fd00:244::2 ready=true serving=true terminating=true node=node-1 zone=\n");

  // 250 ready Pods: slices of 100, 100 and 50.
  service many = make_svc("many");
  many.selector = {{"app", "many"}};
  many.ports = {service_port{"", IPPROTO_TCP, 80, uint16_t{8080}, 0}};
  many.cluster_ips = {ip("10.96.0.11")};
  cluster big = with({many});
  for (int i = 0; i < 250; ++i) {
    pod p = make_pod(fmt::format("p{:03}", i), {fmt::format("10.245.{}.{}", i / 200, i % 200)},
                     true, {{"app", "many"}});
    big.pods.emplace(p.key(), p);
  }
  CHECK(derive(big, {}, alloc).pod_slices == 3);
  CHECK(big.endpoint_slices.at(object_key{"default", "many-pods-0"}).endpoints.size() == 100);
  CHECK(big.endpoint_slices.at(object_key{"default", "many-pods-1"}).endpoints.size() == 100);
  CHECK(big.endpoint_slices.at(object_key{"default", "many-pods-2"}).endpoints.size() == 50);
  CHECK(big.endpoint_slices.at(object_key{"default", "many-pods-2"}).endpoints.back().addresses ==
        std::vector<ip_addr>{ip("10.245.1.49")});
}

TEST_CASE("derive: headless and selector-less Services; Endpoints of a selector Service") {
  service headless = make_svc("h");
  headless.headless = true;
  headless.selector = {{"app", "web"}};
  service with_selector = make_svc("s");
  with_selector.selector = {{"app", "web"}};
  with_selector.cluster_ips = {ip("10.96.0.3")};
  cluster c = with({headless, with_selector});
  pod p = make_pod("a", {"10.244.0.1", "fd00::1"}, true);
  c.pods.emplace(p.key(), p);
  endpoints eps;
  eps.name = "s";
  eps.subsets.push_back({{{ip("10.244.0.1"), ""}}, {}, {endpoint_port{"", 80, IPPROTO_TCP}}});
  c.legacy_endpoints.emplace(eps.key(), eps);
  endpoints orphan = eps;
  orphan.name = "no-service";
  c.legacy_endpoints.emplace(orphan.key(), orphan);

  allocator alloc;
  const derive_result r = derive(c, {.service_cidrs = {cidr("10.96.0.0/24")}}, alloc);
  // The Endpoints of a Service with a selector are the endpoints controller's output, and
  // Endpoints without a Service are not mirrored.
  CHECK(r.mirrored_slices == 0);
  // A headless Service gets no IP, and slices of both families, marked headless.
  CHECK(svc_of(c, "h").cluster_ips.empty());
  const endpoint_slice& h4 = c.endpoint_slices.at(object_key{"default", "h-pods-0"});
  const endpoint_slice& h6 = c.endpoint_slices.at(object_key{"default", "h-pods-1"});
  CHECK(h4.address_type == slice_address_type::ipv4);
  CHECK(h6.address_type == slice_address_type::ipv6);
  CHECK(h4.labels.contains("service.kubernetes.io/headless"));
  // A Service with a cluster IP but no ipFamilies: the family of that IP only.
  CHECK(c.endpoint_slices.at(object_key{"default", "s-pods-0"}).address_type ==
        slice_address_type::ipv4);
  CHECK_FALSE(c.endpoint_slices.contains(object_key{"default", "s-pods-1"}));
  CHECK(r.pod_slices == 3);
}

TEST_CASE("derive: cluster IPs and node ports are allocated in range, explicit ones win") {
  const derive_options opts{.service_cidrs = {cidr("10.96.0.0/24"), cidr("fd00:10:96::/112")}};
  service node_port =
      make_svc("np", service_type::node_port,
               {test::svc_port("dns", 53, IPPROTO_UDP), test::svc_port("dns-tcp", 53, IPPROTO_TCP),
                test::svc_port("web", 80)});
  service explicit_np = make_svc("explicit", service_type::node_port, {test::svc_port("", 80)});
  explicit_np.ports[0].node_port = 31000;
  explicit_np.cluster_ips = {ip("10.96.0.77")};
  service lb = make_svc("lb", service_type::load_balancer);
  lb.external_policy = traffic_policy::local;
  service lb_no_ports = make_svc("lb-bare", service_type::load_balancer);
  lb_no_ports.allocate_lb_node_ports = false;
  service v6 = make_svc("v6");
  v6.ip_families = {ip_family::v6};
  service dual = make_svc("dual");
  dual.family_policy = ip_family_policy::prefer_dual_stack;
  dual.ip_families = {ip_family::v6, ip_family::v4};
  service require = make_svc("require");
  require.family_policy = ip_family_policy::require_dual_stack;
  service headless = make_svc("headless");
  headless.headless = true;
  service named = make_svc("named", service_type::external_name);
  cluster c = with({node_port, explicit_np, lb, lb_no_ports, v6, dual, require, headless, named});

  allocator alloc;
  const derive_result r = derive(c, opts, alloc);
  CHECK(r.lines.empty());
  CHECK(r.rejected == 0);

  std::set<ip_addr> seen;
  for (const auto& [key, svc] : c.services) {
    for (const ip_addr& a : svc.cluster_ips) {
      CHECK(seen.insert(a).second);
      CHECK(a != ip("10.96.0.0"));
      CHECK(a != ip("10.96.0.255"));
      CHECK(a != ip("fd00:10:96::"));
      CHECK(
          (prefix_contains(opts.service_cidrs[0], a) || prefix_contains(opts.service_cidrs[1], a)));
    }
  }
  CHECK(svc_of(c, "explicit").cluster_ips == std::vector<ip_addr>{ip("10.96.0.77")});
  CHECK(svc_of(c, "explicit").ports[0].node_port == 31000);
  CHECK(svc_of(c, "np").cluster_ips.at(0).family == ip_family::v4);  // the primary family
  CHECK(svc_of(c, "v6").cluster_ips.size() == 1);
  CHECK(svc_of(c, "v6").cluster_ips.at(0).family == ip_family::v6);
  CHECK(svc_of(c, "dual").ip_families == std::vector<ip_family>{ip_family::v6, ip_family::v4});
  CHECK(svc_of(c, "dual").cluster_ips.at(0).family == ip_family::v6);
  CHECK(svc_of(c, "require").cluster_ips.size() == 2);
  CHECK(svc_of(c, "headless").cluster_ips.empty());
  CHECK(svc_of(c, "named").cluster_ips.empty());
  CHECK(r.allocated_cluster_ips == 8);  // np lb lb-bare v6 dual(2) require(2)

  // TCP and UDP 53 share one nodePort, as the API server assigns them.
  const service& np = svc_of(c, "np");
  CHECK(np.ports[0].node_port == np.ports[1].node_port);
  CHECK(np.ports[0].node_port != np.ports[2].node_port);
  for (const service_port& p : np.ports) {
    CHECK(p.node_port >= 30000);
    CHECK(p.node_port <= 32767);
    CHECK(p.node_port != 31000);
  }
  CHECK(svc_of(c, "lb").ports[0].node_port != 0);
  CHECK(svc_of(c, "lb").health_check_node_port != 0);
  CHECK(svc_of(c, "lb").health_check_node_port != svc_of(c, "lb").ports[0].node_port);
  CHECK(svc_of(c, "lb-bare").ports[0].node_port == 0);
  CHECK(svc_of(c, "lb-bare").health_check_node_port == 0);
  CHECK(r.allocated_node_ports == 4);  // np (2), lb port, lb health check
}

TEST_CASE("derive: allocations are stable across reloads and restarts") {
  const derive_options opts{.service_cidrs = {cidr("10.96.0.0/16")}};
  const auto load = [] {
    return with({make_svc("a", service_type::node_port), make_svc("b"),
                 make_svc("c", service_type::load_balancer)});
  };
  allocator alloc;
  cluster first = load();
  derive(first, opts, alloc);
  CHECK(alloc.size() == 5);  // 3 IPs, 2 node ports

  cluster reload = load();
  derive(reload, opts, alloc);
  CHECK(reload.services == first.services);

  // A restart: nothing remembered, the same hashes give the same values.
  allocator fresh;
  cluster restarted = load();
  derive(restarted, opts, fresh);
  CHECK(restarted.services == first.services);
  CHECK(fresh == alloc);

  // Remembered values are kept even when the service would hash elsewhere now.
  allocator moved;
  moved.remember_cluster_ip(object_key{"default", "b"}, ip("10.96.200.200"));
  moved.remember_node_port(object_key{"default", "a"}, 80, 32000);
  cluster kept = load();
  derive(kept, opts, moved);
  CHECK(svc_of(kept, "b").cluster_ips == std::vector<ip_addr>{ip("10.96.200.200")});
  CHECK(svc_of(kept, "a").ports[0].node_port == 32000);
}

TEST_CASE("derive: a new Service that hashes onto an existing one's IP never moves it") {
  // A /28 has 14 usable addresses, so a colliding name is easy to find.
  const derive_options opts{.service_cidrs = {cidr("10.96.0.0/28")}};
  const ip_addr existing_home = home_ip("zz-existing", opts);
  std::string newcomer;
  for (int i = 0; i < 1000 && newcomer.empty(); ++i) {
    const std::string name = fmt::format("a{}", i);  // sorts before "zz-existing"
    if (home_ip(name, opts) == existing_home) {
      newcomer = name;
    }
  }
  REQUIRE_FALSE(newcomer.empty());

  allocator alloc;
  cluster before = with({make_svc("zz-existing")});
  derive(before, opts, alloc);
  CHECK(svc_of(before, "zz-existing").cluster_ips == std::vector<ip_addr>{existing_home});

  cluster after = with({make_svc("zz-existing"), make_svc(newcomer)});
  derive(after, opts, alloc);
  CHECK(svc_of(after, "zz-existing").cluster_ips == std::vector<ip_addr>{existing_home});
  const ip_addr probed = svc_of(after, newcomer).cluster_ips.at(0);
  CHECK(probed != existing_home);
  CHECK(prefix_contains(opts.service_cidrs[0], probed));

  // A restart that keeps the allocator's memory (save/load) changes nothing.
  const std::expected<allocator, std::string> restored = allocator::load(alloc.save());
  REQUIRE(restored);
  allocator reloaded = *restored;
  cluster restarted = with({make_svc("zz-existing"), make_svc(newcomer)});
  derive(restarted, opts, reloaded);
  CHECK(restarted.services == after.services);

  // Deleting the existing Service frees its address; the newcomer keeps its own.
  cluster deleted = with({make_svc(newcomer)});
  derive(deleted, opts, alloc);
  CHECK(svc_of(deleted, newcomer).cluster_ips == std::vector<ip_addr>{probed});
  CHECK_FALSE(alloc.cluster_ip(object_key{"default", "zz-existing"}, ip_family::v4));
}

TEST_CASE("derive: explicit values that collide reject the later Service; remembered owner wins") {
  const derive_options opts{.service_cidrs = {cidr("10.96.0.0/24")}};
  service a = make_svc("a", service_type::node_port);
  a.cluster_ips = {ip("10.96.0.5")};
  a.ports[0].node_port = 30005;
  service b = make_svc("b");
  b.cluster_ips = {ip("10.96.0.5")};
  service c1 = make_svc("c", service_type::node_port);
  c1.ports[0].node_port = 30005;
  c1.source = "c.yaml";

  allocator alloc;
  cluster c = with({a, b, c1});
  const derive_result r = derive(c, opts, alloc);
  CHECK(r.rejected == 2);
  CHECK(r.lines == std::vector<std::string>{
                       "test.yaml: Service default/b: spec.clusterIP 10.96.0.5 is already used by "
                       "Service default/a; ignoring this one",
                       "c.yaml: Service default/c: nodePort 30005 is already used by Service "
                       "default/a; ignoring this one"});
  CHECK(c.services.size() == 1);
  CHECK(c.services.contains(object_key{"default", "a"}));

  // When the allocator remembers the later one owning the address, that one wins.
  allocator remembers_b;
  remembers_b.remember_cluster_ip(object_key{"default", "b"}, ip("10.96.0.5"));
  cluster again = with({a, b});
  const derive_result r2 = derive(again, opts, remembers_b);
  CHECK(r2.lines == std::vector<std::string>{
                        "test.yaml: Service default/a: spec.clusterIP 10.96.0.5 is already used by "
                        "Service default/b; ignoring this one"});
  CHECK(again.services.contains(object_key{"default", "b"}));

  // An explicit address that another Service had been given dynamically moves that one.
  allocator dynamic;
  dynamic.remember_cluster_ip(object_key{"default", "d"}, ip("10.96.0.5"));
  cluster moved = with({a, make_svc("d")});
  const derive_result r3 = derive(moved, {.service_cidrs = opts.service_cidrs}, dynamic);
  CHECK(r3.lines.empty());
  CHECK(svc_of(moved, "a").cluster_ips == std::vector<ip_addr>{ip("10.96.0.5")});
  CHECK(svc_of(moved, "d").cluster_ips.at(0) != ip("10.96.0.5"));
  CHECK(dynamic.cluster_ip(object_key{"default", "d"}, ip_family::v4) ==
        svc_of(moved, "d").cluster_ips.at(0));
}

TEST_CASE("derive: families the CIDRs cannot serve, a full range, no CIDR at all") {
  service require = make_svc("require");
  require.family_policy = ip_family_policy::require_dual_stack;
  service v6 = make_svc("v6");
  v6.ip_families = {ip_family::v6};
  service prefer = make_svc("prefer");
  prefer.family_policy = ip_family_policy::prefer_dual_stack;
  cluster c = with({require, v6, prefer});
  allocator alloc;
  const derive_result r = derive(c, {.service_cidrs = {cidr("10.96.0.0/24")}}, alloc);
  CHECK(r.rejected == 2);
  CHECK(r.lines == std::vector<std::string>{
                       "test.yaml: Service default/require: no --service-cidr of family IPv6 to "
                       "allocate from; ignoring this one",
                       "test.yaml: Service default/v6: no --service-cidr of family IPv6 to "
                       "allocate from; ignoring this one"});
  CHECK(svc_of(c, "prefer").cluster_ips.size() == 1);  // PreferDualStack settles for one

  // A /30 has two usable addresses.
  cluster full = with({make_svc("a"), make_svc("b"), make_svc("c")});
  allocator small;
  const derive_result r2 = derive(full, {.service_cidrs = {cidr("10.96.0.0/30")}}, small);
  CHECK(r2.lines == std::vector<std::string>{
                        "test.yaml: Service default/c: service CIDR 10.96.0.0/30 is full"});
  CHECK(r2.rejected == 0);
  CHECK(svc_of(full, "c").cluster_ips.empty());
  CHECK(
      std::set<ip_addr>{svc_of(full, "a").cluster_ips.at(0), svc_of(full, "b").cluster_ips.at(0)} ==
      std::set<ip_addr>{ip("10.96.0.1"), ip("10.96.0.2")});

  // Without --service-cidr nothing is allocated and nothing is reported.
  cluster none = with({make_svc("a")});
  allocator unused;
  const derive_result r3 = derive(none, {}, unused);
  CHECK(r3.lines.empty());
  CHECK(svc_of(none, "a").cluster_ips.empty());
  CHECK(svc_of(none, "a").ip_families.empty());
}

TEST_CASE("allocator: save and load") {
  allocator a;
  a.remember_cluster_ip(object_key{"shop", "web"}, ip("10.96.0.7"));
  a.remember_cluster_ip(object_key{"shop", "web"}, ip("fd00::7"));
  a.remember_node_port(object_key{"shop", "web"}, 80, 30080);
  a.remember_node_port(object_key{"shop", "web"}, 0, 32000);
  const std::string text = a.save();
  CHECK(text ==
        "ip shop/web 10.96.0.7\nip shop/web fd00::7\nport shop/web 0 32000\nport shop/web 80 "
        "30080\n");
  const std::expected<allocator, std::string> back = allocator::load(text);
  REQUIRE(back);
  CHECK(*back == a);
  CHECK(allocator::load("").value() == allocator{});

  for (const auto& [bad, message] : std::vector<std::pair<std::string, std::string>>{
           {"ip shop/web 10.96.0.300\n", "line 1: cannot read \"ip shop/web 10.96.0.300\""},
           {"\nport web 80 30080\n", "line 2: cannot read \"port web 80 30080\""},
           {"port shop/web 80 0\n", "line 1: cannot read \"port shop/web 80 0\""},
           {"port shop/web 80 70000\n", "line 1: cannot read \"port shop/web 80 70000\""},
           {"ip shop/web 10.96.0.1 extra\n", "line 1: cannot read \"ip shop/web 10.96.0.1 extra\""},
           {"name shop/web x\n", "line 1: cannot read \"name shop/web x\""}}) {
    CAPTURE(bad);
    const std::expected<allocator, std::string> r = allocator::load(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error() == message);
  }
}

}  // namespace sluice
