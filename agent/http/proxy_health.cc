// proxy_health: kube-proxy's QueuedUpdate / Updated / isHealthy over atomics.
#include "agent/http/proxy_health.h"

namespace sluice::http {

namespace {

int64_t to_ns(time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

time_point from_ns(int64_t ns) {
  return time_point(std::chrono::duration_cast<time_point::duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace

proxy_health::proxy_health(std::chrono::nanoseconds health_timeout, clock_fn clock)
    : health_timeout_(health_timeout), clock_(std::move(clock)) {}

time_point proxy_health::now() const {
  return clock_ ? clock_() : std::chrono::system_clock::now();
}

void proxy_health::queued_update() noexcept {
  int64_t expected = none;
  // Only the oldest pending update matters: later ones must not push the deadline out.
  oldest_pending_ns_.compare_exchange_strong(expected, to_ns(now()), std::memory_order_acq_rel);
}

void proxy_health::updated() noexcept {
  oldest_pending_ns_.store(none, std::memory_order_release);
  last_updated_ns_.store(to_ns(now()), std::memory_order_release);
}

void proxy_health::set_node_eligible(bool eligible) noexcept {
  node_eligible_.store(eligible, std::memory_order_release);
}

proxy_health::status proxy_health::check() const {
  status s;
  const int64_t pending = oldest_pending_ns_.load(std::memory_order_acquire);
  const int64_t last = last_updated_ns_.load(std::memory_order_acquire);
  s.current_time = now();
  if (last != none) {
    s.last_updated = from_ns(last);
  }
  // Healthy while starting up or fully synced, or while the pending update is not yet late.
  s.healthy = pending == none ||
              std::chrono::nanoseconds(to_ns(s.current_time) - pending) < health_timeout_;
  s.node_eligible = node_eligible_.load(std::memory_order_acquire);
  if (source_) {
    s.source_unreachable_since = source_();
    s.source_stale = s.source_unreachable_since &&
                     s.current_time - *s.source_unreachable_since >= health_timeout_;
  }
  return s;
}

}  // namespace sluice::http
