#include "agent/planner/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <span>
#include <tuple>
#include <utility>
#include <vector>

namespace sluice {

namespace {

bool has_label(const std::map<std::string, std::string>& labels, std::string_view key) {
  return labels.contains(std::string(key));
}

// kube-proxy's ShouldSkipService plus its watch label selector.
bool skip_service(const service& svc) {
  return svc.type == service_type::external_name || svc.headless || svc.cluster_ips.empty() ||
         has_label(svc.labels, label_service_proxy_name) || has_label(svc.labels, label_headless);
}

slice_address_type slice_type_for(ip_family family) {
  return family == ip_family::v4 ? slice_address_type::ipv4 : slice_address_type::ipv6;
}

// The slice's port for a service port: same name and protocol; nil name or nil/0 port never
// match. Returns 0 when the slice has no such port.
uint16_t slice_port_for(const endpoint_slice& slice, const service_port& port) {
  for (const endpoint_port& candidate : slice.ports) {
    if (candidate.name && candidate.port && *candidate.port != 0 && *candidate.name == port.name &&
        candidate.protocol == port.protocol) {
      return *candidate.port;
    }
  }
  return 0;
}

struct conditions {
  bool ready;
  bool serving;
  bool terminating;

  // Which copy of an endpoint seen in several slices to keep: a non-terminating copy first,
  // then ready, then serving. The order of the slices never matters.
  auto rank() const { return std::make_tuple(!terminating, ready, serving); }
};

std::vector<desired_backend> usable_backends(std::span<const endpoint_slice* const> slices,
                                             ip_family family, const service_port& port) {
  // Ordered by (address, port), which is also the order of desired_backend.
  std::map<std::pair<ip_addr, uint16_t>, conditions> endpoints;
  for (const endpoint_slice* slice : slices) {
    if (slice->address_type != slice_type_for(family)) {
      continue;
    }
    const uint16_t target = slice_port_for(*slice, port);
    if (target == 0) {
      continue;
    }
    for (const endpoint& ep : slice->endpoints) {
      if (ep.addresses.empty() || ep.addresses[0].family != family) {
        continue;
      }
      const conditions seen{ep.is_ready(), ep.is_serving(), ep.is_terminating()};
      const auto [it, inserted] = endpoints.try_emplace({ep.addresses[0], target}, seen);
      if (!inserted && seen.rank() > it->second.rank()) {
        it->second = seen;
      }
    }
  }

  std::vector<desired_backend> out;
  for (const auto& [where, cond] : endpoints) {
    if (cond.ready) {
      out.push_back({where.first, where.second, false});
    }
  }
  if (!out.empty()) {
    return out;
  }
  // Nothing ready: fall back to endpoints still serving while terminating (KEP-1669).
  for (const auto& [where, cond] : endpoints) {
    if (cond.serving && cond.terminating) {
      out.push_back({where.first, where.second, true});
    }
  }
  return out;
}

}  // namespace

desired_state plan(const cluster& state, const plan_options& options) {
  static_cast<void>(options);  // node_name matters once Local traffic policies are planned

  // Slices by owning service, each list in slice-name order (the map's order).
  std::map<object_key, std::vector<const endpoint_slice*>> slices_by_service;
  for (const auto& [key, slice] : state.endpoint_slices) {
    if (slice.service_name.empty() || has_label(slice.labels, label_service_proxy_name) ||
        has_label(slice.labels, label_headless)) {
      continue;
    }
    slices_by_service[{slice.namespace_, slice.service_name}].push_back(&slice);
  }

  desired_state out;
  for (const auto& [key, svc] : state.services) {
    if (skip_service(svc)) {
      continue;
    }
    std::span<const endpoint_slice* const> slices;
    if (const auto found = slices_by_service.find(key); found != slices_by_service.end()) {
      slices = found->second;
    }
    for (const ip_addr& vip : svc.cluster_ips) {
      for (const service_port& port : svc.ports) {
        if (port.protocol != IPPROTO_TCP && port.protocol != IPPROTO_UDP) {
          continue;  // TODO(sluice): SCTP needs its own datapath support first
        }
        desired_frontend frontend;
        frontend.vip = vip;
        frontend.port = port.port;
        frontend.proto = port.protocol;
        frontend.name = fmt::format("{}/{}:{}", svc.namespace_, svc.name, port.name);
        frontend.affinity_timeout_s = svc.session_affinity_client_ip ? svc.affinity_timeout_s : 0;
        frontend.backends = usable_backends(slices, vip.family, port);
        out.frontends.push_back(std::move(frontend));
      }
    }
  }

  // Services were visited in (namespace, name) order; a stable sort keeps the first claimant
  // of a (vip, port, proto) first, and unique() then drops the later ones.
  const auto frontend_key = [](const desired_frontend& f) {
    return std::tie(f.vip, f.port, f.proto);
  };
  std::stable_sort(out.frontends.begin(), out.frontends.end(),
                   [&](const desired_frontend& a, const desired_frontend& b) {
                     return frontend_key(a) < frontend_key(b);
                   });
  const auto last = std::unique(out.frontends.begin(), out.frontends.end(),
                                [&](const desired_frontend& a, const desired_frontend& b) {
                                  if (frontend_key(a) != frontend_key(b)) {
                                    return false;
                                  }
                                  out.conflicts.push_back(fmt::format(
                                      "{} left out: {} already uses {} port {}/{}", b.name,
                                      a.name, format_ip(a.vip), a.port,
                                      a.proto == IPPROTO_UDP ? "UDP" : "TCP"));
                                  return true;
                                });
  out.frontends.erase(last, out.frontends.end());
  return out;
}

}  // namespace sluice
