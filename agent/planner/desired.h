// The planner's output: what the datapath maps should hold. Pure data, no kernel types.
// Produced by sluice::plan() (agent/planner/planner.h), consumed by the map writer
// (agent/datapath/map_writer.h). Addresses are kept in network byte order so they can be
// copied into the ABI structs of maps/sluice_abi.h without conversion.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

enum class ip_family : uint8_t { v4 = 4, v6 = 6 };

/// An IPv4 or IPv6 address, bytes in network order. IPv4 uses bytes[0..3], the rest are zero.
struct ip_addr {
  ip_family family = ip_family::v4;
  std::array<uint8_t, 16> bytes{};

  auto operator<=>(const ip_addr&) const = default;
  bool operator==(const ip_addr&) const = default;
};

/// An IPv4 or IPv6 prefix (loadBalancerSourceRanges, podCIDRs, --service-cidr).
struct ip_prefix {
  ip_addr addr;         ///< host bits cleared
  uint8_t length = 0;   ///< 0..32 or 0..128

  auto operator<=>(const ip_prefix&) const = default;
  bool operator==(const ip_prefix&) const = default;
};

/// A frontend's identity (VIP, port, protocol): its key in the services maps and in the planner's output.
struct frontend_key {
  ip_addr vip;
  uint16_t port = 0;  // host order
  uint8_t proto = 0;

  auto operator<=>(const frontend_key&) const = default;
  bool operator==(const frontend_key&) const = default;
};

/// One endpoint behind a frontend.
struct desired_backend {
  ip_addr addr;
  uint16_t port = 0;         // host order
  bool terminating = false;  // serving && terminating (only present when nothing is ready)

  auto operator<=>(const desired_backend&) const = default;
  bool operator==(const desired_backend&) const = default;
};

/// Which Service field a frontend comes from (kube-semantics.md §1.2 rows 1-4, hostPort).
enum class frontend_kind : uint8_t { cluster_ip, external_ip, load_balancer, node_port, host_port };

/// What the datapath does with a new flow when the frontend's backend set is empty.
enum class empty_verdict : uint8_t {
  reject,  ///< the service has no endpoints at all: ICMP unreachable / TCP RST
  drop,    ///< a Local policy has no local endpoint while others exist elsewhere: silent drop
};

/// One frontend = one (VIP, port, protocol); the unit that gets a svc_id in the maps.
struct desired_frontend {
  ip_addr vip;
  uint16_t port = 0;                 // host order
  uint8_t proto = 0;                 // IPPROTO_TCP / IPPROTO_UDP
  frontend_kind kind = frontend_kind::cluster_ip;
  std::string name;                  // "namespace/service:portname" (portname may be empty)
  uint32_t affinity_timeout_s = 0;   // 0 = no ClientIP affinity
  /// Backends for traffic from pods and from the node itself: for a ClusterIP the set its
  /// internalTrafficPolicy selects; for external kinds the cluster-wide set (eTP=Local
  /// short-circuit for pods, kube-semantics.md §1.4). Sorted, deduplicated.
  std::vector<desired_backend> backends;
  empty_verdict when_empty = empty_verdict::reject;  // verdict when `backends` is empty
  /// External kinds with externalTrafficPolicy Local: traffic from outside the node uses only
  /// these (this node's endpoints) and keeps its source; empty + external_local = drop.
  bool external_local = false;
  std::vector<desired_backend> external_backends;  // meaningful only when external_local
  /// LoadBalancer kind: allowed client prefixes (loadBalancerSourceRanges of the VIP's family,
  /// plus every LB ingress IP of that family when a range contains the node's primary address,
  /// as kube-proxy does); empty = everyone.
  std::vector<ip_prefix> source_ranges;
  /// A loopback VIP (127.0.0.1:nodePort, a hostPort on a loopback hostIP): served only at the
  /// socket, in the node's own network namespace (LB_SVC_F_LOOPBACK), never from outside.
  bool loopback = false;
  /// Served to traffic from outside the node only (LB_SVC_F_OUTSIDE_ONLY): an ExternalIP that is
  /// not this node's under plan_options::external_ip_mitigation.
  bool outside_only = false;

  frontend_key key() const { return {vip, port, proto}; }

  bool operator==(const desired_frontend&) const = default;
};

/// A healthCheckNodePort server to run (type LoadBalancer, externalTrafficPolicy Local).
struct desired_health_check {
  std::string namespace_;
  std::string name;
  uint16_t port = 0;              // healthCheckNodePort
  uint32_t local_endpoints = 0;   // this node's *ready* endpoints (terminating do not count)

  auto operator<=>(const desired_health_check&) const = default;
  bool operator==(const desired_health_check&) const = default;
};

/// Why the planner leaves a Service it knows out of the maps (maps/sluice_abi.h
/// enum lb_unproxied_reason): sluicectl lists these as "not proxied".
enum class unproxied_reason : uint8_t {
  headless = 1,       ///< clusterIP None
  external_name = 2,  ///< type ExternalName
  no_cluster_ip = 3,  ///< no cluster IP (yet)
  other_proxy = 4,    ///< labelled service.kubernetes.io/service-proxy-name for another proxy
};

/// A Service the agent knows but does not proxy.
struct unproxied_service {
  std::string namespace_;
  std::string name;
  unproxied_reason reason = unproxied_reason::headless;
  std::string external_name;  ///< spec.externalName (reason external_name)

  auto operator<=>(const unproxied_service&) const = default;
  bool operator==(const unproxied_service&) const = default;
};

/// Everything the maps should hold, frontends sorted by (vip, port, proto).
struct desired_state {
  std::vector<desired_frontend> frontends;
  /// Sorted by port; one per Service that needs one.
  std::vector<desired_health_check> health_checks;
  /// Frontends left out because an earlier service (by namespace/name) claims the same
  /// (vip, port, proto): one line each, for the agent to log and count.
  std::vector<std::string> conflicts;
  /// Services left out on purpose (headless, ExternalName, ...), sorted by namespace/name.
  std::vector<unproxied_service> unproxied;
  bool operator==(const desired_state&) const = default;
};

}  // namespace sluice
