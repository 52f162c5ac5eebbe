// What Kubernetes controllers would add to the objects of a manifest directory, for the file
// source only (with an API server the controllers have already done it):
// - the API server's allocators: cluster IPs from --service-cidr, node ports (and
//   healthCheckNodePorts) from --node-port-range, stable across reloads and restarts;
// - the EndpointSliceMirroring controller: legacy v1 Endpoints of selector-less Services ->
//   EndpointSlices;
// - the EndpointSlice controller: Pods matching a Service's selector -> EndpointSlices
//   (staging/src/k8s.io/endpointslice: podToEndpoint, getEndpointPorts, FindPort).
// Pure functions of the cluster, the options and the allocator's memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/model/model.h"

namespace sluice {

/// Settings of the derivations (the agent's flags).
struct derive_options {
  /// --service-cidr: at most one prefix per family; the first one's family is the cluster's
  /// primary family (used by Services that name none). Empty = allocate no cluster IPs.
  std::vector<ip_prefix> service_cidrs;
  /// --node-port-range, inclusive (Kubernetes' default 30000-32767).
  uint16_t node_port_min = 30000;
  uint16_t node_port_max = 32767;
  /// Known Nodes by name, to fill endpoint zones (topology.kubernetes.io/zone) as the
  /// EndpointSlice controller does; null = no zones.
  const std::map<std::string, node>* nodes = nullptr;
};

/// Remembers which cluster IPs and node ports were handed out, so that a Service keeps them
/// while it exists and a newly added Service never moves an existing one. A fresh allocator
/// (agent restart) recomputes the same values from hashes of namespace/name; only Services
/// whose hashes collided can differ after a restart unless the memory was saved and loaded.
class allocator {
 public:
  /// The remembered cluster IP of `svc` in `family`.
  std::optional<ip_addr> cluster_ip(const object_key& svc, ip_family family) const;
  /// The remembered nodePort of `svc`'s port number `service_port` (0 = healthCheckNodePort).
  /// Ports with the same number (TCP and UDP 53) share one nodePort, as in Kubernetes.
  std::optional<uint16_t> node_port(const object_key& svc, uint16_t service_port) const;

  void remember_cluster_ip(const object_key& svc, const ip_addr& addr);
  void remember_node_port(const object_key& svc, uint16_t service_port, uint16_t node_port);
  void forget_cluster_ip(const object_key& svc, ip_family family);
  void forget_node_port(const object_key& svc, uint16_t service_port);

  /// Forgets every Service not in `services`, so that its IPs and ports can be reused.
  void release_missing(const std::map<object_key, service>& services);

  /// Number of remembered cluster IPs and node ports.
  std::size_t size() const { return ips_.size() + ports_.size(); }

  /// Text form, one line per assignment ("ip ns/name 10.96.0.7", "port ns/name 80 30080"),
  /// for an agent that wants exact stability across restarts.
  std::string save() const;
  /// Reads save()'s output. An error names the first bad line.
  static std::expected<allocator, std::string> load(std::string_view text);

  bool operator==(const allocator&) const = default;

 private:
  std::map<std::pair<object_key, ip_family>, ip_addr> ips_;
  std::map<std::pair<object_key, uint16_t>, uint16_t> ports_;
};

/// What derive() did.
struct derive_result {
  /// One line per problem, for the agent to log: Services rejected for colliding explicit IPs
  /// or ports, Services that cannot get an address (no CIDR of their family, range full).
  std::vector<std::string> lines;
  std::size_t rejected = 0;               ///< Services removed from the cluster (each has a line)
  std::size_t allocated_cluster_ips = 0;  ///< cluster IPs filled in (remembered or new)
  std::size_t allocated_node_ports = 0;   ///< nodePorts and healthCheckNodePorts filled in
  std::size_t mirrored_slices = 0;        ///< slices made from legacy Endpoints
  std::size_t pod_slices = 0;             ///< slices made from Pods and selectors
};

/// Managed-by label values of derived slices (what the real controllers write).
inline constexpr std::string_view label_managed_by = "endpointslice.kubernetes.io/managed-by";
inline constexpr std::string_view managed_by_slice_controller = "endpointslice-controller.k8s.io";
inline constexpr std::string_view managed_by_mirroring_controller =
    "endpointslicemirroring-controller.k8s.io";
/// Label on a legacy Endpoints object that turns mirroring off for it.
inline constexpr std::string_view label_skip_mirror = "endpointslice.kubernetes.io/skip-mirror";

/// Most endpoints the derived slices hold (the controllers' defaults).
inline constexpr std::size_t max_endpoints_per_pod_slice = 100;
inline constexpr std::size_t max_endpoints_per_mirrored_slice = 1000;

/// Applies, in order:
/// 1. allocation: every ClusterIP/NodePort/LoadBalancer Service that is not headless gets the
///    cluster IPs its ipFamilyPolicy asks for (SingleStack: one; PreferDualStack: one per
///    configured family; RequireDualStack: both, else rejected) and its ipFamilies are set;
///    NodePort/LoadBalancer ports with nodePort 0 get one (not for LoadBalancer with
///    allocateLoadBalancerNodePorts false), and LoadBalancer + externalTrafficPolicy Local a
///    healthCheckNodePort. Explicit values always win; an explicit IP or nodePort that another
///    Service also claims explicitly rejects the later Service (namespace/name order, except
///    that the one the allocator remembers owning it wins). New values are a hash of
///    namespace/name (and port) into the range, probing upwards past used values.
/// 2. mirroring: legacy Endpoints whose Service exists and has no selector, unless labelled
///    skip-mirror=true, become slices "<name>-mirror-<n>" (addresses ready=true,
///    notReadyAddresses ready=false, other conditions nil), one per address family and set of
///    ports.
/// 3. pods: for every Service with a selector (not ExternalName), the Pods of its namespace
///    that match it, are not finished and have an IP become slices "<name>-pods-<n>", one per
///    address family and distinct resolved port set, at most 100 endpoints each; ready =
///    publishNotReadyAddresses || (podReady && !terminating), serving = podReady, terminating
///    = deletionTimestamp set. Slices already in the cluster (hand-written) are kept.
derive_result derive(cluster& c, const derive_options& opts, allocator& alloc);

}  // namespace sluice
