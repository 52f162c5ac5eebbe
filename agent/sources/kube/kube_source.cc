#include "agent/sources/kube/kube_source.h"

#include <spdlog/spdlog.h>

#include "agent/sources/decode.h"

namespace sluice::kube {

namespace {

constexpr std::string_view res_services = "services";
constexpr std::string_view res_slices = "endpointslices";
constexpr std::string_view res_node = "nodes";

object_kind kind_for(std::string_view resource) {
  if (resource == res_services) {
    return object_kind::service;
  }
  if (resource == res_slices) {
    return object_kind::endpoint_slice;
  }
  if (resource == res_node) {
    return object_kind::node;
  }
  return object_kind::pod;  // "pods", the only other resource
}

// metadata.{namespace,name,resourceVersion} without decoding the object, so that a relisted
// object whose resourceVersion the store holds is skipped. Nodes have no namespace; everything
// else defaults to "default" as the decoder does. Leaves `object` reset for the decoder; the
// views are valid as long as the object.
struct meta {
  object_key key;
  std::string_view resource_version;
};

// A JSON string that holds no escapes, as it stands in the text. Read this way nothing is
// unescaped: simdjson's On-Demand parser unescapes every string it is asked for into a buffer
// sized for one pass over the document, and the decoder reads the object once more after
// meta_of() (found by fuzzing: a document of mostly metadata overflowed it). A name with
// escapes is no valid Kubernetes name; the decoder reports it.
std::optional<std::string_view> plain_string(simdjson::ondemand::value& v) {
  std::string_view t = v.raw_json_token();
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t' || t.back() == '\n' ||
                        t.back() == '\r')) {
    t.remove_suffix(1);
  }
  if (t.size() < 2 || t.front() != '"' || t.back() != '"' ||
      t.find('\\') != std::string_view::npos) {
    return std::nullopt;
  }
  return t.substr(1, t.size() - 2);
}

std::optional<meta> meta_of(object_kind kind, simdjson::ondemand::object& object) {
  std::optional<meta> out;
  simdjson::ondemand::object m;
  if (object.find_field_unordered("metadata").get_object().get(m) == simdjson::SUCCESS) {
    meta found;
    std::string_view name, ns;
    for (auto field : m) {
      simdjson::ondemand::field f;
      if (std::move(field).get(f) != simdjson::SUCCESS) {
        break;
      }
      const simdjson::ondemand::raw_json_string key = f.key();
      const bool is_name = key.is_equal("name"), is_ns = key.is_equal("namespace");
      if (is_name || is_ns || key.is_equal("resourceVersion")) {
        if (const std::optional<std::string_view> text = plain_string(f.value())) {
          (is_name ? name : is_ns ? ns : found.resource_version) = *text;
        }
      }
    }
    if (!name.empty()) {
      found.key.name = std::string(name);
      if (kind != object_kind::node) {
        found.key.namespace_ = ns.empty() ? "default" : std::string(ns);
      }
      out = std::move(found);
    }
  }
  (void)object.reset();
  return out;
}

}  // namespace

std::string proxy_label_selector(std::string_view service_proxy_name) {
  if (service_proxy_name.empty()) {
    return std::string(kube_proxy_label_selector);
  }
  return fmt::format("!service.kubernetes.io/headless,service.kubernetes.io/service-proxy-name={}",
                     service_proxy_name);
}

kube_source::kube_source(const api_config& cfg, cluster_store& store, kube_source_options opts)
    : store_(store), opts_(std::move(opts)) {
  const std::string selector = proxy_label_selector(opts_.service_proxy_name);
  std::vector<reflector_options> all{services_reflector(selector),
                                     endpointslices_reflector(selector),
                                     node_reflector(opts_.node_name),
                                     pods_reflector(opts_.node_name)};
  // One token source for all reflectors: the file is re-read once, not four times.
  auto tokens = std::make_shared<token_source>(cfg.token, cfg.token_file);
  for (reflector_options& o : all) {
    o.watch_timeout_min = opts_.watch_timeout_min;
    o.watch_timeout_max = opts_.watch_timeout_max;
    reflectors_.push_back(std::make_unique<reflector>(cfg, std::move(o), *this, tokens));
  }
  // After an outage each reflector retries on its own backoff (up to 30 s, jittered). The first
  // one that gets through wakes the others, so the whole view is current again within one
  // round trip of that, not of the slowest backoff.
  for (auto& r : reflectors_) {
    r->set_on_recovered([this, self = r.get()] {
      spdlog::info("kube {}: API server reachable again", self->options().resource);
      for (auto& other : reflectors_) {
        if (other.get() != self) {
          other->wake();
        }
      }
    });
  }
}

std::optional<std::chrono::system_clock::time_point> kube_source::unreachable_since() const {
  std::int64_t earliest = 0;
  for (const auto& r : reflectors_) {
    const std::int64_t t = r->stats().failing_since_unix_ms.load(std::memory_order_relaxed);
    if (t != 0 && (earliest == 0 || t < earliest)) {
      earliest = t;
    }
  }
  if (earliest == 0) {
    return std::nullopt;
  }
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(earliest));
}

kube_source::~kube_source() { stop(); }

void kube_source::start() {
  for (auto& r : reflectors_) {
    r->start();
  }
}

void kube_source::stop() {
  for (auto& r : reflectors_) {
    r->stop();
  }
}

bool kube_source::synced() const {
  return store_.synced(
      {object_kind::service, object_kind::endpoint_slice, object_kind::node, object_kind::pod});
}

void kube_source::list_begin(std::string_view resource) {
  store_.list_begin(kind_for(resource));
}

void kube_source::list_item(std::string_view resource, simdjson::ondemand::object& object) {
  put(kind_for(resource), object, true);
}

void kube_source::list_end(std::string_view resource, std::string_view resource_version) {
  const object_kind kind = kind_for(resource);
  store_.list_end(kind);
  spdlog::debug("{}: listed at resourceVersion {}", resource, resource_version);
}

void kube_source::list_abort(std::string_view resource) { store_.list_abort(kind_for(resource)); }

void kube_source::event(std::string_view resource, watch_event_type type,
                        simdjson::ondemand::object& object) {
  const object_kind kind = kind_for(resource);
  if (type != watch_event_type::deleted) {
    put(kind, object, false);
    return;
  }
  const std::optional<meta> m = meta_of(kind, object);
  if (!m) {
    decode_[static_cast<size_t>(kind)].rejected.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("{} DELETED event without metadata.name: ignored", kind_name(kind));
    return;
  }
  store_.erase(kind, m->key);
}

void kube_source::synced(std::string_view resource, bool ok) {
  if (!ok) {
    spdlog::warn("{}: list failed; serving the last known state", resource);
  }
}

void kube_source::put(object_kind kind, simdjson::ondemand::object& object, bool from_list) {
  // The object is skipped over once first: it measures a List item (a watch line is bounded as
  // a whole, wire_format.cc), and a structural error found here ends the item before anything
  // else reads it (simdjson abandons its iterator on such an error; reading on is undefined).
  std::string_view raw;
  if (object.raw_json().get(raw) != simdjson::SUCCESS) {
    decode_[static_cast<size_t>(kind)].rejected.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("rejected: {}: malformed JSON object", kind_name(kind));
    return;
  }
  (void)object.reset();
  const std::optional<meta> m = meta_of(kind, object);
  if (from_list && m && store_.holds_version(kind, m->key, m->resource_version)) {
    return;  // a relist of an unchanged object: nothing to decode or plan
  }
  if (raw.size() > max_object_bytes) {
    decode_[static_cast<size_t>(kind)].rejected.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("rejected: {} {}: object of {} bytes is larger than the limit of {} bytes",
                  kind_name(kind), m ? printable(m->key.str()) : std::string("<no name>"),
                  raw.size(), max_object_bytes);
    if (from_list && m) {
      store_.keep_listed(kind, m->key);
    }
    return;
  }
  (void)object.reset();
  auto decoded = decode_object(object, kind_name(kind));
  if (!decoded) {
    auto& counters = decode_[static_cast<size_t>(kind)];
    if (decoded.error().ignored) {
      counters.ignored.fetch_add(1, std::memory_order_relaxed);
      if (!from_list && m) {
        store_.erase(kind, m->key);  // no longer ours: as a relist would drop it
      }
      return;
    }
    counters.rejected.fetch_add(1, std::memory_order_relaxed);
    // The previous good version (if any) stays: a bad update must not take a service down.
    spdlog::error("rejected: {}", decoded.error().message);
    if (from_list && m) {
      store_.keep_listed(kind, m->key);
    }
    return;
  }
  store_.put(std::move(*decoded));
}

}  // namespace sluice::kube
