// Registration of the agent's metrics: names, help texts, label names and buckets.
#include "agent/metrics/agent_metrics.h"

namespace sluice::metrics {

namespace {

// kube-proxy's NetworkProgrammingLatency buckets: a leading 0, then 0.25 s, 0.5 s, 1..59 s,
// 60..115 s by 5, 120..300 s by 30 (pkg/proxy/metrics: merge() starts from one zero).
std::vector<double> network_programming_buckets() {
  std::vector<double> b{0};
  for (const auto& part : {linear_buckets(0.25, 0.25, 2), linear_buckets(1, 1, 59),
                           linear_buckets(60, 5, 12), linear_buckets(120, 30, 7)}) {
    b.insert(b.end(), part.begin(), part.end());
  }
  return b;
}

}  // namespace

agent_metrics::agent_metrics(registry& r)
    : reg(r),
      sync_proxy_rules_duration_seconds(
          r.add_histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                          "SyncProxyRules latency in seconds", exponential_buckets(0.001, 2, 15))
              .get()),
      sync_proxy_rules_last_timestamp_seconds(
          r.add_gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                      "The last time proxy rules were successfully synced")
              .get()),
      sync_proxy_rules_last_queued_timestamp_seconds(
          r.add_gauge("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                      "The last time a sync of proxy rules was queued")
              .get()),
      network_programming_duration_seconds(
          r.add_histogram("kubeproxy_network_programming_duration_seconds",
                          "In Cluster Network Programming Latency in seconds",
                          network_programming_buckets())
              .get()),
      sync_proxy_rules_endpoint_changes_total(
          r.add_counter("kubeproxy_sync_proxy_rules_endpoint_changes_total",
                        "Cumulative proxy rules Endpoint changes")
              .get()),
      sync_proxy_rules_service_changes_total(
          r.add_counter("kubeproxy_sync_proxy_rules_service_changes_total",
                        "Cumulative proxy rules Service changes")
              .get()),
      sync_proxy_rules_endpoint_changes_pending(
          r.add_gauge("kubeproxy_sync_proxy_rules_endpoint_changes_pending",
                      "Pending proxy rules Endpoint changes")
              .get()),
      sync_proxy_rules_service_changes_pending(
          r.add_gauge("kubeproxy_sync_proxy_rules_service_changes_pending",
                      "Pending proxy rules Service changes")
              .get()),
      sync_proxy_rules_no_local_endpoints_total(
          r.add_gauge("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                      "Number of services with a Local traffic policy and no endpoints",
                      {"traffic_policy"})),
      proxy_healthz_total(r.add_counter("kubeproxy_proxy_healthz_total",
                                        "Cumulative proxy healthz HTTP status", {"code"})),
      proxy_livez_total(r.add_counter("kubeproxy_proxy_livez_total",
                                      "Cumulative proxy livez HTTP status", {"code"})),
      services(r.add_gauge("sluice_services", "Services in the agent's model").get()),
      endpoints(r.add_gauge("sluice_endpoints", "Endpoints in the agent's model").get()),
      frontends(r.add_gauge("sluice_frontends",
                            "Frontends (VIP, port, protocol) programmed into the datapath")
                    .get()),
      map_entries(r.add_gauge("sluice_map_entries", "Entries in a BPF map", {"map"})),
      map_capacity(r.add_gauge("sluice_map_capacity", "Maximum entries of a BPF map", {"map"})),
      datapath_packets_total(r.add_counter(
          "sluice_datapath_packets_total", "Packets by datapath verdict or drop reason",
          {"reason"})),
      sync_failures_total(
          r.add_counter("sluice_sync_failures_total", "Sync rounds that failed (retried later)")
              .get()),
      api_errors_total(r.add_counter("sluice_api_errors_total",
                                     "Kubernetes API request or watch errors",
                                     {"resource", "class"})),
      api_relists_total(r.add_counter("sluice_api_relists_total",
                                      "Full re-lists of a Kubernetes resource", {"resource"})),
      objects_rejected_total(r.add_counter("sluice_objects_rejected_total",
                                           "Objects the decoder refused", {"kind"})),
      agent_restarts_total(
          r.add_counter("sluice_agent_restarts_total",
                        "Agent starts that found pinned datapath state from a previous run")
              .get()),
      agent_start_time_seconds(
          r.add_gauge("sluice_agent_start_time_seconds", "Unix time the agent started").get()),
      conntrack_gc_deleted_total(r.add_counter("sluice_conntrack_gc_deleted_total",
                                               "Conntrack entries removed by the agent",
                                               {"reason"})),
      health_check_ports(
          r.add_gauge("sluice_health_check_ports", "healthCheckNodePort listeners being served")
              .get()),
      health_check_bind_errors_total(
          r.add_counter("sluice_health_check_bind_errors_total",
                        "healthCheckNodePort listeners that could not be opened")
              .get()),
      frontend_conflicts_total(
          r.add_counter("sluice_frontend_conflicts_total",
                        "Frontends left out because another Service claims the same VIP and port")
              .get()),
      socket_lb_destroyed_total(
          r.add_counter("sluice_socket_lb_sockets_destroyed_total",
                        "Connected UDP sockets destroyed because socket-LB had pointed them at "
                        "a backend that left its service")
              .get()) {}

}  // namespace sluice::metrics
