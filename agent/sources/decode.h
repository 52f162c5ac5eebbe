// The one decoder for Kubernetes objects, shared by both sources: the API source feeds it the
// JSON the API server sends (straight from the page buffer, as a simdjson On-Demand object), the
// manifest source feeds it YAML converted to JSON text. It reads only
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
//
// simdjson On-Demand, not a DOM: decoding a list page was mostly malloc and DOM building, and
// the model needs one copy of each string, not two. Each object's fields are visited once, in
// document order, with a key switch; scalars are captured as they pass, failures of nested
// fields are held, and both are checked after the object's last field in the order the former
// DOM decoder looked fields up, so the field named does not depend on field order, even when
// several are bad. A duplicate key: the last one wins. Malformed JSON inside an object is
// reported as "malformed JSON (...)" for that object.
#pragma once

#include <simdjson.h>

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>
#include <variant>

#include "agent/model/model.h"

namespace sluice {

/// Bounds on what one object may hold; beyond them the object is rejected with an error naming
/// the bound (and counted like any other malformed object), not loaded in part.
/// Bytes of one object's JSON (a watch line, a list item, a manifest document). etcd refuses
/// requests above 1.5 MiB by default, so the API server never holds a larger object.
inline constexpr std::size_t max_object_bytes = std::size_t{4} << 20;
/// spec.ports of a Service. Kubernetes' validation sets no maximum; real Services have a few.
inline constexpr std::size_t max_service_ports = 1000;
/// endpoints and ports of an EndpointSlice: Kubernetes' own validation limits (maxEndpoints,
/// maxPorts in pkg/apis/discovery/validation).
inline constexpr std::size_t max_slice_endpoints = 1000;
inline constexpr std::size_t max_slice_ports = 100;

/// Any object the decoder produces.
using kube_object = std::variant<service, endpoint_slice, node, pod, endpoints>;

/// Why an object did not decode.
struct decode_error {
  /// True for objects that are fine but not ours: other kinds, other API groups (Knative's
  /// Service), EndpointSlices without the kubernetes.io/service-name label. False = malformed.
  bool ignored = false;
  /// One line (see printable()) naming kind, namespace/name and the field, e.g.
  /// `Service default/web: spec.ports[1].port: 70000 is out of range 1..65535`.
  std::string message;
  /// Path of the offending value inside the object (its parent when a field is missing), as
  /// in the message: `spec.ports[1].port`, `metadata.labels["app"]` for a map value, "" for
  /// the object itself. Lets the manifest source point at a file line.
  std::string path;
};

/// Decodes one object. `default_kind` ("Service", "EndpointSlice", "Node", "Pod", "Endpoints")
/// applies when `obj` has no "kind", as items of a typed List from the API server have none;
/// such objects need no apiVersion either. Unset namespaces become "default"; Nodes have none.
/// `obj` must not have been iterated yet (or be reset()); it is left somewhere inside, and may be
/// reset() again by the caller. Strings are copied into the model. Never throws.
std::expected<kube_object, decode_error> decode_object(simdjson::ondemand::object& obj,
                                                       std::string_view default_kind);

/// The same for one JSON document in `text` (copied into a padded buffer and parsed by a
/// thread-local parser): the manifest source and tests. Invalid JSON is a malformed object.
std::expected<kube_object, decode_error> decode_json(std::string_view text,
                                                     std::string_view default_kind);

/// "a mapping", "a list", "a string", "a boolean", "a number" or "null", for messages.
std::string_view json_type_name(simdjson::ondemand::json_type t);

/// `text` for a log line: line breaks, tabs and other control characters (C0, DEL, C1) written
/// as \n, \t, \xNN, \u00NN, so that names and values quoted from an object cannot forge log
/// lines or drive a terminal. Every decode_error message has been through it.
std::string printable(std::string_view text);

/// Makes `parser` ready for a document of `bytes` bytes that the decoder reads: every read of a
/// string unescapes it into the parser's string buffer (5/3 of its capacity), and the decoder
/// reads parts of an object twice when its header comes after its body, so the capacity is twice
/// the document. Call before iterate(); a no-op when the parser is big enough already.
simdjson::error_code reserve_for_decode(simdjson::ondemand::parser& parser, std::size_t bytes);

/// "TCP", "UDP" or "SCTP".
std::string_view protocol_name(uint8_t protocol);

}  // namespace sluice
