// The one decoder for Kubernetes objects, shared by both sources: the API source feeds it the
// JSON the API server sends, the manifest source feeds it YAML converted to JSON. It reads only
// the fields in reference/kube-semantics.md §1.1 (plus what the file source needs to act as the
// controllers: selectors, Pods, legacy Endpoints) and skips the rest (managedFields, status
// conditions of other kinds, ...) without walking it.
//
// What is accepted, beyond the API's own validation:
// - leading-zero IPv4 parts ("172.30.0.041" = 172.30.0.41), as ParseIPSloppy (old objects);
// - loadBalancerSourceRanges and podCIDRs with spaces around them or host bits set (cleared),
//   as kube-proxy's TrimSpace + ParseCIDRSloppy;
// - `null` wherever a list, map, string or condition may be absent;
// - status.loadBalancer.ingress entries with only a hostname (dropped: nothing to program).
// FQDN EndpointSlices are kept (with no addresses); the planner has no use for them.
#pragma once

#include <expected>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <variant>

#include "agent/model/model.h"

namespace sluice {

/// Any object the decoder produces.
using kube_object = std::variant<service, endpoint_slice, node, pod, endpoints>;

/// Why an object did not decode.
struct decode_error {
  /// True for objects that are fine but not ours: other kinds, other API groups (Knative's
  /// Service), EndpointSlices without the kubernetes.io/service-name label. False = malformed.
  bool ignored = false;
  /// One line naming kind, namespace/name and the field, e.g.
  /// `Service default/web: spec.ports[1].port: 70000 is out of range 1..65535`.
  std::string message;
  /// The offending value inside the decoded document (its parent object when a field is
  /// missing), or null; lets the manifest source point at a file line.
  const nlohmann::json* at = nullptr;
};

/// Decodes one object. `default_kind` ("Service", "EndpointSlice", "Node", "Pod", "Endpoints")
/// applies when `obj` has no "kind", as items of a typed List from the API server have none;
/// such objects need no apiVersion either. Unset namespaces become "default"; Nodes have none.
/// Never throws.
std::expected<kube_object, decode_error> decode_object(const nlohmann::json& obj,
                                                       std::string_view default_kind);

/// "a mapping", "a list", "a string", "a boolean", "a number" or "null", for messages.
std::string_view json_type_name(const nlohmann::json& v);

/// "TCP", "UDP" or "SCTP".
std::string_view protocol_name(uint8_t protocol);

}  // namespace sluice
