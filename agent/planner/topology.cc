// Endpoint selection for one service port (kube-proxy's pkg/proxy/topology.go).
#include "agent/planner/topology.h"

#include <algorithm>

namespace sluice {

namespace {

bool has_hint(std::span<const std::string> hints, std::string_view name) {
  return std::find(hints.begin(), hints.end(), name) != hints.end();
}

bool available_for_topology(const port_endpoint& ep, topology_mode mode, std::string_view node_name,
                            std::string_view zone) {
  switch (mode) {
    case topology_mode::none:
      return true;
    case topology_mode::prefer_same_node:
      return has_hint(ep.node_hints, node_name);
    case topology_mode::prefer_same_zone:
      return has_hint(ep.zone_hints, zone);
  }
  return false;
}

desired_backend backend_of(const port_endpoint& ep) {
  // Only the fallback sets hold endpoints that are not ready; flag them so the datapath
  // (and sluicectl) can tell.
  return {ep.addr, ep.port, !ep.ready};
}

template <typename Pred>
std::vector<desired_backend> select(std::span<const port_endpoint> endpoints, Pred pred) {
  std::vector<desired_backend> out;
  for (const port_endpoint& ep : endpoints) {
    if (pred(ep)) {
      out.push_back(backend_of(ep));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

topology_mode topology_mode_from_hints(std::span<const port_endpoint> endpoints,
                                       std::string_view node_name, std::string_view zone) {
  bool all_have_node_hints = true;
  bool one_for_node = false;
  bool all_have_zone_hints = true;
  bool one_for_zone = false;
  for (const port_endpoint& ep : endpoints) {
    if (!ep.ready) {
      continue;  // the EndpointSlice controller hints ready endpoints only
    }
    if (ep.node_hints.empty()) {
      all_have_node_hints = false;
    } else if (has_hint(ep.node_hints, node_name)) {
      one_for_node = true;
    }
    if (ep.zone_hints.empty()) {
      all_have_zone_hints = false;
    } else if (has_hint(ep.zone_hints, zone)) {
      one_for_zone = true;
    }
  }
  if (all_have_node_hints && one_for_node && !node_name.empty()) {
    return topology_mode::prefer_same_node;
  }
  if (all_have_zone_hints && one_for_zone && !zone.empty()) {
    return topology_mode::prefer_same_zone;
  }
  return topology_mode::none;
}

categorized_endpoints categorize_endpoints(std::span<const port_endpoint> endpoints,
                                           const port_policy& policy, std::string_view node_name,
                                           std::string_view zone) {
  categorized_endpoints out;
  for (const port_endpoint& ep : endpoints) {
    if (ep.ready || (ep.serving && ep.terminating)) {
      out.has_any = true;
      break;
    }
  }

  if (policy.uses_cluster()) {
    const topology_mode mode = topology_mode_from_hints(endpoints, node_name, zone);
    out.cluster = select(endpoints, [&](const port_endpoint& ep) {
      return ep.ready && available_for_topology(ep, mode, node_name, zone);
    });
    // A topology mode is only chosen when it keeps at least one ready endpoint, so an empty
    // set here means nothing is ready anywhere: fall back without topology (KEP-1669).
    if (out.cluster->empty()) {
      out.cluster =
          select(endpoints, [](const port_endpoint& ep) { return ep.serving && ep.terminating; });
    }
  }

  if (policy.uses_local()) {
    out.local = select(endpoints, [](const port_endpoint& ep) { return ep.local && ep.ready; });
    if (out.local->empty()) {
      out.local = select(endpoints, [](const port_endpoint& ep) {
        return ep.local && ep.serving && ep.terminating;
      });
    }
  }

  if (out.cluster && out.local) {
    std::set_union(out.cluster->begin(), out.cluster->end(), out.local->begin(), out.local->end(),
                   std::back_inserter(out.all_reachable));
    // A local endpoint may be in both lists; set_union keeps one copy of equal elements, and
    // the copies are equal because the terminating flag derives from the same endpoint.
  } else if (out.cluster) {
    out.all_reachable = *out.cluster;
  } else if (out.local) {
    out.all_reachable = *out.local;
  }
  return out;
}

}  // namespace sluice
