// decode_object(): nlohmann::json -> model objects. Lookups go straight to the fields we read
// (heterogeneous find, no key copies) and strings are copied only into the model; field paths
// for messages are a chain of stack frames rendered only when something is wrong.
#include "agent/sources/decode.h"

#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace sluice {

namespace {

using json = nlohmann::json;

// A field path as a chain of frames on the caller's stack ("spec", "ports", [1], "port").
struct path {
  static constexpr std::size_t no_index = std::numeric_limits<std::size_t>::max();

  const path* parent = nullptr;
  std::string_view key;
  std::size_t index = no_index;

  path field(std::string_view k) const { return path{this, k, no_index}; }
  path item(std::size_t i) const { return path{this, {}, i}; }

  std::string str() const {
    std::vector<const path*> chain;
    for (const path* p = this; p != nullptr; p = p->parent) {
      chain.push_back(p);
    }
    std::string out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const path& p = **it;
      if (p.index != no_index) {
        out += fmt::format("[{}]", p.index);
      } else if (!p.key.empty()) {
        if (!out.empty()) {
          out += '.';
        }
        out += p.key;
      }
    }
    return out;
  }
};

// A malformed field: where (path and value) and what is wrong with it.
struct failure {
  std::string field;
  std::string message;
  const json* at = nullptr;
};

template <typename T>
using result = std::expected<T, failure>;

std::unexpected<failure> fail(const path& p, const json* at, std::string message) {
  return std::unexpected(failure{p.str(), std::move(message), at});
}

}  // namespace

std::string_view json_type_name(const nlohmann::json& v) {
  switch (v.type()) {
    case json::value_t::object:
      return "a mapping";
    case json::value_t::array:
      return "a list";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    default:
      return "null";
  }
}

namespace {

// A value for "got ..." messages: strings quoted, numbers and booleans as written, else the type.
std::string show(const json& v) {
  if (v.is_string()) {
    return fmt::format("\"{}\"", v.get_ref<const std::string&>());
  }
  if (v.is_number() || v.is_boolean()) {
    return v.dump();
  }
  return std::string(json_type_name(v));
}

// Member `key` of `obj`; nullptr when absent or null (the API's nil).
const json* member(const json& obj, std::string_view key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return nullptr;
  }
  return &*it;
}

result<const json*> get_object(const json& parent, std::string_view key, const path& at) {
  const json* v = member(parent, key);
  if (v != nullptr && !v->is_object()) {
    return fail(at.field(key), v, fmt::format("expected a mapping, got {}", json_type_name(*v)));
  }
  return v;
}

result<const json*> get_array(const json& parent, std::string_view key, const path& at) {
  const json* v = member(parent, key);
  if (v != nullptr && !v->is_array()) {
    return fail(at.field(key), v, fmt::format("expected a list, got {}", json_type_name(*v)));
  }
  return v;
}

// A string value; nullptr when `v` is absent.
result<const std::string*> as_string(const json* v, const path& at) {
  if (v == nullptr || v->is_null()) {
    return nullptr;
  }
  if (!v->is_string()) {
    return fail(at, v, fmt::format("expected a string, got {}", json_type_name(*v)));
  }
  return &v->get_ref<const std::string&>();
}

result<const std::string*> get_string(const json& parent, std::string_view key, const path& at) {
  return as_string(member(parent, key), at.field(key));
}

// A string field where absent and "" mean the same.
result<std::string_view> get_text(const json& parent, std::string_view key, const path& at) {
  const result<const std::string*> s = get_string(parent, key, at);
  if (!s) {
    return std::unexpected(s.error());
  }
  return *s == nullptr ? std::string_view() : std::string_view(**s);
}

// An integer in [min, max]; nullopt when absent. A JSON string or a fraction is not an integer
// (the API server rejects both for an int32 field).
result<std::optional<int64_t>> as_int(const json* v, const path& at, int64_t min, int64_t max) {
  if (v == nullptr) {
    return std::nullopt;
  }
  if (!v->is_number_integer()) {
    return fail(at, v, fmt::format("expected an integer, got {}", show(*v)));
  }
  const bool too_big =
      v->is_number_unsigned() &&
      v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  const int64_t value = too_big ? 0 : v->get<int64_t>();
  if (too_big || value < min || value > max) {
    return fail(at, v, fmt::format("{} is out of range {}..{}", v->dump(), min, max));
  }
  return value;
}

result<std::optional<int64_t>> get_int(const json& parent, std::string_view key, const path& at,
                                       int64_t min, int64_t max) {
  return as_int(member(parent, key), at.field(key), min, max);
}

result<std::optional<bool>> get_bool(const json& parent, std::string_view key, const path& at) {
  const json* v = member(parent, key);
  if (v == nullptr) {
    return std::nullopt;
  }
  if (!v->is_boolean()) {
    return fail(at.field(key), v, fmt::format("expected true or false, got {}", show(*v)));
  }
  return v->get<bool>();
}

// map[string]string (labels, annotations, selector). A null value reads as "".
result<std::map<std::string, std::string>> get_string_map(const json& parent, std::string_view key,
                                                          const path& at) {
  std::map<std::string, std::string> out;
  const result<const json*> obj = get_object(parent, key, at);
  if (!obj) {
    return std::unexpected(obj.error());
  }
  if (*obj == nullptr) {
    return out;
  }
  const path here = at.field(key);
  for (const auto& [k, v] : (*obj)->items()) {
    if (v.is_null()) {
      out.emplace_hint(out.end(), k, std::string());
      continue;
    }
    if (!v.is_string()) {
      return fail(here, &v,
                  fmt::format("value of \"{}\": expected a string, got {}", k, json_type_name(v)));
    }
    // Object members come sorted, so every insertion goes to the end of the map.
    out.emplace_hint(out.end(), k, v.get_ref<const std::string&>());
  }
  return out;
}

result<ip_addr> as_ip(const json* v, const path& at) {
  const result<const std::string*> text = as_string(v, at);
  if (!text) {
    return std::unexpected(text.error());
  }
  if (*text == nullptr) {
    return fail(at, v, "expected an IP address, got null");
  }
  const std::optional<ip_addr> addr = parse_ip(**text);
  if (!addr) {
    return fail(at, v, fmt::format("\"{}\" is not an IP address", **text));
  }
  return *addr;
}

// An IP address field; a missing one is reported at its parent.
result<ip_addr> get_ip(const json& parent, std::string_view key, const path& at) {
  const json* v = member(parent, key);
  if (v == nullptr) {
    return fail(at.field(key), &parent, "expected an IP address, got null");
  }
  return as_ip(v, at.field(key));
}

result<uint8_t> get_protocol(const json& parent, const path& at) {
  const result<std::string_view> text = get_text(parent, "protocol", at);
  if (!text) {
    return std::unexpected(text.error());
  }
  if (text->empty() || *text == "TCP") {
    return uint8_t{IPPROTO_TCP};  // the API server defaults protocol to TCP
  }
  if (*text == "UDP") {
    return uint8_t{IPPROTO_UDP};
  }
  if (*text == "SCTP") {
    return uint8_t{IPPROTO_SCTP};
  }
  return fail(at.field("protocol"), member(parent, "protocol"),
              fmt::format("unknown protocol \"{}\" (want TCP, UDP or SCTP)", *text));
}

// A named port (IANA_SVC_NAME): 1..15 of [a-z0-9-], at least one letter.
bool is_port_name(std::string_view name) {
  if (name.empty() || name.size() > 15) {
    return false;
  }
  bool letter = false;
  for (const char c : name) {
    if (c >= 'a' && c <= 'z') {
      letter = true;
    } else if (!(c >= '0' && c <= '9') && c != '-') {
      return false;
    }
  }
  return letter;
}

// Calls `each(item, item_path)` for every element of list field `key` (absent/null = none);
// stops at the first failure.
template <typename F>
result<void> for_each_item(const json& parent, std::string_view key, const path& at, F&& each) {
  const result<const json*> list = get_array(parent, key, at);
  if (!list) {
    return std::unexpected(list.error());
  }
  if (*list == nullptr) {
    return {};
  }
  const path here = at.field(key);
  std::size_t i = 0;
  for (const json& item : **list) {
    const path item_path = here.item(i++);
    if (result<void> r = each(item, item_path); !r) {
      return r;
    }
  }
  return {};
}

// Like for_each_item, but every element must be a mapping.
template <typename F>
result<void> for_each_object(const json& parent, std::string_view key, const path& at, F&& each) {
  return for_each_item(parent, key, at, [&](const json& item, const path& p) -> result<void> {
    if (!item.is_object()) {
      return fail(p, &item, fmt::format("expected a mapping, got {}", json_type_name(item)));
    }
    return each(item, p);
  });
}

std::size_t list_size(const json& parent, std::string_view key) {
  const json* v = member(parent, key);
  return v != nullptr && v->is_array() ? v->size() : 0;
}

// The metadata fields every kind shares.
struct metadata {
  std::string namespace_ = "default";
  std::string name;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string resource_version;
  bool deleting = false;  // deletionTimestamp set
};

result<metadata> decode_metadata(const json& obj, const path& root) {
  metadata out;
  const result<const json*> meta = get_object(obj, "metadata", root);
  if (!meta) {
    return std::unexpected(meta.error());
  }
  if (*meta == nullptr) {
    return fail(root.field("metadata"), &obj, "missing");
  }
  const json& m = **meta;
  const path mp = root.field("metadata");
  const result<std::string_view> name = get_text(m, "name", mp);
  if (!name) {
    return std::unexpected(name.error());
  }
  if (name->empty()) {
    return fail(mp.field("name"), &m, "missing");
  }
  out.name = *name;
  const result<std::string_view> ns = get_text(m, "namespace", mp);
  if (!ns) {
    return std::unexpected(ns.error());
  }
  if (!ns->empty()) {
    out.namespace_ = *ns;
  }
  result<std::map<std::string, std::string>> labels = get_string_map(m, "labels", mp);
  if (!labels) {
    return std::unexpected(labels.error());
  }
  out.labels = std::move(*labels);
  result<std::map<std::string, std::string>> annotations = get_string_map(m, "annotations", mp);
  if (!annotations) {
    return std::unexpected(annotations.error());
  }
  out.annotations = std::move(*annotations);
  // resourceVersion is a string in the API; a number (hand-written file) is shown as written.
  if (const json* rv = member(m, "resourceVersion"); rv != nullptr) {
    out.resource_version = rv->is_string() ? rv->get_ref<const std::string&>() : rv->dump();
  }
  out.deleting = member(m, "deletionTimestamp") != nullptr;
  return out;
}

result<std::vector<ip_addr>> decode_cluster_ips(const json& spec, const path& sp, bool& headless) {
  headless = false;
  std::vector<std::pair<std::string_view, const json*>> texts;
  bool from_list = false;
  if (result<void> r = for_each_item(spec, "clusterIPs", sp,
                                     [&](const json& item, const path& p) -> result<void> {
                                       const result<const std::string*> s = as_string(&item, p);
                                       if (!s) {
                                         return std::unexpected(s.error());
                                       }
                                       if (*s == nullptr || (*s)->empty()) {
                                         return fail(p, &item, "empty address");
                                       }
                                       texts.emplace_back(**s, &item);
                                       from_list = true;
                                       return {};
                                     });
      !r) {
    return std::unexpected(r.error());
  }
  const result<std::string_view> single = get_text(spec, "clusterIP", sp);
  if (!single) {
    return std::unexpected(single.error());
  }
  if (texts.empty()) {
    if (!single->empty()) {
      texts.emplace_back(*single, member(spec, "clusterIP"));
    }
  } else if (!single->empty() && *single != texts[0].first) {
    return fail(
        sp.field("clusterIP"), member(spec, "clusterIP"),
        fmt::format("\"{}\" differs from spec.clusterIPs[0] \"{}\"", *single, texts[0].first));
  }

  std::vector<ip_addr> out;
  const path list_path = sp.field("clusterIPs");
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const path field = from_list ? list_path.item(i) : sp.field("clusterIP");
    if (texts[i].first == "None") {
      if (texts.size() != 1) {
        return fail(field, texts[i].second, "\"None\" cannot be combined with addresses");
      }
      headless = true;
      return out;
    }
    const result<ip_addr> addr = as_ip(texts[i].second, field);
    if (!addr) {
      return std::unexpected(addr.error());
    }
    for (const ip_addr& seen : out) {
      if (seen.family == addr->family) {
        return fail(field, texts[i].second, "at most one address per IP family");
      }
    }
    out.push_back(*addr);
  }
  return out;
}

result<service_port> decode_service_port(const json& p, const path& pp) {
  service_port port;
  const result<std::string_view> name = get_text(p, "name", pp);
  if (!name) {
    return std::unexpected(name.error());
  }
  port.name = *name;
  const result<uint8_t> proto = get_protocol(p, pp);
  if (!proto) {
    return std::unexpected(proto.error());
  }
  port.protocol = *proto;
  const result<std::optional<int64_t>> number = get_int(p, "port", pp, 1, 65535);
  if (!number) {
    return std::unexpected(number.error());
  }
  if (!*number) {
    return fail(pp.field("port"), &p, "missing");
  }
  port.port = static_cast<uint16_t>(**number);
  // IntOrString. 0, "" and absent all mean "same as port" (the API server's defaulting).
  port.target_port = port.port;
  if (const json* target = member(p, "targetPort"); target != nullptr) {
    const path field = pp.field("targetPort");
    if (target->is_number_integer()) {
      const result<std::optional<int64_t>> value = as_int(target, field, 0, 65535);
      if (!value) {
        return std::unexpected(value.error());
      }
      if (**value != 0) {
        port.target_port = static_cast<uint16_t>(**value);
      }
    } else if (target->is_string()) {
      const std::string& text = target->get_ref<const std::string&>();
      const bool digits =
          !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
      if (digits) {
        // A quoted number in a hand-written file: read as the number it spells.
        const int64_t value = text.size() > 6 ? 0 : std::stoll(text);
        if (value < 1 || value > 65535) {
          return fail(field, target, fmt::format("{} is out of range 1..65535", text));
        }
        port.target_port = static_cast<uint16_t>(value);
      } else if (is_port_name(text)) {
        port.target_port = text;
      } else if (!text.empty()) {
        return fail(field, target,
                    fmt::format("\"{}\" is neither a port number nor a port name", text));
      }
    } else {
      return fail(field, target,
                  fmt::format("expected a port number or name, got {}", json_type_name(*target)));
    }
  }
  const result<std::optional<int64_t>> node_port = get_int(p, "nodePort", pp, 0, 65535);
  if (!node_port) {
    return std::unexpected(node_port.error());
  }
  port.node_port = static_cast<uint16_t>(node_port->value_or(0));
  return port;
}

result<traffic_policy> get_traffic_policy(const json& spec, std::string_view key, const path& sp) {
  const result<std::string_view> text = get_text(spec, key, sp);
  if (!text) {
    return std::unexpected(text.error());
  }
  if (text->empty() || *text == "Cluster") {
    return traffic_policy::cluster;
  }
  if (*text == "Local") {
    return traffic_policy::local;
  }
  return fail(sp.field(key), member(spec, key),
              fmt::format("unknown policy \"{}\" (want Cluster or Local)", *text));
}

result<void> decode_service_spec(const json& spec, const path& sp, service& svc) {
  const result<std::string_view> type = get_text(spec, "type", sp);
  if (!type) {
    return std::unexpected(type.error());
  }
  if (type->empty() || *type == "ClusterIP") {
    svc.type = service_type::cluster_ip;
  } else if (*type == "NodePort") {
    svc.type = service_type::node_port;
  } else if (*type == "LoadBalancer") {
    svc.type = service_type::load_balancer;
  } else if (*type == "ExternalName") {
    svc.type = service_type::external_name;
  } else {
    return fail(sp.field("type"), member(spec, "type"),
                fmt::format("unknown type \"{}\" (want ClusterIP, NodePort, LoadBalancer or "
                            "ExternalName)",
                            *type));
  }

  result<std::vector<ip_addr>> cluster_ips = decode_cluster_ips(spec, sp, svc.headless);
  if (!cluster_ips) {
    return std::unexpected(cluster_ips.error());
  }
  svc.cluster_ips = std::move(*cluster_ips);

  svc.ports.reserve(list_size(spec, "ports"));
  if (result<void> r = for_each_object(
          spec, "ports", sp,
          [&](const json& p, const path& pp) -> result<void> {
            result<service_port> port = decode_service_port(p, pp);
            if (!port) {
              return std::unexpected(port.error());
            }
            for (const service_port& seen : svc.ports) {
              if (seen.port == port->port && seen.protocol == port->protocol) {
                return fail(
                    pp, &p,
                    fmt::format("duplicate port {}/{}", port->port, protocol_name(port->protocol)));
              }
              if (seen.name == port->name) {
                return fail(pp.field("name"), &p,
                            port->name.empty()
                                ? std::string("required when the service has several ports")
                                : fmt::format("duplicate port name \"{}\"", port->name));
              }
            }
            svc.ports.push_back(std::move(*port));
            return {};
          });
      !r) {
    return r;
  }

  const result<std::string_view> affinity = get_text(spec, "sessionAffinity", sp);
  if (!affinity) {
    return std::unexpected(affinity.error());
  }
  if (*affinity == "ClientIP") {
    svc.session_affinity_client_ip = true;
    svc.affinity_timeout_s = default_affinity_timeout_s;
    const result<const json*> config = get_object(spec, "sessionAffinityConfig", sp);
    if (!config) {
      return std::unexpected(config.error());
    }
    if (*config != nullptr) {
      const path cp = sp.field("sessionAffinityConfig");
      const result<const json*> client_ip = get_object(**config, "clientIP", cp);
      if (!client_ip) {
        return std::unexpected(client_ip.error());
      }
      if (*client_ip != nullptr) {
        const result<std::optional<int64_t>> timeout =
            get_int(**client_ip, "timeoutSeconds", cp.field("clientIP"), 1, max_affinity_timeout_s);
        if (!timeout) {
          return std::unexpected(timeout.error());
        }
        if (*timeout) {
          svc.affinity_timeout_s = static_cast<uint32_t>(**timeout);
        }
      }
    }
  } else if (!affinity->empty() && *affinity != "None") {
    return fail(sp.field("sessionAffinity"), member(spec, "sessionAffinity"),
                fmt::format("unknown value \"{}\" (want None or ClientIP)", *affinity));
  }

  if (result<void> r = for_each_item(spec, "externalIPs", sp,
                                     [&](const json& item, const path& p) -> result<void> {
                                       const result<ip_addr> addr = as_ip(&item, p);
                                       if (!addr) {
                                         return std::unexpected(addr.error());
                                       }
                                       svc.external_ips.push_back(*addr);
                                       return {};
                                     });
      !r) {
    return r;
  }

  if (result<void> r =
          for_each_item(spec, "loadBalancerSourceRanges", sp,
                        [&](const json& item, const path& p) -> result<void> {
                          const result<const std::string*> text = as_string(&item, p);
                          if (!text) {
                            return std::unexpected(text.error());
                          }
                          // kube-proxy TrimSpace()s each range and parses it sloppily (host bits
                          // allowed).
                          const std::optional<ip_prefix> prefix =
                              *text == nullptr ? std::nullopt : parse_prefix(**text, true);
                          if (!prefix) {
                            return fail(p, &item, fmt::format("{} is not a CIDR", show(item)));
                          }
                          svc.lb_source_ranges.push_back(*prefix);
                          return {};
                        });
      !r) {
    return r;
  }

  const result<traffic_policy> etp = get_traffic_policy(spec, "externalTrafficPolicy", sp);
  if (!etp) {
    return std::unexpected(etp.error());
  }
  svc.external_policy = *etp;
  const result<traffic_policy> itp = get_traffic_policy(spec, "internalTrafficPolicy", sp);
  if (!itp) {
    return std::unexpected(itp.error());
  }
  svc.internal_policy = *itp;

  const result<std::optional<int64_t>> hc = get_int(spec, "healthCheckNodePort", sp, 0, 65535);
  if (!hc) {
    return std::unexpected(hc.error());
  }
  svc.health_check_node_port = static_cast<uint16_t>(hc->value_or(0));

  const result<std::string_view> distribution = get_text(spec, "trafficDistribution", sp);
  if (!distribution) {
    return std::unexpected(distribution.error());
  }
  svc.traffic_distribution = *distribution;

  result<std::map<std::string, std::string>> selector = get_string_map(spec, "selector", sp);
  if (!selector) {
    return std::unexpected(selector.error());
  }
  svc.selector = std::move(*selector);

  const result<std::optional<bool>> pnra = get_bool(spec, "publishNotReadyAddresses", sp);
  if (!pnra) {
    return std::unexpected(pnra.error());
  }
  svc.publish_not_ready_addresses = pnra->value_or(false);

  if (result<void> r = for_each_item(
          spec, "ipFamilies", sp,
          [&](const json& item, const path& p) -> result<void> {
            const result<const std::string*> text = as_string(&item, p);
            if (!text) {
              return std::unexpected(text.error());
            }
            ip_family family;
            if (*text != nullptr && **text == "IPv4") {
              family = ip_family::v4;
            } else if (*text != nullptr && **text == "IPv6") {
              family = ip_family::v6;
            } else {
              return fail(p, &item,
                          fmt::format("unknown IP family {} (want IPv4 or IPv6)", show(item)));
            }
            for (const ip_family seen : svc.ip_families) {
              if (seen == family) {
                return fail(p, &item, fmt::format("duplicate IP family {}", show(item)));
              }
            }
            svc.ip_families.push_back(family);
            return {};
          });
      !r) {
    return r;
  }

  const result<std::string_view> policy = get_text(spec, "ipFamilyPolicy", sp);
  if (!policy) {
    return std::unexpected(policy.error());
  }
  if (policy->empty() || *policy == "SingleStack") {
    svc.family_policy = ip_family_policy::single_stack;
  } else if (*policy == "PreferDualStack") {
    svc.family_policy = ip_family_policy::prefer_dual_stack;
  } else if (*policy == "RequireDualStack") {
    svc.family_policy = ip_family_policy::require_dual_stack;
  } else {
    return fail(sp.field("ipFamilyPolicy"), member(spec, "ipFamilyPolicy"),
                fmt::format("unknown policy \"{}\" (want SingleStack, PreferDualStack or "
                            "RequireDualStack)",
                            *policy));
  }

  const result<std::optional<bool>> allocate = get_bool(spec, "allocateLoadBalancerNodePorts", sp);
  if (!allocate) {
    return std::unexpected(allocate.error());
  }
  svc.allocate_lb_node_ports = allocate->value_or(true);
  return {};
}

result<void> decode_service_status(const json& obj, const path& root, service& svc) {
  const result<const json*> status = get_object(obj, "status", root);
  if (!status || *status == nullptr) {
    return status ? result<void>() : std::unexpected(status.error());
  }
  const path st = root.field("status");
  const result<const json*> lb = get_object(**status, "loadBalancer", st);
  if (!lb || *lb == nullptr) {
    return lb ? result<void>() : std::unexpected(lb.error());
  }
  return for_each_object(**lb, "ingress", st.field("loadBalancer"),
                         [&](const json& ing, const path& p) -> result<void> {
                           const result<std::string_view> ip_text = get_text(ing, "ip", p);
                           if (!ip_text) {
                             return std::unexpected(ip_text.error());
                           }
                           const result<std::string_view> mode = get_text(ing, "ipMode", p);
                           if (!mode) {
                             return std::unexpected(mode.error());
                           }
                           load_balancer_ingress entry;
                           if (*mode == "Proxy") {
                             entry.ip_mode_proxy = true;
                           } else if (!mode->empty() && *mode != "VIP") {
                             return fail(
                                 p.field("ipMode"), member(ing, "ipMode"),
                                 fmt::format("unknown ipMode \"{}\" (want VIP or Proxy)", *mode));
                           }
                           if (ip_text->empty()) {
                             return {};  // hostname-only (AWS ELB style): nothing to program
                           }
                           const result<ip_addr> addr = get_ip(ing, "ip", p);
                           if (!addr) {
                             return std::unexpected(addr.error());
                           }
                           entry.ip = *addr;
                           svc.lb_ingress.push_back(entry);
                           return {};
                         });
}

result<service> decode_service(const json& obj) {
  const path root;
  service svc;
  result<metadata> meta = decode_metadata(obj, root);
  if (!meta) {
    return std::unexpected(meta.error());
  }
  svc.namespace_ = std::move(meta->namespace_);
  svc.name = std::move(meta->name);
  svc.labels = std::move(meta->labels);
  svc.annotations = std::move(meta->annotations);
  svc.resource_version = std::move(meta->resource_version);

  const result<const json*> spec = get_object(obj, "spec", root);
  if (!spec) {
    return std::unexpected(spec.error());
  }
  if (*spec == nullptr) {
    return fail(root.field("spec"), &obj, "missing");
  }
  if (result<void> r = decode_service_spec(**spec, root.field("spec"), svc); !r) {
    return std::unexpected(r.error());
  }
  if (result<void> r = decode_service_status(obj, root, svc); !r) {
    return std::unexpected(r.error());
  }
  return svc;
}

result<endpoint_port> decode_endpoint_port(const json& p, const path& pp) {
  endpoint_port port;
  const result<const std::string*> name = get_string(p, "name", pp);
  if (!name) {
    return std::unexpected(name.error());
  }
  if (*name != nullptr) {
    port.name = **name;
  }
  const result<std::optional<int64_t>> number = get_int(p, "port", pp, 1, 65535);
  if (!number) {
    return std::unexpected(number.error());
  }
  if (*number) {
    port.port = static_cast<uint16_t>(**number);
  }
  const result<uint8_t> proto = get_protocol(p, pp);
  if (!proto) {
    return std::unexpected(proto.error());
  }
  port.protocol = *proto;
  return port;
}

// hints.forZones / hints.forNodes: lists of {name}.
result<void> decode_hint_names(const json& hints, std::string_view key, const path& hp,
                               std::vector<std::string>& names, bool& present) {
  present = member(hints, key) != nullptr;
  return for_each_object(hints, key, hp, [&](const json& h, const path& p) -> result<void> {
    const result<std::string_view> name = get_text(h, "name", p);
    if (!name) {
      return std::unexpected(name.error());
    }
    names.emplace_back(*name);
    return {};
  });
}

result<endpoint> decode_endpoint(const json& e, const path& ep_path, slice_address_type type,
                                 std::string_view type_text) {
  endpoint ep;
  const ip_family want = type == slice_address_type::ipv4 ? ip_family::v4 : ip_family::v6;
  if (result<void> r = for_each_item(e, "addresses", ep_path,
                                     [&](const json& a, const path& p) -> result<void> {
                                       if (type == slice_address_type::fqdn) {
                                         // Type check only: FQDN slices carry no IPs.
                                         const result<const std::string*> s = as_string(&a, p);
                                         return s ? result<void>() : std::unexpected(s.error());
                                       }
                                       const result<ip_addr> addr = as_ip(&a, p);
                                       if (!addr) {
                                         return std::unexpected(addr.error());
                                       }
                                       if (addr->family != want) {
                                         return fail(
                                             p, &a,
                                             fmt::format("\"{}\" does not match addressType {}",
                                                         format_ip(*addr), type_text));
                                       }
                                       ep.addresses.push_back(*addr);
                                       return {};
                                     });
      !r) {
    return std::unexpected(r.error());
  }

  const result<const json*> conditions = get_object(e, "conditions", ep_path);
  if (!conditions) {
    return std::unexpected(conditions.error());
  }
  if (*conditions != nullptr) {
    const path cp = ep_path.field("conditions");
    for (const auto& [key, slot] :
         {std::pair{"ready", &ep.ready}, std::pair{"serving", &ep.serving},
          std::pair{"terminating", &ep.terminating}}) {
      const result<std::optional<bool>> value = get_bool(**conditions, key, cp);
      if (!value) {
        return std::unexpected(value.error());
      }
      *slot = *value;
    }
  }

  const result<std::string_view> node_name = get_text(e, "nodeName", ep_path);
  if (!node_name) {
    return std::unexpected(node_name.error());
  }
  ep.node_name = *node_name;
  const result<std::string_view> zone = get_text(e, "zone", ep_path);
  if (!zone) {
    return std::unexpected(zone.error());
  }
  ep.zone = *zone;

  const result<const json*> hints = get_object(e, "hints", ep_path);
  if (!hints) {
    return std::unexpected(hints.error());
  }
  if (*hints != nullptr) {
    const path hp = ep_path.field("hints");
    if (result<void> r =
            decode_hint_names(**hints, "forZones", hp, ep.hints_for_zones, ep.has_zone_hints);
        !r) {
      return std::unexpected(r.error());
    }
    if (result<void> r =
            decode_hint_names(**hints, "forNodes", hp, ep.hints_for_nodes, ep.has_node_hints);
        !r) {
      return std::unexpected(r.error());
    }
  }
  return ep;
}

// nullopt for a slice without the service-name label (ignored, like kube-proxy).
result<std::optional<endpoint_slice>> decode_endpoint_slice(const json& obj) {
  const path root;
  result<metadata> meta = decode_metadata(obj, root);
  if (!meta) {
    return std::unexpected(meta.error());
  }
  const auto owner = meta->labels.find(std::string(label_service_name));
  if (owner == meta->labels.end() || owner->second.empty()) {
    return std::nullopt;
  }
  endpoint_slice slice;
  slice.service_name = owner->second;
  slice.namespace_ = std::move(meta->namespace_);
  slice.name = std::move(meta->name);
  slice.labels = std::move(meta->labels);
  slice.annotations = std::move(meta->annotations);
  slice.resource_version = std::move(meta->resource_version);

  const result<std::string_view> type = get_text(obj, "addressType", root);
  if (!type) {
    return std::unexpected(type.error());
  }
  if (*type == "IPv4") {
    slice.address_type = slice_address_type::ipv4;
  } else if (*type == "IPv6") {
    slice.address_type = slice_address_type::ipv6;
  } else if (*type == "FQDN") {
    slice.address_type = slice_address_type::fqdn;
  } else if (type->empty()) {
    return fail(root.field("addressType"), &obj, "missing");
  } else {
    return fail(root.field("addressType"), member(obj, "addressType"),
                fmt::format("unknown address type \"{}\" (want IPv4, IPv6 or FQDN)", *type));
  }

  slice.endpoints.reserve(list_size(obj, "endpoints"));
  if (result<void> r = for_each_object(obj, "endpoints", root,
                                       [&](const json& e, const path& p) -> result<void> {
                                         result<endpoint> ep =
                                             decode_endpoint(e, p, slice.address_type, *type);
                                         if (!ep) {
                                           return std::unexpected(ep.error());
                                         }
                                         slice.endpoints.push_back(std::move(*ep));
                                         return {};
                                       });
      !r) {
    return std::unexpected(r.error());
  }

  slice.ports.reserve(list_size(obj, "ports"));
  if (result<void> r = for_each_object(obj, "ports", root,
                                       [&](const json& p, const path& pp) -> result<void> {
                                         result<endpoint_port> port = decode_endpoint_port(p, pp);
                                         if (!port) {
                                           return std::unexpected(port.error());
                                         }
                                         slice.ports.push_back(std::move(*port));
                                         return {};
                                       });
      !r) {
    return std::unexpected(r.error());
  }
  return slice;
}

// A CIDR list entry, sloppy like kube-proxy's ParseCIDRSloppy.
result<ip_prefix> as_prefix(const json* v, const path& at) {
  const result<const std::string*> text = as_string(v, at);
  if (!text) {
    return std::unexpected(text.error());
  }
  const std::optional<ip_prefix> prefix =
      *text == nullptr ? std::nullopt : parse_prefix(**text, true);
  if (!prefix) {
    return fail(at, v, fmt::format("{} is not a CIDR", v == nullptr ? "null" : show(*v)));
  }
  return *prefix;
}

result<node> decode_node(const json& obj) {
  const path root;
  result<metadata> meta = decode_metadata(obj, root);
  if (!meta) {
    return std::unexpected(meta.error());
  }
  node n;
  n.name = std::move(meta->name);
  n.labels = std::move(meta->labels);
  n.resource_version = std::move(meta->resource_version);
  n.deleting = meta->deleting;

  const result<const json*> spec = get_object(obj, "spec", root);
  if (!spec) {
    return std::unexpected(spec.error());
  }
  if (*spec != nullptr) {
    const path sp = root.field("spec");
    if (result<void> r = for_each_item(**spec, "podCIDRs", sp,
                                       [&](const json& item, const path& p) -> result<void> {
                                         const result<ip_prefix> prefix = as_prefix(&item, p);
                                         if (!prefix) {
                                           return std::unexpected(prefix.error());
                                         }
                                         n.pod_cidrs.push_back(*prefix);
                                         return {};
                                       });
        !r) {
      return std::unexpected(r.error());
    }
    if (n.pod_cidrs.empty()) {
      if (const json* single = member(**spec, "podCIDR"); single != nullptr) {
        const result<ip_prefix> prefix = as_prefix(single, sp.field("podCIDR"));
        if (!prefix) {
          return std::unexpected(prefix.error());
        }
        n.pod_cidrs.push_back(*prefix);
      }
    }
    if (result<void> r = for_each_object(**spec, "taints", sp,
                                         [&](const json& t, const path& p) -> result<void> {
                                           const result<std::string_view> key =
                                               get_text(t, "key", p);
                                           if (!key) {
                                             return std::unexpected(key.error());
                                           }
                                           if (*key == "ToBeDeletedByClusterAutoscaler") {
                                             n.to_be_deleted_taint = true;
                                           }
                                           return {};
                                         });
        !r) {
      return std::unexpected(r.error());
    }
  }

  const result<const json*> status = get_object(obj, "status", root);
  if (!status) {
    return std::unexpected(status.error());
  }
  if (*status != nullptr) {
    if (result<void> r =
            for_each_object(**status, "addresses", root.field("status"),
                            [&](const json& a, const path& p) -> result<void> {
                              const result<std::string_view> type = get_text(a, "type", p);
                              if (!type) {
                                return std::unexpected(type.error());
                              }
                              const bool internal = *type == "InternalIP";
                              if (!internal && *type != "ExternalIP") {
                                return {};  // Hostname, InternalDNS, ...: not addresses we serve on
                              }
                              const result<ip_addr> addr = get_ip(a, "address", p);
                              if (!addr) {
                                return std::unexpected(addr.error());
                              }
                              (internal ? n.internal_ips : n.external_ips).push_back(*addr);
                              return {};
                            });
        !r) {
      return std::unexpected(r.error());
    }
  }
  return n;
}

result<void> decode_container_ports(const json& spec, std::string_view key, const path& sp,
                                    bool sidecars_only, pod& out) {
  return for_each_object(spec, key, sp, [&](const json& c, const path& cp) -> result<void> {
    if (sidecars_only) {
      // Only init containers that keep running (restartPolicy Always, "sidecars") have ports
      // the EndpointSlice controller resolves named targetPorts against.
      const result<std::string_view> restart = get_text(c, "restartPolicy", cp);
      if (!restart) {
        return std::unexpected(restart.error());
      }
      if (*restart != "Always") {
        return {};
      }
    }
    return for_each_object(c, "ports", cp, [&](const json& p, const path& pp) -> result<void> {
      pod_port port;
      const result<std::string_view> name = get_text(p, "name", pp);
      if (!name) {
        return std::unexpected(name.error());
      }
      port.name = *name;
      const result<std::optional<int64_t>> number = get_int(p, "containerPort", pp, 1, 65535);
      if (!number) {
        return std::unexpected(number.error());
      }
      if (!*number) {
        return fail(pp.field("containerPort"), &p, "missing");
      }
      port.container_port = static_cast<uint16_t>(**number);
      const result<uint8_t> proto = get_protocol(p, pp);
      if (!proto) {
        return std::unexpected(proto.error());
      }
      port.protocol = *proto;
      const result<std::optional<int64_t>> host_port = get_int(p, "hostPort", pp, 0, 65535);
      if (!host_port) {
        return std::unexpected(host_port.error());
      }
      port.host_port = static_cast<uint16_t>(host_port->value_or(0));
      const result<std::string_view> host_ip = get_text(p, "hostIP", pp);
      if (!host_ip) {
        return std::unexpected(host_ip.error());
      }
      if (!host_ip->empty()) {
        const result<ip_addr> addr = get_ip(p, "hostIP", pp);
        if (!addr) {
          return std::unexpected(addr.error());
        }
        port.host_ip = *addr;
      }
      out.ports.push_back(std::move(port));
      return {};
    });
  });
}

result<pod> decode_pod(const json& obj) {
  const path root;
  result<metadata> meta = decode_metadata(obj, root);
  if (!meta) {
    return std::unexpected(meta.error());
  }
  pod p;
  p.namespace_ = std::move(meta->namespace_);
  p.name = std::move(meta->name);
  p.labels = std::move(meta->labels);
  p.resource_version = std::move(meta->resource_version);
  p.terminating = meta->deleting;

  const result<const json*> spec = get_object(obj, "spec", root);
  if (!spec) {
    return std::unexpected(spec.error());
  }
  if (*spec != nullptr) {
    const path sp = root.field("spec");
    const result<std::string_view> node_name = get_text(**spec, "nodeName", sp);
    if (!node_name) {
      return std::unexpected(node_name.error());
    }
    p.node_name = *node_name;
    const result<std::optional<bool>> host_network = get_bool(**spec, "hostNetwork", sp);
    if (!host_network) {
      return std::unexpected(host_network.error());
    }
    p.host_network = host_network->value_or(false);
    if (result<void> r = decode_container_ports(**spec, "initContainers", sp, true, p); !r) {
      return std::unexpected(r.error());
    }
    if (result<void> r = decode_container_ports(**spec, "containers", sp, false, p); !r) {
      return std::unexpected(r.error());
    }
  }

  const result<const json*> status = get_object(obj, "status", root);
  if (!status) {
    return std::unexpected(status.error());
  }
  if (*status != nullptr) {
    const json& st = **status;
    const path stp = root.field("status");
    if (result<void> r =
            for_each_object(st, "podIPs", stp,
                            [&](const json& item, const path& ip_path) -> result<void> {
                              const result<ip_addr> addr = get_ip(item, "ip", ip_path);
                              if (!addr) {
                                return std::unexpected(addr.error());
                              }
                              p.pod_ips.push_back(*addr);
                              return {};
                            });
        !r) {
      return std::unexpected(r.error());
    }
    const result<std::string_view> single = get_text(st, "podIP", stp);
    if (!single) {
      return std::unexpected(single.error());
    }
    if (p.pod_ips.empty() && !single->empty()) {
      const result<ip_addr> addr = get_ip(st, "podIP", stp);
      if (!addr) {
        return std::unexpected(addr.error());
      }
      p.pod_ips.push_back(*addr);
    }
    const result<std::string_view> phase = get_text(st, "phase", stp);
    if (!phase) {
      return std::unexpected(phase.error());
    }
    p.finished = *phase == "Succeeded" || *phase == "Failed";
    if (result<void> r =
            for_each_object(st, "conditions", stp,
                            [&](const json& c, const path& cp) -> result<void> {
                              const result<std::string_view> type = get_text(c, "type", cp);
                              if (!type) {
                                return std::unexpected(type.error());
                              }
                              if (*type != "Ready") {
                                return {};
                              }
                              const result<std::string_view> value = get_text(c, "status", cp);
                              if (!value) {
                                return std::unexpected(value.error());
                              }
                              p.ready = *value == "True";
                              return {};
                            });
        !r) {
      return std::unexpected(r.error());
    }
  }
  return p;
}

result<void> decode_subset_addresses(const json& subset, std::string_view key, const path& sp,
                                     std::vector<endpoints_subset::address>& out) {
  out.reserve(list_size(subset, key));
  return for_each_object(subset, key, sp, [&](const json& a, const path& ap) -> result<void> {
    const result<ip_addr> addr = get_ip(a, "ip", ap);
    if (!addr) {
      return std::unexpected(addr.error());
    }
    const result<std::string_view> node_name = get_text(a, "nodeName", ap);
    if (!node_name) {
      return std::unexpected(node_name.error());
    }
    out.push_back({*addr, std::string(*node_name)});
    return {};
  });
}

result<endpoints> decode_endpoints(const json& obj) {
  const path root;
  result<metadata> meta = decode_metadata(obj, root);
  if (!meta) {
    return std::unexpected(meta.error());
  }
  endpoints eps;
  eps.namespace_ = std::move(meta->namespace_);
  eps.name = std::move(meta->name);
  eps.labels = std::move(meta->labels);
  if (result<void> r = for_each_object(
          obj, "subsets", root,
          [&](const json& s, const path& sp) -> result<void> {
            endpoints_subset subset;
            if (result<void> a = decode_subset_addresses(s, "addresses", sp, subset.addresses);
                !a) {
              return a;
            }
            if (result<void> a =
                    decode_subset_addresses(s, "notReadyAddresses", sp, subset.not_ready_addresses);
                !a) {
              return a;
            }
            if (result<void> a =
                    for_each_object(s, "ports", sp,
                                    [&](const json& p, const path& pp) -> result<void> {
                                      result<endpoint_port> port = decode_endpoint_port(p, pp);
                                      if (!port) {
                                        return std::unexpected(port.error());
                                      }
                                      if (!port->port) {
                                        return fail(pp.field("port"), &p, "missing");
                                      }
                                      subset.ports.push_back(std::move(*port));
                                      return {};
                                    });
                !a) {
              return a;
            }
            eps.subsets.push_back(std::move(subset));
            return {};
          });
      !r) {
    return std::unexpected(r.error());
  }
  return eps;
}

// "default/web" (or "web" for a Node), read leniently for messages; "<no name>" when unreadable.
std::string describe(const json& obj, bool namespaced) {
  std::string_view ns = "default";
  std::string_view name;
  if (const json* meta = member(obj, "metadata"); meta != nullptr && meta->is_object()) {
    if (const json* v = member(*meta, "namespace");
        v != nullptr && v->is_string() && !v->get_ref<const std::string&>().empty()) {
      ns = v->get_ref<const std::string&>();
    }
    if (const json* v = member(*meta, "name"); v != nullptr && v->is_string()) {
      name = v->get_ref<const std::string&>();
    }
  }
  if (name.empty()) {
    name = "<no name>";
  }
  return namespaced ? fmt::format("{}/{}", ns, name) : std::string(name);
}

struct kind_info {
  std::string_view kind;
  std::string_view api_version;
  bool namespaced;
};

constexpr kind_info known_kinds[] = {
    {"Service", "v1", true},   {"EndpointSlice", "discovery.k8s.io/v1", true},
    {"Node", "v1", false},     {"Pod", "v1", true},
    {"Endpoints", "v1", true},
};

std::expected<kube_object, decode_error> decode_known(const json& obj, const kind_info& info) {
  const auto wrap = [&](auto&& r) -> std::expected<kube_object, decode_error> {
    if (!r) {
      return std::unexpected(
          decode_error{false,
                       fmt::format("{} {}: {}: {}", info.kind, describe(obj, info.namespaced),
                                   r.error().field, r.error().message),
                       r.error().at});
    }
    return kube_object(std::move(*r));
  };
  if (info.kind == "Service") {
    return wrap(decode_service(obj));
  }
  if (info.kind == "EndpointSlice") {
    result<std::optional<endpoint_slice>> slice = decode_endpoint_slice(obj);
    if (slice && !*slice) {
      return std::unexpected(
          decode_error{true,
                       fmt::format("EndpointSlice {}: no {} label, not used by any Service",
                                   describe(obj, true), label_service_name),
                       &obj});
    }
    if (!slice) {
      return wrap(result<endpoint_slice>(std::unexpected(std::move(slice.error()))));
    }
    return kube_object(std::move(**slice));
  }
  if (info.kind == "Node") {
    return wrap(decode_node(obj));
  }
  if (info.kind == "Pod") {
    return wrap(decode_pod(obj));
  }
  return wrap(decode_endpoints(obj));
}

}  // namespace

std::string_view protocol_name(uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    default:
      return "SCTP";
  }
}

std::expected<kube_object, decode_error> decode_object(const nlohmann::json& obj,
                                                       std::string_view default_kind) {
  try {
    if (!obj.is_object()) {
      return std::unexpected(
          decode_error{false, fmt::format("expected a mapping, got {}", json_type_name(obj)), &obj});
    }
    std::string_view kind = default_kind;
    const json* kind_value = member(obj, "kind");
    if (kind_value != nullptr) {
      if (!kind_value->is_string()) {
        return std::unexpected(decode_error{
            false, fmt::format("kind: expected a string, got {}", json_type_name(*kind_value)),
            kind_value});
      }
      if (!kind_value->get_ref<const std::string&>().empty()) {
        kind = kind_value->get_ref<const std::string&>();
      }
    }
    if (kind.empty()) {
      return std::unexpected(decode_error{false, "kind: missing", &obj});
    }
    const kind_info* info = nullptr;
    for (const kind_info& k : known_kinds) {
      if (k.kind == kind) {
        info = &k;
      }
    }
    if (info == nullptr) {
      // Cluster-scoped kinds (Namespace, ClusterRole) have no namespace to show.
      const json* meta = member(obj, "metadata");
      const bool namespaced =
          meta != nullptr && meta->is_object() && member(*meta, "namespace") != nullptr;
      return std::unexpected(decode_error{
          true, fmt::format("{} {}: kind not used", kind, describe(obj, namespaced)), &obj});
    }

    std::string_view api_version;
    if (const json* v = member(obj, "apiVersion"); v != nullptr) {
      if (!v->is_string()) {
        return std::unexpected(
            decode_error{false,
                         fmt::format("{} {}: apiVersion: expected a string, got {}", kind,
                                     describe(obj, info->namespaced), json_type_name(*v)),
                         v});
      }
      api_version = v->get_ref<const std::string&>();
    }
    if (api_version.empty()) {
      // Items of a typed list carry neither kind nor apiVersion; a standalone object must
      // say which API it belongs to.
      if (default_kind.empty()) {
        return std::unexpected(
            decode_error{false,
                         fmt::format("{} {}: apiVersion: missing (want {})", kind,
                                     describe(obj, info->namespaced), info->api_version),
                         &obj});
      }
    } else if (api_version != info->api_version) {
      // Another group's kind of the same name (Knative's serving.knative.dev Service) or an
      // API version that no longer exists (discovery.k8s.io/v1beta1).
      return std::unexpected(
          decode_error{true,
                       fmt::format("{} {}: apiVersion {} not used (want {})", kind,
                                   describe(obj, info->namespaced), api_version, info->api_version),
                       &obj});
    }
    return decode_known(obj, *info);
  } catch (const std::exception& e) {
    // Not expected (every access checks the type first), but this function never throws.
    return std::unexpected(decode_error{false, fmt::format("cannot decode: {}", e.what()), &obj});
  }
}

}  // namespace sluice
