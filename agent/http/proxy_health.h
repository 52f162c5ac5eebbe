// The proxier's health as kube-proxy defines it (proxier_health.go): healthy unless an update
// has been pending for longer than health_timeout; /healthz also needs the node to be eligible
// (not being deleted, no ToBeDeletedByClusterAutoscaler taint). Beyond kube-proxy, /healthz
// also fails once the source (the API server) has been unreachable for health_timeout: the
// datapath keeps serving the last state, but nobody would notice that it no longer follows the
// cluster. Lock-free: the sync loop and the node watcher write, the HTTP thread reads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include "agent/http/kube_format.h"
#include "agent/model/model.h"

namespace sluice::http {

/// kube-proxy's node eligibility for /healthz: not being deleted and not tainted
/// ToBeDeletedByClusterAutoscaler.
inline bool node_eligible(const node& n) { return !n.deleting && !n.to_be_deleted_taint; }

/// A clock returning wall-clock time; must be callable from any thread. Tests inject one.
using clock_fn = std::function<time_point()>;

class proxy_health {
 public:
  /// `health_timeout` is kube-proxy's healthTimeout (2 x sync period). A null clock means
  /// std::chrono::system_clock::now.
  explicit proxy_health(std::chrono::nanoseconds health_timeout, clock_fn clock = {});

  /// Since when the source cannot reach the API server (nullopt: it can). Set once, before
  /// the HTTP thread starts; called from that thread, so it must be thread-safe.
  using unreachable_fn = std::function<std::optional<time_point>()>;
  void set_source(unreachable_fn fn) { source_ = std::move(fn); }

  /// An event arrived that needs a sync (kube-proxy QueuedUpdate): starts the pending timer
  /// unless an update is already pending.
  void queued_update() noexcept;
  /// A sync finished successfully (kube-proxy Updated): clears the pending timer and records
  /// the time.
  void updated() noexcept;
  /// False while the Node is being deleted or carries ToBeDeletedByClusterAutoscaler.
  /// The node counts as eligible until told otherwise (kube-proxy before the first Node event).
  void set_node_eligible(bool eligible) noexcept;

  struct status {
    bool healthy = true;                     ///< ignoring node eligibility (/livez)
    std::optional<time_point> last_updated;  ///< nullopt: never synced
    time_point current_time;
    bool node_eligible = true;
    /// The API server has been unreachable for health_timeout or longer (/healthz fails).
    bool source_stale = false;
    std::optional<time_point> source_unreachable_since;
  };
  status check() const;
  /// check().healthy: what healthCheckNodePort answers report as serviceProxyHealthy.
  bool healthy() const { return check().healthy; }

  time_point now() const;

 private:
  static constexpr int64_t none = INT64_MIN;

  std::chrono::nanoseconds health_timeout_;
  clock_fn clock_;
  std::atomic<int64_t> last_updated_ns_{none};     // since the epoch
  std::atomic<int64_t> oldest_pending_ns_{none};   // since the epoch
  std::atomic<bool> node_eligible_{true};
  unreachable_fn source_;
};

}  // namespace sluice::http
