// decode_json() / decode_object(): realistic API server JSON (reference/kube-semantics.md §3.8),
// also with their fields in other orders, the API's nulls and nil conditions, ParseIPSloppy
// addresses, every kind, and every rejection message.
#include "agent/sources/decode.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>

#include "test_helpers.h"

namespace sluice {

namespace {

using nlohmann::json;
using test::ip;

template <typename T>
T decode_as(const json& obj, std::string_view default_kind = "") {
  std::expected<kube_object, decode_error> r = decode_json(obj.dump(), default_kind);
  if (!r) {
    FAIL("decode failed: " << r.error().message);
  }
  REQUIRE(std::holds_alternative<T>(*r));
  return std::get<T>(std::move(*r));
}

decode_error decode_fails(const json& obj, std::string_view default_kind = "") {
  std::expected<kube_object, decode_error> r = decode_json(obj.dump(), default_kind);
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

ip_prefix prefix(std::string_view text) {
  const std::optional<ip_prefix> p = parse_prefix(text);
  REQUIRE(p.has_value());
  return *p;
}

// GET /api/v1/namespaces/default/services/web (kube-semantics.md §3.8), with a managedFields
// entry as the server really sends it.
const char* const web_service_json = R"json({
  "kind": "Service",
  "apiVersion": "v1",
  "metadata": {
    "name": "web",
    "namespace": "default",
    "uid": "8d5c3f0e-7f55-4a4e-9a59-2a3c1b6e0f11",
    "resourceVersion": "184213",
    "creationTimestamp": "2025-03-04T10:21:07Z",
    "labels": {"app": "web"},
    "annotations": {"metallb.universe.tf/ip-allocated-from-pool": "default-pool"},
    "managedFields": [
      {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
       "time": "2025-03-04T10:21:07Z", "fieldsType": "FieldsV1",
       "fieldsV1": {"f:spec": {"f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {}}}}}
    ]
  },
  "spec": {
    "ports": [
      {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 10080, "nodePort": 30391},
      {"name": "https", "protocol": "TCP", "appProtocol": "https", "port": 443,
       "targetPort": "https-web", "nodePort": 31443}
    ],
    "selector": {"app": "web"},
    "clusterIP": "10.96.234.211",
    "clusterIPs": ["10.96.234.211"],
    "type": "LoadBalancer",
    "sessionAffinity": "None",
    "loadBalancerSourceRanges": ["203.0.113.0/25"],
    "externalTrafficPolicy": "Local",
    "healthCheckNodePort": 32751,
    "ipFamilies": ["IPv4"],
    "ipFamilyPolicy": "SingleStack",
    "allocateLoadBalancerNodePorts": true,
    "internalTrafficPolicy": "Cluster"
  },
  "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.205", "ipMode": "VIP"}]}}
})json";

// GET /apis/discovery.k8s.io/v1/namespaces/default/endpointslices/web-7xk2p (§3.8).
const char* const web_slice_json = R"json({
  "kind": "EndpointSlice",
  "apiVersion": "discovery.k8s.io/v1",
  "metadata": {
    "name": "web-7xk2p",
    "generateName": "web-",
    "namespace": "default",
    "uid": "5f0e2b8c-3d7a-4c1e-8f6b-0a9d2e4c7b13",
    "resourceVersion": "184250",
    "generation": 7,
    "creationTimestamp": "2025-03-04T10:21:07Z",
    "labels": {
      "app": "web",
      "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
      "kubernetes.io/service-name": "web"
    },
    "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2025-03-04T10:25:41Z"},
    "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web",
                         "uid": "8d5c3f0e-7f55-4a4e-9a59-2a3c1b6e0f11", "controller": true,
                         "blockOwnerDeletion": true}],
    "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]
  },
  "addressType": "IPv4",
  "endpoints": [
    {"addresses": ["10.244.1.7"],
     "conditions": {"ready": true, "serving": true, "terminating": false},
     "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-5d9c7b8f6d-x2x9q",
                   "uid": "c1b7a3d2-9e0f-4b6a-8c5d-2f1e0a9b8c7d"},
     "nodeName": "kind-worker", "zone": "zone-a",
     "hints": {"forZones": [{"name": "zone-a"}]}},
    {"addresses": ["10.244.2.9"],
     "conditions": {"ready": false, "serving": true, "terminating": true},
     "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-5d9c7b8f6d-7lq4m",
                   "uid": "0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b"},
     "nodeName": "kind-worker2", "zone": "zone-b",
     "hints": {"forZones": [{"name": "zone-b"}], "forNodes": [{"name": "kind-worker2"}]}}
  ],
  "ports": [
    {"name": "http", "protocol": "TCP", "port": 10080},
    {"name": "https", "protocol": "TCP", "port": 8443, "appProtocol": "https"}
  ]
})json";

}  // namespace

TEST_CASE("decode_object: the realistic LoadBalancer Service of kube-semantics §3.8") {
  const service svc = decode_as<service>(json::parse(web_service_json));
  CHECK(svc.namespace_ == "default");
  CHECK(svc.name == "web");
  CHECK(svc.type == service_type::load_balancer);
  CHECK_FALSE(svc.headless);
  CHECK(svc.cluster_ips == std::vector<ip_addr>{ip("10.96.234.211")});
  REQUIRE(svc.ports.size() == 2);
  CHECK(svc.ports[0] == service_port{"http", IPPROTO_TCP, 80, uint16_t{10080}, 30391});
  CHECK(svc.ports[1] == service_port{"https", IPPROTO_TCP, 443, std::string("https-web"), 31443});
  CHECK(svc.selector == std::map<std::string, std::string>{{"app", "web"}});
  CHECK(svc.lb_source_ranges == std::vector<ip_prefix>{prefix("203.0.113.0/25")});
  CHECK(svc.external_policy == traffic_policy::local);
  CHECK(svc.internal_policy == traffic_policy::cluster);
  CHECK(svc.health_check_node_port == 32751);
  CHECK(svc.ip_families == std::vector<ip_family>{ip_family::v4});
  CHECK(svc.family_policy == ip_family_policy::single_stack);
  CHECK(svc.allocate_lb_node_ports);
  CHECK(svc.lb_ingress == std::vector<load_balancer_ingress>{{ip("172.18.255.205"), false}});
  CHECK(svc.external_ips.empty());
  CHECK_FALSE(svc.session_affinity_client_ip);
  CHECK(svc.affinity_timeout_s == 0);
  CHECK(svc.labels == std::map<std::string, std::string>{{"app", "web"}});
  CHECK(svc.annotations == std::map<std::string, std::string>{
                               {"metallb.universe.tf/ip-allocated-from-pool", "default-pool"}});
  CHECK(svc.resource_version == "184213");
  CHECK_FALSE(svc.publish_not_ready_addresses);
  CHECK(svc.traffic_distribution == "");
  CHECK(svc.source == "");
}

TEST_CASE("decode_object: the realistic EndpointSlice of kube-semantics §3.8") {
  const endpoint_slice slice = decode_as<endpoint_slice>(json::parse(web_slice_json));
  CHECK(slice.namespace_ == "default");
  CHECK(slice.name == "web-7xk2p");
  CHECK(slice.service_name == "web");
  CHECK(slice.address_type == slice_address_type::ipv4);
  CHECK(slice.resource_version == "184250");
  CHECK(slice.annotations.at("endpoints.kubernetes.io/last-change-trigger-time") ==
        "2025-03-04T10:25:41Z");
  REQUIRE(slice.endpoints.size() == 2);
  const endpoint& a = slice.endpoints[0];
  CHECK(a.addresses == std::vector<ip_addr>{ip("10.244.1.7")});
  CHECK(a.ready == true);
  CHECK(a.serving == true);
  CHECK(a.terminating == false);
  CHECK(a.node_name == "kind-worker");
  CHECK(a.zone == "zone-a");
  CHECK(a.has_zone_hints);
  CHECK(a.hints_for_zones == std::vector<std::string>{"zone-a"});
  CHECK_FALSE(a.has_node_hints);
  CHECK(a.hints_for_nodes.empty());
  const endpoint& b = slice.endpoints[1];
  CHECK(b.ready == false);
  CHECK(b.terminating == true);
  CHECK(b.has_node_hints);
  CHECK(b.hints_for_nodes == std::vector<std::string>{"kind-worker2"});
  REQUIRE(slice.ports.size() == 2);
  CHECK(slice.ports[0] == endpoint_port{"http", 10080, IPPROTO_TCP});
  CHECK(slice.ports[1] == endpoint_port{"https", 8443, IPPROTO_TCP});
}

TEST_CASE("decode_object: items of a typed list have no kind and no apiVersion") {
  const json item = json::parse(R"json({
    "metadata": {"name": "kube-dns", "namespace": "kube-system", "resourceVersion": "217"},
    "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "protocol": "UDP", "port": 53,
             "targetPort": 53}]}
  })json");
  const service svc = decode_as<service>(item, "Service");
  CHECK(svc.key() == object_key{"kube-system", "kube-dns"});
  CHECK(svc.resource_version == "217");
  CHECK(svc.ports.at(0).protocol == IPPROTO_UDP);

  const endpoints eps = decode_as<endpoints>(
      json::parse(R"json({"metadata": {"name": "db"}, "subsets": null})json"), "Endpoints");
  CHECK(eps.key() == object_key{"default", "db"});
  CHECK(eps.subsets.empty());

  // Without a default kind, a standalone object must carry both.
  CHECK(decode_fails(item).message == "kind: missing");
}

TEST_CASE("decode_object: nulls, empty objects and nil conditions as the API server writes them") {
  const service svc = decode_as<service>(json::parse(R"json({
    "kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "bare", "namespace": null, "labels": null, "annotations": null},
    "spec": {"clusterIP": "10.96.0.5", "clusterIPs": null, "ports": null, "selector": null,
             "externalIPs": null, "loadBalancerSourceRanges": null, "sessionAffinity": null,
             "externalTrafficPolicy": null, "ipFamilies": null, "ipFamilyPolicy": null},
    "status": {"loadBalancer": {}}
  })json"));
  CHECK(svc.namespace_ == "default");
  CHECK(svc.cluster_ips == std::vector<ip_addr>{ip("10.96.0.5")});
  CHECK(svc.ports.empty());
  CHECK(svc.selector.empty());
  CHECK(svc.labels.empty());
  CHECK(svc.ip_families.empty());
  CHECK(svc.external_policy == traffic_policy::cluster);

  const endpoint_slice slice = decode_as<endpoint_slice>(json::parse(R"json({
    "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
    "metadata": {"name": "bare-1", "labels": {"kubernetes.io/service-name": "bare",
                                               "empty-value": null}},
    "addressType": "IPv4",
    "endpoints": [
      {"addresses": ["10.244.0.1"]},
      {"addresses": ["10.244.0.2"], "conditions": {}},
      {"addresses": ["10.244.0.3"], "conditions": {"ready": null, "serving": false,
                                                   "terminating": null}},
      {"addresses": ["10.244.0.4"], "conditions": null, "nodeName": null, "zone": null,
       "hints": {"forZones": []}}
    ],
    "ports": [{"name": "", "port": 80}, {"name": null, "port": null, "protocol": null}]
  })json"));
  CHECK(slice.labels.at("empty-value") == "");
  REQUIRE(slice.endpoints.size() == 4);
  for (const endpoint& ep : slice.endpoints) {
    CHECK_FALSE(ep.ready.has_value());
    CHECK_FALSE(ep.terminating.has_value());
  }
  CHECK_FALSE(slice.endpoints[0].serving.has_value());
  CHECK(slice.endpoints[2].serving == false);
  // An empty forZones is present: "every endpoint hinted" needs to see it.
  CHECK(slice.endpoints[3].has_zone_hints);
  CHECK(slice.endpoints[3].hints_for_zones.empty());
  CHECK_FALSE(slice.endpoints[0].has_zone_hints);
  REQUIRE(slice.ports.size() == 2);
  CHECK(slice.ports[0] == endpoint_port{"", 80, IPPROTO_TCP});
  CHECK(slice.ports[1] == endpoint_port{std::nullopt, std::nullopt, IPPROTO_TCP});

  // The BOOKMARK-like empty slice: endpoints and ports null.
  const endpoint_slice empty = decode_as<endpoint_slice>(json::parse(R"json({
    "metadata": {"name": "e-1", "labels": {"kubernetes.io/service-name": "e"}},
    "addressType": "IPv6", "endpoints": null, "ports": null})json"),
                                                         "EndpointSlice");
  CHECK(empty.endpoints.empty());
  CHECK(empty.ports.empty());
}

TEST_CASE("decode_object: leading-zero IPv4 addresses are accepted and normalised (TestBadIPs)") {
  const service svc = decode_as<service>(json::parse(R"json({
    "kind": "Service", "apiVersion": "v1", "metadata": {"name": "old"},
    "spec": {"type": "LoadBalancer", "clusterIP": "172.30.0.041",
             "externalIPs": ["1.2.3.004"],
             "loadBalancerSourceRanges": ["203.0.113.000/025"],
             "ports": [{"port": 80, "nodePort": 30080}]},
    "status": {"loadBalancer": {"ingress": [{"ip": "192.168.099.022"}]}}
  })json"));
  CHECK(svc.cluster_ips == std::vector<ip_addr>{ip("172.30.0.41")});
  CHECK(format_ip(svc.cluster_ips[0]) == "172.30.0.41");
  CHECK(svc.external_ips == std::vector<ip_addr>{ip("1.2.3.4")});
  CHECK(svc.lb_source_ranges == std::vector<ip_prefix>{prefix("203.0.113.0/25")});
  CHECK(svc.lb_ingress.at(0).ip == ip("192.168.99.22"));

  const endpoint_slice slice = decode_as<endpoint_slice>(json::parse(R"json({
    "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
    "metadata": {"name": "old-1", "labels": {"kubernetes.io/service-name": "old"}},
    "addressType": "IPv4", "endpoints": [{"addresses": ["10.180.00.001"]}]})json"));
  CHECK(format_ip(slice.endpoints.at(0).addresses.at(0)) == "10.180.0.1");
}

TEST_CASE("decode_object: dual-stack, headless, ClientIP affinity, ranges, ingress modes") {
  const service dual = decode_as<service>(json::parse(R"json({
    "kind": "Service", "apiVersion": "v1", "metadata": {"name": "dual", "namespace": "apps"},
    "spec": {"clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7", "fd00:10:96::4a2f"],
             "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
             "ports": [{"port": 80, "protocol": "SCTP"}],
             "sessionAffinity": "ClientIP",
             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
             "trafficDistribution": "PreferClose", "internalTrafficPolicy": "Local",
             "publishNotReadyAddresses": true}
  })json"));
  CHECK(dual.cluster_ips == std::vector<ip_addr>{ip("10.96.12.7"), ip("fd00:10:96::4a2f")});
  CHECK(dual.ip_families == std::vector<ip_family>{ip_family::v4, ip_family::v6});
  CHECK(dual.family_policy == ip_family_policy::prefer_dual_stack);
  CHECK(dual.ports.at(0).protocol == IPPROTO_SCTP);
  CHECK(dual.session_affinity_client_ip);
  CHECK(dual.affinity_timeout_s == 10800);
  CHECK(dual.traffic_distribution == "PreferClose");
  CHECK(dual.internal_policy == traffic_policy::local);
  CHECK(dual.publish_not_ready_addresses);

  const service headless = decode_as<service>(json::parse(R"json({
    "kind": "Service", "apiVersion": "v1", "metadata": {"name": "h"},
    "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ipFamilyPolicy": "RequireDualStack",
             "sessionAffinity": "ClientIP"}})json"));
  CHECK(headless.headless);
  CHECK(headless.cluster_ips.empty());
  CHECK(headless.family_policy == ip_family_policy::require_dual_stack);
  CHECK(headless.affinity_timeout_s == 10800);  // ClientIP without sessionAffinityConfig

  const service lb = decode_as<service>(json::parse(R"json({
    "kind": "Service", "apiVersion": "v1", "metadata": {"name": "lb"},
    "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.9", "allocateLoadBalancerNodePorts": false,
             "loadBalancerSourceRanges": [" 10.0.0.0/8 ", "192.168.1.77/24", "fd00::/64"]},
    "status": {"loadBalancer": {"ingress": [
      {"hostname": "abc.elb.amazonaws.com"},
      {"ip": "172.18.255.1", "ipMode": "Proxy"},
      {"ip": "172.18.255.2"},
      {"ip": "", "hostname": "x.example"}]}}})json"));
  CHECK_FALSE(lb.allocate_lb_node_ports);
  CHECK(lb.lb_source_ranges == std::vector<ip_prefix>{prefix("10.0.0.0/8"),
                                                      prefix("192.168.1.0/24"),
                                                      prefix("fd00::/64")});
  CHECK(lb.lb_ingress == std::vector<load_balancer_ingress>{{ip("172.18.255.1"), true},
                                                            {ip("172.18.255.2"), false}});

  const service named = decode_as<service>(json::parse(R"json({
    "kind": "Service", "apiVersion": "v1", "metadata": {"name": "n"},
    "spec": {"type": "ExternalName", "externalName": "db.example.com",
             "externalIPs": ["fd00::99", "192.0.2.1"]}})json"));
  CHECK(named.type == service_type::external_name);
  CHECK(named.external_name == "db.example.com");
  CHECK(named.external_ips == std::vector<ip_addr>{ip("fd00::99"), ip("192.0.2.1")});
}

TEST_CASE("decode_object: Node addresses, podCIDRs, taints and deletion") {
  const node n = decode_as<node>(json::parse(R"json({
    "kind": "Node", "apiVersion": "v1",
    "metadata": {"name": "kind-worker", "resourceVersion": "99",
                 "labels": {"kubernetes.io/hostname": "kind-worker",
                            "topology.kubernetes.io/zone": "zone-a"}},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
             "providerID": "kind://docker/kind/kind-worker",
             "taints": [{"key": "ToBeDeletedByClusterAutoscaler", "value": "1700000000",
                         "effect": "NoSchedule"}]},
    "status": {"addresses": [{"type": "InternalIP", "address": "172.18.0.3"},
                             {"type": "InternalIP", "address": "fc00:f853:ccd:e793::3"},
                             {"type": "Hostname", "address": "kind-worker"},
                             {"type": "ExternalIP", "address": "203.0.113.7"}],
               "conditions": [{"type": "Ready", "status": "True"}]}
  })json"));
  CHECK(n.name == "kind-worker");
  CHECK(n.zone() == "zone-a");
  CHECK(n.resource_version == "99");
  CHECK(n.internal_ips == std::vector<ip_addr>{ip("172.18.0.3"), ip("fc00:f853:ccd:e793::3")});
  CHECK(n.external_ips == std::vector<ip_addr>{ip("203.0.113.7")});
  CHECK(n.pod_cidrs ==
        std::vector<ip_prefix>{prefix("10.244.1.0/24"), prefix("fd00:10:244:1::/64")});
  CHECK(n.to_be_deleted_taint);
  CHECK_FALSE(n.deleting);

  const node old = decode_as<node>(json::parse(R"json({
    "metadata": {"name": "old", "deletionTimestamp": "2025-03-04T10:21:07Z"},
    "spec": {"podCIDR": "10.244.7.0/24", "taints": [{"key": "node.kubernetes.io/unschedulable"}]}
  })json"),
                                   "Node");
  CHECK(old.pod_cidrs == std::vector<ip_prefix>{prefix("10.244.7.0/24")});
  CHECK(old.deleting);
  CHECK_FALSE(old.to_be_deleted_taint);
  CHECK(old.zone() == "");
  CHECK(old.internal_ips.empty());
}

TEST_CASE("decode_object: Pod IPs, readiness, phase, container and sidecar ports") {
  const pod p = decode_as<pod>(json::parse(R"json({
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "web-5d9c7b8f6d-x2x9q", "namespace": "shop", "resourceVersion": "5",
                 "labels": {"app": "web", "pod-template-hash": "5d9c7b8f6d"}},
    "spec": {
      "nodeName": "kind-worker",
      "initContainers": [
        {"name": "setup", "image": "busybox", "ports": [{"name": "ignored", "containerPort": 1}]},
        {"name": "proxy", "image": "envoy", "restartPolicy": "Always",
         "ports": [{"name": "admin", "containerPort": 9901}]}],
      "containers": [
        {"name": "web", "image": "nginx",
         "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                   {"name": "dns", "containerPort": 5353, "protocol": "UDP",
                    "hostPort": 53, "hostIP": "10.0.0.1"}]},
        {"name": "metrics", "image": "exporter", "ports": null}]
    },
    "status": {
      "phase": "Running",
      "conditions": [{"type": "Initialized", "status": "True"},
                     {"type": "Ready", "status": "True"},
                     {"type": "ContainersReady", "status": "True"}],
      "podIP": "10.244.1.7",
      "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00:10:244:1::7"}]
    }
  })json"));
  CHECK(p.key() == object_key{"shop", "web-5d9c7b8f6d-x2x9q"});
  CHECK(p.labels.at("app") == "web");
  CHECK(p.node_name == "kind-worker");
  CHECK(p.pod_ips == std::vector<ip_addr>{ip("10.244.1.7"), ip("fd00:10:244:1::7")});
  CHECK(p.ready);
  CHECK_FALSE(p.terminating);
  CHECK_FALSE(p.finished);
  CHECK_FALSE(p.host_network);
  CHECK(p.resource_version == "5");
  REQUIRE(p.ports.size() == 3);
  CHECK(p.ports[0] == pod_port{"admin", 9901, IPPROTO_TCP, 0, std::nullopt});
  CHECK(p.ports[1] == pod_port{"http", 8080, IPPROTO_TCP, 0, std::nullopt});
  CHECK(p.ports[2] == pod_port{"dns", 5353, IPPROTO_UDP, 53, ip("10.0.0.1")});

  const pod done = decode_as<pod>(json::parse(R"json({
    "metadata": {"name": "job-x", "deletionTimestamp": "2025-03-04T10:21:07Z"},
    "spec": {"hostNetwork": true, "containers": [{"name": "c"}]},
    "status": {"phase": "Succeeded", "podIP": "172.18.0.3",
               "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}]}
  })json"),
                                  "Pod");
  CHECK(done.pod_ips == std::vector<ip_addr>{ip("172.18.0.3")});
  CHECK(done.host_network);
  CHECK(done.finished);
  CHECK(done.terminating);
  CHECK_FALSE(done.ready);

  const pod pending = decode_as<pod>(
      json::parse(R"json({"metadata": {"name": "p"}, "status": {"phase": "Pending"}})json"), "Pod");
  CHECK(pending.pod_ips.empty());
  CHECK_FALSE(pending.ready);
}

TEST_CASE("decode_object: legacy Endpoints subsets") {
  const endpoints eps = decode_as<endpoints>(json::parse(R"json({
    "kind": "Endpoints", "apiVersion": "v1",
    "metadata": {"name": "db", "namespace": "shop",
                 "labels": {"endpointslice.kubernetes.io/skip-mirror": "false"}},
    "subsets": [
      {"addresses": [{"ip": "192.0.2.10", "nodeName": "n1", "targetRef": {"kind": "Pod"}},
                     {"ip": "192.0.2.11"}],
       "notReadyAddresses": [{"ip": "192.0.2.12"}],
       "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
      {"addresses": [{"ip": "2001:db8::10"}], "ports": [{"port": 5432}]}
    ]
  })json"));
  CHECK(eps.key() == object_key{"shop", "db"});
  REQUIRE(eps.subsets.size() == 2);
  CHECK(eps.subsets[0].addresses ==
        std::vector<endpoints_subset::address>{{ip("192.0.2.10"), "n1"}, {ip("192.0.2.11"), ""}});
  CHECK(eps.subsets[0].not_ready_addresses ==
        std::vector<endpoints_subset::address>{{ip("192.0.2.12"), ""}});
  CHECK(eps.subsets[0].ports == std::vector<endpoint_port>{{"pg", 5432, IPPROTO_TCP}});
  CHECK(eps.subsets[1].ports == std::vector<endpoint_port>{{std::nullopt, 5432, IPPROTO_TCP}});
}

TEST_CASE("decode_object: objects that are fine but not ours are ignored, with a reason") {
  struct ignored_case {
    const char* json_text;
    const char* message;
  };
  const ignored_case cases[] = {
      {R"({"kind": "Service", "apiVersion": "serving.knative.dev/v1",
           "metadata": {"name": "hello", "namespace": "apps"}, "spec": {"template": {}}})",
       "Service apps/hello: apiVersion serving.knative.dev/v1 not used (want v1)"},
      {R"({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cfg", "namespace": "a"}})",
       "ConfigMap a/cfg: kind not used"},
      {R"({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "shop"}})",
       "Namespace shop: kind not used"},
      {R"({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1beta1",
           "metadata": {"name": "old"}, "addressType": "IPv4"})",
       "EndpointSlice default/old: apiVersion discovery.k8s.io/v1beta1 not used (want "
       "discovery.k8s.io/v1)"},
      {R"({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
           "metadata": {"name": "orphan", "labels": {"app": "x"}}, "addressType": "IPv4"})",
       "EndpointSlice default/orphan: no kubernetes.io/service-name label, not used by any "
       "Service"},
  };
  for (const ignored_case& c : cases) {
    const std::string want = c.message;
    CAPTURE(want);
    const decode_error e = decode_fails(json::parse(c.json_text));
    CHECK(e.ignored);
    CHECK(e.message == c.message);
  }
}

TEST_CASE("decode_object: every malformed field is rejected with kind, name, field and reason") {
  struct bad_case {
    const char* kind;  // default kind; the objects below carry no kind or apiVersion
    const char* json_text;
    const char* message;
  };
  const bad_case cases[] = {
      // Whole-object problems.
      {"Service", R"([1, 2])", "expected a mapping, got a list"},
      {"", R"({"kind": 5})", "kind: expected a string, got a number"},
      {"", R"({"kind": "Service", "metadata": {"name": "x"}, "spec": {}})",
       "Service default/x: apiVersion: missing (want v1)"},
      {"", R"({"kind": "Service", "apiVersion": 1, "metadata": {"name": "x"}, "spec": {}})",
       "Service default/x: apiVersion: expected a string, got a number"},
      {"Service", R"({"spec": {}})", "Service default/<no name>: metadata: missing"},
      {"Service", R"({"metadata": [], "spec": {}})",
       "Service default/<no name>: metadata: expected a mapping, got a list"},
      {"Service", R"({"metadata": {"namespace": "shop"}, "spec": {}})",
       "Service shop/<no name>: metadata.name: missing"},
      {"Service", R"({"metadata": {"name": 7}, "spec": {}})",
       "Service default/<no name>: metadata.name: expected a string, got a number"},
      {"Service", R"({"metadata": {"name": "x", "labels": {"a": 1}}, "spec": {}})",
       "Service default/x: metadata.labels: value of \"a\": expected a string, got a number"},
      {"Service", R"({"metadata": {"name": "x", "annotations": "a=b"}, "spec": {}})",
       "Service default/x: metadata.annotations: expected a mapping, got a string"},
      {"Service", R"({"metadata": {"name": "x"}})", "Service default/x: spec: missing"},
      // Service spec.
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"type": "Ingress"}})",
       "Service default/x: spec.type: unknown type \"Ingress\" (want ClusterIP, NodePort, "
       "LoadBalancer or ExternalName)"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"clusterIP": "10.96.0.256"}})",
       "Service default/x: spec.clusterIP: \"10.96.0.256\" is not an IP address"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"clusterIP": "fe80::1%eth0"}})",
       "Service default/x: spec.clusterIP: \"fe80::1%eth0\" is not an IP address"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"clusterIPs": ["10.96.0.1", ""]}})",
       "Service default/x: spec.clusterIPs[1]: empty address"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"clusterIP": "10.96.0.2", "clusterIPs": ["10.96.0.1"]}})",
       "Service default/x: spec.clusterIP: \"10.96.0.2\" differs from spec.clusterIPs[0] "
       "\"10.96.0.1\""},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"clusterIPs": ["None", "10.96.0.1"]}})",
       "Service default/x: spec.clusterIPs[0]: \"None\" cannot be combined with addresses"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"clusterIPs": ["10.96.0.1", "10.96.0.2"]}})",
       "Service default/x: spec.clusterIPs[1]: at most one address per IP family"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"clusterIPs": "10.96.0.1"}})",
       "Service default/x: spec.clusterIPs: expected a list, got a string"},
      {"Service",
       R"({"metadata": {"name": "web"}, "spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 70000}]}})",
       "Service default/web: spec.ports[1].port: 70000 is out of range 1..65535"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ports": [{"name": "a"}]}})",
       "Service default/x: spec.ports[0].port: missing"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": "80"}]}})",
       "Service default/x: spec.ports[0].port: expected an integer, got \"80\""},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80.0}]}})",
       "Service default/x: spec.ports[0].port: expected an integer, got 80.0"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 18446744073709551615}]}})",
       "Service default/x: spec.ports[0].port: 18446744073709551615 is out of range 1..65535"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ports": [80]}})",
       "Service default/x: spec.ports[0]: expected a mapping, got a number"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "protocol": "tcp"}]}})",
       "Service default/x: spec.ports[0].protocol: unknown protocol \"tcp\" (want TCP, UDP or "
       "SCTP)"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "targetPort": "Web_Port"}]}})",
       "Service default/x: spec.ports[0].targetPort: \"Web_Port\" is neither a port number nor a "
       "port name"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "targetPort": true}]}})",
       "Service default/x: spec.ports[0].targetPort: expected a port number or name, got a "
       "boolean"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "targetPort": -1}]}})",
       "Service default/x: spec.ports[0].targetPort: -1 is out of range 0..65535"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "nodePort": 65536}]}})",
       "Service default/x: spec.ports[0].nodePort: 65536 is out of range 0..65535"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}})",
       "Service default/x: spec.ports[1]: duplicate port 80/TCP"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}})",
       "Service default/x: spec.ports[1].name: duplicate port name \"a\""},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}, {"port": 81}]}})",
       "Service default/x: spec.ports[1].name: required when the service has several ports"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"sessionAffinity": "Cookie"}})",
       "Service default/x: spec.sessionAffinity: unknown value \"Cookie\" (want None or ClientIP)"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}})",
       "Service default/x: spec.sessionAffinityConfig.clientIP.timeoutSeconds: 86401 is out of "
       "range 1..86400"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": []}}})",
       "Service default/x: spec.sessionAffinityConfig.clientIP: expected a mapping, got a list"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"externalIPs": ["1.2.3.4", "db"]}})",
       "Service default/x: spec.externalIPs[1]: \"db\" is not an IP address"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"externalIPs": [null]}})",
       "Service default/x: spec.externalIPs[0]: expected an IP address, got null"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"loadBalancerSourceRanges": ["10.0.0.0/8", "10.0.0.1"]}})",
       "Service default/x: spec.loadBalancerSourceRanges[1]: \"10.0.0.1\" is not a CIDR"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"loadBalancerSourceRanges": ["10.0.0.0/33"]}})",
       "Service default/x: spec.loadBalancerSourceRanges[0]: \"10.0.0.0/33\" is not a CIDR"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"externalTrafficPolicy": "Global"}})",
       "Service default/x: spec.externalTrafficPolicy: unknown policy \"Global\" (want Cluster "
       "or Local)"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"internalTrafficPolicy": "local"}})",
       "Service default/x: spec.internalTrafficPolicy: unknown policy \"local\" (want Cluster or "
       "Local)"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"healthCheckNodePort": 65536}})",
       "Service default/x: spec.healthCheckNodePort: 65536 is out of range 0..65535"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ipFamilies": ["IPv4", "IPv5"]}})",
       "Service default/x: spec.ipFamilies[1]: unknown IP family \"IPv5\" (want IPv4 or IPv6)"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ipFamilies": ["IPv6", "IPv6"]}})",
       "Service default/x: spec.ipFamilies[1]: duplicate IP family \"IPv6\""},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"ipFamilyPolicy": "DualStack"}})",
       "Service default/x: spec.ipFamilyPolicy: unknown policy \"DualStack\" (want SingleStack, "
       "PreferDualStack or RequireDualStack)"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {"allocateLoadBalancerNodePorts": "false"}})",
       "Service default/x: spec.allocateLoadBalancerNodePorts: expected true or false, got "
       "\"false\""},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"publishNotReadyAddresses": 1}})",
       "Service default/x: spec.publishNotReadyAddresses: expected true or false, got 1"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"selector": ["app=web"]}})",
       "Service default/x: spec.selector: expected a mapping, got a list"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {"trafficDistribution": 3}})",
       "Service default/x: spec.trafficDistribution: expected a string, got a number"},
      // Service status.
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3"}]}}})",
       "Service default/x: status.loadBalancer.ingress[0].ip: \"1.2.3\" is not an IP address"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4", "ipMode": "Direct"}]}}})",
       "Service default/x: status.loadBalancer.ingress[0].ipMode: unknown ipMode \"Direct\" (want "
       "VIP or Proxy)"},
      {"Service",
       R"({"metadata": {"name": "x"}, "spec": {}, "status": {"loadBalancer": {"ingress": ["1.2.3.4"]}}})",
       "Service default/x: status.loadBalancer.ingress[0]: expected a mapping, got a string"},
      {"Service", R"({"metadata": {"name": "x"}, "spec": {}, "status": {"loadBalancer": []}})",
       "Service default/x: status.loadBalancer: expected a mapping, got a list"},
      // EndpointSlice.
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}})",
       "EndpointSlice default/s: addressType: missing"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPX"})",
       "EndpointSlice default/s: addressType: unknown address type \"IPX\" (want IPv4, IPv6 or "
       "FQDN)"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["fd00::1"]}]})",
       "EndpointSlice default/s: endpoints[1].addresses[0]: \"fd00::1\" does not match "
       "addressType IPv4"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv6",
           "endpoints": [{"addresses": ["pod-1.example"]}]})",
       "EndpointSlice default/s: endpoints[0].addresses[0]: \"pod-1.example\" is not an IP "
       "address"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "FQDN",
           "endpoints": [{"addresses": [5]}]})",
       "EndpointSlice default/s: endpoints[0].addresses[0]: expected a string, got a number"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"serving": "true"}}]})",
       "EndpointSlice default/s: endpoints[0].conditions.serving: expected true or false, got "
       "\"true\""},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.0.0.1"], "conditions": true}]})",
       "EndpointSlice default/s: endpoints[0].conditions: expected a mapping, got a boolean"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.0.0.1"], "hints": {"forZones": {"name": "a"}}}]})",
       "EndpointSlice default/s: endpoints[0].hints.forZones: expected a list, got a mapping"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.0.0.1"], "hints": {"forNodes": [{"name": ["n"]}]}}]})",
       "EndpointSlice default/s: endpoints[0].hints.forNodes[0].name: expected a string, got a "
       "list"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.0.0.1"], "nodeName": 3}]})",
       "EndpointSlice default/s: endpoints[0].nodeName: expected a string, got a number"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "ports": [{"name": "http", "port": 0}]})",
       "EndpointSlice default/s: ports[0].port: 0 is out of range 1..65535"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "ports": [{"name": "http", "port": 80, "protocol": "QUIC"}]})",
       "EndpointSlice default/s: ports[0].protocol: unknown protocol \"QUIC\" (want TCP, UDP or "
       "SCTP)"},
      {"EndpointSlice",
       R"({"metadata": {"name": "s", "labels": {"kubernetes.io/service-name": "x"}}, "addressType": "IPv4",
           "endpoints": "10.0.0.1"})",
       "EndpointSlice default/s: endpoints: expected a list, got a string"},
      // Node.
      {"Node", R"({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.244.0.0"]}})",
       "Node n1: spec.podCIDRs[0]: \"10.244.0.0\" is not a CIDR"},
      {"Node", R"({"metadata": {"name": "n1"}, "spec": {"podCIDR": "fd00::/129"}})",
       "Node n1: spec.podCIDR: \"fd00::/129\" is not a CIDR"},
      {"Node", R"({"metadata": {"name": "n1"}, "spec": {"taints": {"key": "x"}}})",
       "Node n1: spec.taints: expected a list, got a mapping"},
      {"Node",
       R"({"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "node-1"}]}})",
       "Node n1: status.addresses[0].address: \"node-1\" is not an IP address"},
      {"Node", R"({"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "ExternalIP"}]}})",
       "Node n1: status.addresses[0].address: expected an IP address, got null"},
      // Pod.
      {"Pod",
       R"({"metadata": {"name": "p"}, "spec": {"containers": [{"ports": [{"name": "http"}]}]}})",
       "Pod default/p: spec.containers[0].ports[0].containerPort: missing"},
      {"Pod",
       R"({"metadata": {"name": "p"}, "spec": {"containers": [{"ports": [{"containerPort": 80, "hostPort": 70000}]}]}})",
       "Pod default/p: spec.containers[0].ports[0].hostPort: 70000 is out of range 0..65535"},
      {"Pod",
       R"({"metadata": {"name": "p"}, "spec": {"containers": [{"ports": [{"containerPort": 80, "hostIP": "any"}]}]}})",
       "Pod default/p: spec.containers[0].ports[0].hostIP: \"any\" is not an IP address"},
      {"Pod",
       R"({"metadata": {"name": "p"}, "spec": {"initContainers": [{"restartPolicy": "Always", "ports": [{"containerPort": 0}]}]}})",
       "Pod default/p: spec.initContainers[0].ports[0].containerPort: 0 is out of range 1..65535"},
      {"Pod", R"({"metadata": {"name": "p"}, "spec": {"hostNetwork": "yes"}})",
       "Pod default/p: spec.hostNetwork: expected true or false, got \"yes\""},
      {"Pod", R"({"metadata": {"name": "p"}, "status": {"podIPs": [{"ip": "10.0.0.1/32"}]}})",
       "Pod default/p: status.podIPs[0].ip: \"10.0.0.1/32\" is not an IP address"},
      {"Pod", R"({"metadata": {"name": "p"}, "status": {"podIP": "10.0.0.999"}})",
       "Pod default/p: status.podIP: \"10.0.0.999\" is not an IP address"},
      {"Pod",
       R"({"metadata": {"name": "p"}, "status": {"conditions": [{"type": "Ready", "status": true}]}})",
       "Pod default/p: status.conditions[0].status: expected a string, got a boolean"},
      // Endpoints.
      {"Endpoints",
       R"({"metadata": {"name": "db"}, "subsets": [{"addresses": [{"nodeName": "n1"}]}]})",
       "Endpoints default/db: subsets[0].addresses[0].ip: expected an IP address, got null"},
      {"Endpoints",
       R"({"metadata": {"name": "db"}, "subsets": [{"notReadyAddresses": [{"ip": "db.example"}]}]})",
       "Endpoints default/db: subsets[0].notReadyAddresses[0].ip: \"db.example\" is not an IP "
       "address"},
      {"Endpoints", R"({"metadata": {"name": "db"}, "subsets": [{"ports": [{"name": "pg"}]}]})",
       "Endpoints default/db: subsets[0].ports[0].port: missing"},
  };
  for (const bad_case& c : cases) {
    const std::string want = c.message;
    CAPTURE(want);
    const decode_error e = decode_fails(json::parse(c.json_text), c.kind);
    CHECK_FALSE(e.ignored);
    CHECK(e.message == c.message);
  }
}

TEST_CASE("decode_object: the error points at the offending value, or the parent when missing") {
  const json bad = json::parse(R"json({"kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "web"},
    "spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 70000}, {"name": "c"}]}})json");
  const decode_error e = decode_fails(bad);
  CHECK(e.path == "spec.ports[1].port");

  const json missing = json::parse(R"json({"kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "web"}, "spec": {"ports": [{"name": "c"}]}})json");
  CHECK(decode_fails(missing).path == "spec.ports[0]");
}

TEST_CASE("decode_object: a slice of 1000 endpoints decodes every endpoint in order") {
  json slice = json::parse(R"json({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
    "metadata": {"name": "big-1", "labels": {"kubernetes.io/service-name": "big"}},
    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}]})json");
  json& list = slice["endpoints"] = json::array();
  for (int i = 0; i < 1000; ++i) {
    list.push_back({{"addresses", {fmt::format("10.1.{}.{}", i / 256, i % 256)}},
                    {"conditions", {{"ready", i % 2 == 0}}},
                    {"nodeName", fmt::format("node-{}", i % 7)}});
  }
  const endpoint_slice s = decode_as<endpoint_slice>(slice);
  REQUIRE(s.endpoints.size() == 1000);
  CHECK(s.endpoints[999].addresses == std::vector<ip_addr>{ip("10.1.3.231")});
  CHECK(s.endpoints[999].ready == false);
  CHECK(s.endpoints[998].ready == true);
  CHECK(s.endpoints[999].node_name == "node-5");
}

TEST_CASE("decode_object: the bounds on one object, each with an error naming it") {
  json slice = json::parse(R"json({"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
    "metadata": {"name": "big-1", "namespace": "shop",
                 "labels": {"kubernetes.io/service-name": "big"}},
    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}]})json");
  json& list = slice["endpoints"] = json::array();
  for (std::size_t i = 0; i <= max_slice_endpoints; ++i) {
    list.push_back({{"addresses", {fmt::format("10.1.{}.{}", i / 256, i % 256)}}});
  }
  CHECK(decode_fails(slice).message ==
        "EndpointSlice shop/big-1: endpoints: more than 1000 endpoints (the Kubernetes limit)");
  list.erase(list.begin());
  CHECK(decode_as<endpoint_slice>(slice).endpoints.size() == max_slice_endpoints);

  json& ports = slice["ports"] = json::array();
  for (std::size_t i = 0; i <= max_slice_ports; ++i) {
    ports.push_back({{"name", fmt::format("p{}", i)}, {"port", 1000 + i}});
  }
  CHECK(decode_fails(slice).message ==
        "EndpointSlice shop/big-1: ports: more than 100 ports (the Kubernetes limit)");
  ports.erase(ports.begin());
  CHECK(decode_as<endpoint_slice>(slice).ports.size() == max_slice_ports);

  json svc = json::parse(R"json({"kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "many", "namespace": "shop"},
    "spec": {"clusterIP": "10.96.0.9"}})json");
  json& svc_ports = svc["spec"]["ports"] = json::array();
  for (std::size_t i = 0; i <= max_service_ports; ++i) {
    svc_ports.push_back({{"name", fmt::format("p{}", i)}, {"port", 1000 + i}});
  }
  CHECK(decode_fails(svc).message == "Service shop/many: spec.ports: more than 1000 ports");
  svc_ports.erase(svc_ports.begin());
  CHECK(decode_as<service>(svc).ports.size() == max_service_ports);

  // Bytes: a Service padded with a long annotation, just over and just under the bound.
  json padded = json::parse(R"json({"kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "fat", "annotations": {"pad": ""}},
    "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}})json");
  const std::size_t base = padded.dump().size();
  padded["metadata"]["annotations"]["pad"] = std::string(max_object_bytes + 1 - base, 'x');
  REQUIRE(padded.dump().size() == max_object_bytes + 1);
  CHECK(decode_fails(padded).message ==
        "object of 4194305 bytes is larger than the limit of 4194304 bytes");
  padded["metadata"]["annotations"]["pad"] = std::string(max_object_bytes - base, 'x');
  CHECK(decode_as<service>(padded).name == "fat");
}

}  // namespace sluice

namespace sluice {

namespace {

// `j` with the keys of every mapping in reverse order (kind, apiVersion and metadata last).
nlohmann::ordered_json reversed(const nlohmann::ordered_json& j) {
  if (j.is_object()) {
    std::vector<std::pair<std::string, nlohmann::ordered_json>> items;
    for (const auto& [k, v] : j.items()) {
      items.emplace_back(k, reversed(v));
    }
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    for (auto it = items.rbegin(); it != items.rend(); ++it) {
      out[it->first] = it->second;
    }
    return out;
  }
  if (j.is_array()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& v : j) {
      out.push_back(reversed(v));
    }
    return out;
  }
  return j;
}

template <typename T>
T decode_text(const std::string& text, std::string_view default_kind = "") {
  std::expected<kube_object, decode_error> r = decode_json(text, default_kind);
  if (!r) {
    FAIL("decode failed: " << r.error().message);
  }
  REQUIRE(std::holds_alternative<T>(*r));
  return std::get<T>(std::move(*r));
}

}  // namespace

TEST_CASE("decode_json: field order does not matter (API order, sorted, reversed)") {
  for (const char* text : {web_service_json, web_slice_json}) {
    const auto ordered = nlohmann::ordered_json::parse(text);
    const std::string api = text, sorted = nlohmann::json::parse(text).dump(),
                      backwards = reversed(ordered).dump();
    if (ordered["kind"] == "Service") {
      const service a = decode_text<service>(api);
      CHECK(a == decode_text<service>(sorted));
      CHECK(a == decode_text<service>(backwards));
    } else {
      const endpoint_slice a = decode_text<endpoint_slice>(api);
      CHECK(a.endpoints == decode_text<endpoint_slice>(sorted).endpoints);
      const endpoint_slice b = decode_text<endpoint_slice>(backwards);
      CHECK(a.endpoints == b.endpoints);
      CHECK(a.ports == b.ports);
      CHECK(a.labels == b.labels);
      CHECK(a.resource_version == b.resource_version);
    }
  }
}

TEST_CASE("decode_json: a duplicate key: the last one wins") {
  const service svc = decode_text<service>(R"({"kind": "Service", "apiVersion": "v1",
    "metadata": {"name": "a", "name": "b", "labels": {"x": "1", "x": "2"}},
    "spec": {"ports": [{"port": 80}], "ports": [{"port": 81}, {"name": "n", "port": 82}]}})");
  CHECK(svc.name == "b");
  CHECK(svc.labels.at("x") == "2");
  REQUIRE(svc.ports.size() == 2);
  CHECK(svc.ports[0].port == 81);

  // Keys with escapes are read as their text (the fast path compares keys unescaped).
  const service escaped = decode_text<service>(R"({"kind": "Service", "apiVersion": "v1",
    "metadata": {"n\u0061me": "esc", "labels": {"a\/b": "c"}}, "spec": {"ports": [{"port": 80}]}})");
  CHECK(escaped.name == "esc");
  CHECK(escaped.labels.at("a/b") == "c");
}

TEST_CASE("decode_json: malformed JSON and map values are reported with a path") {
  const std::expected<kube_object, decode_error> broken =
      decode_json(R"({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "a"},
      "spec": {"ports": [{"port": 8x}]}})",
                  "");
  REQUIRE_FALSE(broken.has_value());
  CHECK_FALSE(broken.error().ignored);
  CHECK(
      broken.error().message.starts_with("Service default/a: spec.ports[0].port: malformed JSON"));
  CHECK_FALSE(decode_json("{", "Service").has_value());
  CHECK(decode_json("", "Service").error().message.starts_with("malformed JSON"));

  const std::expected<kube_object, decode_error> label =
      decode_json(R"({"metadata": {"name": "x", "labels": {"a.b/c": 1}}, "spec": {}})", "Service");
  REQUIRE_FALSE(label.has_value());
  CHECK(label.error().path == R"(metadata.labels["a.b/c"])");
}

}  // namespace sluice

namespace sluice {

TEST_CASE("decode_json: with several bad fields, the one named is the first in a fixed order") {
  const auto message = [](const char* text, std::string_view kind) {
    const std::expected<kube_object, decode_error> r = decode_json(text, kind);
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
  };
  // The name is checked before labels, spec before status, addressType before ports, whatever
  // order the fields come in.
  CHECK(message(R"({"metadata": {"labels": {"a": 1}}, "spec": {}})", "Service") ==
        "Service default/<no name>: metadata.name: missing");
  CHECK(message(R"({"status": {"loadBalancer": 1}, "metadata": {"name": "x"}})", "Service") ==
        "Service default/x: spec: missing");
  CHECK(message(R"({"ports": [{"port": 0}], "metadata": {"name": "s", "labels":
                  {"kubernetes.io/service-name": "x"}}, "addressType": "IPX"})",
                "EndpointSlice") ==
        "EndpointSlice default/s: addressType: unknown address type \"IPX\" (want IPv4, IPv6 or "
        "FQDN)");
  CHECK(message(R"({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 0}], "type": "Y"}})",
                "Service") ==
        "Service default/x: spec.type: unknown type \"Y\" (want ClusterIP, NodePort, LoadBalancer "
        "or ExternalName)");
}

}  // namespace sluice
