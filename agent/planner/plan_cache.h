// The incremental planner: keeps each Service's and Pod's planned frontends, which object
// claims which (vip, port, proto), and the merged result, so that one changed Service or
// EndpointSlice costs the size of that Service rather than of the cluster. Its state always
// equals plan() of the same cluster and options. Pure: no I/O, no clock, no logging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/model/model.h"
#include "agent/planner/desired.h"
#include "agent/planner/planner.h"

namespace sluice {

/// What changed in the cluster since the previous update().
struct plan_changes {
  std::set<object_key> services;  ///< added, modified or removed Services
  /// Added, modified or removed EndpointSlices. The cache remembers which Service each slice
  /// fed, so a removed slice (or one relabelled to another Service) is attributed correctly.
  std::set<object_key> slices;
  bool node = false;  ///< our Node changed (the cache also notices on its own, cheaply)
  bool pods = false;  ///< some Pod changed: every Pod's hostPorts are re-planned
  bool all = false;   ///< re-plan everything (first sync, relist)
};

/// How much work the last update() did (for tests and metrics).
struct plan_stats {
  bool full = false;            ///< everything was re-planned
  size_t services_planned = 0;  ///< plan_service() calls
  size_t slices_read = 0;       ///< slices handed to plan_service()
  size_t pods_planned = 0;      ///< plan_host_ports() calls
};

/// The incremental planner. The first update() (or one whose node context or options differ
/// from the previous one) plans everything; later ones re-plan only the Services named in
/// `changes` or owning a changed slice, and the Pods when `changes.pods` is set.
class plan_cache {
 public:
  /// Brings the cache in line with `state`. `changes` must name every object that changed
  /// since the previous call (anything not named is assumed unchanged). Returns the keys whose
  /// frontend was added, removed or modified.
  std::set<frontend_key> update(const cluster& state, const plan_options& options,
                                const plan_changes& changes);

  /// The merged frontends (conflicts resolved), by key.
  const std::map<frontend_key, desired_frontend>& frontends() const { return frontends_; }

  /// Health checks sorted by (port, namespace, name).
  std::vector<desired_health_check> health_checks() const;

  /// One line per claim that lost a conflict, sorted by frontend key, then claimant.
  std::vector<std::string> conflicts() const;

  /// Everything, as plan() returns it.
  desired_state state() const;

  /// Services known but not proxied (headless, ExternalName, ...), by namespace/name.
  const std::map<object_key, unproxied_service>& unproxied() const { return unproxied_; }
  /// Whether the last update() changed unproxied().
  bool unproxied_changed() const { return unproxied_changed_; }

  /// What the last update() did.
  const plan_stats& last_stats() const { return stats_; }

 private:
  // Who claims a frontend key: the owning object (a Service sorts before a Pod of the same
  // namespace/name) and the position of the claim in that object's plan.
  struct claimant {
    object_key owner;
    uint8_t owner_kind = 0;  // 0 = Service, 1 = Pod
    uint32_t seq = 0;

    auto operator<=>(const claimant&) const = default;
    bool operator==(const claimant&) const = default;
  };
  using claims = std::map<claimant, const desired_frontend*>;

  void rebuild(const cluster& state, std::set<frontend_key>& changed);
  void replan_service(const cluster& state, const object_key& key,
                      std::set<frontend_key>& affected);
  void replan_pods(const cluster& state, std::set<frontend_key>& affected);
  // Replaces the candidates of one owner and records every key they touched.
  void replace(const object_key& owner, uint8_t owner_kind,
               const std::vector<desired_frontend>* old_frontends,
               const std::vector<desired_frontend>* new_frontends,
               std::set<frontend_key>& affected);
  // Recomputes the winner of each affected key; collects those whose merged frontend changed.
  void merge(const std::set<frontend_key>& affected, std::set<frontend_key>& changed);
  void index_slice(const object_key& slice_key, const cluster& state,
                   std::set<object_key>& dirty_services);

  bool primed_ = false;
  node_context node_;
  std::map<object_key, object_key> slice_owner_;               // slice -> service
  std::map<object_key, std::set<object_key>> service_slices_;  // service -> slices
  std::map<object_key, service_plan> services_;                // non-empty plans only
  std::map<object_key, std::vector<desired_frontend>> pods_;   // non-empty plans only
  std::map<object_key, desired_health_check> health_;
  std::map<frontend_key, claims> claims_;
  std::set<frontend_key> contested_;  // keys with more than one claim
  std::map<frontend_key, desired_frontend> frontends_;
  std::map<object_key, unproxied_service> unproxied_;
  bool unproxied_changed_ = false;
  plan_stats stats_;
};

}  // namespace sluice
