#include "agent/sources/manifest.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <sstream>
#include <utility>

namespace sluice {

namespace {

// Thrown by the field helpers below and caught per object in decode_object(); never leaves
// this file. `mark` points at the offending node (or its parent when the field is missing).
struct field_error {
  std::string field;
  std::string message;
  YAML::Mark mark;
};

[[noreturn]] void fail(const YAML::Node& at, std::string field, std::string message) {
  throw field_error{std::move(field), std::move(message), at.Mark()};
}

std::string join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

std::string indexed(std::string_view path, std::size_t i) { return fmt::format("{}[{}]", path, i); }

bool is_absent(const YAML::Node& node) { return !node.IsDefined() || node.IsNull(); }

// Looks `key` up in `map` (which must be a map); the result may be undefined.
YAML::Node child(const YAML::Node& map, const char* key) { return map[key]; }

// Short description of a node's type, for "expected X, got Y" messages.
std::string_view type_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "null";
  }
}

// A mapping field: absent/null gives an undefined node, anything else but a map fails.
YAML::Node opt_map(const YAML::Node& parent, const char* key, std::string_view path) {
  YAML::Node node = child(parent, key);
  if (is_absent(node)) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
  if (!node.IsMap()) {
    fail(node, join(path, key), fmt::format("expected a mapping, got {}", type_name(node)));
  }
  return node;
}

// A list field: absent/null gives an empty list, anything else but a sequence fails.
std::vector<YAML::Node> opt_seq(const YAML::Node& parent, const char* key, std::string_view path) {
  std::vector<YAML::Node> out;
  YAML::Node node = child(parent, key);
  if (is_absent(node)) {
    return out;
  }
  if (!node.IsSequence()) {
    fail(node, join(path, key), fmt::format("expected a list, got {}", type_name(node)));
  }
  for (const YAML::Node& item : node) {
    out.push_back(item);
  }
  return out;
}

// A string field. Any scalar is accepted as its text; absent/null gives nullopt.
std::optional<std::string> opt_string(const YAML::Node& node, std::string_view field) {
  if (is_absent(node)) {
    return std::nullopt;
  }
  if (!node.IsScalar()) {
    fail(node, std::string(field), fmt::format("expected a string, got {}", type_name(node)));
  }
  return node.Scalar();
}

std::optional<std::string> opt_string(const YAML::Node& parent, const char* key,
                                      std::string_view path) {
  return opt_string(child(parent, key), join(path, key));
}

// An integer field: a plain (unquoted) decimal scalar, as a JSON number is. Absent/null gives
// nullopt. Quoted numbers are rejected, as the API server rejects a string for an int32.
std::optional<int64_t> opt_int(const YAML::Node& node, std::string_view field) {
  if (is_absent(node)) {
    return std::nullopt;
  }
  if (!node.IsScalar()) {
    fail(node, std::string(field), fmt::format("expected an integer, got {}", type_name(node)));
  }
  const std::string& text = node.Scalar();
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const bool quoted = node.Tag() == "!";
  if (quoted || text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
    fail(node, std::string(field), fmt::format("expected an integer, got \"{}\"", text));
  }
  return value;
}

std::optional<int64_t> opt_int(const YAML::Node& parent, const char* key, std::string_view path) {
  return opt_int(child(parent, key), join(path, key));
}

// A boolean field: a plain scalar true/false (YAML 1.1 spellings such as yes/no accepted).
std::optional<bool> opt_bool(const YAML::Node& parent, const char* key, std::string_view path) {
  YAML::Node node = child(parent, key);
  if (is_absent(node)) {
    return std::nullopt;
  }
  bool value = false;
  if (!node.IsScalar() || node.Tag() == "!" || !YAML::convert<bool>::decode(node, value)) {
    const std::string got =
        node.IsScalar() ? fmt::format("\"{}\"", node.Scalar()) : std::string(type_name(node));
    fail(node, join(path, key), fmt::format("expected true or false, got {}", got));
  }
  return value;
}

// A port number field in [min, 65535].
std::optional<uint16_t> opt_port(const YAML::Node& parent, const char* key, std::string_view path,
                                 int64_t min) {
  const std::optional<int64_t> value = opt_int(parent, key, path);
  if (!value) {
    return std::nullopt;
  }
  if (*value < min || *value > 65535) {
    fail(child(parent, key), join(path, key),
         fmt::format("{} is out of range {}..65535", *value, min));
  }
  return static_cast<uint16_t>(*value);
}

std::map<std::string, std::string> opt_string_map(const YAML::Node& parent, const char* key,
                                                  std::string_view path) {
  std::map<std::string, std::string> out;
  const YAML::Node node = opt_map(parent, key, path);
  if (!node.IsDefined()) {
    return out;
  }
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) {
      fail(entry.first, join(path, key), "keys must be strings");
    }
    const std::string field = fmt::format("{}[{}]", join(path, key), entry.first.Scalar());
    out[entry.first.Scalar()] = opt_string(entry.second, field).value_or("");
  }
  return out;
}

uint8_t decode_protocol(const YAML::Node& parent, std::string_view path) {
  const std::optional<std::string> text = opt_string(parent, "protocol", path);
  if (!text || *text == "TCP") {
    return IPPROTO_TCP;  // the API server defaults protocol to TCP
  }
  if (*text == "UDP") {
    return IPPROTO_UDP;
  }
  if (*text == "SCTP") {
    return IPPROTO_SCTP;
  }
  fail(child(parent, "protocol"), join(path, "protocol"),
       fmt::format("unknown protocol \"{}\" (want TCP, UDP or SCTP)", *text));
}

std::string_view protocol_name(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    default:
      return "SCTP";
  }
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

ip_addr decode_ip(const YAML::Node& node, std::string_view field) {
  const std::optional<std::string> text = opt_string(node, field);
  if (!text) {
    fail(node, std::string(field), "expected an IP address, got null");
  }
  const std::optional<ip_addr> addr = parse_ip(*text);
  if (!addr) {
    fail(node, std::string(field), fmt::format("\"{}\" is not an IP address", *text));
  }
  return *addr;
}

// metadata.name / namespace / labels, common to both kinds.
void decode_metadata(const YAML::Node& obj, std::string& namespace_, std::string& name,
                     std::map<std::string, std::string>& labels) {
  const YAML::Node meta = opt_map(obj, "metadata", "");
  if (!meta.IsDefined()) {
    fail(obj, "metadata", "missing");
  }
  name = opt_string(meta, "name", "metadata").value_or("");
  if (name.empty()) {
    fail(meta, "metadata.name", "missing");
  }
  namespace_ = opt_string(meta, "namespace", "metadata").value_or("");
  if (namespace_.empty()) {
    namespace_ = "default";
  }
  labels = opt_string_map(meta, "labels", "metadata");
}

std::vector<ip_addr> decode_cluster_ips(const YAML::Node& spec, bool& headless) {
  headless = false;
  std::vector<std::string> texts;
  std::vector<YAML::Node> nodes;
  const std::vector<YAML::Node> list = opt_seq(spec, "clusterIPs", "spec");
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::optional<std::string> text = opt_string(list[i], indexed("spec.clusterIPs", i));
    if (!text || text->empty()) {
      fail(list[i], indexed("spec.clusterIPs", i), "empty address");
    }
    texts.push_back(*text);
    nodes.push_back(list[i]);
  }
  const std::optional<std::string> single = opt_string(spec, "clusterIP", "spec");
  if (texts.empty()) {
    if (single && !single->empty()) {
      texts.push_back(*single);
      nodes.push_back(child(spec, "clusterIP"));
    }
  } else if (single && !single->empty() && *single != texts[0]) {
    fail(child(spec, "clusterIP"), "spec.clusterIP",
         fmt::format("\"{}\" differs from spec.clusterIPs[0] \"{}\"", *single, texts[0]));
  }

  std::vector<ip_addr> out;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::string field = list.empty() ? "spec.clusterIP" : indexed("spec.clusterIPs", i);
    if (texts[i] == "None") {
      if (texts.size() != 1) {
        fail(nodes[i], field, "\"None\" cannot be combined with addresses");
      }
      headless = true;
      return out;
    }
    const ip_addr addr = decode_ip(nodes[i], field);
    for (const ip_addr& seen : out) {
      if (seen.family == addr.family) {
        fail(nodes[i], field, "at most one address per IP family");
      }
    }
    out.push_back(addr);
  }
  return out;
}

service decode_service(const YAML::Node& obj) {
  service svc;
  decode_metadata(obj, svc.namespace_, svc.name, svc.labels);

  const YAML::Node spec = opt_map(obj, "spec", "");
  if (!spec.IsDefined()) {
    fail(obj, "spec", "missing");
  }

  const std::optional<std::string> type = opt_string(spec, "type", "spec");
  if (!type || *type == "ClusterIP") {
    svc.type = service_type::cluster_ip;
  } else if (*type == "NodePort") {
    svc.type = service_type::node_port;
  } else if (*type == "LoadBalancer") {
    svc.type = service_type::load_balancer;
  } else if (*type == "ExternalName") {
    svc.type = service_type::external_name;
  } else {
    fail(child(spec, "type"), "spec.type",
         fmt::format("unknown type \"{}\" (want ClusterIP, NodePort, LoadBalancer or "
                     "ExternalName)",
                     *type));
  }

  svc.cluster_ips = decode_cluster_ips(spec, svc.headless);

  const std::vector<YAML::Node> ports = opt_seq(spec, "ports", "spec");
  for (std::size_t i = 0; i < ports.size(); ++i) {
    const std::string path = indexed("spec.ports", i);
    const YAML::Node& p = ports[i];
    if (!p.IsMap()) {
      fail(p, path, fmt::format("expected a mapping, got {}", type_name(p)));
    }
    service_port port;
    port.name = opt_string(p, "name", path).value_or("");
    port.protocol = decode_protocol(p, path);
    const std::optional<uint16_t> number = opt_port(p, "port", path, 1);
    if (!number) {
      fail(p, join(path, "port"), "missing");
    }
    port.port = *number;
    port.target_port = port.port;  // the API server's default
    const YAML::Node target = child(p, "targetPort");
    if (!is_absent(target)) {
      const std::string field = join(path, "targetPort");
      const std::string text = opt_string(target, field).value_or("");
      const bool digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                       [](char c) { return c >= '0' && c <= '9'; });
      if (digits) {
        const int64_t value = text.size() > 6 ? 0 : std::stoll(text);
        if (value < 1 || value > 65535) {
          fail(target, field, fmt::format("{} is out of range 1..65535", text));
        }
        port.target_port = static_cast<uint16_t>(value);
      } else if (is_port_name(text)) {
        port.target_port = text;
      } else {
        fail(target, field, fmt::format("\"{}\" is neither a port number nor a port name", text));
      }
    }
    port.node_port = opt_port(p, "nodePort", path, 0).value_or(0);

    for (const service_port& seen : svc.ports) {
      if (seen.port == port.port && seen.protocol == port.protocol) {
        fail(p, path, fmt::format("duplicate port {}/{}", port.port, protocol_name(port.protocol)));
      }
      if (seen.name == port.name) {
        fail(p, join(path, "name"),
             port.name.empty() ? std::string("required when the service has several ports")
                               : fmt::format("duplicate port name \"{}\"", port.name));
      }
    }
    svc.ports.push_back(std::move(port));
  }

  const std::optional<std::string> affinity = opt_string(spec, "sessionAffinity", "spec");
  if (affinity && *affinity == "ClientIP") {
    svc.session_affinity_client_ip = true;
    svc.affinity_timeout_s = default_affinity_timeout_s;
    const YAML::Node config = opt_map(spec, "sessionAffinityConfig", "spec");
    const YAML::Node client_ip =
        config.IsDefined() ? opt_map(config, "clientIP", "spec.sessionAffinityConfig") : config;
    if (client_ip.IsDefined()) {
      const char* path = "spec.sessionAffinityConfig.clientIP";
      const std::optional<int64_t> timeout = opt_int(client_ip, "timeoutSeconds", path);
      if (timeout) {
        if (*timeout < 1 || *timeout > max_affinity_timeout_s) {
          fail(child(client_ip, "timeoutSeconds"), join(path, "timeoutSeconds"),
               fmt::format("{} is out of range 1..{}", *timeout, max_affinity_timeout_s));
        }
        svc.affinity_timeout_s = static_cast<uint32_t>(*timeout);
      }
    }
  } else if (affinity && *affinity != "None") {
    fail(child(spec, "sessionAffinity"), "spec.sessionAffinity",
         fmt::format("unknown value \"{}\" (want None or ClientIP)", *affinity));
  }
  return svc;
}

// Returns nullopt for a slice without the service-name label (ignored, like kube-proxy).
std::optional<endpoint_slice> decode_endpoint_slice(const YAML::Node& obj) {
  endpoint_slice slice;
  decode_metadata(obj, slice.namespace_, slice.name, slice.labels);
  const auto owner = slice.labels.find(std::string(label_service_name));
  if (owner == slice.labels.end() || owner->second.empty()) {
    return std::nullopt;
  }
  slice.service_name = owner->second;

  const std::optional<std::string> type = opt_string(obj, "addressType", "");
  if (!type) {
    fail(obj, "addressType", "missing");
  }
  if (*type == "IPv4") {
    slice.address_type = slice_address_type::ipv4;
  } else if (*type == "IPv6") {
    slice.address_type = slice_address_type::ipv6;
  } else if (*type == "FQDN") {
    slice.address_type = slice_address_type::fqdn;
  } else {
    fail(child(obj, "addressType"), "addressType",
         fmt::format("unknown address type \"{}\" (want IPv4, IPv6 or FQDN)", *type));
  }

  const std::vector<YAML::Node> endpoints = opt_seq(obj, "endpoints", "");
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    const std::string path = indexed("endpoints", i);
    const YAML::Node& e = endpoints[i];
    if (!e.IsMap()) {
      fail(e, path, fmt::format("expected a mapping, got {}", type_name(e)));
    }
    endpoint ep;
    const std::vector<YAML::Node> addresses = opt_seq(e, "addresses", path);
    for (std::size_t j = 0; j < addresses.size(); ++j) {
      const std::string field = indexed(join(path, "addresses"), j);
      if (slice.address_type == slice_address_type::fqdn) {
        opt_string(addresses[j], field);  // type check only: FQDN slices carry no IPs
        continue;
      }
      const ip_addr addr = decode_ip(addresses[j], field);
      const ip_family want =
          slice.address_type == slice_address_type::ipv4 ? ip_family::v4 : ip_family::v6;
      if (addr.family != want) {
        fail(addresses[j], field,
             fmt::format("\"{}\" does not match addressType {}", format_ip(addr), *type));
      }
      ep.addresses.push_back(addr);
    }
    const YAML::Node conditions = opt_map(e, "conditions", path);
    if (conditions.IsDefined()) {
      const std::string cpath = join(path, "conditions");
      ep.ready = opt_bool(conditions, "ready", cpath);
      ep.serving = opt_bool(conditions, "serving", cpath);
      ep.terminating = opt_bool(conditions, "terminating", cpath);
    }
    ep.node_name = opt_string(e, "nodeName", path).value_or("");
    ep.zone = opt_string(e, "zone", path).value_or("");
    slice.endpoints.push_back(std::move(ep));
  }

  const std::vector<YAML::Node> ports = opt_seq(obj, "ports", "");
  for (std::size_t i = 0; i < ports.size(); ++i) {
    const std::string path = indexed("ports", i);
    const YAML::Node& p = ports[i];
    if (!p.IsMap()) {
      fail(p, path, fmt::format("expected a mapping, got {}", type_name(p)));
    }
    endpoint_port port;
    port.name = opt_string(p, "name", path);
    port.port = opt_port(p, "port", path, 1);
    port.protocol = decode_protocol(p, path);
    slice.ports.push_back(std::move(port));
  }
  return slice;
}

class decoder {
 public:
  decoder(std::string_view source, decode_result& out) : source_(source), out_(out) {}

  // Decodes one top-level document (`where` = "document N"). `kind_default` and
  // `api_default` are inherited from a typed list (ServiceList items have no kind).
  void decode(const YAML::Node& obj, const std::string& where, std::string_view kind_default,
              std::string_view api_default, int depth) {
    if (is_absent(obj)) {
      return;  // empty document, e.g. after a trailing "---"
    }
    if (!obj.IsMap()) {
      reject(obj.Mark(), fmt::format("{}: expected a mapping, got {}", where, type_name(obj)));
      return;
    }
    std::string kind;
    std::string api_version;
    try {
      kind = opt_string(obj, "kind", "").value_or(std::string(kind_default));
      api_version = opt_string(obj, "apiVersion", "").value_or(std::string(api_default));
    } catch (const field_error& e) {
      reject(e.mark, fmt::format("{}: {}: {}", where, e.field, e.message));
      return;
    }
    if (kind.empty()) {
      reject(obj.Mark(), fmt::format("{}: kind: missing", where));
      return;
    }

    if (kind == "List" || kind == "ServiceList" || kind == "EndpointSliceList") {
      decode_list(obj, where, kind, api_version, depth);
    } else if (kind == "Service" || kind == "EndpointSlice") {
      const std::string_view want = kind == "Service" ? "v1" : "discovery.k8s.io/v1";
      if (api_version.empty()) {
        reject(obj.Mark(), fmt::format("{} {}: apiVersion: missing (want {})", kind,
                                       describe(obj, where), want));
      } else if (api_version != want) {
        ++out_.ignored;  // another group's kind of the same name (e.g. Knative Service)
      } else {
        decode_object(obj, where, kind);
      }
    } else {
      ++out_.ignored;
    }
  }

 private:
  void decode_list(const YAML::Node& obj, const std::string& where, const std::string& kind,
                   const std::string& api_version, int depth) {
    if (depth > 4) {
      reject(obj.Mark(), fmt::format("{}: lists nested too deeply", where));
      return;
    }
    std::vector<YAML::Node> items;
    try {
      items = opt_seq(obj, "items", "");
    } catch (const field_error& e) {
      reject(e.mark, fmt::format("{} {}: {}: {}", kind, where, e.field, e.message));
      return;
    }
    std::string_view item_kind;
    std::string_view item_api;
    if (kind == "ServiceList") {
      item_kind = "Service";
      item_api = api_version.empty() ? std::string_view("v1") : std::string_view(api_version);
    } else if (kind == "EndpointSliceList") {
      item_kind = "EndpointSlice";
      item_api = api_version.empty() ? std::string_view("discovery.k8s.io/v1")
                                     : std::string_view(api_version);
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      decode(items[i], fmt::format("{}, items[{}]", where, i), item_kind, item_api, depth + 1);
    }
  }

  void decode_object(const YAML::Node& obj, const std::string& where, const std::string& kind) {
    try {
      if (kind == "Service") {
        service svc = decode_service(obj);
        svc.source = source_;
        add(out_.objects.services, std::move(svc), kind, obj.Mark());
      } else {
        std::optional<endpoint_slice> slice = decode_endpoint_slice(obj);
        if (!slice) {
          ++out_.ignored;
          return;
        }
        slice->source = source_;
        add(out_.objects.endpoint_slices, std::move(*slice), kind, obj.Mark());
      }
    } catch (const field_error& e) {
      reject(e.mark, fmt::format("{} {}: {}: {}", kind, describe(obj, where), e.field, e.message));
    } catch (const YAML::Exception& e) {
      // Not expected (the helpers check types before converting), but never let one escape.
      reject(e.mark, fmt::format("{} {}: {}", kind, describe(obj, where), e.msg));
    }
  }

  template <typename T>
  void add(std::map<object_key, T>& into, T&& obj, std::string_view kind, const YAML::Mark& mark) {
    const auto [it, inserted] = into.try_emplace(obj.key(), std::move(obj));
    if (inserted) {
      ++out_.loaded;
    } else {
      reject(mark, fmt::format("{} {}: defined twice (also earlier in this file); ignoring this "
                               "one",
                               kind, it->first.str()));
    }
  }

  // "namespace/name" as far as it can be read, else "<no name> (document N)".
  static std::string describe(const YAML::Node& obj, const std::string& where) {
    const auto scalar = [](const YAML::Node& node) {
      return node.IsDefined() && node.IsScalar() ? node.Scalar() : std::string();
    };
    std::string ns = "default";
    std::string name;
    const YAML::Node meta = child(obj, "metadata");
    if (meta.IsDefined() && meta.IsMap()) {
      if (const std::string text = scalar(child(meta, "namespace")); !text.empty()) {
        ns = text;
      }
      name = scalar(child(meta, "name"));
    }
    if (name.empty()) {
      return fmt::format("{}/<no name> ({})", ns, where);
    }
    return fmt::format("{}/{}", ns, name);
  }

  void reject(const YAML::Mark& mark, const std::string& message) {
    if (mark.is_null() || mark.line < 0) {
      out_.errors.push_back(fmt::format("{}: {}", source_, message));
    } else {
      out_.errors.push_back(fmt::format("{}:{}: {}", source_, mark.line + 1, message));
    }
    ++out_.rejected;
  }

  std::string source_;
  decode_result& out_;
};

void merge(decode_result& into, decode_result&& from) {
  into.errors.insert(into.errors.end(), std::make_move_iterator(from.errors.begin()),
                     std::make_move_iterator(from.errors.end()));
  into.loaded += from.loaded;
  into.ignored += from.ignored;
  into.rejected += from.rejected;
  const auto move_all = [&](auto& dst, auto& src, std::string_view kind) {
    for (auto& [key, obj] : src) {
      const auto found = dst.find(key);
      if (found == dst.end()) {
        dst.emplace(key, std::move(obj));
        continue;
      }
      into.errors.push_back(fmt::format("{}: {} {}: defined twice (also in {}); ignoring this one",
                                        obj.source, kind, key.str(), found->second.source));
      --into.loaded;
      ++into.rejected;
    }
  };
  move_all(into.objects.services, from.objects.services, "Service");
  move_all(into.objects.endpoint_slices, from.objects.endpoint_slices, "EndpointSlice");
}

// Walks the documents with the event parser only, to catch input on which yaml-cpp 0.7's LoadAll
// never returns: a stray token such as a top-level ',' (e.g. "{...},\n{...}") makes the parser
// report an empty document forever without consuming it, and LoadAll collects them until memory
// runs out (fixed upstream in yaml-cpp 0.8.0, PR #1319). Throws YAML::ParserException there, or
// for any syntax error the parser finds itself.
class stuck_document_check : public YAML::EventHandler {
 public:
  static void run(const std::string& text) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    stuck_document_check check;
    int last_pos = -1;
    std::size_t documents = 0;
    while (parser.HandleNextDocument(check)) {
      // A document that starts where the previous one did has consumed nothing. Every real
      // document takes at least one byte, so the count bound is a second, cruder guard.
      const bool stuck = !check.start_.is_null() && check.start_.pos == last_pos;
      if (stuck || ++documents > text.size() + 1) {
        throw YAML::ParserException(check.start_,
                                    "stray token outside any node (a comma between documents?)");
      }
      last_pos = check.start_.pos;
    }
  }

  void OnDocumentStart(const YAML::Mark&) override {
    first_ = true;
    start_ = YAML::Mark::null_mark();
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnMapEnd() override {}

 private:
  void note(const YAML::Mark& mark) {
    if (first_) {
      start_ = mark;
      first_ = false;
    }
  }

  bool first_ = true;
  YAML::Mark start_ = YAML::Mark::null_mark();
};

// Reads a whole file; manifests larger than this are refused rather than read into memory.
constexpr std::size_t max_manifest_bytes = 64u << 20;

std::expected<std::string, std::error_code> read_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(std::error_code(errno, std::system_category()));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const std::error_code ec(errno, std::system_category());
      ::close(fd);
      return std::unexpected(ec);
    }
    if (n == 0) {
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_manifest_bytes) {
      ::close(fd);
      return std::unexpected(std::make_error_code(std::errc::file_too_large));
    }
  }
  ::close(fd);
  return text;
}

}  // namespace

decode_result decode_manifest(std::string_view text, std::string_view source_name) {
  decode_result out;
  std::vector<YAML::Node> documents;
  try {
    const std::string owned(text);
    stuck_document_check::run(owned);
    documents = YAML::LoadAll(owned);
  } catch (const YAML::Exception& e) {
    // The whole file is unusable: one error, nothing loaded from it.
    if (e.mark.is_null()) {
      out.errors.push_back(fmt::format("{}: not valid YAML/JSON: {}", source_name, e.msg));
    } else {
      out.errors.push_back(fmt::format("{}:{}:{}: not valid YAML/JSON: {}", source_name,
                                       e.mark.line + 1, e.mark.column + 1, e.msg));
    }
    ++out.rejected;
    return out;
  }
  decoder dec(source_name, out);
  for (std::size_t i = 0; i < documents.size(); ++i) {
    const std::string where = fmt::format("document {}", i + 1);
    try {
      dec.decode(documents[i], where, "", "", 0);
    } catch (const YAML::Exception& e) {
      // Not expected (the helpers check node types first), but never let one escape.
      out.errors.push_back(fmt::format("{}: {}: {}", source_name, where, e.msg));
      ++out.rejected;
    }
  }
  return out;
}

bool is_manifest_file_name(std::string_view file_name) {
  if (file_name.empty() || file_name.front() == '.') {
    return false;
  }
  for (const std::string_view ext : {".yaml", ".yml", ".json"}) {
    if (file_name.size() > ext.size() && file_name.ends_with(ext)) {
      return true;
    }
  }
  return false;
}

std::expected<decode_result, std::error_code> load_manifest_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_manifest_file_name(name)) {
      names.push_back(name);
    }
  }
  if (ec) {
    return std::unexpected(ec);
  }
  std::sort(names.begin(), names.end());

  decode_result out;
  for (const std::string& name : names) {
    const std::filesystem::path path = dir / name;
    std::error_code status_ec;
    // Follows symlinks (ConfigMap volumes link every key into a hidden ..data directory).
    if (!std::filesystem::is_regular_file(path, status_ec)) {
      if (status_ec) {
        out.errors.push_back(
            fmt::format("{}: cannot read: {}", path.string(), status_ec.message()));
      }
      continue;  // a directory named like a manifest, a dangling link: not a manifest
    }
    std::expected<std::string, std::error_code> text = read_file(path);
    if (!text) {
      out.errors.push_back(
          fmt::format("{}: cannot read: {}", path.string(), text.error().message()));
      continue;
    }
    merge(out, decode_manifest(*text, path.string()));
  }
  return out;
}

}  // namespace sluice
