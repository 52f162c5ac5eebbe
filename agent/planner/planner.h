// The planner: model (Services, EndpointSlices, this node's Pods and Node) + options -> desired
// datapath state, following kube-proxy's semantics (reference/kube-semantics.md §1.2-§1.9).
// Pure: no I/O, no clock, no logging; the same input always gives the same output.
// plan() computes everything; plan_cache (plan_cache.h) keeps the same result up to date one
// object at a time, using the per-object functions declared here.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/model/model.h"
#include "agent/planner/desired.h"

namespace sluice {

/// Identity and configuration of the node the agent runs on.
struct plan_options {
  /// Our Node's name: an endpoint is local when its nodeName equals it (traffic policies,
  /// health checks, PreferSameNode), and hostPorts come from Pods scheduled here.
  std::string node_name;
  /// kube-proxy's --nodeport-addresses. Empty means nftables mode's default "primary": the
  /// Node's first InternalIP of each family (first ExternalIP when it has no InternalIP of that
  /// family). Otherwise every address of the Node (status InternalIPs and ExternalIPs) inside
  /// one of these prefixes. The planner only knows the addresses the Node object lists, not
  /// the host's interfaces, and never selects loopback here (as nftables mode): see
  /// localhost_nodeports.
  std::vector<ip_prefix> nodeport_addresses;
  /// --service-proxy-name: empty = kube-proxy's rule (skip every Service labelled
  /// service.kubernetes.io/service-proxy-name); otherwise serve exactly the Services labelled
  /// with this value (to run beside kube-proxy, or next to another proxy).
  std::string service_proxy_name;
  /// kube-proxy's localhost NodePorts (iptables mode, IPv4): every NodePort also on
  /// 127.0.0.1, as a loopback frontend (desired_frontend::loopback). Only socket-LB serves those,
  /// in the node's own network namespace, so no route_localnet is needed (CVE-2020-8558).
  bool localhost_nodeports = false;
  /// CVE-2020-8554 mitigation (Cilium's default): an ExternalIP that is none of the Node's
  /// addresses is served to traffic from outside the node only (desired_frontend::outside_only);
  /// pods and the node's processes reach the real address. Off: kube-proxy's behaviour.
  bool external_ip_mitigation = false;

  bool operator==(const plan_options&) const = default;
};

/// Computes every frontend, health check and conflict. Equal to what a plan_cache holds after
/// any sequence of updates that ends with the same cluster and options.
///
/// Services skipped: type ExternalName, headless (clusterIP None), no cluster IP, and those
/// labelled service.kubernetes.io/service-proxy-name or service.kubernetes.io/headless. A
/// service is planned once per family it has a cluster IP in; in that family each TCP or UDP
/// port gives (SCTP ports are skipped: the datapath has no SCTP support yet):
/// - cluster_ip: the cluster IP;
/// - external_ip: each spec.externalIPs of the family (outside_only with external_ip_mitigation
///   when it is none of the Node's addresses);
/// - load_balancer: each status.loadBalancer.ingress IP of the family whose ipMode is not
///   Proxy, with source_ranges = the family's loadBalancerSourceRanges, plus every such LB IP
///   of the family (as /32 or /128) when a range contains the Node's primary address of the
///   family (kube-proxy's allowFromNode); a family without ranges is not filtered, even when
///   the other family has some;
/// - node_port: when nodePort != 0, each node address picked by nodeport_addresses, and with
///   localhost_nodeports 127.0.0.1 (IPv4; loopback, cluster set only, no source ranges);
/// - host_port (not a kube-proxy feature: the CNI portmap plugin's): each hostPort of a Pod
///   scheduled on this node, see plan_host_ports().
/// Backends follow kube-proxy's CategorizeEndpoints (topology.h): a ClusterIP uses the cluster
/// set, or the local set with internalTrafficPolicy Local (when_empty drop if the service has
/// endpoints elsewhere, reject otherwise); external kinds use the cluster set in `backends`
/// (pod and node sources) and, with externalTrafficPolicy Local, the local set in
/// `external_backends` (external sources). A service port without any usable endpoint is
/// rejected on every frontend: external_local is then left false so that external traffic
/// gets the same REJECT. ClientIP affinity applies to every kind.
///
/// Frontends are sorted by (vip, port, proto). When several objects claim one (vip, port,
/// proto), the first claimant in (namespace, name) order wins (a Service before a Pod of the same
/// name) and each other claim is reported in `conflicts`, sorted by frontend key.
desired_state plan(const cluster& state, const plan_options& options);

/// What the planner derives from our Node and the options; shared by every object.
struct node_context {
  std::string node_name;
  std::string zone;                         ///< label topology.kubernetes.io/zone, "" if none
  std::vector<ip_addr> addresses;           ///< InternalIPs then ExternalIPs, each once
  std::vector<ip_addr> nodeport_addresses;  ///< where NodePorts are served
  std::optional<ip_addr> primary_v4;        ///< kube-proxy's node IP per family
  std::optional<ip_addr> primary_v6;
  std::string service_proxy_name;           ///< plan_options::service_proxy_name
  bool localhost_nodeports = false;         ///< plan_options::localhost_nodeports
  bool external_ip_mitigation = false;      ///< plan_options::external_ip_mitigation

  /// The primary address of `family`, if the Node has one.
  const std::optional<ip_addr>& primary(ip_family family) const {
    return family == ip_family::v4 ? primary_v4 : primary_v6;
  }
  bool operator==(const node_context&) const = default;
};

/// Builds the node context from cluster.self_node (none known: no addresses, no zone).
node_context make_node_context(const cluster& state, const plan_options& options);

/// kube-proxy's ShouldSkipService plus its watch label selector.
bool skip_service(const service& svc, std::string_view service_proxy_name = {});

/// Why skip_service() skips `svc` (ExternalName, then another proxy's, then headless, then no
/// cluster IP), or nullopt when it is proxied.
std::optional<unproxied_service> unproxied(const service& svc,
                                           std::string_view service_proxy_name = {});

/// The Service an EndpointSlice feeds ({namespace, kubernetes.io/service-name}), or nullopt for
/// slices kube-proxy ignores (no service name, proxy-name or headless label).
std::optional<object_key> slice_owner(const endpoint_slice& slice,
                                      std::string_view service_proxy_name = {});

/// Everything one Service contributes, before conflicts between objects are resolved.
struct service_plan {
  std::vector<desired_frontend> frontends;  ///< in generation order; may repeat a key
  std::optional<desired_health_check> health_check;

  bool operator==(const service_plan&) const = default;
};

/// Plans one Service from its slices (those whose slice_owner() is this service; any order).
/// A skipped service gives an empty plan.
service_plan plan_service(const service& svc, std::span<const endpoint_slice* const> slices,
                          const node_context& node);

/// hostPort frontends of one Pod: none unless it is scheduled on this node, not finished
/// (Succeeded/Failed), not hostNetwork. Each TCP/UDP container port with hostPort != 0 gives,
/// for each family the Pod has an IP in, a frontend {hostIP, or each node address of that
/// family when hostIP is unset or unspecified; hostPort; protocol} -> {pod IP, containerPort},
/// named "namespace/pod:hostPort" (loopback when hostIP is). Readiness does not matter (the CNI portmap plugin forwards
/// as soon as the sandbox exists), so the one backend is never flagged terminating.
std::vector<desired_frontend> plan_host_ports(const pod& p, const node_context& node);

}  // namespace sluice
