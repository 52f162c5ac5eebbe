#include "agent/sources/manifest.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <string_view>

#include "test_helpers.h"

namespace sluice {

namespace {

using test::contains_all;
using test::fixture;
using test::ip;
using test::read_text;
using test::temp_dir;
using test::write_text;

decode_result decode_fixture(std::string_view rel) {
  return decode_manifest(read_text(fixture(rel)), rel);
}

const service& get_service(const decode_result& r, std::string ns, std::string name) {
  return r.objects.services.at(object_key{std::move(ns), std::move(name)});
}

const endpoint_slice& get_slice(const decode_result& r, std::string ns, std::string name) {
  return r.objects.endpoint_slices.at(object_key{std::move(ns), std::move(name)});
}

std::string all_errors(const decode_result& r) {
  std::string out;
  for (const std::string& e : r.errors) {
    out += e + "\n";
  }
  return out;
}

}  // namespace

TEST_CASE("decode: realistic LoadBalancer Service JSON from the API server") {
  const decode_result r = decode_fixture("realistic/web-service.json");
  CHECK(all_errors(r) == "");
  CHECK(r.loaded == 1);
  CHECK(r.ignored == 0);
  CHECK(r.rejected == 0);
  REQUIRE(r.objects.services.size() == 1);
  CHECK(r.objects.endpoint_slices.empty());

  const service& svc = get_service(r, "default", "web");
  CHECK(svc.namespace_ == "default");
  CHECK(svc.name == "web");
  CHECK(svc.type == service_type::load_balancer);
  CHECK_FALSE(svc.headless);
  CHECK(svc.cluster_ips == std::vector<ip_addr>{ip("10.96.234.211")});
  CHECK_FALSE(svc.session_affinity_client_ip);
  CHECK(svc.affinity_timeout_s == 0);
  CHECK(svc.labels == std::map<std::string, std::string>{{"app", "web"}});
  CHECK(svc.source == "realistic/web-service.json");

  REQUIRE(svc.ports.size() == 2);
  CHECK(svc.ports[0].name == "http");
  CHECK(svc.ports[0].protocol == IPPROTO_TCP);
  CHECK(svc.ports[0].port == 80);
  CHECK(svc.ports[0].target_port == int_or_string{uint16_t{10080}});
  CHECK(svc.ports[0].node_port == 30391);
  CHECK(svc.ports[1].name == "https");
  CHECK(svc.ports[1].port == 443);
  CHECK(svc.ports[1].target_port == int_or_string{std::string("https-web")});
  CHECK(svc.ports[1].node_port == 31443);
}

TEST_CASE("decode: realistic EndpointSlice JSON with explicit conditions, hints and zones") {
  const decode_result r = decode_fixture("realistic/web-endpointslice.json");
  CHECK(all_errors(r) == "");
  CHECK(r.loaded == 1);
  const endpoint_slice& slice = get_slice(r, "default", "web-7xk2p");
  CHECK(slice.service_name == "web");
  CHECK(slice.address_type == slice_address_type::ipv4);
  CHECK(slice.labels.at("endpointslice.kubernetes.io/managed-by") ==
        "endpointslice-controller.k8s.io");

  REQUIRE(slice.endpoints.size() == 2);
  const endpoint& first = slice.endpoints[0];
  CHECK(first.addresses == std::vector<ip_addr>{ip("10.244.1.7")});
  CHECK(first.ready == true);
  CHECK(first.serving == true);
  CHECK(first.terminating == false);
  CHECK(first.node_name == "kind-worker");
  CHECK(first.zone == "zone-a");
  const endpoint& second = slice.endpoints[1];
  CHECK(second.addresses == std::vector<ip_addr>{ip("10.244.2.9")});
  CHECK(second.ready == false);
  CHECK(second.serving == true);
  CHECK(second.terminating == true);
  CHECK(second.node_name == "kind-worker2");
  CHECK(second.zone == "zone-b");

  REQUIRE(slice.ports.size() == 2);
  CHECK(slice.ports[0] == endpoint_port{"http", 10080, IPPROTO_TCP});
  CHECK(slice.ports[1] == endpoint_port{"https", 8443, IPPROTO_TCP});
}

TEST_CASE("decode: multi-document YAML, dual-stack Service, nil conditions, other kinds") {
  const decode_result r = decode_fixture("realistic/dual-stack.yaml");
  CHECK(all_errors(r) == "");
  CHECK(r.loaded == 3);
  CHECK(r.ignored == 2);  // Namespace, Deployment; the empty trailing document counts as nothing
  CHECK(r.rejected == 0);

  const service& svc = get_service(r, "kube-system", "kube-dns");
  CHECK(svc.type == service_type::cluster_ip);
  CHECK(svc.cluster_ips == std::vector<ip_addr>{ip("10.96.0.10"), ip("fd00:10:96::a")});
  CHECK(svc.session_affinity_client_ip);
  CHECK(svc.affinity_timeout_s == 10800);  // ClientIP without sessionAffinityConfig
  REQUIRE(svc.ports.size() == 3);
  CHECK(svc.ports[0].name == "dns");
  CHECK(svc.ports[0].protocol == IPPROTO_UDP);
  CHECK(svc.ports[1].name == "dns-tcp");
  CHECK(svc.ports[1].protocol == IPPROTO_TCP);
  CHECK(svc.ports[1].port == 53);

  const endpoint_slice& v4 = get_slice(r, "kube-system", "kube-dns-xk4vp");
  CHECK(v4.address_type == slice_address_type::ipv4);
  REQUIRE(v4.endpoints.size() == 2);
  CHECK_FALSE(v4.endpoints[0].ready.has_value());
  CHECK_FALSE(v4.endpoints[0].serving.has_value());
  CHECK_FALSE(v4.endpoints[0].terminating.has_value());
  CHECK(v4.endpoints[0].zone == "");

  const endpoint_slice& v6 = get_slice(r, "kube-system", "kube-dns-9bq2d");
  CHECK(v6.address_type == slice_address_type::ipv6);
  REQUIRE(v6.endpoints.size() == 1);
  CHECK(v6.endpoints[0].addresses == std::vector<ip_addr>{ip("fd00:10:244::5")});
  CHECK(v6.endpoints[0].addresses[0].family == ip_family::v6);
  CHECK(v6.ports[1] == endpoint_port{"dns", 53, IPPROTO_UDP});
}

TEST_CASE("decode: ServiceList items without kind, headless, ExternalName, unnamed port") {
  const decode_result r = decode_fixture("realistic/services-list.json");
  CHECK(all_errors(r) == "");
  CHECK(r.loaded == 3);
  CHECK(r.ignored == 0);

  const service& api = get_service(r, "shop", "api");
  CHECK(api.headless);
  CHECK(api.cluster_ips.empty());

  const service& db = get_service(r, "shop", "db");
  CHECK(db.type == service_type::external_name);
  CHECK(db.cluster_ips.empty());
  CHECK(db.ports.empty());

  const service& echo = get_service(r, "default", "echo");
  CHECK(echo.type == service_type::node_port);
  REQUIRE(echo.ports.size() == 1);
  CHECK(echo.ports[0].name == "");
  CHECK(echo.ports[0].node_port == 30080);
}

TEST_CASE("decode: kind List with null arrays, empty conditions and ignored objects") {
  const decode_result r = decode_fixture("realistic/kubectl-list.yaml");
  CHECK(all_errors(r) == "");
  CHECK(r.loaded == 3);
  // slice without kubernetes.io/service-name, ConfigMap, Knative Service
  CHECK(r.ignored == 3);
  CHECK(r.objects.services.empty());

  const endpoint_slice& empty = get_slice(r, "default", "echo-abc12");
  CHECK(empty.endpoints.empty());
  CHECK(empty.ports.empty());

  const endpoint_slice& echo = get_slice(r, "default", "echo-def34");
  REQUIRE(echo.endpoints.size() == 2);
  CHECK_FALSE(echo.endpoints[0].ready.has_value());
  CHECK(echo.endpoints[1].addresses.empty());
  CHECK(echo.endpoints[1].ready == true);
  REQUIRE(echo.ports.size() == 1);
  CHECK(echo.ports[0].name == std::optional<std::string>(""));

  const endpoint_slice& api = get_slice(r, "shop", "api-q8r7s");
  CHECK(api.labels.contains("service.kubernetes.io/headless"));
  CHECK_FALSE(r.objects.endpoint_slices.contains(object_key{"default", "orphan-slice"}));
}

TEST_CASE("decode: compact JSON, tabs, concatenated objects and JSON nulls") {
  const std::string text =
      "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"a\"},"
      "\"spec\":{\"clusterIP\":\"10.96.0.1\",\"clusterIPs\":null,\"ports\":null}}\n"
      "{\n\t\"apiVersion\": \"discovery.k8s.io/v1\",\n\t\"kind\": \"EndpointSlice\",\n"
      "\t\"metadata\": {\"name\": \"a-1\", \"labels\": {\"kubernetes.io/service-name\": \"a\"}},\n"
      "\t\"addressType\": \"IPv4\",\n"
      "\t\"endpoints\": [{\"addresses\": [\"10.244.0.1\"], \"conditions\": {\"ready\": null},\n"
      "\t               \"nodeName\": null, \"zone\": null}],\n"
      "\t\"ports\": [{\"name\": null, \"port\": null, \"protocol\": \"UDP\"}]\n}\n";
  const decode_result r = decode_manifest(text, "inline.json");
  CHECK(all_errors(r) == "");
  CHECK(r.loaded == 2);
  const service& a = get_service(r, "default", "a");
  CHECK(a.cluster_ips == std::vector<ip_addr>{ip("10.96.0.1")});
  CHECK(a.ports.empty());
  const endpoint_slice& slice = get_slice(r, "default", "a-1");
  REQUIRE(slice.endpoints.size() == 1);
  CHECK_FALSE(slice.endpoints[0].ready.has_value());
  CHECK(slice.endpoints[0].node_name == "");
  REQUIRE(slice.ports.size() == 1);
  CHECK_FALSE(slice.ports[0].name.has_value());
  CHECK_FALSE(slice.ports[0].port.has_value());
  CHECK(slice.ports[0].protocol == IPPROTO_UDP);
}

TEST_CASE("decode: targetPort is an IntOrString and defaults to port") {
  const decode_result r = decode_manifest(R"(
apiVersion: v1
kind: Service
metadata: {name: tp, namespace: apps}
spec:
  clusterIP: 10.96.5.5
  ports:
  - {name: a, port: 80, targetPort: 8080}
  - {name: b, port: 81, targetPort: http-alt}
  - {name: c, port: 82, targetPort: "8082"}
  - {name: d, port: 83}
  - {name: e, port: 84, protocol: SCTP}
  - {name: f, port: 85, targetPort: 0}
  - {name: g, port: 86, targetPort: ""}
)",
                                          "tp.yaml");
  CHECK(all_errors(r) == "");
  const service& svc = get_service(r, "apps", "tp");
  REQUIRE(svc.ports.size() == 7);
  CHECK(svc.ports[0].target_port == int_or_string{uint16_t{8080}});
  CHECK(svc.ports[1].target_port == int_or_string{std::string("http-alt")});
  CHECK(svc.ports[2].target_port == int_or_string{uint16_t{8082}});
  CHECK(svc.ports[3].target_port == int_or_string{uint16_t{83}});
  CHECK(svc.ports[3].protocol == IPPROTO_TCP);  // defaulted
  CHECK(svc.ports[4].protocol == IPPROTO_SCTP);
  // 0 and "" are what the API server defaults to the port, like an absent targetPort.
  CHECK(svc.ports[5].target_port == int_or_string{uint16_t{85}});
  CHECK(svc.ports[6].target_port == int_or_string{uint16_t{86}});
}

TEST_CASE("decode: session affinity timeout, namespace default, YAML booleans") {
  const decode_result r = decode_manifest(R"(
apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: ""}
spec:
  clusterIP: 10.96.6.6
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: max}
spec:
  clusterIP: 10.96.6.7
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86400}}
---
apiVersion: v1
kind: Service
metadata: {name: none}
spec:
  clusterIP: 10.96.6.8
  sessionAffinity: None
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 5}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sticky-1, labels: {kubernetes.io/service-name: sticky}}
addressType: IPv4
endpoints:
- addresses: [10.244.0.1]
  conditions: {ready: False, serving: yes, terminating: TRUE}
)",
                                          "affinity.yaml");
  CHECK(all_errors(r) == "");
  CHECK(r.loaded == 4);
  const service& sticky = get_service(r, "default", "sticky");
  CHECK(sticky.session_affinity_client_ip);
  CHECK(sticky.affinity_timeout_s == 600);
  CHECK(get_service(r, "default", "max").affinity_timeout_s == 86400);
  CHECK_FALSE(get_service(r, "default", "none").session_affinity_client_ip);
  CHECK(get_service(r, "default", "none").affinity_timeout_s == 0);
  const endpoint& ep = get_slice(r, "default", "sticky-1").endpoints.at(0);
  CHECK(ep.ready == false);
  CHECK(ep.serving == true);
  CHECK(ep.terminating == true);
}

TEST_CASE("decode: clusterIP falls back when clusterIPs is absent; FQDN slices carry no IPs") {
  const decode_result r = decode_manifest(R"(
apiVersion: v1
kind: Service
metadata: {name: v6only}
spec:
  clusterIP: fd00:10:96::99
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: unallocated}
spec:
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext-1, labels: {kubernetes.io/service-name: ext}}
addressType: FQDN
endpoints:
- addresses: [db.example.com]
)",
                                          "fallback.yaml");
  CHECK(all_errors(r) == "");
  CHECK(get_service(r, "default", "v6only").cluster_ips ==
        std::vector<ip_addr>{ip("fd00:10:96::99")});
  CHECK(get_service(r, "default", "unallocated").cluster_ips.empty());
  CHECK_FALSE(get_service(r, "default", "unallocated").headless);
  const endpoint_slice& fqdn = get_slice(r, "default", "ext-1");
  CHECK(fqdn.address_type == slice_address_type::fqdn);
  REQUIRE(fqdn.endpoints.size() == 1);
  CHECK(fqdn.endpoints[0].addresses.empty());
}

TEST_CASE("decode: each malformed object gives one precise error and the others still load") {
  struct malformed_case {
    const char* what;
    const char* document;
    std::initializer_list<std::string_view> error_parts;
  };
  const malformed_case cases[] = {
      {"port out of range",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 70000}]}\n",
       {"Service default/x: spec.ports[0].port: 70000 is out of range 1..65535"}},
      {"port zero",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 0}]}\n",
       {"Service default/x: spec.ports[0].port: 0 is out of range 1..65535"}},
      {"port missing",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{name: http}]}\n",
       {"Service default/x: spec.ports[0].port: missing"}},
      {"port quoted",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: \"80\"}]}\n",
       {"Service default/x: spec.ports[0].port: expected an integer, got \"80\""}},
      {"port not an integer",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80.5}]}\n",
       {"spec.ports[0].port: expected an integer, got 80.5"}},
      {"nodePort out of range",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {type: NodePort, clusterIP: 10.96.9.1, ports: [{port: 80, nodePort: 65536}]}\n",
       {"spec.ports[0].nodePort: 65536 is out of range 0..65535"}},
      {"targetPort out of range",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80, targetPort: 65536}]}\n",
       {"spec.ports[0].targetPort: 65536 is out of range 0..65535"}},
      {"targetPort quoted out of range",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80, targetPort: \"0\"}]}\n",
       {"spec.ports[0].targetPort: 0 is out of range 1..65535"}},
      {"targetPort a list",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80, targetPort: [80]}]}\n",
       {"spec.ports[0].targetPort: expected a port number or name, got a list"}},
      {"targetPort bad name",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80, targetPort: Web_Port}]}\n",
       {"spec.ports[0].targetPort: \"Web_Port\" is neither a port number nor a port name"}},
      {"unknown protocol",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: shop}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80, protocol: ICMP}]}\n",
       {"Service shop/x: spec.ports[0].protocol: unknown protocol \"ICMP\""}},
      {"lower-case protocol",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80, protocol: tcp}]}\n",
       {"spec.ports[0].protocol: unknown protocol \"tcp\""}},
      {"duplicate port",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{name: a, port: 80}, {name: b, port: 80}]}\n",
       {"Service default/x: spec.ports[1]: duplicate port 80/TCP"}},
      {"duplicate port name",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{name: a, port: 80}, {name: a, port: 81}]}\n",
       {"spec.ports[1].name: duplicate port name \"a\""}},
      {"two unnamed ports",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: [{port: 80}, {port: 81}]}\n",
       {"spec.ports[1].name: required when the service has several ports"}},
      {"ports is a mapping",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, ports: {port: 80}}\n",
       {"Service default/x: spec.ports: expected a list, got a mapping"}},
      {"bad cluster IP",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.300, ports: [{port: 80}]}\n",
       {"Service default/x: spec.clusterIP: \"10.96.9.300\" is not an IP address"}},
      {"bad clusterIPs entry",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIPs: [10.96.9.1, \"fd00::zz\"], ports: [{port: 80}]}\n",
       {"spec.clusterIPs[1]: \"fd00::zz\" is not an IP address"}},
      {"two IPv4 cluster IPs",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIPs: [10.96.9.1, 10.96.9.2], ports: [{port: 80}]}\n",
       {"spec.clusterIPs[1]: at most one address per IP family"}},
      {"clusterIP disagrees with clusterIPs",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.2, clusterIPs: [10.96.9.1], ports: [{port: 80}]}\n",
       {"spec.clusterIP: \"10.96.9.2\" differs from spec.clusterIPs[0] \"10.96.9.1\""}},
      {"unknown type",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {type: Ingress, clusterIP: 10.96.9.1}\n",
       {"Service default/x: spec.type: unknown type \"Ingress\""}},
      {"unknown session affinity",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, sessionAffinity: Cookie}\n",
       {"spec.sessionAffinity: unknown value \"Cookie\""}},
      {"affinity timeout zero",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, sessionAffinity: ClientIP,\n"
       "       sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}\n",
       {"spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is out of range 1..86400"}},
      {"affinity timeout too large",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
       "spec: {clusterIP: 10.96.9.1, sessionAffinity: ClientIP,\n"
       "       sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}}\n",
       {"spec.sessionAffinityConfig.clientIP.timeoutSeconds: 86401 is out of range"}},
      {"missing name",
       "apiVersion: v1\nkind: Service\nmetadata: {namespace: shop}\n"
       "spec: {clusterIP: 10.96.9.1}\n",
       {"case.yaml:8: Service shop/<no name>: metadata.name: missing"}},
      {"missing metadata",
       "apiVersion: v1\nkind: Service\nspec: {clusterIP: 10.96.9.1}\n",
       {"case.yaml:6: Service default/<no name>: metadata: missing"}},
      {"missing spec",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n",
       {"Service default/x: spec: missing"}},
      {"labels not a mapping",
       "apiVersion: v1\nkind: Service\nmetadata: {name: x, labels: [app]}\n"
       "spec: {clusterIP: 10.96.9.1}\n",
       {"Service default/x: metadata.labels: expected a mapping, got a list"}},
      {"name is a mapping",
       "apiVersion: v1\nkind: Service\nmetadata: {name: {a: b}}\nspec: {}\n",
       {"metadata.name: expected a string, got a mapping"}},
      {"missing apiVersion",
       "kind: Service\nmetadata: {name: x}\nspec: {clusterIP: 10.96.9.1}\n",
       {"Service default/x: apiVersion: missing (want v1)"}},
      {"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", {"document 2: kind: missing"}},
      {"document is a list",
       "- apiVersion: v1\n  kind: Service\n",
       {"document 2: expected a mapping, got a list"}},
      {"slice address of the wrong family",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n"
       "addressType: IPv4\nendpoints: [{addresses: [\"fd00::1\"]}]\n",
       {"EndpointSlice default/s: endpoints[0].addresses[0]: \"fd00::1\" does not match "
        "addressType IPv4"}},
      {"slice address not an IP",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n"
       "addressType: IPv6\nendpoints: [{addresses: [pod-1.example]}]\n",
       {"endpoints[0].addresses[0]: \"pod-1.example\" is not an IP address"}},
      {"slice condition not a boolean",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n"
       "addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {ready: maybe}}]\n",
       {"EndpointSlice default/s: endpoints[0].conditions.ready: expected true or false, got "
        "\"maybe\""}},
      {"slice condition quoted",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n"
       "addressType: IPv4\nendpoints: [{addresses: [10.0.0.1], conditions: {serving: \"true\"}}]\n",
       {"endpoints[0].conditions.serving: expected true or false"}},
      {"slice port out of range",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n"
       "addressType: IPv4\nports: [{name: http, port: 70000}]\n",
       {"EndpointSlice default/s: ports[0].port: 70000 is out of range 1..65535"}},
      {"slice port protocol unknown",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n"
       "addressType: IPv4\nports: [{name: http, port: 80, protocol: QUIC}]\n",
       {"ports[0].protocol: unknown protocol \"QUIC\""}},
      {"slice addressType unknown",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\naddressType: IPX\n",
       {"EndpointSlice default/s: addressType: unknown address type \"IPX\""}},
      {"slice addressType missing",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n",
       {"EndpointSlice default/s: addressType: missing"}},
      {"slice endpoints not a list",
       "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
       "metadata: {name: s, labels: {kubernetes.io/service-name: good}}\n"
       "addressType: IPv4\nendpoints: 10.0.0.1\n",
       {"endpoints: expected a list, got a string"}},
      {"list items not a list",
       "apiVersion: v1\nkind: List\nitems: {a: b}\n",
       {"List document 2: items: expected a list, got a mapping"}},
  };

  const std::string good_before =
      "apiVersion: v1\nkind: Service\nmetadata: {name: good}\n"
      "spec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n";
  const std::string good_after =
      "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
      "metadata: {name: good-1, labels: {kubernetes.io/service-name: good}}\n"
      "addressType: IPv4\nendpoints: [{addresses: [10.244.0.1]}]\nports: [{port: 80}]\n";

  for (const malformed_case& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    const std::string text = good_before + "---\n" + c.document + "---\n" + good_after;
    const decode_result r = decode_manifest(text, "case.yaml");
    REQUIRE(r.errors.size() == 1);
    CAPTURE(r.errors[0]);
    CHECK(r.errors[0].starts_with("case.yaml:"));
    CHECK(contains_all(r.errors[0], c.error_parts));
    CHECK(r.rejected == 1);
    CHECK(r.loaded == 2);
    CHECK(r.objects.services.contains(object_key{"default", "good"}));
    CHECK(r.objects.endpoint_slices.contains(object_key{"default", "good-1"}));
    CHECK_FALSE(r.objects.services.contains(object_key{"default", "x"}));
    CHECK_FALSE(r.objects.endpoint_slices.contains(object_key{"default", "s"}));
  }
}

TEST_CASE("decode: errors carry the line of the offending field") {
  const decode_result r = decode_fixture("malformed/mixed.yaml");
  const std::string errors = all_errors(r);
  CAPTURE(errors);
  // mixed.yaml line 21 is "  - port: 70000".
  CHECK(errors.find("malformed/mixed.yaml:21: Service default/bad-port: spec.ports[0].port: "
                    "70000 is out of range 1..65535\n") != std::string::npos);
  CHECK(contains_all(
      errors, {"Service shop/bad-ip: spec.clusterIP: \"10.96.1.300\"",
               "mixed.yaml:36: Service shop/<no name>: metadata.name: missing",
               "Service default/bad-proto: spec.ports[0].protocol",
               "Service default/ports-not-a-list: spec.ports: expected a list",
               "EndpointSlice default/good-v6-in-v4: endpoints[0].addresses[0]",
               "EndpointSlice default/good-bad-ready: endpoints[0].conditions.ready",
               "mixed.yaml:103: Service default/good: defined twice (also earlier in this file)"}));
  CHECK(r.errors.size() == 8);
  CHECK(r.rejected == 8);
  CHECK(r.loaded == 2);
  // The first definition of default/good is kept.
  CHECK(get_service(r, "default", "good").cluster_ips == std::vector<ip_addr>{ip("10.96.1.1")});
  CHECK(r.objects.endpoint_slices.size() == 1);
}

TEST_CASE("decode: unparsable YAML is one error for the file and loads nothing") {
  const decode_result r = decode_fixture("malformed/broken.yaml");
  REQUIRE(r.errors.size() == 1);
  CAPTURE(r.errors[0]);
  CHECK(r.errors[0].starts_with("malformed/broken.yaml:"));
  CHECK(r.errors[0].find("not valid YAML/JSON") != std::string::npos);
  CHECK(r.loaded == 0);
  CHECK(r.rejected == 1);
  CHECK(r.objects.services.empty());

  const decode_result json = decode_manifest("{\"kind\": \"Service\", \"metadata\": {", "x.json");
  CHECK(json.errors.size() == 1);
  CHECK(json.loaded == 0);
}

TEST_CASE("decode: a stray comma between documents is an error, not a hang") {
  // yaml-cpp 0.7's LoadAll loops forever, allocating, on these. Run in a child process with an
  // alarm so that a regression fails this test instead of exhausting the machine's memory.
  for (const std::string& text :
       {std::string(","), std::string("---\n,\n"),
        std::string("{\"kind\": \"Service\"},\n{\"kind\": \"List\"}\n")}) {
    CAPTURE(text);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::alarm(10);
      const decode_result r = decode_manifest(text, "stray.json");
      const bool ok = r.errors.size() == 1 && r.rejected == 1 && r.loaded == 0 &&
                      r.errors[0].starts_with("stray.json:") &&
                      r.errors[0].find("not valid YAML/JSON") != std::string::npos;
      ::_exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}

TEST_CASE("decode: empty input and comment-only documents are fine") {
  for (const std::string text : {"", "\n", "# nothing here\n", "---\n---\n", "null\n"}) {
    CAPTURE(text);
    const decode_result r = decode_manifest(text, "empty.yaml");
    CHECK(r.errors.empty());
    CHECK(r.loaded == 0);
    CHECK(r.ignored == 0);
    CHECK(r.rejected == 0);
  }
}

TEST_CASE("load_manifest_dir: Pods, Nodes and legacy Endpoints from typed lists and documents") {
  const auto r = load_manifest_dir(fixture("standalone"));
  REQUIRE(r);
  CHECK(all_errors(*r) == "");
  CHECK(r->loaded == 14);
  CHECK(r->ignored == 1);  // the Deployment
  CHECK(r->rejected == 0);
  CHECK(r->objects.services.size() == 3);
  CHECK(r->objects.legacy_endpoints.size() == 2);
  CHECK(r->objects.pods.size() == 7);
  CHECK(r->objects.endpoint_slices.empty());
  CHECK_FALSE(r->objects.self_node.has_value());
  REQUIRE(r->nodes.size() == 2);
  CHECK(r->nodes.at("node-1").zone() == "zone-a");
  CHECK(r->nodes.at("node-1").pod_cidrs.size() == 1);
  CHECK(r->nodes.at("node-2").internal_ips == std::vector<ip_addr>{ip("172.18.0.3")});
  CHECK(r->nodes.at("node-2").source == fixture("standalone/nodes.yaml").string());

  const pod& a = r->objects.pods.at(object_key{"shop", "web-a"});
  CHECK(a.ready);
  CHECK(a.ports == std::vector<pod_port>{{"http", 8080, IPPROTO_TCP, 0, std::nullopt}});
  CHECK(a.source == fixture("standalone/pods.json").string());
  CHECK(r->objects.pods.at(object_key{"shop", "web-c"}).terminating);
  CHECK(r->objects.pods.at(object_key{"shop", "web-d"}).finished);
  CHECK(r->objects.pods.at(object_key{"shop", "web-g"}).host_network);

  const endpoints& db = r->objects.legacy_endpoints.at(object_key{"shop", "db"});
  REQUIRE(db.subsets.size() == 1);
  CHECK(db.subsets[0].addresses.size() == 2);
  CHECK(db.subsets[0].not_ready_addresses.size() == 1);
  CHECK(get_service(*r, "shop", "db").selector.empty());
  CHECK(get_service(*r, "shop", "db").cluster_ips.empty());
}

TEST_CASE("decode: every list kind; errors inside list items keep their line") {
  const decode_result r = decode_manifest(R"(apiVersion: v1
kind: EndpointsList
items:
- metadata: {name: a}
  subsets: [{addresses: [{ip: 192.0.2.1}], ports: [{port: 80}]}]
---
apiVersion: v1
kind: PodList
items:
- metadata: {name: ok}
- metadata: {name: bad}
  spec:
    containers:
    - ports:
      - containerPort: 70000
---
kind: List
apiVersion: v1
items:
- {apiVersion: v1, kind: Node, metadata: {name: n1}}
- {apiVersion: v1, kind: Node, metadata: {name: n1}}
- {apiVersion: v1, kind: Pod, metadata: {name: ok}}
- {metadata: {name: kindless}}
---
apiVersion: v1
kind: ServiceList
items: null
)",
                                          "lists.yaml");
  CHECK(r.loaded == 3);
  CHECK(r.rejected == 4);
  CHECK(r.errors == std::vector<std::string>{
                        "lists.yaml:15: Pod default/bad: spec.containers[0].ports[0]."
                        "containerPort: 70000 is out of range 1..65535",
                        "lists.yaml:21: Node n1: defined twice (also earlier in this file); "
                        "ignoring this one",
                        "lists.yaml:22: Pod default/ok: defined twice (also earlier in this "
                        "file); ignoring this one",
                        "lists.yaml:23: document 3, items[3]: kind: missing"});
  CHECK(r.objects.legacy_endpoints.contains(object_key{"default", "a"}));
  CHECK(r.objects.pods.contains(object_key{"default", "ok"}));
  CHECK(r.nodes.contains("n1"));
}

TEST_CASE("decode: YAML plain scalars follow the core schema; quoted scalars stay strings") {
  const decode_result r = decode_manifest(R"(
apiVersion: v1
kind: Service
metadata:
  name: scalars
  labels: {version: "1.10", empty: ~, plain-text: hello world}
  annotations: {note: null, count: "3"}
spec:
  clusterIP: 10.96.7.7
  publishNotReadyAddresses: on
  allocateLoadBalancerNodePorts: NO
  ports:
  - {name: hex, port: 0x50}
  - {name: octal, port: 0o121}
  - {name: plus, port: +82}
  - {name: zeros, port: 0083}
)",
                                          "scalars.yaml");
  CHECK(all_errors(r) == "");
  const service& svc = get_service(r, "default", "scalars");
  CHECK(svc.labels == std::map<std::string, std::string>{
                          {"empty", ""}, {"plain-text", "hello world"}, {"version", "1.10"}});
  CHECK(svc.annotations == std::map<std::string, std::string>{{"count", "3"}, {"note", ""}});
  CHECK(svc.publish_not_ready_addresses);
  CHECK_FALSE(svc.allocate_lb_node_ports);
  REQUIRE(svc.ports.size() == 4);
  CHECK(svc.ports[0].port == 80);
  CHECK(svc.ports[1].port == 81);
  CHECK(svc.ports[2].port == 82);
  CHECK(svc.ports[3].port == 83);  // decimal, as YAML 1.2 reads it

  const decode_result unquoted = decode_manifest(
      "apiVersion: v1\nkind: Service\nmetadata: {name: v, labels: {version: 1.10}}\nspec: {}\n",
      "v.yaml");
  CHECK(unquoted.errors ==
        std::vector<std::string>{"v.yaml:3: Service default/v: metadata.labels: value of "
                                 "\"version\": expected a string, got a number"});
  const decode_result quoted_bool = decode_manifest(
      "apiVersion: v1\nkind: Service\nmetadata: {name: q}\nspec: {publishNotReadyAddresses: "
      "'true'}\n",
      "q.yaml");
  CHECK(quoted_bool.errors ==
        std::vector<std::string>{"q.yaml:4: Service default/q: spec.publishNotReadyAddresses: "
                                 "expected true or false, got \"true\""});
}

TEST_CASE("decode: aliases are expanded, but an alias bomb is an error") {
  const decode_result ok = decode_manifest(R"(
apiVersion: v1
kind: ServiceList
items:
- metadata: {name: a, labels: &l {app: web}}
  spec: {clusterIP: 10.96.8.1, selector: *l, ports: &p [{port: 80}]}
- metadata: {name: b, labels: *l}
  spec: {clusterIP: 10.96.8.2, ports: *p}
)",
                                           "alias.yaml");
  CHECK(all_errors(ok) == "");
  CHECK(get_service(ok, "default", "a").selector.at("app") == "web");
  CHECK(get_service(ok, "default", "b").ports.at(0).port == 80);

  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 8; ++i) {
    bomb += fmt::format(
        "a{0}: &a{0} [*a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, "
        "*a{1}, *a{1}]\n",
        i, i - 1);
  }
  const decode_result r = decode_manifest(bomb, "bomb.yaml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].starts_with("bomb.yaml: document 1: document expands to far more nodes"));
  CHECK(r.rejected == 1);
}

TEST_CASE("is_manifest_file_name") {
  for (const std::string name : {"web.yaml", "web.yml", "web.json", "a.b.yaml", "00-first.yaml"}) {
    CAPTURE(name);
    CHECK(is_manifest_file_name(name));
  }
  for (const std::string name :
       {"", ".yaml", ".web.yaml", ".web.yaml.swp", ".#web.yaml", "web.yaml~", "#web.yaml#",
        "web.yaml.bak", "web.txt", "yaml", "web.YAML", "web.json.tmp", "4913", "..data"}) {
    CAPTURE(name);
    CHECK_FALSE(is_manifest_file_name(name));
  }
}

TEST_CASE("load_manifest_dir: realistic fixtures load without errors") {
  const auto r = load_manifest_dir(fixture("realistic"));
  REQUIRE(r);
  CHECK(all_errors(*r) == "");
  CHECK(r->loaded == 11);
  CHECK(r->ignored == 5);
  CHECK(r->rejected == 0);
  CHECK(r->objects.services.size() == 5);
  CHECK(r->objects.endpoint_slices.size() == 6);
  CHECK(get_service(*r, "default", "web").source == fixture("realistic/web-service.json").string());
}

TEST_CASE("load_manifest_dir: bad files and objects are reported, the rest loads") {
  const auto r = load_manifest_dir(fixture("malformed"));
  REQUIRE(r);
  // broken.yaml (1 error), mixed.yaml (8 errors), other.json (clean), in name order.
  REQUIRE(r->errors.size() == 9);
  CHECK(r->errors[0].find("broken.yaml") != std::string::npos);
  for (std::size_t i = 1; i < r->errors.size(); ++i) {
    CHECK(r->errors[i].find("mixed.yaml") != std::string::npos);
  }
  CHECK(r->loaded == 3);
  CHECK(r->rejected == 9);
  CHECK(r->objects.services.contains(object_key{"default", "good"}));
  CHECK(r->objects.services.contains(object_key{"default", "other"}));
  CHECK(r->objects.endpoint_slices.contains(object_key{"default", "good-abcde"}));
}

TEST_CASE("load_manifest_dir: file filter, name order, duplicates across files, symlinks") {
  temp_dir dir;
  const auto svc = [](std::string_view name, std::string_view ip_text) {
    return fmt::format(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {}}}\n"
        "spec: {{clusterIP: {}, ports: [{{port: 80}}]}}\n",
        name, ip_text);
  };
  write_text(dir / "b.yaml", svc("dup", "10.96.0.2"));
  write_text(dir / "a.yml", svc("dup", "10.96.0.1"));
  write_text(dir / "c.json",
             R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"c"},"spec":{}})");
  write_text(dir / ".hidden.yaml", svc("hidden", "10.96.0.3"));
  write_text(dir / ".d.yaml.swp", svc("swap", "10.96.0.4"));
  write_text(dir / "d.yaml~", svc("backup", "10.96.0.5"));
  write_text(dir / "notes.txt", svc("notes", "10.96.0.6"));
  std::filesystem::create_directory(dir / "sub.yaml");
  std::filesystem::create_directory(dir / "nested");
  write_text(dir / "nested" / "deep.yaml", svc("deep", "10.96.0.7"));
  // ConfigMap volume layout: the visible name is a symlink into a hidden directory.
  std::filesystem::create_directory(dir / "..2025_03_04_10_21_07.123");
  write_text(dir / "..2025_03_04_10_21_07.123" / "e.yaml", svc("linked", "10.96.0.8"));
  std::filesystem::create_directory_symlink("..2025_03_04_10_21_07.123", dir / "..data");
  std::filesystem::create_symlink("..data/e.yaml", dir / "e.yaml");

  const auto r = load_manifest_dir(dir.path());
  REQUIRE(r);
  CHECK(r->loaded == 3);
  CHECK(r->rejected == 1);
  REQUIRE(r->errors.size() == 1);
  CAPTURE(r->errors[0]);
  // a.yml sorts first, so its definition wins and b.yaml's is the reported duplicate.
  CHECK(contains_all(r->errors[0], {"b.yaml: Service default/dup: defined twice", "a.yml"}));
  CHECK(get_service(*r, "default", "dup").cluster_ips == std::vector<ip_addr>{ip("10.96.0.1")});
  CHECK(r->objects.services.contains(object_key{"default", "c"}));
  CHECK(r->objects.services.contains(object_key{"default", "linked"}));
  CHECK(r->objects.services.size() == 3);
}

TEST_CASE("load_manifest_dir: a dangling symlink is reported, the rest loads") {
  temp_dir dir;
  write_text(dir / "ok.yaml",
             "apiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec: {clusterIP: 10.96.0.1}\n");
  std::filesystem::create_symlink(dir / "missing.yaml", dir / "gone.yaml");
  const auto r = load_manifest_dir(dir.path());
  REQUIRE(r);
  REQUIRE(r->errors.size() == 1);
  CHECK(contains_all(r->errors[0], {"gone.yaml", "cannot read"}));
  CHECK(r->loaded == 1);
}

TEST_CASE("load_manifest_dir: a missing directory is an error code, not an empty result") {
  temp_dir dir;
  const auto r = load_manifest_dir(dir / "does-not-exist");
  REQUIRE_FALSE(r);
  CHECK(r.error() == std::errc::no_such_file_or_directory);

  write_text(dir / "file.yaml", "");
  const auto not_dir = load_manifest_dir(dir / "file.yaml");
  REQUIRE_FALSE(not_dir);
  CHECK(not_dir.error() == std::errc::not_a_directory);
}

}  // namespace sluice
