// Decoded Kubernetes objects: only the fields sluice reads (see
// reference/kube-semantics.md §1.1). Both sources (manifest files, the API server) produce
// these types; the planner consumes them. Plain data, no I/O.
#pragma once

#include <netinet/in.h>

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

/// Parses a textual IPv4 ("10.96.0.1") or IPv6 ("fd00::1") address with inet_pton.
/// Returns nullopt for anything else (zones, prefixes, hostnames, leading zeros).
std::optional<ip_addr> parse_ip(std::string_view text);

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

/// A core/v1 Service.
struct service {
  std::string namespace_ = "default";
  std::string name;
  service_type type = service_type::cluster_ip;
  bool headless = false;             ///< clusterIP "None"; cluster_ips is then empty
  std::vector<ip_addr> cluster_ips;  ///< spec.clusterIPs, else spec.clusterIP; one per family
  std::vector<service_port> ports;
  bool session_affinity_client_ip = false;
  uint32_t affinity_timeout_s = 0;  ///< 1..86400 when ClientIP (default 10800), else 0
  std::map<std::string, std::string> labels;
  std::string source;  ///< where it was decoded from (file name), for messages

  object_key key() const { return {namespace_, name}; }
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
  std::string source;  ///< where it was decoded from (file name), for messages

  object_key key() const { return {namespace_, name}; }
};

/// Everything the sources know: Services and EndpointSlices keyed by namespace/name.
struct cluster {
  std::map<object_key, service> services;
  std::map<object_key, endpoint_slice> endpoint_slices;
};

/// Well-known label keys (reference/kube-semantics.md §3.7).
inline constexpr std::string_view label_service_name = "kubernetes.io/service-name";
inline constexpr std::string_view label_service_proxy_name =
    "service.kubernetes.io/service-proxy-name";
inline constexpr std::string_view label_headless = "service.kubernetes.io/headless";

/// Default and limits of sessionAffinityConfig.clientIP.timeoutSeconds.
inline constexpr uint32_t default_affinity_timeout_s = 10800;
inline constexpr uint32_t max_affinity_timeout_s = 86400;

}  // namespace sluice
