// The planner's per-object functions (one Service, one Pod, our Node) and plan(), which runs
// them all through a fresh plan_cache so that the full and the incremental result can never
// disagree.
#include "agent/planner/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "agent/planner/plan_cache.h"
#include "agent/planner/topology.h"

namespace sluice {

namespace {

bool has_label(const std::map<std::string, std::string>& labels, std::string_view key) {
  return labels.contains(std::string(key));
}

uint8_t max_prefix_length(ip_family family) { return family == ip_family::v4 ? 32 : 128; }

bool is_loopback(const ip_addr& addr) {
  if (addr.family == ip_family::v4) {
    return addr.bytes[0] == 127;
  }
  for (unsigned i = 0; i < 15; ++i) {
    if (addr.bytes[i] != 0) {
      return false;
    }
  }
  return addr.bytes[15] == 1;
}

bool is_unspecified(const ip_addr& addr) {
  return std::all_of(addr.bytes.begin(), addr.bytes.end(), [](uint8_t b) { return b == 0; });
}

ip_addr loopback_v4() {
  ip_addr a;
  a.bytes[0] = 127;
  a.bytes[3] = 1;
  return a;
}

ip_prefix host_prefix(const ip_addr& addr) { return {addr, max_prefix_length(addr.family)}; }

std::optional<ip_addr> first_of_family(const std::vector<ip_addr>& addrs, ip_family family) {
  for (const ip_addr& addr : addrs) {
    if (addr.family == family) {
      return addr;
    }
  }
  return std::nullopt;
}

std::vector<ip_addr> of_family(const std::vector<ip_addr>& addrs, ip_family family) {
  std::vector<ip_addr> out;
  for (const ip_addr& addr : addrs) {
    if (addr.family == family) {
      out.push_back(addr);
    }
  }
  return out;
}

slice_address_type slice_type_for(ip_family family) {
  return family == ip_family::v4 ? slice_address_type::ipv4 : slice_address_type::ipv6;
}

bool usable(const endpoint_port& port) { return port.name && port.port && *port.port != 0; }

// The slice's port for a service port: same name and protocol; nil name or nil/0 port never
// match. Returns 0 when the slice has no such port.
uint16_t slice_port_for(const endpoint_slice& slice, const service_port& port) {
  for (const endpoint_port& candidate : slice.ports) {
    if (usable(candidate) && *candidate.name == port.name && candidate.protocol == port.protocol) {
      return *candidate.port;
    }
  }
  return 0;
}

// Which copy of an endpoint seen in several slices to keep: a non-terminating copy first, then
// ready, then serving, then (only to stay independent of slice order) local.
auto rank(const port_endpoint& ep) {
  return std::make_tuple(!ep.terminating, ep.ready, ep.serving, ep.local);
}

port_endpoint make_port_endpoint(const endpoint& ep, uint16_t port, std::string_view node_name) {
  port_endpoint out;
  out.addr = ep.addresses[0];
  out.port = port;
  out.ready = ep.is_ready();
  out.serving = ep.is_serving();
  out.terminating = ep.is_terminating();
  out.local = !node_name.empty() && ep.node_name == node_name;
  out.zone_hints = ep.hints_for_zones;
  out.node_hints = ep.hints_for_nodes;
  return out;
}

// The endpoints of one service port in one family, each (address, port) once.
std::vector<port_endpoint> port_endpoints(std::span<const endpoint_slice* const> slices,
                                          ip_family family, const service_port& port,
                                          std::string_view node_name) {
  std::map<std::pair<ip_addr, uint16_t>, port_endpoint> unique;
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
      port_endpoint seen = make_port_endpoint(ep, target, node_name);
      const auto [it, inserted] = unique.try_emplace({seen.addr, target}, seen);
      if (!inserted && rank(seen) > rank(it->second)) {
        it->second = seen;
      }
    }
  }
  std::vector<port_endpoint> out;
  out.reserve(unique.size());
  for (auto& [where, ep] : unique) {
    out.push_back(ep);
  }
  return out;
}

// kube-proxy's LocalReadyEndpoints for one family: the distinct addresses of this node's ready
// endpoints over every port of the service's slices (so a pod serving two ports counts once).
uint32_t local_ready_addresses(std::span<const endpoint_slice* const> slices, ip_family family,
                               std::string_view node_name) {
  // Keyed like kube-proxy's endpoints map: (port name, protocol) then (address, port).
  std::map<std::tuple<std::string, uint8_t, ip_addr, uint16_t>, port_endpoint> unique;
  for (const endpoint_slice* slice : slices) {
    if (slice->address_type != slice_type_for(family)) {
      continue;
    }
    for (const endpoint_port& port : slice->ports) {
      if (!usable(port)) {
        continue;
      }
      for (const endpoint& ep : slice->endpoints) {
        if (ep.addresses.empty() || ep.addresses[0].family != family) {
          continue;
        }
        port_endpoint seen = make_port_endpoint(ep, *port.port, node_name);
        const auto [it, inserted] =
            unique.try_emplace({*port.name, port.protocol, seen.addr, *port.port}, seen);
        if (!inserted && rank(seen) > rank(it->second)) {
          it->second = seen;
        }
      }
    }
  }
  std::set<ip_addr> addresses;
  for (const auto& [where, ep] : unique) {
    if (ep.local && ep.ready) {
      addresses.insert(ep.addr);
    }
  }
  return static_cast<uint32_t>(addresses.size());
}

}  // namespace

node_context make_node_context(const cluster& state, const plan_options& options) {
  node_context out;
  out.node_name = options.node_name;
  out.service_proxy_name = options.service_proxy_name;
  out.localhost_nodeports = options.localhost_nodeports;
  out.external_ip_mitigation = options.external_ip_mitigation;
  if (!state.self_node) {
    return out;
  }
  const node& self = *state.self_node;
  if (const auto zone = self.labels.find(std::string(label_zone)); zone != self.labels.end()) {
    out.zone = zone->second;
  }
  for (const auto* list : {&self.internal_ips, &self.external_ips}) {
    for (const ip_addr& addr : *list) {
      if (std::find(out.addresses.begin(), out.addresses.end(), addr) == out.addresses.end()) {
        out.addresses.push_back(addr);
      }
    }
  }
  // kube-proxy's node IP per family: InternalIP first, ExternalIP otherwise.
  for (const ip_family family : {ip_family::v4, ip_family::v6}) {
    std::optional<ip_addr> primary = first_of_family(self.internal_ips, family);
    if (!primary) {
      primary = first_of_family(self.external_ips, family);
    }
    (family == ip_family::v4 ? out.primary_v4 : out.primary_v6) = primary;
  }
  if (options.nodeport_addresses.empty()) {
    for (const auto* primary : {&out.primary_v4, &out.primary_v6}) {
      if (*primary && !is_loopback(**primary)) {
        out.nodeport_addresses.push_back(**primary);
      }
    }
  } else {
    for (const ip_addr& addr : out.addresses) {
      const bool selected =
          std::any_of(options.nodeport_addresses.begin(), options.nodeport_addresses.end(),
                      [&](const ip_prefix& prefix) { return prefix_contains(prefix, addr); });
      if (selected && !is_loopback(addr)) {
        out.nodeport_addresses.push_back(addr);
      }
    }
  }
  return out;
}

namespace {

// kube-proxy's watch selector: `!service.kubernetes.io/service-proxy-name`, or
// `service.kubernetes.io/service-proxy-name=<ours>` when we have a name. The EndpointSlice
// controller copies the Service's labels onto its slices, so the same rule filters both.
bool other_proxy(const std::map<std::string, std::string>& labels, std::string_view ours) {
  const auto it = labels.find(std::string(label_service_proxy_name));
  if (ours.empty()) {
    return it != labels.end();
  }
  return it == labels.end() || it->second != ours;
}

}  // namespace

bool skip_service(const service& svc, std::string_view service_proxy_name) {
  return unproxied(svc, service_proxy_name).has_value();
}

std::optional<unproxied_service> unproxied(const service& svc,
                                           std::string_view service_proxy_name) {
  unproxied_service out{svc.namespace_, svc.name};
  if (svc.type == service_type::external_name) {
    out.reason = unproxied_reason::external_name;
    out.external_name = svc.external_name;
  } else if (other_proxy(svc.labels, service_proxy_name)) {
    out.reason = unproxied_reason::other_proxy;
  } else if (svc.headless || has_label(svc.labels, label_headless)) {
    out.reason = unproxied_reason::headless;
  } else if (svc.cluster_ips.empty()) {
    out.reason = unproxied_reason::no_cluster_ip;
  } else {
    return std::nullopt;
  }
  return out;
}

std::optional<object_key> slice_owner(const endpoint_slice& slice,
                                      std::string_view service_proxy_name) {
  if (slice.service_name.empty() || other_proxy(slice.labels, service_proxy_name) ||
      has_label(slice.labels, label_headless)) {
    return std::nullopt;
  }
  return object_key{slice.namespace_, slice.service_name};
}

service_plan plan_service(const service& svc, std::span<const endpoint_slice* const> slices,
                          const node_context& node) {
  service_plan out;
  if (skip_service(svc, node.service_proxy_name)) {
    return out;
  }
  const bool internal_local = svc.internal_policy == traffic_policy::local;
  const bool external_local = svc.external_policy == traffic_policy::local;

  // One pass per family the service has a cluster IP in (kube-proxy runs one proxier per
  // family and a service without that family's ClusterIP does not exist there, §5.7).
  for (const ip_addr& cluster_ip : svc.cluster_ips) {
    const ip_family family = cluster_ip.family;
    const std::vector<ip_addr> external_ips = of_family(svc.external_ips, family);
    std::vector<ip_addr> lb_ips;
    for (const load_balancer_ingress& ingress : svc.lb_ingress) {
      // ipMode Proxy: the load balancer must really see the traffic (KEP-1860).
      if (!ingress.ip_mode_proxy && ingress.ip.family == family) {
        lb_ips.push_back(ingress.ip);
      }
    }
    std::vector<ip_prefix> source_ranges;
    for (const ip_prefix& range : svc.lb_source_ranges) {
      if (range.addr.family == family) {
        source_ranges.push_back(range);
      }
    }
    const std::optional<ip_addr>& primary = node.primary(family);
    const bool allow_from_node =
        primary && std::any_of(source_ranges.begin(), source_ranges.end(),
                               [&](const ip_prefix& range) { return prefix_contains(range, *primary); });
    if (allow_from_node) {
      // A VIP-like LB IP is often routed locally, so a request from this node to it comes
      // back with the LB IP as its source; kube-proxy then allows every LB IP of the family.
      for (const ip_addr& lb_ip : lb_ips) {
        source_ranges.push_back(host_prefix(lb_ip));
      }
    }
    std::sort(source_ranges.begin(), source_ranges.end());
    source_ranges.erase(std::unique(source_ranges.begin(), source_ranges.end()),
                        source_ranges.end());
    const std::vector<ip_addr> node_ips = of_family(node.nodeport_addresses, family);

    for (const service_port& port : svc.ports) {
      if (port.protocol != IPPROTO_TCP && port.protocol != IPPROTO_UDP) {
        // SCTP: the datapath parses TCP and UDP only; planning SCTP frontends would make the
        // maps claim a service they cannot deliver.
        continue;
      }
      const port_policy policy{
          .internal_local = internal_local,
          .external_local = external_local,
          .externally_accessible = port.node_port != 0 || !lb_ips.empty() || !external_ips.empty(),
      };
      const std::vector<port_endpoint> endpoints =
          port_endpoints(slices, family, port, node.node_name);
      const categorized_endpoints sets =
          categorize_endpoints(endpoints, policy, node.node_name, node.zone);

      desired_frontend base;
      base.port = port.port;
      base.proto = port.protocol;
      base.name = fmt::format("{}/{}:{}", svc.namespace_, svc.name, port.name);
      base.affinity_timeout_s = svc.session_affinity_client_ip ? svc.affinity_timeout_s : 0;

      desired_frontend cluster = base;
      cluster.vip = cluster_ip;
      cluster.kind = frontend_kind::cluster_ip;
      if (internal_local) {
        cluster.backends = *sets.local;
        cluster.when_empty = sets.has_any ? empty_verdict::drop : empty_verdict::reject;
      } else {
        cluster.backends = *sets.cluster;
      }
      out.frontends.push_back(std::move(cluster));

      if (!policy.externally_accessible) {
        continue;
      }
      desired_frontend external = base;
      external.backends = *sets.cluster;  // externally accessible: always computed
      // With no endpoint anywhere every VIP rejects; external_local stays false so that
      // external clients get that REJECT rather than the Local policy's DROP.
      external.external_local = external_local && sets.has_any;
      if (external.external_local) {
        external.external_backends = *sets.local;
      }
      const auto add = [&](const ip_addr& vip, uint16_t vip_port, frontend_kind kind) {
        desired_frontend f = external;
        f.vip = vip;
        f.port = vip_port;
        f.kind = kind;
        if (kind == frontend_kind::load_balancer) {
          f.source_ranges = source_ranges;
        }
        out.frontends.push_back(std::move(f));
      };
      for (const ip_addr& vip : external_ips) {
        add(vip, port.port, frontend_kind::external_ip);
        // CVE-2020-8554: a Service must not capture in-cluster traffic to an address that is
        // not the node's; only what arrives at the node for it is the Service's.
        out.frontends.back().outside_only =
            node.external_ip_mitigation &&
            std::find(node.addresses.begin(), node.addresses.end(), vip) == node.addresses.end();
      }
      for (const ip_addr& vip : lb_ips) {
        add(vip, port.port, frontend_kind::load_balancer);
      }
      if (port.node_port != 0) {
        for (const ip_addr& vip : node_ips) {
          add(vip, port.node_port, frontend_kind::node_port);
        }
        if (node.localhost_nodeports && family == ip_family::v4) {
          // The node's own processes only: the cluster set, as node sources get (§1.4).
          desired_frontend f = base;
          f.vip = loopback_v4();
          f.port = port.node_port;
          f.kind = frontend_kind::node_port;
          f.backends = *sets.cluster;
          f.loopback = true;
          out.frontends.push_back(std::move(f));
        }
      }
    }
  }

  if (svc.type == service_type::load_balancer && external_local &&
      svc.health_check_node_port != 0) {
    // kube-proxy runs one health server per family, each counting its family's endpoints;
    // they agree for dual-stack pods. Report the larger count so that a family whose pods
    // have no address of the other family is not reported empty.
    uint32_t count = 0;
    for (const ip_addr& cluster_ip : svc.cluster_ips) {
      count = std::max(count, local_ready_addresses(slices, cluster_ip.family, node.node_name));
    }
    out.health_check =
        desired_health_check{svc.namespace_, svc.name, svc.health_check_node_port, count};
  }
  return out;
}

std::vector<desired_frontend> plan_host_ports(const pod& p, const node_context& node) {
  std::vector<desired_frontend> out;
  if (p.node_name.empty() || p.node_name != node.node_name || p.finished || p.host_network) {
    return out;
  }
  for (const pod_port& port : p.ports) {
    if (port.host_port == 0 || (port.protocol != IPPROTO_TCP && port.protocol != IPPROTO_UDP)) {
      continue;
    }
    for (const ip_family family : {ip_family::v4, ip_family::v6}) {
      const std::optional<ip_addr> pod_ip = first_of_family(p.pod_ips, family);
      if (!pod_ip) {
        continue;
      }
      std::vector<ip_addr> vips;
      if (port.host_ip && !is_unspecified(*port.host_ip)) {
        if (port.host_ip->family == family) {
          vips.push_back(*port.host_ip);
        }
      } else if (!port.host_ip || port.host_ip->family == family) {
        vips = of_family(node.addresses, family);
      }
      for (const ip_addr& vip : vips) {
        desired_frontend f;
        f.vip = vip;
        f.port = port.host_port;
        f.proto = port.protocol;
        f.kind = frontend_kind::host_port;
        f.loopback = is_loopback(vip);
        f.name = fmt::format("{}/{}:{}", p.namespace_, p.name, port.host_port);
        f.backends.push_back({*pod_ip, port.container_port, false});
        out.push_back(std::move(f));
      }
    }
  }
  return out;
}

desired_state plan(const cluster& state, const plan_options& options) {
  plan_cache cache;
  plan_changes everything;
  everything.all = true;
  cache.update(state, options, everything);
  return cache.state();
}

}  // namespace sluice
