// The sync loop: takes the changes the sources left in the cluster_store, plans only what they
// touch (plan_cache), programs the maps (map_writer), and reports to the health server and the
// metrics. One thread (the agent's main loop) drives it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/datapath/map_writer.h"
#include "agent/http/http_endpoints.h"
#include "agent/metrics/agent_metrics.h"
#include "agent/planner/plan_cache.h"
#include "agent/planner/planner.h"
#include "agent/store/cluster_store.h"

namespace sluice {

struct sync_loop_options {
  plan_options plan;
  /// A full diff of every frontend against the maps this often (also removes backends that
  /// incremental syncs leave behind, and repairs maps someone else wrote to).
  std::chrono::seconds full_sync_period{900};
};

/// What one round did (also logged as the `synced generation=...` line).
struct sync_round {
  uint64_t generation = 0;
  bool full = false;
  size_t touched = 0;        ///< frontends whose desired content changed
  sync_report report;
  int64_t took_us = 0;       ///< plan + program
  std::optional<int64_t> programming_latency_us;  ///< max over slices with a trigger time
};

class sync_loop {
 public:
  sync_loop(sync_loop_options options, map_writer& writer, cluster_store& store,
            metrics::agent_metrics& metrics, http::http_endpoints* http);

  /// Plans and programs whatever changed since the last call (a full sync on the first call,
  /// when full_sync_period has passed, or after a failed round). Returns nullopt when nothing
  /// was pending and `force` is false.
  std::optional<sync_round> run_once(bool force = false);

  /// Before the sources' first complete list: plans what has arrived so far and writes
  /// nothing (kube-proxy's gate holds: no Service is programmed before its slices are listed).
  /// The planner is incremental, so the first run_once() then plans only what came after, and
  /// the cold start's planning overlaps the list instead of following it.
  void plan_ahead();

  /// When run_once(true) is due without any change: the retry of a failed round (backing off
  /// from 1 s to 30 s) or the periodic full sync. nullopt before the first round.
  std::optional<std::chrono::steady_clock::time_point> next_due() const;

  /// Text appended to the next `synced` log line (the manifest source's object counts).
  void set_source_note(std::string note) { source_note_ = std::move(note); }

  uint64_t generation() const { return generation_; }

 private:
  void observe_programming(const cluster& state, const std::set<object_key>& slices,
                           std::optional<int64_t>& max_latency_us);
  void update_gauges(const cluster& state);
  void publish_health_checks();
  void log_conflicts();
  void track_not_programmed(const sync_round& round, const std::set<frontend_key>& touched);

  sync_loop_options opts_;
  map_writer& writer_;
  cluster_store& store_;
  metrics::agent_metrics& metrics_;
  http::http_endpoints* http_;
  plan_cache cache_;
  uint64_t generation_ = 0;
  bool need_full_ = true;
  bool planned_ahead_ = false;  ///< plan_ahead() ran: the planner holds the state taken so far
  std::optional<std::chrono::steady_clock::time_point> retry_at_;  ///< after a failed round
  std::chrono::seconds retry_backoff_{1};
  std::set<object_key> pending_slices_;  ///< changed slices of the round in progress
  std::chrono::steady_clock::time_point last_full_{};
  std::chrono::steady_clock::time_point last_gauges_{};
  std::chrono::system_clock::time_point started_ = std::chrono::system_clock::now();
  std::vector<desired_health_check> published_checks_;
  bool checks_published_ = false;
  std::set<std::string> known_conflicts_;
  /// Frontends the writer could not program, as of the last round that planned them.
  std::map<frontend_key, reconcile_error> not_programmed_;
  std::chrono::seconds full_retry_backoff_{1};  ///< while a map is full: full syncs back off
  std::string source_note_;
};

}  // namespace sluice
