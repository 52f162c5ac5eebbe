// Endpoint selection for one service port, as kube-proxy's CategorizeEndpoints
// (pkg/proxy/topology.go, reference/kube-semantics.md §1.3): the cluster set (ready endpoints,
// topology-filtered, else serving-and-terminating ones), the local set (this node's ready
// endpoints, else its serving-and-terminating ones) and whether the service has any usable
// endpoint anywhere. Pure.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/planner/desired.h"

namespace sluice {

/// One endpoint of a service port after deduplication across slices, with kube-proxy's
/// condition defaults already applied. The hint spans point into the EndpointSlice it came
/// from and must outlive the call that reads them.
struct port_endpoint {
  ip_addr addr;
  uint16_t port = 0;  // host order
  bool ready = true;
  bool serving = true;
  bool terminating = false;
  bool local = false;                       ///< endpoint.nodeName == our node name
  std::span<const std::string> zone_hints;  ///< hints.forZones[].name
  std::span<const std::string> node_hints;  ///< hints.forNodes[].name
};

/// The traffic distribution topologyModeFromHints picks.
enum class topology_mode : uint8_t { none, prefer_same_zone, prefer_same_node };

/// kube-proxy ≥ 1.33: PreferSameNode if every ready endpoint has a node hint and one names
/// `node_name`; else PreferSameZone if every ready endpoint has a zone hint and one names `zone`
/// (never when `zone` is empty); else none. An empty hint list counts as no hint, as in kube-proxy
/// (its hint sets have Len() == 0 either way). The service annotations topology-mode /
/// topology-aware-hints are not consulted: since KEP-4444 (1.33) kube-proxy honours hints
/// whatever the annotation says, and only the EndpointSlice controller reads them.
topology_mode topology_mode_from_hints(std::span<const port_endpoint> endpoints,
                                       std::string_view node_name, std::string_view zone);

/// Which endpoint sets a service port needs (kube-proxy's UsesClusterEndpoints /
/// UsesLocalEndpoints).
struct port_policy {
  bool internal_local = false;         ///< internalTrafficPolicy: Local
  bool external_local = false;         ///< externalTrafficPolicy: Local
  bool externally_accessible = false;  ///< nodePort != 0, LB VIPs or externalIPs

  bool uses_cluster() const { return !internal_local || externally_accessible; }
  bool uses_local() const { return internal_local || (external_local && externally_accessible); }
};

/// The result of categorize_endpoints. Each list is sorted by (addr, port) and carries the
/// terminating flag of the endpoints it holds.
struct categorized_endpoints {
  /// Usable endpoints for Cluster policies; nullopt when the port never uses them.
  std::optional<std::vector<desired_backend>> cluster;
  /// Usable endpoints for Local policies; nullopt when the port never uses them.
  std::optional<std::vector<desired_backend>> local;
  /// Union of the two (what this node can reach).
  std::vector<desired_backend> all_reachable;
  /// Some endpoint is ready, or serving and terminating, anywhere in the cluster.
  bool has_any = false;
};

/// kube-proxy's CategorizeEndpoints. `endpoints` must hold each (addr, port) once.
categorized_endpoints categorize_endpoints(std::span<const port_endpoint> endpoints,
                                           const port_policy& policy, std::string_view node_name,
                                           std::string_view zone);

}  // namespace sluice
