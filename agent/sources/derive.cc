// derive(): the controllers' work for the file source (allocation, Endpoints mirroring,
// Pod -> EndpointSlice). See derive.h for the rules.
#include "agent/sources/derive.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <sstream>
#include <variant>

namespace sluice {

namespace {

std::string_view family_name(ip_family family) { return family == ip_family::v4 ? "IPv4" : "IPv6"; }

ip_family other(ip_family family) {
  return family == ip_family::v4 ? ip_family::v6 : ip_family::v4;
}

// FNV-1a: stable across builds and platforms (std::hash is not), so a fresh agent computes
// the same values as the one before it.
uint64_t fnv1a(std::string_view text, uint64_t h = 14695981039346656037ull) {
  for (const char c : text) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// The usable addresses of a service CIDR as offsets [first, first + count) from its base:
// IPv4 leaves out the network and broadcast addresses, IPv6 the subnet-router anycast one.
// Ranges wider than 2^32 use their lowest 2^32 addresses.
struct ip_range {
  ip_prefix prefix;
  uint64_t first = 0;
  uint64_t count = 0;

  explicit ip_range(const ip_prefix& p) : prefix(p) {
    const unsigned bits = (p.addr.family == ip_family::v4 ? 32u : 128u) - p.length;
    const uint64_t span = uint64_t{1} << std::min(bits, 32u);
    if (p.addr.family == ip_family::v4) {
      first = bits >= 2 ? 1 : 0;
      count = bits >= 2 ? span - 2 : span;
    } else {
      first = bits >= 1 ? 1 : 0;
      count = bits >= 1 ? span - 1 : span;
    }
  }

  ip_addr at(uint64_t offset) const {
    ip_addr addr = prefix.addr;
    const std::size_t last = addr.family == ip_family::v4 ? 3 : 15;
    // Host bits are zero and offset < 2^min(bits, 32), so OR-ing the low bytes never carries.
    for (std::size_t i = 0; i < 4; ++i) {
      addr.bytes[last - i] =
          static_cast<uint8_t>(addr.bytes[last - i] | ((offset >> (8 * i)) & 0xff));
    }
    return addr;
  }
};

const ip_prefix* cidr_of(const derive_options& opts, ip_family family) {
  for (const ip_prefix& p : opts.service_cidrs) {
    if (p.addr.family == family) {
      return &p;
    }
  }
  return nullptr;
}

bool has_node_ports(const service& svc) {
  return svc.type == service_type::node_port || svc.type == service_type::load_balancer;
}

bool needs_health_check_port(const service& svc) {
  return svc.type == service_type::load_balancer && svc.external_policy == traffic_policy::local;
}

// Families `svc` should have cluster IPs of, primary first; an error when its policy cannot be
// met with the configured CIDRs. Empty for headless and ExternalName Services.
std::expected<std::vector<ip_family>, std::string> wanted_families(const service& svc,
                                                                   const derive_options& opts) {
  std::vector<ip_family> out;
  if (svc.type == service_type::external_name || svc.headless) {
    return out;
  }
  std::vector<ip_family> order = svc.ip_families;
  if (order.empty() && !svc.cluster_ips.empty()) {
    order.push_back(svc.cluster_ips[0].family);
  }
  if (order.empty()) {
    order.push_back(opts.service_cidrs[0].addr.family);
  }
  if (order.size() == 1) {
    order.push_back(other(order[0]));
  }
  const auto has_ip = [&](ip_family f) {
    return std::any_of(svc.cluster_ips.begin(), svc.cluster_ips.end(),
                       [&](const ip_addr& a) { return a.family == f; });
  };
  const auto available = [&](ip_family f) { return has_ip(f) || cidr_of(opts, f) != nullptr; };

  switch (svc.family_policy) {
    case ip_family_policy::single_stack:
      out.push_back(order[0]);
      if (svc.cluster_ips.size() == 2) {
        out.push_back(order[1]);  // two explicit addresses: keep both
      }
      break;
    case ip_family_policy::prefer_dual_stack:
      for (const ip_family f : order) {
        if (available(f) || out.empty()) {
          out.push_back(f);
        }
      }
      break;
    case ip_family_policy::require_dual_stack:
      out = order;
      break;
  }
  for (const ip_family f : out) {
    if (!available(f)) {
      return std::unexpected(
          fmt::format("no --service-cidr of family {} to allocate from", family_name(f)));
    }
  }
  return out;
}

class allocation {
 public:
  allocation(cluster& c, const derive_options& opts, allocator& alloc, derive_result& out)
      : c_(c), opts_(opts), alloc_(alloc), out_(out) {}

  void run() {
    alloc_.release_missing(c_.services);
    reject_explicit_collisions();
    if (!opts_.service_cidrs.empty()) {
      assign_cluster_ips();
    }
    if (opts_.node_port_min != 0 && opts_.node_port_min <= opts_.node_port_max) {
      assign_node_ports();
    }
  }

 private:
  // Explicit values claimed by more than one Service: the one the allocator remembers owning
  // the value wins, else the first by namespace/name; the others are removed.
  void reject_explicit_collisions() {
    std::map<ip_addr, std::vector<object_key>> ip_claims;
    for (const auto& [key, svc] : c_.services) {
      for (const ip_addr& addr : svc.cluster_ips) {
        ip_claims[addr].push_back(key);
      }
    }
    for (const auto& [addr, keys] : ip_claims) {
      if (keys.size() < 2) {
        continue;
      }
      const object_key winner = pick_winner(
          keys, [&](const object_key& k) { return alloc_.cluster_ip(k, addr.family) == addr; });
      for (const object_key& k : keys) {
        if (k != winner && c_.services.contains(k)) {
          reject(k, fmt::format("spec.clusterIP {} is already used by Service {}", format_ip(addr),
                                winner.str()));
        }
      }
    }

    std::map<uint16_t, std::vector<object_key>> port_claims;
    for (const auto& [key, svc] : c_.services) {
      if (!has_node_ports(svc)) {
        continue;
      }
      std::set<uint16_t> mine;  // one service may use a nodePort for TCP and UDP alike
      for (const service_port& p : svc.ports) {
        if (p.node_port != 0) {
          mine.insert(p.node_port);
        }
      }
      if (needs_health_check_port(svc) && svc.health_check_node_port != 0) {
        mine.insert(svc.health_check_node_port);
      }
      for (const uint16_t port : mine) {
        port_claims[port].push_back(key);
      }
    }
    for (const auto& [port, keys] : port_claims) {
      if (keys.size() < 2) {
        continue;
      }
      const object_key winner = pick_winner(keys, [&](const object_key& k) {
        const auto it = c_.services.find(k);
        if (it == c_.services.end()) {
          return false;
        }
        for (const service_port& p : it->second.ports) {
          if (alloc_.node_port(k, p.port) == port) {
            return true;
          }
        }
        return alloc_.node_port(k, 0) == port;
      });
      for (const object_key& k : keys) {
        if (k != winner && c_.services.contains(k)) {
          reject(k, fmt::format("nodePort {} is already used by Service {}", port, winner.str()));
        }
      }
    }
  }

  template <typename F>
  object_key pick_winner(const std::vector<object_key>& keys, F&& remembered) {
    for (const object_key& k : keys) {
      if (c_.services.contains(k) && remembered(k)) {
        return k;
      }
    }
    for (const object_key& k : keys) {
      if (c_.services.contains(k)) {
        return k;
      }
    }
    return keys.front();
  }

  void reject(const object_key& key, const std::string& why) {
    const auto it = c_.services.find(key);
    out_.lines.push_back(
        fmt::format("{}: Service {}: {}; ignoring this one", it->second.source, key.str(), why));
    ++out_.rejected;
    c_.services.erase(it);
  }

  void assign_cluster_ips() {
    std::set<ip_addr> used;
    std::map<object_key, std::vector<ip_family>> missing;
    std::vector<object_key> failed;
    for (auto& [key, svc] : c_.services) {
      used.insert(svc.cluster_ips.begin(), svc.cluster_ips.end());
    }
    for (auto& [key, svc] : c_.services) {
      const auto want = wanted_families(svc, opts_);
      if (!want) {
        out_.lines.push_back(fmt::format("{}: Service {}: {}; ignoring this one", svc.source,
                                         key.str(), want.error()));
        failed.push_back(key);
        continue;
      }
      for (const ip_family f : *want) {
        if (std::none_of(svc.cluster_ips.begin(), svc.cluster_ips.end(),
                         [&](const ip_addr& a) { return a.family == f; })) {
          missing[key].push_back(f);
        }
      }
    }
    for (const object_key& key : failed) {
      c_.services.erase(key);
      ++out_.rejected;
    }

    // Remembered addresses first, so that a new Service never takes one of them.
    for (auto& [key, families] : missing) {
      service& svc = c_.services.at(key);
      std::erase_if(families, [&](ip_family f) {
        const std::optional<ip_addr> addr = alloc_.cluster_ip(key, f);
        if (!addr || used.contains(*addr) || !prefix_contains(*cidr_of(opts_, f), *addr)) {
          alloc_.forget_cluster_ip(key, f);
          return false;
        }
        used.insert(*addr);
        svc.cluster_ips.push_back(*addr);
        ++out_.allocated_cluster_ips;
        return true;
      });
    }
    for (auto& [key, families] : missing) {
      service& svc = c_.services.at(key);
      for (const ip_family f : families) {
        const ip_range range(*cidr_of(opts_, f));
        const uint64_t home =
            range.count == 0 ? 0 : fnv1a(family_name(f), fnv1a(key.str() + "#")) % range.count;
        std::optional<ip_addr> got;
        for (uint64_t i = 0; i < range.count; ++i) {
          const ip_addr addr = range.at(range.first + (home + i) % range.count);
          if (!used.contains(addr)) {
            got = addr;
            break;
          }
        }
        if (!got) {
          out_.lines.push_back(fmt::format("{}: Service {}: service CIDR {} is full", svc.source,
                                           key.str(), format_prefix(range.prefix)));
          continue;
        }
        used.insert(*got);
        alloc_.remember_cluster_ip(key, *got);
        svc.cluster_ips.push_back(*got);
        ++out_.allocated_cluster_ips;
      }
    }

    // clusterIPs[0] is the primary family, and ipFamilies follows clusterIPs (as the API
    // server fills them in).
    for (auto& [key, svc] : c_.services) {
      const auto want = wanted_families(svc, opts_);
      if (want && !want->empty()) {
        std::stable_sort(svc.cluster_ips.begin(), svc.cluster_ips.end(),
                         [&](const ip_addr& a, const ip_addr& b) {
                           return a.family == (*want)[0] && b.family != (*want)[0];
                         });
      }
      if (!svc.headless && !svc.cluster_ips.empty()) {
        svc.ip_families.clear();
        for (const ip_addr& a : svc.cluster_ips) {
          svc.ip_families.push_back(a.family);
        }
      }
    }
  }

  // One wanted nodePort: the service port number it is for (0 = healthCheckNodePort).
  struct port_need {
    object_key key;
    uint16_t service_port;
  };

  void assign_node_ports() {
    std::set<uint16_t> used;
    std::vector<port_need> needs;
    for (auto& [key, svc] : c_.services) {
      if (!has_node_ports(svc)) {
        continue;
      }
      for (const service_port& p : svc.ports) {
        if (p.node_port != 0) {
          used.insert(p.node_port);
        }
      }
      if (needs_health_check_port(svc) && svc.health_check_node_port != 0) {
        used.insert(svc.health_check_node_port);
      }
      const bool allocate = svc.type == service_type::node_port || svc.allocate_lb_node_ports;
      std::set<uint16_t> wanted;
      for (const service_port& p : svc.ports) {
        if (p.node_port == 0 && allocate && !shared_node_port(svc, p.port)) {
          wanted.insert(p.port);
        }
      }
      for (const uint16_t port : wanted) {
        needs.push_back({key, port});
      }
      if (needs_health_check_port(svc) && svc.health_check_node_port == 0) {
        needs.push_back({key, 0});
      }
    }

    std::vector<port_need> fresh;
    for (const port_need& n : needs) {
      const std::optional<uint16_t> port = alloc_.node_port(n.key, n.service_port);
      if (port && !used.contains(*port) && *port >= opts_.node_port_min &&
          *port <= opts_.node_port_max) {
        used.insert(*port);
        apply_node_port(n, *port);
      } else {
        alloc_.forget_node_port(n.key, n.service_port);
        fresh.push_back(n);
      }
    }
    const uint32_t count = uint32_t{opts_.node_port_max} - opts_.node_port_min + 1;
    for (const port_need& n : fresh) {
      const uint32_t home = static_cast<uint32_t>(
          fnv1a(std::to_string(n.service_port), fnv1a(n.key.str() + "#")) % count);
      std::optional<uint16_t> got;
      for (uint32_t i = 0; i < count; ++i) {
        const auto port = static_cast<uint16_t>(opts_.node_port_min + (home + i) % count);
        if (!used.contains(port)) {
          got = port;
          break;
        }
      }
      const service& svc = c_.services.at(n.key);
      if (!got) {
        out_.lines.push_back(fmt::format("{}: Service {}: node port range {}-{} is full",
                                         svc.source, n.key.str(), opts_.node_port_min,
                                         opts_.node_port_max));
        continue;
      }
      used.insert(*got);
      alloc_.remember_node_port(n.key, n.service_port, *got);
      apply_node_port(n, *got);
    }
  }

  // True if another port of `svc` with the same number already has an explicit nodePort: that
  // one is shared (Kubernetes gives TCP and UDP 53 one nodePort).
  static bool shared_node_port(const service& svc, uint16_t port) {
    return std::any_of(svc.ports.begin(), svc.ports.end(),
                       [&](const service_port& p) { return p.port == port && p.node_port != 0; });
  }

  void apply_node_port(const port_need& n, uint16_t node_port) {
    service& svc = c_.services.at(n.key);
    ++out_.allocated_node_ports;
    if (n.service_port == 0) {
      svc.health_check_node_port = node_port;
      return;
    }
    for (service_port& p : svc.ports) {
      if (p.port == n.service_port && p.node_port == 0) {
        p.node_port = node_port;
      }
    }
  }

  cluster& c_;
  const derive_options& opts_;
  allocator& alloc_;
  derive_result& out_;
};

// A slice name not used yet in `ns`: "<base>-<n>" with the lowest free n >= *next.
std::string free_slice_name(const cluster& c, const std::string& ns, std::string_view base,
                            std::size_t& next) {
  for (;;) {
    std::string name = fmt::format("{}-{}", base, next++);
    if (!c.endpoint_slices.contains(object_key{ns, name})) {
      return name;
    }
  }
}

// A key for grouping endpoints by their port list (the controllers' port-map hash).
std::string ports_key(const std::vector<endpoint_port>& ports) {
  std::string key;
  for (const endpoint_port& p : ports) {
    key += fmt::format("{}|{}|{}/", p.name.value_or("\x01"), p.port.value_or(0), p.protocol);
  }
  return key;
}

// Groups of endpoints with one address family and one port list, in a stable order.
struct slice_group {
  slice_address_type type;
  std::vector<endpoint_port> ports;
  std::vector<endpoint> endpoints;
};
using slice_groups = std::map<std::pair<slice_address_type, std::string>, slice_group>;

void add_to_group(slice_groups& groups, slice_address_type type,
                  const std::vector<endpoint_port>& ports, endpoint ep) {
  auto [it, inserted] = groups.try_emplace({type, ports_key(ports)});
  if (inserted) {
    it->second.type = type;
    it->second.ports = ports;
  }
  it->second.endpoints.push_back(std::move(ep));
}

slice_address_type slice_type(ip_family family) {
  return family == ip_family::v4 ? slice_address_type::ipv4 : slice_address_type::ipv6;
}

// Turns groups into slices of at most `per_slice` endpoints named "<base>-<n>".
std::size_t emit_slices(cluster& c, slice_groups& groups, const std::string& ns,
                        const std::string& base, const std::string& service_name,
                        const std::map<std::string, std::string>& labels, std::string_view source,
                        std::size_t per_slice) {
  std::size_t next = 0;
  std::size_t made = 0;
  std::vector<endpoint_slice> out;
  for (auto& [key, group] : groups) {
    for (std::size_t start = 0; start < group.endpoints.size(); start += per_slice) {
      endpoint_slice slice;
      slice.namespace_ = ns;
      slice.name = free_slice_name(c, ns, base, next);
      slice.service_name = service_name;
      slice.address_type = group.type;
      slice.labels = labels;
      slice.ports = group.ports;
      const std::size_t end = std::min(group.endpoints.size(), start + per_slice);
      slice.endpoints.assign(
          std::make_move_iterator(group.endpoints.begin() + static_cast<std::ptrdiff_t>(start)),
          std::make_move_iterator(group.endpoints.begin() + static_cast<std::ptrdiff_t>(end)));
      slice.source = source;
      c.endpoint_slices.emplace(slice.key(), std::move(slice));
      ++made;
    }
  }
  return made;
}

void mirror_endpoints(cluster& c, derive_result& out) {
  for (const auto& [key, eps] : c.legacy_endpoints) {
    const auto svc = c.services.find(key);
    // The mirroring controller handles only Endpoints of existing selector-less Services; the
    // Endpoints of a Service with a selector are the endpoints controller's own output.
    if (svc == c.services.end() || !svc->second.selector.empty()) {
      continue;
    }
    const auto skip = eps.labels.find(std::string(label_skip_mirror));
    if (skip != eps.labels.end() && skip->second == "true") {
      continue;
    }
    slice_groups groups;
    for (const endpoints_subset& subset : eps.subsets) {
      // At most 1000 addresses per subset, ready ones first (the controller truncates too).
      std::size_t budget = max_endpoints_per_mirrored_slice;
      for (const bool ready : {true, false}) {
        for (const endpoints_subset::address& a :
             ready ? subset.addresses : subset.not_ready_addresses) {
          if (budget == 0) {
            break;
          }
          --budget;
          endpoint ep;
          ep.addresses.push_back(a.ip);
          ep.ready = ready;
          ep.node_name = a.node_name;
          add_to_group(groups, slice_type(a.ip.family), subset.ports, std::move(ep));
        }
      }
    }
    std::map<std::string, std::string> labels = eps.labels;
    labels[std::string(label_service_name)] = eps.name;
    labels[std::string(label_managed_by)] = managed_by_mirroring_controller;
    out.mirrored_slices += emit_slices(c, groups, eps.namespace_, eps.name + "-mirror", eps.name,
                                       labels, eps.source, max_endpoints_per_mirrored_slice);
  }
}

bool selector_matches(const std::map<std::string, std::string>& selector,
                      const std::map<std::string, std::string>& labels) {
  for (const auto& [k, v] : selector) {
    const auto it = labels.find(k);
    if (it == labels.end() || it->second != v) {
      return false;
    }
  }
  return true;
}

// podutil.FindPort: a numeric targetPort is used as is; a named one is looked up among the
// Pod's container ports by name and protocol.
std::optional<uint16_t> find_port(const pod& p, const service_port& sp) {
  if (const uint16_t* number = std::get_if<uint16_t>(&sp.target_port)) {
    return *number;
  }
  const std::string& name = std::get<std::string>(sp.target_port);
  for (const pod_port& cp : p.ports) {
    if (cp.name == name && cp.protocol == sp.protocol) {
      return cp.container_port;
    }
  }
  return std::nullopt;
}

// getAddressTypesForService: ipFamilies, else the family of the cluster IP, else both.
std::vector<ip_family> slice_families(const service& svc) {
  if (!svc.ip_families.empty()) {
    return svc.ip_families;
  }
  if (!svc.cluster_ips.empty()) {
    return {svc.cluster_ips[0].family};
  }
  return {ip_family::v4, ip_family::v6};
}

void slices_from_pods(cluster& c, const derive_options& opts, derive_result& out) {
  // Pods by namespace, so each Service looks at its own namespace only.
  std::map<std::string_view, std::vector<const pod*>> by_namespace;
  for (const auto& [key, p] : c.pods) {
    by_namespace[p.namespace_].push_back(&p);
  }
  std::vector<const service*> services;
  for (const auto& [key, svc] : c.services) {
    if (!svc.selector.empty() && svc.type != service_type::external_name) {
      services.push_back(&svc);
    }
  }
  for (const service* svc : services) {
    const auto pods = by_namespace.find(svc->namespace_);
    if (pods == by_namespace.end()) {
      continue;
    }
    const std::vector<ip_family> families = slice_families(*svc);
    slice_groups groups;
    for (const pod* p : pods->second) {
      // ShouldPodBeInEndpoints: not finished and has an IP (terminating Pods stay, flagged).
      if (p->finished || p->pod_ips.empty() || !selector_matches(svc->selector, p->labels)) {
        continue;
      }
      std::vector<endpoint_port> ports;
      for (const service_port& sp : svc->ports) {
        if (const std::optional<uint16_t> number = find_port(*p, sp)) {
          ports.push_back(endpoint_port{.name = sp.name, .port = *number, .protocol = sp.protocol});
        }
      }
      for (const ip_family family : families) {
        const auto addr = std::find_if(p->pod_ips.begin(), p->pod_ips.end(),
                                       [&](const ip_addr& a) { return a.family == family; });
        if (addr == p->pod_ips.end()) {
          continue;
        }
        // podToEndpoint.
        endpoint ep;
        ep.addresses.push_back(*addr);
        ep.serving = p->ready;
        ep.terminating = p->terminating;
        ep.ready = svc->publish_not_ready_addresses || (p->ready && !p->terminating);
        ep.node_name = p->node_name;
        if (opts.nodes != nullptr && !p->node_name.empty()) {
          if (const auto n = opts.nodes->find(p->node_name); n != opts.nodes->end()) {
            ep.zone = n->second.zone();
          }
        }
        add_to_group(groups, slice_type(family), ports, std::move(ep));
      }
    }
    // The controller copies the Service's labels onto its slices (that is how
    // service-proxy-name reaches them) and marks headless ones.
    std::map<std::string, std::string> labels = svc->labels;
    labels[std::string(label_service_name)] = svc->name;
    labels[std::string(label_managed_by)] = managed_by_slice_controller;
    if (svc->headless) {
      labels[std::string(label_headless)] = "";
    }
    out.pod_slices += emit_slices(c, groups, svc->namespace_, svc->name + "-pods", svc->name,
                                  labels, svc->source, max_endpoints_per_pod_slice);
  }
}

}  // namespace

std::optional<ip_addr> allocator::cluster_ip(const object_key& svc, ip_family family) const {
  const auto it = ips_.find({svc, family});
  return it == ips_.end() ? std::nullopt : std::optional<ip_addr>(it->second);
}

std::optional<uint16_t> allocator::node_port(const object_key& svc, uint16_t service_port) const {
  const auto it = ports_.find({svc, service_port});
  return it == ports_.end() ? std::nullopt : std::optional<uint16_t>(it->second);
}

void allocator::remember_cluster_ip(const object_key& svc, const ip_addr& addr) {
  ips_[{svc, addr.family}] = addr;
}

void allocator::remember_node_port(const object_key& svc, uint16_t service_port,
                                   uint16_t node_port) {
  ports_[{svc, service_port}] = node_port;
}

void allocator::forget_cluster_ip(const object_key& svc, ip_family family) {
  ips_.erase({svc, family});
}

void allocator::forget_node_port(const object_key& svc, uint16_t service_port) {
  ports_.erase({svc, service_port});
}

void allocator::release_missing(const std::map<object_key, service>& services) {
  std::erase_if(ips_, [&](const auto& e) { return !services.contains(e.first.first); });
  std::erase_if(ports_, [&](const auto& e) { return !services.contains(e.first.first); });
}

std::string allocator::save() const {
  std::string out;
  for (const auto& [key, addr] : ips_) {
    out += fmt::format("ip {} {}\n", key.first.str(), format_ip(addr));
  }
  for (const auto& [key, port] : ports_) {
    out += fmt::format("port {} {} {}\n", key.first.str(), key.second, port);
  }
  return out;
}

std::expected<allocator, std::string> allocator::load(std::string_view text) {
  allocator out;
  std::istringstream in{std::string(text)};
  std::string line;
  std::size_t number = 0;
  const auto parse_key = [](const std::string& s) -> std::optional<object_key> {
    const std::size_t slash = s.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == s.size()) {
      return std::nullopt;
    }
    return object_key{s.substr(0, slash), s.substr(slash + 1)};
  };
  const auto parse_u16 = [](const std::string& s) -> std::optional<uint16_t> {
    uint16_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || end != s.data() + s.size()) {
      return std::nullopt;
    }
    return v;
  };
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) {
      continue;
    }
    std::istringstream fields(line);
    std::string what, key_text, a, b, extra;
    fields >> what >> key_text >> a;
    const std::optional<object_key> key = parse_key(key_text);
    bool ok = key.has_value();
    if (ok && what == "ip" && !(fields >> extra)) {
      const std::optional<ip_addr> addr = parse_ip(a);
      ok = addr.has_value();
      if (ok) {
        out.remember_cluster_ip(*key, *addr);
      }
    } else if (ok && what == "port" && (fields >> b) && !(fields >> extra)) {
      const std::optional<uint16_t> service_port = parse_u16(a);
      const std::optional<uint16_t> node_port = parse_u16(b);
      ok = service_port && node_port && *node_port != 0;
      if (ok) {
        out.remember_node_port(*key, *service_port, *node_port);
      }
    } else {
      ok = false;
    }
    if (!ok) {
      return std::unexpected(fmt::format("line {}: cannot read \"{}\"", number, line));
    }
  }
  return out;
}

derive_result derive(cluster& c, const derive_options& opts, allocator& alloc) {
  derive_result out;
  allocation(c, opts, alloc, out).run();
  mirror_endpoints(c, out);
  slices_from_pods(c, opts, out);
  return out;
}

}  // namespace sluice
