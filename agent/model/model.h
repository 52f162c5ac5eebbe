// Decoded Kubernetes objects: only the fields sluice reads (see
// reference/kube-semantics.md §1.1). Both sources (manifest files, the API server) produce
// these types; the planner consumes them. Plain data, no I/O.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/planner/desired.h"

namespace sluice {

/// Parses a textual IPv4 ("10.96.0.1") or IPv6 ("fd00::1") address as Kubernetes'
/// ParseIPSloppy does: IPv4 parts with leading zeros are decimal ("010.1.2.3" is 10.1.2.3, as
/// old objects stored in etcd may hold). Returns nullopt for anything else (zones, prefixes,
/// hostnames, surrounding spaces).
std::optional<ip_addr> parse_ip(std::string_view text);

/// Parses an RFC 3339 time as Kubernetes writes it ("2025-03-04T10:25:41Z", optional fractional
/// seconds up to nanoseconds, "Z" or a numeric offset such as "+02:00"). nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

/// Formats an address the way inet_ntop does ("10.96.0.1", "fd00::1").
std::string format_ip(const ip_addr& addr);

/// Identifies a namespaced object. Ordered by namespace, then name.
struct object_key {
  std::string namespace_;
  std::string name;

  /// "namespace/name".
  std::string str() const { return namespace_ + "/" + name; }

  auto operator<=>(const object_key&) const = default;
  bool operator==(const object_key&) const = default;
};

/// Service spec.type.
enum class service_type : uint8_t { cluster_ip, node_port, load_balancer, external_name };

/// A Service port's targetPort (IntOrString): a number or the name of a container port.
/// kube-proxy does not read it (the EndpointSlice controller resolves it); kept for display.
using int_or_string = std::variant<uint16_t, std::string>;

/// One entry of Service spec.ports.
struct service_port {
  std::string name;                         ///< "" for an unnamed (single-port) service
  uint8_t protocol = IPPROTO_TCP;           ///< IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP
  uint16_t port = 0;                        ///< 1..65535
  int_or_string target_port = uint16_t{0};  ///< defaults to `port` when omitted
  uint16_t node_port = 0;                   ///< 0 = none

  bool operator==(const service_port&) const = default;
};

/// Parses "10.0.0.0/8" or "fd00::/64" (surrounding spaces trimmed, as kube-proxy does for
/// loadBalancerSourceRanges). Host bits must be zero unless `allow_host_bits`, in which case they
/// are cleared. A bare address is not a prefix. nullopt for anything else.
std::optional<ip_prefix> parse_prefix(std::string_view text, bool allow_host_bits = false);

/// "10.0.0.0/8".
std::string format_prefix(const ip_prefix& prefix);

/// True if `addr` is inside `prefix` (families must match).
bool prefix_contains(const ip_prefix& prefix, const ip_addr& addr);

/// spec.externalTrafficPolicy / spec.internalTrafficPolicy.
enum class traffic_policy : uint8_t { cluster, local };

/// spec.ipFamilyPolicy (absent = single_stack, the API server's default).
enum class ip_family_policy : uint8_t { single_stack, prefer_dual_stack, require_dual_stack };

/// One status.loadBalancer.ingress[] entry with an IP (hostname-only entries are dropped).
struct load_balancer_ingress {
  ip_addr ip;
  bool ip_mode_proxy = false;  ///< ipMode "Proxy": no datapath rule (KEP-1860); unset/"VIP": false

  auto operator<=>(const load_balancer_ingress&) const = default;
  bool operator==(const load_balancer_ingress&) const = default;
};

/// A core/v1 Service.
struct service {
  std::string namespace_ = "default";
  std::string name;
  service_type type = service_type::cluster_ip;
  bool headless = false;             ///< clusterIP "None"; cluster_ips is then empty
  std::string external_name;         ///< spec.externalName of type ExternalName, else ""
  std::vector<ip_addr> cluster_ips;  ///< spec.clusterIPs, else spec.clusterIP; one per family
  std::vector<service_port> ports;
  bool session_affinity_client_ip = false;
  uint32_t affinity_timeout_s = 0;  ///< 1..86400 when ClientIP (default 10800), else 0
  std::vector<ip_addr> external_ips;              ///< spec.externalIPs
  std::vector<load_balancer_ingress> lb_ingress;            ///< status.loadBalancer.ingress[] with an ip
  std::vector<ip_prefix> lb_source_ranges;        ///< spec.loadBalancerSourceRanges
  traffic_policy external_policy = traffic_policy::cluster;  ///< spec.externalTrafficPolicy
  traffic_policy internal_policy = traffic_policy::cluster;  ///< spec.internalTrafficPolicy
  uint16_t health_check_node_port = 0;            ///< spec.healthCheckNodePort, 0 = none
  std::string traffic_distribution;               ///< spec.trafficDistribution ("" = unset)
  /// spec.selector; empty = selector-less (endpoints come from user slices or v1 Endpoints).
  std::map<std::string, std::string> selector;
  bool publish_not_ready_addresses = false;       ///< spec.publishNotReadyAddresses
  /// spec.ipFamilies, in order (the first is the primary family); empty when absent (files).
  std::vector<ip_family> ip_families;
  ip_family_policy family_policy = ip_family_policy::single_stack;  ///< spec.ipFamilyPolicy
  /// spec.allocateLoadBalancerNodePorts (absent = true): false leaves LoadBalancer ports
  /// without a nodePort unless one is given explicitly.
  bool allocate_lb_node_ports = true;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string resource_version;  ///< metadata.resourceVersion ("" from files)
  std::string source;  ///< where it was decoded from (file name), for messages

  object_key key() const { return {namespace_, name}; }

  bool operator==(const service&) const = default;
};

/// EndpointSlice addressType.
enum class slice_address_type : uint8_t { ipv4, ipv6, fqdn };

/// One entry of EndpointSlice endpoints. Conditions keep the API's nil; use the accessors,
/// which apply kube-proxy's defaults (ready=true, serving=true, terminating=false).
struct endpoint {
  std::vector<ip_addr> addresses;  ///< only addresses[0] is used; empty for FQDN slices
  std::optional<bool> ready;
  std::optional<bool> serving;
  std::optional<bool> terminating;
  std::string node_name;  ///< "" when absent
  std::string zone;       ///< "" when absent
  std::vector<std::string> hints_for_zones;  ///< hints.forZones[].name
  std::vector<std::string> hints_for_nodes;  ///< hints.forNodes[].name
  bool has_zone_hints = false;  ///< hints.forZones present (even empty): "every endpoint hinted"
  bool has_node_hints = false;  ///< hints.forNodes present

  /// conditions.ready, nil counts as true.
  bool is_ready() const { return ready.value_or(true); }
  /// conditions.serving, nil counts as true.
  bool is_serving() const { return serving.value_or(true); }
  /// conditions.terminating, nil counts as false.
  bool is_terminating() const { return terminating.value_or(false); }

  bool operator==(const endpoint&) const = default;
};

/// One entry of EndpointSlice ports. Name and port are pointers in the API: nil is kept.
struct endpoint_port {
  std::optional<std::string> name;  ///< nil = unusable; "" joins an unnamed service port
  std::optional<uint16_t> port;     ///< nil = unusable
  uint8_t protocol = IPPROTO_TCP;

  bool operator==(const endpoint_port&) const = default;
};

/// A discovery.k8s.io/v1 EndpointSlice.
struct endpoint_slice {
  std::string namespace_ = "default";
  std::string name;
  std::string service_name;  ///< label kubernetes.io/service-name (never empty here)
  slice_address_type address_type = slice_address_type::ipv4;
  std::vector<endpoint> endpoints;
  std::vector<endpoint_port> ports;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string resource_version;  ///< metadata.resourceVersion ("" from files)
  std::string source;  ///< where it was decoded from (file name), for messages

  object_key key() const { return {namespace_, name}; }
  bool operator==(const endpoint_slice&) const = default;
};

/// A core/v1 Node: only our own Node matters (zone for topology hints, addresses for
/// NodePorts and hostPorts, podCIDRs, eligibility for /healthz).
struct node {
  std::string name;
  std::map<std::string, std::string> labels;
  std::vector<ip_addr> internal_ips;   ///< status.addresses[type=InternalIP], in order
  std::vector<ip_addr> external_ips;   ///< status.addresses[type=ExternalIP], in order
  std::vector<ip_prefix> pod_cidrs;    ///< spec.podCIDRs, else spec.podCIDR
  bool deleting = false;               ///< metadata.deletionTimestamp set
  bool to_be_deleted_taint = false;    ///< taint ToBeDeletedByClusterAutoscaler present
  std::string resource_version;
  std::string source;

  /// Label topology.kubernetes.io/zone, "" when absent.
  std::string zone() const;
  bool operator==(const node&) const = default;
};

/// One container port of a Pod (spec.containers[].ports[]).
struct pod_port {
  std::string name;        ///< "" when unnamed
  uint16_t container_port = 0;
  uint8_t protocol = IPPROTO_TCP;
  uint16_t host_port = 0;  ///< 0 = none
  std::optional<ip_addr> host_ip;  ///< hostIP, nullopt = all node addresses

  bool operator==(const pod_port&) const = default;
};

/// A core/v1 Pod: the file source turns Service selectors + Pods into endpoints (as the
/// EndpointSlice controller does); both sources use this node's Pods for hostPorts.
struct pod {
  std::string namespace_ = "default";
  std::string name;
  std::map<std::string, std::string> labels;
  std::string node_name;              ///< spec.nodeName, "" = unscheduled
  std::vector<ip_addr> pod_ips;       ///< status.podIPs, else status.podIP
  bool host_network = false;          ///< spec.hostNetwork
  bool ready = false;                 ///< status.conditions[type=Ready].status == "True"
  bool terminating = false;           ///< metadata.deletionTimestamp set
  bool finished = false;              ///< status.phase Succeeded or Failed
  std::vector<pod_port> ports;  ///< all containers' ports, in order
  std::string resource_version;
  std::string source;

  object_key key() const { return {namespace_, name}; }
  bool operator==(const pod&) const = default;
};

/// One subset of a legacy core/v1 Endpoints object.
struct endpoints_subset {
  struct address {
    ip_addr ip;
    std::string node_name;
    bool operator==(const address&) const = default;
  };
  std::vector<address> addresses;            ///< ready
  std::vector<address> not_ready_addresses;  ///< not ready
  std::vector<endpoint_port> ports;

  bool operator==(const endpoints_subset&) const = default;
};

/// A legacy core/v1 Endpoints object (selector-less Services pointing outside the cluster).
/// Mirrored into EndpointSlices as the EndpointSliceMirroring controller does.
struct endpoints {
  std::string namespace_ = "default";
  std::string name;  ///< = the Service's name
  std::map<std::string, std::string> labels;
  std::vector<endpoints_subset> subsets;
  std::string source;

  object_key key() const { return {namespace_, name}; }
  bool operator==(const endpoints&) const = default;
};

/// Everything the sources know, keyed by namespace/name. The planner reads services,
/// endpoint_slices, pods (hostPorts of this node) and self_node; endpoints (legacy) are turned
/// into endpoint_slices by the sources before planning.
struct cluster {
  std::map<object_key, service> services;
  std::map<object_key, endpoint_slice> endpoint_slices;
  std::map<object_key, pod> pods;
  std::map<object_key, endpoints> legacy_endpoints;
  std::optional<node> self_node;  ///< our own Node, when known

  bool operator==(const cluster&) const = default;
};

/// Well-known label keys (reference/kube-semantics.md §3.7).
inline constexpr std::string_view label_service_name = "kubernetes.io/service-name";
inline constexpr std::string_view label_service_proxy_name =
    "service.kubernetes.io/service-proxy-name";
inline constexpr std::string_view label_headless = "service.kubernetes.io/headless";
inline constexpr std::string_view label_zone = "topology.kubernetes.io/zone";
inline constexpr std::string_view annotation_last_change_trigger_time =
    "endpoints.kubernetes.io/last-change-trigger-time";
inline constexpr std::string_view annotation_topology_mode = "service.kubernetes.io/topology-mode";
inline constexpr std::string_view annotation_topology_hints =
    "service.kubernetes.io/topology-aware-hints";

/// Default and limits of sessionAffinityConfig.clientIP.timeoutSeconds.
inline constexpr uint32_t default_affinity_timeout_s = 10800;
inline constexpr uint32_t max_affinity_timeout_s = 86400;

}  // namespace sluice
