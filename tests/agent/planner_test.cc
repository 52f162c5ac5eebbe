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
  CHECK(plan(state, {}).frontends.empty());

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
        "[fd00:10:96::a]:53/TCP kube-system/kube-dns:dns-tcp affinity=10800 -> "
        "[fd00:10:244::5]:53\n"
        "[fd00:10:96::a]:53/UDP kube-system/kube-dns:dns affinity=10800 -> "
        "[fd00:10:244::5]:53\n"
        "[fd00:10:96::a]:9153/TCP kube-system/kube-dns:metrics affinity=10800 -> "
        "[fd00:10:244::5]:9153\n");
}

}  // namespace sluice
