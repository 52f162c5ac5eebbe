// Every metric sluice-agent exports, declared in one place. kube-proxy names (kubeproxy_*) where
// kube-proxy has the same measurement, so existing dashboards and alerts keep working;
// sluice_* for the rest.
#pragma once

#include "agent/metrics/registry.h"

namespace sluice::metrics {

/// References into one registry. Construct once at start-up; pass by reference to the
/// components that write (sync loop, reflectors, datapath, HTTP server).
struct agent_metrics {
  /// Registers every family below in `reg`; throws std::invalid_argument if any name is
  /// already registered there.
  explicit agent_metrics(registry& reg);
  agent_metrics(const agent_metrics&) = delete;
  agent_metrics& operator=(const agent_metrics&) = delete;

  registry& reg;

  // --- kube-proxy compatible (pkg/proxy/metrics) ---
  /// One plan + map write round, seconds (buckets 0.001 * 2^n, n < 15, as kube-proxy).
  histogram& sync_proxy_rules_duration_seconds;
  /// Unix time of the last successful sync.
  gauge& sync_proxy_rules_last_timestamp_seconds;
  /// Unix time of the last event that queued a sync.
  gauge& sync_proxy_rules_last_queued_timestamp_seconds;
  /// EndpointSlice last-change-trigger-time to programmed, seconds (kube-proxy's buckets).
  histogram& network_programming_duration_seconds;
  counter& sync_proxy_rules_endpoint_changes_total;
  counter& sync_proxy_rules_service_changes_total;
  gauge& sync_proxy_rules_endpoint_changes_pending;
  gauge& sync_proxy_rules_service_changes_pending;
  /// Services with a Local policy and no local endpoints; label traffic_policy is "internal"
  /// or "external". A gauge despite the name, as in kube-proxy.
  gauge_family& sync_proxy_rules_no_local_endpoints_total;
  /// /healthz and /livez answers on the health server, label code ("200" / "503").
  counter_family& proxy_healthz_total;
  counter_family& proxy_livez_total;

  // --- sluice ---
  gauge& services;   ///< Services in the model
  gauge& endpoints;  ///< endpoints (addresses) in the model
  gauge& frontends;  ///< (VIP, port, protocol) entries the planner produced
  gauge_family& map_entries;   ///< label map: entries in each BPF map
  gauge_family& map_capacity;  ///< label map: max_entries of each BPF map
  counter_family& datapath_packets_total;  ///< label reason: datapath verdicts / drop reasons
  counter& sync_failures_total;            ///< sync rounds that failed and will be retried
  counter_family& api_errors_total;        ///< labels resource, class (e.g. "timeout", "5xx")
  counter_family& api_relists_total;       ///< label resource: full re-lists (410 Gone, restart)
  counter_family& objects_rejected_total;  ///< label kind: objects the decoder refused
  counter& agent_restarts_total;           ///< starts that found pinned state from a previous run
  gauge& agent_start_time_seconds;         ///< Unix time this process started
  counter_family& conntrack_gc_deleted_total;  ///< label reason: entries removed by the GC
  gauge& health_check_ports;                   ///< healthCheckNodePorts being served
  counter& health_check_bind_errors_total;     ///< healthCheckNodePort listen failures
  counter& frontend_conflicts_total;           ///< frontends dropped because another claims them
  counter& socket_lb_destroyed_total;  ///< connected UDP sockets whose backend left, destroyed
};

}  // namespace sluice::metrics
