// Planner cases modelled on kube-proxy's behaviour (reference/kube-semantics.md §1.2, §1.3).
#include "agent/planner/planner.h"

#include <doctest/doctest.h>

#include "agent/sources/manifest.h"
#include "test_helpers.h"

namespace sluice {

namespace {

using test::add;
using test::describe;
using test::make_endpoint;
using test::make_service;
using test::make_slice;
using test::slice_port;
using test::svc_port;

constexpr auto v4 = slice_address_type::ipv4;
constexpr auto v6 = slice_address_type::ipv6;

std::string plan_text(const cluster& state) { return describe(plan(state, {"node-a"})); }

// A cluster with default/web (10.96.0.1, port http 80/TCP) and the given slices.
cluster web_with(std::vector<endpoint_slice> slices) {
  cluster state;
  add(state, make_service("default", "web", {"10.96.0.1"}, {svc_port("http", 80)}));
  for (endpoint_slice& slice : slices) {
    add(state, std::move(slice));
  }
  return state;
}

endpoint_slice web_slice(std::string name, std::vector<endpoint> endpoints, uint16_t port = 8080) {
  return make_slice("default", std::move(name), "web", v4, std::move(endpoints),
                    {slice_port("http", port)});
}

}  // namespace

TEST_CASE("plan: empty cluster gives no frontends") {
  CHECK(plan(cluster{}, {}).frontends.empty());
}

TEST_CASE("plan: ClusterIP with one endpoint") {
  const desired_state state =
      plan(web_with({web_slice("web-1", {make_endpoint("10.244.1.7")})}), {"node-a"});
  REQUIRE(state.frontends.size() == 1);
  const desired_frontend& f = state.frontends[0];
  CHECK(f.vip == test::ip("10.96.0.1"));
  CHECK(f.port == 80);
  CHECK(f.proto == IPPROTO_TCP);
  CHECK(f.name == "default/web:http");
  CHECK(f.affinity_timeout_s == 0);
  REQUIRE(f.backends.size() == 1);
  CHECK(f.backends[0] == desired_backend{test::ip("10.244.1.7"), 8080, false});
}

TEST_CASE("plan: ClusterIP with several endpoints gives sorted backends") {
  const cluster state =
      web_with({web_slice("web-1", {make_endpoint("10.244.2.3"), make_endpoint("10.244.1.10", true),
                                    make_endpoint("10.244.1.9", true, true, false)})});
  CHECK(plan_text(state) ==
        "10.96.0.1:80/TCP default/web:http affinity=0 -> "
        "10.244.1.9:8080, 10.244.1.10:8080, 10.244.2.3:8080\n");
}

TEST_CASE("plan: named targetPort resolves to a different port per slice") {
  const cluster state = web_with({web_slice("web-old", {make_endpoint("10.244.1.1")}, 8080),
                                  web_slice("web-new", {make_endpoint("10.244.2.2")}, 9090)});
  CHECK(plan_text(state) ==
        "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080, 10.244.2.2:9090\n");
}

TEST_CASE("plan: the same port number over TCP and UDP gives two frontends") {
  cluster state;
  add(state, make_service("kube-system", "dns", {"10.96.0.10"},
                          {svc_port("dns", 53, IPPROTO_UDP), svc_port("dns-tcp", 53)}));
  add(state, make_slice("kube-system", "dns-1", "dns", v4,
                        {make_endpoint("10.244.0.5"), make_endpoint("10.244.0.6")},
                        {slice_port("dns-tcp", 1053), slice_port("dns", 53, IPPROTO_UDP)}));
  CHECK(plan_text(state) ==
        "10.96.0.10:53/TCP kube-system/dns:dns-tcp affinity=0 -> "
        "10.244.0.5:1053, 10.244.0.6:1053\n"
        "10.96.0.10:53/UDP kube-system/dns:dns affinity=0 -> 10.244.0.5:53, 10.244.0.6:53\n");
}

TEST_CASE("plan: a TCP-only port gives no UDP frontend and does not join a UDP slice port") {
  cluster state;
  add(state, make_service("default", "web", {"10.96.0.1"}, {svc_port("http", 80)}));
  add(state, make_slice("default", "web-1", "web", v4, {make_endpoint("10.244.1.1")},
                        {slice_port("http", 8080, IPPROTO_UDP)}));
  CHECK(plan_text(state) == "10.96.0.1:80/TCP default/web:http affinity=0 -> reject\n");
}

TEST_CASE("plan: a service without slices still gets a frontend, with no backends") {
  const desired_state state = plan(web_with({}), {});
  REQUIRE(state.frontends.size() == 1);
  CHECK(state.frontends[0].name == "default/web:http");
  CHECK(state.frontends[0].backends.empty());
}

TEST_CASE("plan: terminating endpoints are a fallback only when nothing is ready") {
  SUBCASE("ready endpoints exist: only those") {
    const cluster state =
        web_with({web_slice("web-1", {make_endpoint("10.244.1.1", true, true, false),
                                      make_endpoint("10.244.1.2", false, true, true),
                                      make_endpoint("10.244.1.3", false, false, false)})});
    CHECK(plan_text(state) == "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080\n");
  }
  SUBCASE("only serving-terminating: those, flagged terminating") {
    const cluster state =
        web_with({web_slice("web-1", {make_endpoint("10.244.1.2", false, true, true),
                                      make_endpoint("10.244.1.3", false, false, true),
                                      make_endpoint("10.244.1.4", false, true, false),
                                      make_endpoint("10.244.1.5", false, std::nullopt, true)})});
    const desired_state planned = plan(state, {});
    REQUIRE(planned.frontends.size() == 1);
    CHECK(planned.frontends[0].backends ==
          std::vector<desired_backend>{{test::ip("10.244.1.2"), 8080, true},
                                       {test::ip("10.244.1.5"), 8080, true}});
  }
  SUBCASE("nothing serving: no backends") {
    const cluster state =
        web_with({web_slice("web-1", {make_endpoint("10.244.1.3", false, false, true),
                                      make_endpoint("10.244.1.4", false, true, false)})});
    CHECK(plan_text(state) == "10.96.0.1:80/TCP default/web:http affinity=0 -> reject\n");
  }
  SUBCASE("ready and terminating (publishNotReadyAddresses) counts as ready") {
    const cluster state =
        web_with({web_slice("web-1", {make_endpoint("10.244.1.6", true, true, true),
                                      make_endpoint("10.244.1.7", false, true, true)})});
    CHECK(plan_text(state) == "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.6:8080\n");
  }
}

TEST_CASE("plan: an endpoint in several slices appears once, its non-terminating copy wins") {
  SUBCASE("terminating copy in the first slice") {
    const cluster state = web_with(
        {web_slice("web-a", {make_endpoint("10.244.1.1", false, true, true)}),
         web_slice("web-b", {make_endpoint("10.244.1.1", true), make_endpoint("10.244.1.2")})});
    CHECK(plan_text(state) ==
          "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080, 10.244.1.2:8080\n");
  }
  SUBCASE("terminating copy in the last slice") {
    const cluster state = web_with(
        {web_slice("web-a", {make_endpoint("10.244.1.1", true), make_endpoint("10.244.1.2")}),
         web_slice("web-b", {make_endpoint("10.244.1.1", false, true, true)})});
    CHECK(plan_text(state) ==
          "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080, 10.244.1.2:8080\n");
  }
  SUBCASE("the same address on different ports is two backends") {
    const cluster state = web_with({web_slice("web-a", {make_endpoint("10.244.1.1")}, 8080),
                                    web_slice("web-b", {make_endpoint("10.244.1.1")}, 8081)});
    CHECK(plan_text(state) ==
          "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080, 10.244.1.1:8081\n");
  }
  SUBCASE("terminating-only duplicates stay one terminating backend") {
    const cluster state =
        web_with({web_slice("web-a", {make_endpoint("10.244.1.1", false, true, true)}),
                  web_slice("web-b", {make_endpoint("10.244.1.1", false, true, true)})});
    CHECK(plan_text(state) ==
          "10.96.0.1:80/TCP default/web:http affinity=0 -> "
          "10.244.1.1:8080 (terminating)\n");
  }
}

TEST_CASE("plan: endpoints without addresses are skipped; addresses[0] is the one used") {
  endpoint no_address;
  no_address.ready = true;
  endpoint two_addresses = make_endpoint("10.244.1.1");
  two_addresses.addresses.push_back(test::ip("10.244.1.99"));
  const cluster state = web_with({web_slice("web-1", {no_address, two_addresses})});
  CHECK(plan_text(state) == "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080\n");
}

TEST_CASE("plan: services kube-proxy skips produce nothing") {
  cluster state;
  service headless = make_service("default", "headless", {}, {svc_port("http", 80)});
  headless.headless = true;
  add(state, headless);
  service external = make_service("default", "external", {}, {svc_port("http", 80)});
  external.type = service_type::external_name;
  add(state, external);
  service external_with_ip =
      make_service("default", "external-ip", {"10.96.0.3"}, {svc_port("http", 80)});
  external_with_ip.type = service_type::external_name;
  add(state, external_with_ip);
  service other_proxy = make_service("default", "other", {"10.96.0.4"}, {svc_port("http", 80)});
  other_proxy.labels[std::string(label_service_proxy_name)] = "someone-else";
  add(state, other_proxy);
  service labelled_headless =
      make_service("default", "labelled", {"10.96.0.5"}, {svc_port("http", 80)});
  labelled_headless.labels[std::string(label_headless)] = "";
  add(state, labelled_headless);
  add(state, make_service("default", "unallocated", {}, {svc_port("http", 80)}));
  for (const char* name :
       {"headless", "external", "external-ip", "other", "labelled", "unallocated"}) {
    add(state, make_slice("default", std::string(name) + "-1", name, v4,
                          {make_endpoint("10.244.1.1")}, {slice_port("http", 8080)}));
  }
  const desired_state skipped = plan(state, {});
  CHECK(skipped.frontends.empty());
  // Each is listed as not proxied, with the reason sluicectl shows.
  external.external_name = "db.example.com";
  add(state, external);
  const std::vector<unproxied_service> want = {
      {"default", "external", unproxied_reason::external_name, "db.example.com"},
      {"default", "external-ip", unproxied_reason::external_name, ""},
      {"default", "headless", unproxied_reason::headless, ""},
      {"default", "labelled", unproxied_reason::headless, ""},
      {"default", "other", unproxied_reason::other_proxy, ""},
      {"default", "unallocated", unproxied_reason::no_cluster_ip, ""},
  };
  CHECK(plan(state, {}).unproxied == want);

  // A plain service next to them is still planned.
  add(state, make_service("default", "plain", {"10.96.0.6"}, {svc_port("http", 80)}));
  CHECK(plan_text(state) == "10.96.0.6:80/TCP default/plain:http affinity=0 -> reject\n");
}

TEST_CASE("plan: slices carrying the proxy-name or headless label are ignored") {
  endpoint_slice foreign = web_slice("web-foreign", {make_endpoint("10.244.9.1")});
  foreign.labels[std::string(label_service_proxy_name)] = "someone-else";
  endpoint_slice headless = web_slice("web-headless", {make_endpoint("10.244.9.2")});
  headless.labels[std::string(label_headless)] = "";
  const cluster state =
      web_with({foreign, headless, web_slice("web-1", {make_endpoint("10.244.1.1")})});
  CHECK(plan_text(state) == "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080\n");
}

TEST_CASE("plan: with --service-proxy-name only services and slices carrying that name count") {
  cluster state;
  for (const char* name : {"ours", "theirs", "unlabelled"}) {
    service svc = make_service("default", name, {}, {svc_port("http", 80)});
    endpoint_slice slice = make_slice("default", std::string(name) + "-1", name, v4,
                                      {make_endpoint("10.244.1.1")}, {slice_port("http", 8080)});
    if (std::string_view(name) != "unlabelled") {
      const std::string proxy = std::string_view(name) == "ours" ? "sluice" : "kube-proxy";
      svc.labels[std::string(label_service_proxy_name)] = proxy;
      slice.labels[std::string(label_service_proxy_name)] = proxy;
    }
    add(state, std::move(svc));
    add(state, std::move(slice));
  }
  state.services.at({"default", "ours"}).cluster_ips = {test::ip("10.96.0.1")};
  state.services.at({"default", "theirs"}).cluster_ips = {test::ip("10.96.0.2")};
  state.services.at({"default", "unlabelled"}).cluster_ips = {test::ip("10.96.0.3")};

  // Named: exactly the services labelled with our name, with their labelled slices.
  CHECK(describe(plan(state, {.node_name = "node-a", .service_proxy_name = "sluice"})) ==
        "10.96.0.1:80/TCP default/ours:http affinity=0 -> 10.244.1.1:8080\n");
  // Unnamed: kube-proxy's rule, every labelled service is someone else's.
  CHECK(describe(plan(state, {.node_name = "node-a"})) ==
        "10.96.0.3:80/TCP default/unlabelled:http affinity=0 -> 10.244.1.1:8080\n");
}

TEST_CASE("plan: slices of another namespace, service or address type are not used") {
  cluster state = web_with({web_slice("web-1", {make_endpoint("10.244.1.1")})});
  add(state, make_slice("other", "web-2", "web", v4, {make_endpoint("10.244.2.1")},
                        {slice_port("http", 8080)}));
  add(state, make_slice("default", "api-1", "api", v4, {make_endpoint("10.244.3.1")},
                        {slice_port("http", 8080)}));
  add(state, make_slice("default", "web-6", "web", v6, {make_endpoint("fd00::1")},
                        {slice_port("http", 8080)}));
  endpoint_slice fqdn = make_slice("default", "web-fqdn", "web", slice_address_type::fqdn, {},
                                   {slice_port("http", 8080)});
  fqdn.endpoints.push_back(endpoint{});
  add(state, fqdn);
  CHECK(plan_text(state) == "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080\n");
}

TEST_CASE("plan: the slice's addressType and the address family must both match") {
  // The decoder never builds these mismatches; the planner must not trust that it never will.
  cluster state;
  add(state, make_service("default", "web", {"10.96.0.1", "fd00::1"}, {svc_port("http", 80)}));
  add(state, make_slice("default", "web-6-holding-4", "web", v6, {make_endpoint("10.244.1.1")},
                        {slice_port("http", 8080)}));
  add(state, make_slice("default", "web-4-holding-6", "web", v4, {make_endpoint("fd00::2")},
                        {slice_port("http", 8080)}));
  CHECK(plan_text(state) ==
        "10.96.0.1:80/TCP default/web:http affinity=0 -> reject\n"
        "[fd00::1]:80/TCP default/web:http affinity=0 -> reject\n");
}

TEST_CASE("plan: dual-stack service gives a v4 and a v6 frontend, each from its own slices") {
  cluster state;
  add(state,
      make_service("default", "web", {"10.96.0.1", "fd00:10:96::1"}, {svc_port("http", 80)}));
  add(state, make_slice("default", "web-v4", "web", v4,
                        {make_endpoint("10.244.1.1"), make_endpoint("10.244.1.2")},
                        {slice_port("http", 8080)}));
  add(state, make_slice("default", "web-v6", "web", v6, {make_endpoint("fd00:10:244::1")},
                        {slice_port("http", 8080)}));
  CHECK(plan_text(state) ==
        "10.96.0.1:80/TCP default/web:http affinity=0 -> 10.244.1.1:8080, 10.244.1.2:8080\n"
        "[fd00:10:96::1]:80/TCP default/web:http affinity=0 -> [fd00:10:244::1]:8080\n");
}

TEST_CASE("plan: a single-stack IPv6 service uses only IPv6 slices") {
  cluster state;
  add(state, make_service("default", "web", {"fd00:10:96::1"}, {svc_port("http", 80)}));
  add(state, make_slice("default", "web-v4", "web", v4, {make_endpoint("10.244.1.1")},
                        {slice_port("http", 8080)}));
  CHECK(plan_text(state) == "[fd00:10:96::1]:80/TCP default/web:http affinity=0 -> reject\n");
}

TEST_CASE("plan: ClientIP affinity timeout is carried, defaulting to 10800") {
  const decode_result decoded = decode_manifest(R"(
apiVersion: v1
kind: Service
metadata: {name: default-timeout}
spec: {clusterIP: 10.96.0.1, sessionAffinity: ClientIP, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: short-timeout}
spec:
  clusterIP: 10.96.0.2
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: no-affinity}
spec: {clusterIP: 10.96.0.3, sessionAffinity: None, ports: [{port: 80}]}
)",
                                                "affinity.yaml");
  REQUIRE(decoded.errors.empty());
  CHECK(plan_text(decoded.objects) ==
        "10.96.0.1:80/TCP default/default-timeout: affinity=10800 -> reject\n"
        "10.96.0.2:80/TCP default/short-timeout: affinity=30 -> reject\n"
        "10.96.0.3:80/TCP default/no-affinity: affinity=0 -> reject\n");
}

TEST_CASE("plan: ports join by name; nil names and nil or zero ports never match") {
  cluster state;
  add(state, make_service("default", "app", {"10.96.0.1"},
                          {svc_port("http", 80), svc_port("metrics", 9090)}));
  endpoint_port nil_name{.name = std::nullopt, .port = 7777, .protocol = IPPROTO_TCP};
  endpoint_port nil_port{.name = "http", .port = std::nullopt, .protocol = IPPROTO_TCP};
  endpoint_port zero_port{.name = "http", .port = 0, .protocol = IPPROTO_TCP};
  add(state, make_slice("default", "app-1", "app", v4, {make_endpoint("10.244.1.1")},
                        {nil_name, slice_port("metrics", 9100), slice_port("http", 8080)}));
  add(state, make_slice("default", "app-2", "app", v4, {make_endpoint("10.244.2.2")},
                        {nil_name, nil_port, zero_port}));
  CHECK(plan_text(state) ==
        "10.96.0.1:80/TCP default/app:http affinity=0 -> 10.244.1.1:8080\n"
        "10.96.0.1:9090/TCP default/app:metrics affinity=0 -> 10.244.1.1:9100\n");
}

TEST_CASE("plan: an unnamed service port joins the slice port named \"\"") {
  cluster state;
  add(state, make_service("default", "echo", {"10.96.0.1"}, {svc_port("", 7, IPPROTO_UDP)}));
  add(state, make_slice("default", "echo-1", "echo", v4, {make_endpoint("10.244.1.1")},
                        {slice_port("", 7007, IPPROTO_UDP)}));
  add(state, make_slice("default", "echo-2", "echo", v4, {make_endpoint("10.244.1.2")},
                        {slice_port("echo", 7008, IPPROTO_UDP)}));
  CHECK(plan_text(state) == "10.96.0.1:7/UDP default/echo: affinity=0 -> 10.244.1.1:7007\n");
}

TEST_CASE("plan: SCTP ports are skipped for now") {
  cluster state;
  add(state, make_service("default", "sig", {"10.96.0.1"},
                          {svc_port("sctp", 3868, IPPROTO_SCTP), svc_port("tcp", 3868)}));
  add(state, make_slice("default", "sig-1", "sig", v4, {make_endpoint("10.244.1.1")},
                        {slice_port("sctp", 3868, IPPROTO_SCTP), slice_port("tcp", 3868)}));
  CHECK(plan_text(state) == "10.96.0.1:3868/TCP default/sig:tcp affinity=0 -> 10.244.1.1:3868\n");
}

TEST_CASE("plan: frontends are sorted by (vip, port, proto) across services") {
  cluster state;
  add(state, make_service("a", "z", {"10.96.0.20"}, {svc_port("x", 80)}));
  add(state, make_service("b", "y", {"fd00::5", "10.96.0.3"}, {svc_port("x", 443)}));
  add(state,
      make_service("c", "x", {"10.96.0.3"}, {svc_port("u", 53, IPPROTO_UDP), svc_port("t", 53)}));
  const desired_state planned = plan(state, {});
  CHECK(describe(planned) ==
        "10.96.0.3:53/TCP c/x:t affinity=0 -> reject\n"
        "10.96.0.3:53/UDP c/x:u affinity=0 -> reject\n"
        "10.96.0.3:443/TCP b/y:x affinity=0 -> reject\n"
        "10.96.0.20:80/TCP a/z:x affinity=0 -> reject\n"
        "[fd00::5]:443/TCP b/y:x affinity=0 -> reject\n");
}

TEST_CASE("plan: two services claiming one (vip, port, proto): the first by name wins") {
  cluster state;
  add(state, make_service("default", "b-second", {"10.96.0.1"}, {svc_port("http", 80)}));
  add(state, make_service("default", "a-first", {"10.96.0.1"},
                          {svc_port("http", 80), svc_port("dns", 80, IPPROTO_UDP)}));
  CHECK(plan_text(state) ==
        "10.96.0.1:80/TCP default/a-first:http affinity=0 -> reject\n"
        "10.96.0.1:80/UDP default/a-first:dns affinity=0 -> reject\n");
  const auto out = plan(state, {});
  REQUIRE(out.conflicts.size() == 1);
  CHECK(out.conflicts[0] ==
        "default/b-second:http left out: default/a-first:http already uses 10.96.0.1 port 80/TCP");
}

TEST_CASE("plan: is deterministic and independent of node name for ClusterIP") {
  const cluster state = web_with({web_slice("web-1", {make_endpoint("10.244.1.1")})});
  CHECK(plan(state, {"node-a"}) == plan(state, {"node-b"}));
  CHECK(plan(state, {}) == plan(state, {}));
}

TEST_CASE("plan: realistic fixture directory end to end") {
  const auto loaded = load_manifest_dir(test::fixture("realistic"));
  REQUIRE(loaded);
  REQUIRE(loaded->errors.empty());
  CHECK(plan_text(loaded->objects) ==
        "10.96.0.10:53/TCP kube-system/kube-dns:dns-tcp affinity=10800 -> "
        "10.244.0.5:53, 10.244.0.6:53\n"
        "10.96.0.10:53/UDP kube-system/kube-dns:dns affinity=10800 -> "
        "10.244.0.5:53, 10.244.0.6:53\n"
        "10.96.0.10:9153/TCP kube-system/kube-dns:metrics affinity=10800 -> "
        "10.244.0.5:9153, 10.244.0.6:9153\n"
        "10.96.100.1:8080/TCP default/echo: affinity=0 -> 10.244.3.3:8080\n"
        "10.96.234.211:80/TCP default/web:http affinity=0 -> 10.244.1.7:10080\n"
        "10.96.234.211:443/TCP default/web:https affinity=0 -> 10.244.1.7:8443\n"
        // The LoadBalancer ingress IP (no NodePorts: the directory has no Node object).
        "172.18.255.205:80/TCP default/web:http affinity=0 -> 10.244.1.7:10080\n"
        "172.18.255.205:443/TCP default/web:https affinity=0 -> 10.244.1.7:8443\n"
        "[fd00:10:96::a]:53/TCP kube-system/kube-dns:dns-tcp affinity=10800 -> "
        "[fd00:10:244::5]:53\n"
        "[fd00:10:96::a]:53/UDP kube-system/kube-dns:dns affinity=10800 -> "
        "[fd00:10:244::5]:53\n"
        "[fd00:10:96::a]:9153/TCP kube-system/kube-dns:metrics affinity=10800 -> "
        "[fd00:10:244::5]:9153\n");
}

// ---------------------------------------------------------------------------------------------
// Every frontend kind (kube-semantics.md §1.2 rows 1-4, 6, 8, 11; §1.5; §1.7-§1.9; hostPorts).

namespace {

constexpr const char* here = "node-a";

// Our node, as kube-proxy's fixture: 192.168.0.2 and 192.168.1.2, 2001:db8::1.
node fixture_node() {
  node self;
  self.name = here;
  self.labels[std::string(label_zone)] = "zone-a";
  self.internal_ips = {test::ip("192.168.0.2"), test::ip("192.168.1.2"), test::ip("2001:db8::1")};
  self.external_ips = {test::ip("203.0.113.9")};
  return self;
}

endpoint on_node(std::string_view addr, std::string node_name,
                 std::optional<bool> ready = std::nullopt,
                 std::optional<bool> serving = std::nullopt,
                 std::optional<bool> terminating = std::nullopt) {
  endpoint ep = make_endpoint(addr, ready, serving, terminating);
  ep.node_name = std::move(node_name);
  return ep;
}

std::string backends_text(const std::vector<desired_backend>& backends) {
  std::string out;
  for (const desired_backend& b : backends) {
    out += (out.empty() ? "" : ",") + test::describe(b);
  }
  return out;
}

std::string_view kind_name(frontend_kind kind) {
  switch (kind) {
    case frontend_kind::cluster_ip:
      return "cluster_ip";
    case frontend_kind::external_ip:
      return "external_ip";
    case frontend_kind::load_balancer:
      return "load_balancer";
    case frontend_kind::node_port:
      return "node_port";
    case frontend_kind::host_port:
      return "host_port";
  }
  return "?";
}

// "1.2.3.4:80/TCP load_balancer ns/svc:p -> a,b | local -> c | ranges 10.0.0.0/8"; an empty
// set prints its verdict.
std::string full_text(const desired_state& state) {
  std::string out;
  for (const desired_frontend& f : state.frontends) {
    const std::string vip =
        f.vip.family == ip_family::v6 ? "[" + format_ip(f.vip) + "]" : format_ip(f.vip);
    std::string line =
        fmt::format("{}:{}/{} {} {} -> {}", vip, f.port, f.proto == IPPROTO_UDP ? "UDP" : "TCP",
                    kind_name(f.kind), f.name,
                    f.backends.empty() ? (f.when_empty == empty_verdict::drop ? "drop" : "reject")
                                       : backends_text(f.backends));
    if (f.external_local) {
      line += " | local -> " + (f.external_backends.empty() ? std::string("drop")
                                                            : backends_text(f.external_backends));
    }
    if (!f.source_ranges.empty()) {
      std::string ranges;
      for (const ip_prefix& range : f.source_ranges) {
        ranges += (ranges.empty() ? "" : ",") + format_ip(range.addr) + "/" +
                  std::to_string(range.length);
      }
      line += " | ranges " + ranges;
    }
    if (f.affinity_timeout_s != 0) {
      line += fmt::format(" | affinity {}", f.affinity_timeout_s);
    }
    out += line + "\n";
  }
  return out;
}

// default/lb: LoadBalancer 172.30.0.41, port p80 80 -> 8080, nodePort 3001, externalIP
// 192.168.99.11, LB ingress 1.2.3.4; endpoints 10.180.0.1 (here) and 10.180.1.1 (elsewhere).
cluster lb_cluster() {
  cluster state;
  state.self_node = fixture_node();
  service svc = make_service("default", "lb", {"172.30.0.41"}, {svc_port("p80", 80)});
  svc.type = service_type::load_balancer;
  svc.ports[0].node_port = 3001;
  svc.external_ips = {test::ip("192.168.99.11"), test::ip("2001:db8:99::11")};
  svc.lb_ingress = {{test::ip("1.2.3.4"), false}};
  add(state, svc);
  add(state, make_slice("default", "lb-1", "lb", v4,
                        {on_node("10.180.0.1", here), on_node("10.180.1.1", "node-b")},
                        {slice_port("p80", 8080)}));
  return state;
}

service& only_service(cluster& state) { return state.services.begin()->second; }

pod make_pod(std::string name, std::vector<std::string> ips, std::vector<pod_port> ports,
             std::string node_name = here) {
  pod p;
  p.namespace_ = "default";
  p.name = std::move(name);
  p.node_name = std::move(node_name);
  for (const std::string& text : ips) {
    p.pod_ips.push_back(test::ip(text));
  }
  p.ports = std::move(ports);
  p.ready = true;
  return p;
}

}  // namespace

TEST_CASE("plan: a LoadBalancer service gets every kind of frontend, in key order") {
  const cluster state = lb_cluster();
  CHECK(full_text(plan(state, {here, {}})) ==
        "1.2.3.4:80/TCP load_balancer default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080\n"
        "172.30.0.41:80/TCP cluster_ip default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080\n"
        "192.168.0.2:3001/TCP node_port default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080\n"
        "192.168.99.11:80/TCP external_ip default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080\n");
}

TEST_CASE("plan: externalTrafficPolicy Local splits external sources off to local endpoints") {
  cluster state = lb_cluster();
  only_service(state).external_policy = traffic_policy::local;
  only_service(state).session_affinity_client_ip = true;
  only_service(state).affinity_timeout_s = 600;
  CHECK(full_text(plan(state, {here, {}})) ==
        "1.2.3.4:80/TCP load_balancer default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080 | "
        "local -> 10.180.0.1:8080 | affinity 600\n"
        "172.30.0.41:80/TCP cluster_ip default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080 | "
        "affinity 600\n"
        "192.168.0.2:3001/TCP node_port default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080 | "
        "local -> 10.180.0.1:8080 | affinity 600\n"
        "192.168.99.11:80/TCP external_ip default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080 | "
        "local -> 10.180.0.1:8080 | affinity 600\n");

  SUBCASE("no local endpoint: external sources are dropped, others still served") {
    const desired_state planned = plan(state, {"node-c", {}});
    for (const desired_frontend& f : planned.frontends) {
      CAPTURE(kind_name(f.kind));
      CHECK(f.backends.size() == 2);
      CHECK(f.external_local == (f.kind != frontend_kind::cluster_ip));
      CHECK(f.external_backends.empty());
    }
  }
  SUBCASE("no endpoint at all: every frontend rejects, external_local is off") {
    state.endpoint_slices.clear();
    const desired_state planned = plan(state, {here, {}});
    REQUIRE(planned.frontends.size() == 4);
    for (const desired_frontend& f : planned.frontends) {
      CHECK(f.backends.empty());
      CHECK(f.when_empty == empty_verdict::reject);
      CHECK_FALSE(f.external_local);
    }
  }
}

TEST_CASE("plan: internalTrafficPolicy Local: local endpoints, drop when only remote ones") {
  cluster state = lb_cluster();
  only_service(state).internal_policy = traffic_policy::local;
  const auto cluster_ip_line = [&](const plan_options& options) {
    for (const desired_frontend& f : plan(state, options).frontends) {
      if (f.kind == frontend_kind::cluster_ip) {
        return full_text(desired_state{{f}, {}, {}});
      }
    }
    return std::string();
  };
  CHECK(cluster_ip_line({here, {}}) ==
        "172.30.0.41:80/TCP cluster_ip default/lb:p80 -> 10.180.0.1:8080\n");
  CHECK(cluster_ip_line({"node-c", {}}) ==
        "172.30.0.41:80/TCP cluster_ip default/lb:p80 -> drop\n");
  // External kinds ignore internalTrafficPolicy.
  for (const desired_frontend& f : plan(state, {"node-c", {}}).frontends) {
    CHECK(f.backends.size() == (f.kind == frontend_kind::cluster_ip ? 0u : 2u));
  }
  state.endpoint_slices.clear();
  CHECK(cluster_ip_line({here, {}}) == "172.30.0.41:80/TCP cluster_ip default/lb:p80 -> reject\n");
}

TEST_CASE("plan: ipMode Proxy ingress IPs get no frontend") {
  cluster state = lb_cluster();
  only_service(state).lb_ingress = {{test::ip("1.2.3.4"), true}, {test::ip("5.6.7.8"), false}};
  const std::string text = full_text(plan(state, {here, {}}));
  CHECK(text.find("1.2.3.4") == std::string::npos);
  CHECK(text.find("5.6.7.8:80/TCP load_balancer default/lb:p80") == 0);
}

TEST_CASE("plan: allocateLoadBalancerNodePorts=false (nodePort 0) gives no NodePort frontend") {
  cluster state = lb_cluster();
  only_service(state).ports[0].node_port = 0;
  for (const desired_frontend& f : plan(state, {here, {}}).frontends) {
    CHECK(f.kind != frontend_kind::node_port);
  }
  CHECK(plan(state, {here, {}}).frontends.size() == 3);
}

TEST_CASE("plan: NodePort addresses: primary per family by default, or the configured CIDRs") {
  cluster state = lb_cluster();
  only_service(state).external_ips.clear();
  only_service(state).lb_ingress.clear();
  const auto node_ports = [&](const plan_options& options) {
    std::vector<std::string> out;
    for (const desired_frontend& f : plan(state, options).frontends) {
      if (f.kind == frontend_kind::node_port) {
        out.push_back(format_ip(f.vip) + ":" + std::to_string(f.port));
      }
    }
    return out;
  };
  using strings = std::vector<std::string>;
  CHECK(node_ports({here, {}}) == strings{"192.168.0.2:3001"});
  const ip_prefix v4_all{test::ip("0.0.0.0"), 0};
  const ip_prefix v6_all{test::ip("::"), 0};
  const ip_prefix secondary{test::ip("192.168.1.0"), 24};
  CHECK(node_ports({here, {secondary}}) == strings{"192.168.1.2:3001"});
  CHECK(node_ports({here, {v4_all}}) ==
        strings{"192.168.0.2:3001", "192.168.1.2:3001", "203.0.113.9:3001"});

  SUBCASE("a v4-only service has no v6 NodePort; a dual-stack one has both") {
    CHECK(node_ports({here, {v4_all, v6_all}}) ==
          strings{"192.168.0.2:3001", "192.168.1.2:3001", "203.0.113.9:3001"});
    only_service(state).cluster_ips.push_back(test::ip("fd00:10:96::41"));
    add(state, make_slice("default", "lb-v6", "lb", v6, {on_node("fd00:10::1", here)},
                          {slice_port("p80", 8080)}));
    CHECK(node_ports({here, {}}) == strings{"192.168.0.2:3001", "2001:db8::1:3001"});
    for (const desired_frontend& f : plan(state, {here, {}}).frontends) {
      if (f.vip == test::ip("2001:db8::1")) {
        CHECK(backends_text(f.backends) == "[fd00:10::1]:8080");
      }
    }
  }
  SUBCASE("no Node known: no NodePort frontend") {
    state.self_node.reset();
    CHECK(node_ports({here, {}}).empty());
  }
}

TEST_CASE("plan: externalIPs, LB IPs and source ranges are filtered per family") {
  cluster state = lb_cluster();
  service& svc = only_service(state);
  svc.cluster_ips.push_back(test::ip("fd00:10:96::41"));
  svc.lb_ingress.push_back({test::ip("2001:db8:1b::1"), false});
  svc.lb_source_ranges = {{test::ip("2001:db8::"), 32}};
  const desired_state planned = plan(state, {here, {}});
  std::vector<std::string> lines;
  for (const desired_frontend& f : planned.frontends) {
    if (f.kind == frontend_kind::external_ip || f.kind == frontend_kind::load_balancer) {
      lines.push_back(full_text(desired_state{{f}, {}, {}}));
    }
  }
  // The v6 range holds the node's primary v6 address, so the v6 LB IP joins the allowed
  // sources; the v4 family has no range of its own and is not filtered. The v6 family has no
  // slice, hence reject.
  CHECK(lines == std::vector<std::string>{
                     "1.2.3.4:80/TCP load_balancer default/lb:p80 -> "
                     "10.180.0.1:8080,10.180.1.1:8080\n",
                     "192.168.99.11:80/TCP external_ip default/lb:p80 -> "
                     "10.180.0.1:8080,10.180.1.1:8080\n",
                     "[2001:db8:1b::1]:80/TCP load_balancer default/lb:p80 -> reject | ranges "
                     "2001:db8::/32,2001:db8:1b::1/128\n",
                     "[2001:db8:99::11]:80/TCP external_ip default/lb:p80 -> reject\n",
                 });
}

TEST_CASE("plan: source ranges add every LB IP of the family when a range holds the node IP") {
  cluster state = lb_cluster();
  service& svc = only_service(state);
  svc.lb_ingress = {
      {test::ip("1.2.3.4"), false}, {test::ip("5.6.7.8"), false}, {test::ip("9.10.11.12"), true}};
  svc.lb_source_ranges = {{test::ip("203.0.113.0"), 25}, {test::ip("192.168.0.0"), 24}};
  for (const desired_frontend& f : plan(state, {here, {}}).frontends) {
    if (f.kind == frontend_kind::load_balancer) {
      CHECK(f.source_ranges == std::vector<ip_prefix>{{test::ip("1.2.3.4"), 32},
                                                      {test::ip("5.6.7.8"), 32},
                                                      {test::ip("192.168.0.0"), 24},
                                                      {test::ip("203.0.113.0"), 25}});
    } else {
      CHECK(f.source_ranges.empty());
    }
  }
  svc.lb_source_ranges = {{test::ip("203.0.113.0"), 25}};
  for (const desired_frontend& f : plan(state, {here, {}}).frontends) {
    if (f.kind == frontend_kind::load_balancer) {
      CHECK(f.source_ranges == std::vector<ip_prefix>{{test::ip("203.0.113.0"), 25}});
    }
  }
}

TEST_CASE("plan: hostPorts of this node's pods") {
  cluster state;
  state.self_node = fixture_node();
  const auto port = [](uint16_t container, uint16_t host, uint8_t proto = IPPROTO_TCP,
                       std::optional<std::string> host_ip = std::nullopt) {
    pod_port p;
    p.container_port = container;
    p.host_port = host;
    p.protocol = proto;
    if (host_ip) {
      p.host_ip = test::ip(*host_ip);
    }
    return p;
  };
  pod web = make_pod("web", {"10.180.0.7", "fd00:10::7"},
                     {port(80, 8080), port(53, 5353, IPPROTO_UDP, "192.168.1.2"), port(9090, 0),
                      port(3868, 3868, IPPROTO_SCTP)});
  web.ready = false;  // portmap forwards regardless of readiness
  state.pods[web.key()] = web;
  pod any_v4 = make_pod("any-v4", {"10.180.0.8"}, {port(81, 8081, IPPROTO_TCP, "0.0.0.0")});
  state.pods[any_v4.key()] = any_v4;
  pod elsewhere = make_pod("elsewhere", {"10.180.5.5"}, {port(80, 9999)}, "node-b");
  state.pods[elsewhere.key()] = elsewhere;
  pod finished = make_pod("finished", {"10.180.0.9"}, {port(80, 9998)});
  finished.finished = true;
  state.pods[finished.key()] = finished;
  pod host_net = make_pod("host-net", {"192.168.0.2"}, {port(80, 9997)});
  host_net.host_network = true;
  state.pods[host_net.key()] = host_net;

  CHECK(full_text(plan(state, {here, {}})) ==
        "192.168.0.2:8080/TCP host_port default/web:8080 -> 10.180.0.7:80\n"
        "192.168.0.2:8081/TCP host_port default/any-v4:8081 -> 10.180.0.8:81\n"
        "192.168.1.2:5353/UDP host_port default/web:5353 -> 10.180.0.7:53\n"
        "192.168.1.2:8080/TCP host_port default/web:8080 -> 10.180.0.7:80\n"
        "192.168.1.2:8081/TCP host_port default/any-v4:8081 -> 10.180.0.8:81\n"
        "203.0.113.9:8080/TCP host_port default/web:8080 -> 10.180.0.7:80\n"
        "203.0.113.9:8081/TCP host_port default/any-v4:8081 -> 10.180.0.8:81\n"
        "[2001:db8::1]:8080/TCP host_port default/web:8080 -> [fd00:10::7]:80\n");
}

TEST_CASE("plan: conflicts across kinds: first claimant by (namespace, name) wins") {
  cluster state = lb_cluster();  // default/lb claims 192.168.0.2:3001/TCP
  pod_port clash;
  clash.container_port = 80;
  clash.host_port = 3001;
  clash.host_ip = test::ip("192.168.0.2");
  pod a_pod = make_pod("a-pod", {"10.180.0.7"}, {clash});
  state.pods[a_pod.key()] = a_pod;
  pod z_pod = make_pod("z-pod", {"10.180.0.8"}, {clash});
  state.pods[z_pod.key()] = z_pod;
  const desired_state planned = plan(state, {here, {}});
  for (const desired_frontend& f : planned.frontends) {
    if (f.vip == test::ip("192.168.0.2") && f.port == 3001) {
      CHECK(f.name == "default/a-pod:3001");
    }
  }
  CHECK(planned.conflicts ==
        std::vector<std::string>{
            "default/lb:p80 left out: default/a-pod:3001 already uses 192.168.0.2 port 3001/TCP",
            "default/z-pod:3001 left out: default/a-pod:3001 already uses 192.168.0.2 port "
            "3001/TCP"});

  SUBCASE("a Service sorts before a Pod of the same namespace/name") {
    pod same = make_pod("lb", {"10.180.0.9"}, {clash});
    state.pods.clear();
    state.pods[same.key()] = same;
    CHECK(plan(state, {here, {}}).conflicts ==
          std::vector<std::string>{
              "default/lb:3001 left out: default/lb:p80 already uses 192.168.0.2 port 3001/TCP"});
  }
  SUBCASE("a service listing one externalIP twice is not a conflict") {
    state.pods.clear();
    only_service(state).external_ips.push_back(test::ip("192.168.99.11"));
    const desired_state again = plan(state, {here, {}});
    CHECK(again.conflicts.empty());
    CHECK(again.frontends.size() == 4);
  }
}

TEST_CASE("plan: health checks count this node's ready endpoints (distinct addresses)") {
  cluster state = lb_cluster();
  service& svc = only_service(state);
  svc.external_policy = traffic_policy::local;
  svc.health_check_node_port = 30000;
  svc.ports.push_back(svc_port("p443", 443));
  state.endpoint_slices.clear();
  add(state, make_slice("default", "lb-1", "lb", v4,
                        {on_node("10.180.0.1", here), on_node("10.180.0.2", here),
                         on_node("10.180.0.3", here, false, true, true),
                         on_node("10.180.0.4", here, false, false, false),
                         on_node("10.180.1.1", "node-b")},
                        {slice_port("p80", 8080), slice_port("p443", 8443)}));
  CHECK(plan(state, {here, {}}).health_checks ==
        std::vector<desired_health_check>{{"default", "lb", 30000, 2}});
  CHECK(plan(state, {"node-b", {}}).health_checks ==
        std::vector<desired_health_check>{{"default", "lb", 30000, 1}});
  CHECK(plan(state, {"node-c", {}}).health_checks ==
        std::vector<desired_health_check>{{"default", "lb", 30000, 0}});

  SUBCASE("terminating-only local endpoints count 0 although they serve") {
    state.endpoint_slices.clear();
    add(state,
        make_slice("default", "lb-1", "lb", v4, {on_node("10.180.0.3", here, false, true, true)},
                   {slice_port("p80", 8080)}));
    const desired_state planned = plan(state, {here, {}});
    CHECK(planned.health_checks == std::vector<desired_health_check>{{"default", "lb", 30000, 0}});
    for (const desired_frontend& f : planned.frontends) {
      if (f.external_local) {
        CHECK(backends_text(f.external_backends) == "10.180.0.3:8080 (terminating)");
      }
    }
  }
  SUBCASE("no health check for eTP Cluster, for type NodePort, or without a port") {
    svc.external_policy = traffic_policy::cluster;
    CHECK(plan(state, {here, {}}).health_checks.empty());
    svc.external_policy = traffic_policy::local;
    svc.type = service_type::node_port;
    CHECK(plan(state, {here, {}}).health_checks.empty());
    svc.type = service_type::load_balancer;
    svc.health_check_node_port = 0;
    CHECK(plan(state, {here, {}}).health_checks.empty());
  }
  SUBCASE("sorted by port") {
    service other = make_service("a", "other", {"172.30.0.99"}, {svc_port("p", 80)});
    other.type = service_type::load_balancer;
    other.external_policy = traffic_policy::local;
    other.health_check_node_port = 29999;
    add(state, other);
    CHECK(plan(state, {here, {}}).health_checks ==
          std::vector<desired_health_check>{{"a", "other", 29999, 0}, {"default", "lb", 30000, 2}});
  }
}

TEST_CASE("plan: zone hints filter the cluster set with the Node's zone label") {
  cluster state;
  state.self_node = fixture_node();  // zone-a
  add(state, make_service("default", "web", {"172.30.0.41"}, {svc_port("http", 80)}));
  endpoint a = on_node("10.180.0.1", "node-x");
  a.hints_for_zones = {"zone-a"};
  endpoint b = on_node("10.180.0.2", "node-y");
  b.hints_for_zones = {"zone-b"};
  add(state, make_slice("default", "web-1", "web", v4, {a, b}, {slice_port("http", 80)}));
  CHECK(full_text(plan(state, {here, {}})) ==
        "172.30.0.41:80/TCP cluster_ip default/web:http -> 10.180.0.1:80\n");
  state.self_node->labels.clear();
  CHECK(full_text(plan(state, {here, {}})) ==
        "172.30.0.41:80/TCP cluster_ip default/web:http -> 10.180.0.1:80,10.180.0.2:80\n");
}

// ---------------------------------------------------------------------------------------------
// Socket-LB: localhost NodePorts and the CVE-2020-8554 mitigation for ExternalIPs.

TEST_CASE("plan: localhost NodePorts add 127.0.0.1 (IPv4 only), loopback, the cluster set") {
  cluster state = lb_cluster();
  service& svc = only_service(state);
  svc.external_policy = traffic_policy::local;  // external sources: local only; not loopback
  svc.lb_source_ranges = {{test::ip("203.0.113.0"), 25}};
  svc.cluster_ips.push_back(test::ip("fd00:10:96::41"));
  add(state, make_slice("default", "lb-v6", "lb", v6, {on_node("fd00:10::1", here)},
                        {slice_port("p80", 8080)}));
  plan_options options{here, {}};
  const auto loopbacks = [&] {
    std::vector<desired_frontend> out;
    for (const desired_frontend& f : plan(state, options).frontends) {
      if (f.loopback) {
        out.push_back(f);
      }
    }
    return out;
  };
  CHECK(loopbacks().empty());  // off by default (the agent turns it on with socket-LB)
  options.localhost_nodeports = true;
  const std::vector<desired_frontend> lo = loopbacks();
  REQUIRE(lo.size() == 1);
  CHECK(full_text(desired_state{{lo[0]}, {}, {}}) ==
        "127.0.0.1:3001/TCP node_port default/lb:p80 -> 10.180.0.1:8080,10.180.1.1:8080\n");
  CHECK_FALSE(lo[0].external_local);
  CHECK(lo[0].source_ranges.empty());
  // The other frontends are the same as without the option.
  std::vector<desired_frontend> rest;
  for (const desired_frontend& f : plan(state, options).frontends) {
    if (!f.loopback) {
      rest.push_back(f);
    }
  }
  CHECK(rest == plan(state, {here, {}}).frontends);

  SUBCASE("no endpoints: the loopback NodePort rejects like the others") {
    state.endpoint_slices.clear();
    const std::vector<desired_frontend> none = loopbacks();
    REQUIRE(none.size() == 1);
    CHECK(none[0].backends.empty());
    CHECK(none[0].when_empty == empty_verdict::reject);
  }
  SUBCASE("no nodePort: no loopback frontend") {
    svc.ports[0].node_port = 0;
    CHECK(loopbacks().empty());
  }
}

TEST_CASE("plan: ExternalIP mitigation marks ExternalIPs that are none of the Node's addresses") {
  cluster state = lb_cluster();
  // 192.168.1.2 is the node's second InternalIP, 192.168.99.11 someone else's.
  only_service(state).external_ips = {test::ip("192.168.99.11"), test::ip("192.168.1.2")};
  const auto outside_only = [&](bool mitigation) {
    plan_options options{here, {}};
    options.external_ip_mitigation = mitigation;
    std::vector<std::string> out;
    for (const desired_frontend& f : plan(state, options).frontends) {
      if (f.outside_only) {
        CHECK(f.kind == frontend_kind::external_ip);
        out.push_back(format_ip(f.vip));
      }
    }
    return out;
  };
  CHECK(outside_only(false).empty());
  CHECK(outside_only(true) == std::vector<std::string>{"192.168.99.11"});
  SUBCASE("no Node known: every ExternalIP is someone else's") {
    state.self_node.reset();
    CHECK(outside_only(true) == std::vector<std::string>{"192.168.1.2", "192.168.99.11"});
  }
}

TEST_CASE("plan: a hostPort on a loopback hostIP is a loopback frontend") {
  cluster state;
  state.self_node = fixture_node();
  pod_port lo_port;
  lo_port.container_port = 80;
  lo_port.host_port = 8080;
  lo_port.host_ip = test::ip("127.0.0.1");
  pod_port any_port = lo_port;
  any_port.host_port = 8081;
  any_port.host_ip.reset();
  pod p = make_pod("web", {"10.180.0.7"}, {lo_port, any_port});
  state.pods[p.key()] = p;
  std::vector<std::string> lines;
  for (const desired_frontend& f : plan(state, {here, {}}).frontends) {
    lines.push_back(fmt::format("{}:{} loopback={}", format_ip(f.vip), f.port, f.loopback));
  }
  CHECK(lines == std::vector<std::string>{"127.0.0.1:8080 loopback=true",
                                          "192.168.0.2:8081 loopback=false",
                                          "192.168.1.2:8081 loopback=false",
                                          "203.0.113.9:8081 loopback=false"});
}

}  // namespace sluice
