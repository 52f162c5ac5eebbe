// sluice-agent's kube-proxy compatible HTTP endpoints, all served by one thread running one
// libevent event_base:
//   - the health server (default 0.0.0.0:10256): /healthz and /livez as kube-proxy;
//   - the metrics server (default 127.0.0.1:10249): /metrics, /proxyMode, /healthz;
//   - one listener set per healthCheckNodePort (Services of type LoadBalancer with
//     externalTrafficPolicy Local), answering any path and method as kube-proxy does.
// Other threads talk to it through thread-safe calls: the health state is atomics, health-check
// changes are handed to the loop thread and applied there.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/datapath/error.h"
#include "agent/http/proxy_health.h"
#include "agent/metrics/agent_metrics.h"
#include "agent/planner/desired.h"

namespace sluice::http {

/// Where healthCheckNodePort listeners go.
struct health_check_bind {
  enum class mode : uint8_t {
    all,        ///< 0.0.0.0:P and [::]:P (the latter skipped when IPv6 is unavailable)
    addresses,  ///< ADDR:P for each node address (--nodeport-addresses)
    unix_dir,   ///< tests: port P listens on <dir>/hc-P.sock
  };
  mode kind = mode::all;
  std::vector<std::string> addresses;  ///< numeric IPv4 / IPv6 addresses; mode::addresses
  std::string dir;                     ///< mode::unix_dir

  static health_check_bind all() { return {}; }
  static health_check_bind node_addresses(std::vector<std::string> addrs) {
    return {mode::addresses, std::move(addrs), {}};
  }
  static health_check_bind unix_directory(std::string dir) {
    return {mode::unix_dir, {}, std::move(dir)};
  }
};

struct http_options {
  /// kube-proxy --healthz-bind-address; "" disables the health server.
  std::string health_address = "0.0.0.0:10256";
  /// kube-proxy --metrics-bind-address; "" disables the metrics server.
  std::string metrics_address = "127.0.0.1:10249";
  health_check_bind health_checks = health_check_bind::all();
  /// kube-proxy healthTimeout: 2 x the sync period (kube-proxy's default sync period is 30 s).
  std::chrono::nanoseconds health_timeout = std::chrono::seconds(60);
  /// Body of /proxyMode. kube-proxy prints its mode ("iptables", "nftables", "ipvs"); sluice
  /// programs eBPF, so "ebpf" names the mechanism the same way.
  std::string proxy_mode = "ebpf";
  /// Wall clock for the health state; empty = std::chrono::system_clock::now.
  clock_fn clock;
  /// Since when the API server has been unreachable (Kubernetes mode); /healthz fails after
  /// health_timeout of it. Empty: no such source (standalone).
  proxy_health::unreachable_fn source_unreachable_since;
  /// Idle / slow connections are closed after this long.
  std::chrono::seconds connection_timeout = std::chrono::seconds(60);
  /// Called on the loop thread at the start of every request (tests check the threading).
  std::function<void()> on_request;
};

/// State of one healthCheckNodePort as last applied by the loop thread.
struct health_check_port_status {
  uint16_t port = 0;
  std::string namespace_;
  std::string name;
  uint32_t local_endpoints = 0;
  bool serving = false;  ///< false: the listeners could not be opened; see `error`
  std::string error;     ///< the bind error, when not serving
  bool operator==(const health_check_port_status&) const = default;
};

class http_endpoints {
 public:
  /// Opens the health and metrics listeners on the calling thread (so a bad address or a port
  /// in use fails start-up cleanly), then starts the loop thread. `metrics` must outlive the
  /// returned object.
  static result<std::unique_ptr<http_endpoints>> start(http_options options,
                                                       metrics::agent_metrics& metrics);

  /// Stops the loop thread and closes every listener and connection (stop()).
  ~http_endpoints();
  http_endpoints(const http_endpoints&) = delete;
  http_endpoints& operator=(const http_endpoints&) = delete;

  /// Stops the loop and joins its thread; closes everything. Idempotent; any thread but the
  /// loop thread.
  void stop();

  /// Health state (any thread): see proxy_health.
  void queued_update() noexcept;
  void updated() noexcept;
  void set_node_eligible(bool eligible) noexcept;
  const proxy_health& health() const;

  /// The healthCheckNodePorts to serve (any thread). Applied on the loop thread: listeners of
  /// new ports are opened, those of ports no longer listed are closed, and unchanged ports keep
  /// their sockets and only take the new counts. Ports that failed to bind before are retried.
  /// Only the latest call matters when several arrive before the loop runs. Returns a
  /// generation number for wait_applied().
  uint64_t set_health_checks(std::vector<desired_health_check> checks);

  /// Waits until the loop thread has applied the set_health_checks() call that returned
  /// `generation` (or a later one). False when `timeout` passes first or the loop is stopped.
  bool wait_applied(uint64_t generation, std::chrono::milliseconds timeout) const;

  /// The health checks as last applied, sorted by port (any thread).
  std::vector<health_check_port_status> health_check_status() const;

  /// The thread that serves every listener.
  std::thread::id loop_thread_id() const;

 private:
  struct impl;
  explicit http_endpoints(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace sluice::http
