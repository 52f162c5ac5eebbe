// The Kubernetes API source: one reflector per resource (Services, EndpointSlices, our Node,
// the Pods on this node) decoding what they receive straight into the cluster_store, so no
// JSON outlives the event that carried it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/sources/kube/api_config.h"
#include "agent/sources/kube/reflector.h"
#include "agent/store/cluster_store.h"

namespace sluice::kube {

struct kube_source_options {
  std::string node_name;
  /// Empty: kube-proxy's selector (skip services naming any proxy). Otherwise only services
  /// labelled service.kubernetes.io/service-proxy-name=<this> (run beside kube-proxy).
  std::string service_proxy_name;
  /// Timing knobs for tests; defaults are client-go's.
  std::chrono::seconds watch_timeout_min{300}, watch_timeout_max{600};
};

/// Per-kind decode outcome counters (read by /metrics).
struct decode_counters {
  std::atomic<uint64_t> rejected{0};  ///< malformed objects (logged)
  std::atomic<uint64_t> ignored{0};   ///< well-formed but not ours
};

class kube_source final : public reflector_sink {
 public:
  kube_source(const api_config& cfg, cluster_store& store, kube_source_options opts);
  ~kube_source() override;

  void start();
  void stop();

  /// True once Services, EndpointSlices, our Node and our Pods have each been listed once:
  /// planning earlier would program services without their endpoints.
  bool synced() const;

  /// Since when the API server has not been reachable: the earliest time a reflector's requests
  /// started failing without one getting through since. nullopt while every reflector gets
  /// answers. Any thread.
  std::optional<std::chrono::system_clock::time_point> unreachable_since() const;

  /// The reflectors, for their counters.
  const std::vector<std::unique_ptr<reflector>>& reflectors() const { return reflectors_; }
  const decode_counters& decode_stats(object_kind kind) const {
    return decode_[static_cast<size_t>(kind)];
  }

  void list_begin(std::string_view resource) override;
  void list_item(std::string_view resource, simdjson::ondemand::object& object) override;
  void list_end(std::string_view resource, std::string_view resource_version) override;
  void list_abort(std::string_view resource) override;
  void event(std::string_view resource, watch_event_type type,
             simdjson::ondemand::object& object) override;
  void synced(std::string_view resource, bool ok) override;

 private:
  void put(object_kind kind, simdjson::ondemand::object& object, bool from_list);

  cluster_store& store_;
  kube_source_options opts_;
  std::vector<std::unique_ptr<reflector>> reflectors_;
  std::array<decode_counters, 5> decode_;
};

/// The selector for Services and EndpointSlices given --service-proxy-name.
std::string proxy_label_selector(std::string_view service_proxy_name);

}  // namespace sluice::kube
