// Test-only model of the datapath's decision for a new flow, given the planner's desired state:
// the agent-side counterpart of kube-proxy's packet tracer (reference/kube-semantics.md §2.1).
// It follows the datapath contract of agent/planner/desired.h and DESIGN.md (§5.2 order):
// 1. find the frontend (vip, port, proto); none -> "" (the packet is not a service's);
// 2. load_balancer frontends with source ranges drop sources outside them;
// 3. external sources of an external_local frontend use external_backends (empty -> DROP);
//    everything else uses backends (empty -> the frontend's when_empty verdict).
// Masquerade is a datapath decision the planner does not make, so it is not traced.
#pragma once

#include <fmt/format.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "agent/model/model.h"
#include "agent/planner/desired.h"

namespace sluice::test {

/// Where a flow comes from, as the datapath classifies it.
enum class source_class : uint8_t {
  pod,       ///< a local pod (the local-traffic detector matches)
  node,      ///< the node itself (a local address)
  external,  ///< anything else
};

/// Parses "203.0.113.0/25" (host bits must already be zero); throws on anything else. Kept
/// here rather than using model.h's parse_prefix so that the tracer and its fixtures do not
/// depend on the code under test.
inline ip_prefix prefix(std::string_view text) {
  const size_t slash = text.find('/');
  const std::optional<ip_addr> addr =
      slash == std::string_view::npos ? std::nullopt : parse_ip(text.substr(0, slash));
  if (!addr) {
    throw std::invalid_argument("bad test prefix " + std::string(text));
  }
  return ip_prefix{*addr, static_cast<uint8_t>(std::stoi(std::string(text.substr(slash + 1))))};
}

/// "10.180.0.1:80, 10.180.0.2:80" ("[fd00::1]:80" for IPv6), in the backends' order.
inline std::string tracer_join(const std::vector<desired_backend>& backends) {
  std::string out;
  for (const desired_backend& b : backends) {
    const std::string addr =
        b.addr.family == ip_family::v6 ? "[" + format_ip(b.addr) + "]" : format_ip(b.addr);
    out += fmt::format("{}{}:{}", out.empty() ? "" : ", ", addr, b.port);
  }
  return out;
}

/// The datapath's verdict for a new flow: the candidate backends ("a:p, b:p"), "REJECT",
/// "DROP", or "" when no frontend matches.
inline std::string trace_flow(const desired_state& state, source_class from, const ip_addr& src,
                              uint8_t proto, const ip_addr& dst, uint16_t dport) {
  const frontend_key wanted{dst, dport, proto};
  const desired_frontend* frontend = nullptr;
  for (const desired_frontend& f : state.frontends) {
    if (f.key() == wanted) {
      frontend = &f;
      break;
    }
  }
  if (frontend == nullptr) {
    return "";
  }
  if (frontend->kind == frontend_kind::load_balancer && !frontend->source_ranges.empty()) {
    bool allowed = false;
    for (const ip_prefix& range : frontend->source_ranges) {
      allowed = allowed || prefix_contains(range, src);
    }
    if (!allowed) {
      return "DROP";
    }
  }
  if (frontend->external_local && from == source_class::external) {
    return frontend->external_backends.empty() ? "DROP" : tracer_join(frontend->external_backends);
  }
  if (frontend->backends.empty()) {
    return frontend->when_empty == empty_verdict::drop ? "DROP" : "REJECT";
  }
  return tracer_join(frontend->backends);
}

}  // namespace sluice::test
