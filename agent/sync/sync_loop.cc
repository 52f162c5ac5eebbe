#include "agent/sync/sync_loop.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace sluice {

namespace {

using steady = std::chrono::steady_clock;

int64_t micros_since(steady::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - start).count();
}

}  // namespace

sync_loop::sync_loop(sync_loop_options options, map_writer& writer, cluster_store& store,
                     metrics::agent_metrics& metrics, http::http_endpoints* http)
    : opts_(std::move(options)), writer_(writer), store_(store), metrics_(metrics), http_(http) {}

void sync_loop::observe_programming(const cluster& state, const std::set<object_key>& slices,
                                    std::optional<int64_t>& max_latency_us) {
  // kube-proxy's network programming latency: from the EndpointSlice controller's trigger time
  // to "programmed". Trigger times from before this agent started describe changes an earlier
  // run (or nobody) programmed, as kube-proxy's endpoints change tracker also ignores them.
  const auto now = std::chrono::system_clock::now();
  for (const object_key& key : slices) {
    const auto it = state.endpoint_slices.find(key);
    if (it == state.endpoint_slices.end()) {
      continue;
    }
    const auto a = it->second.annotations.find(std::string(annotation_last_change_trigger_time));
    if (a == it->second.annotations.end()) {
      continue;
    }
    const auto trigger = parse_rfc3339(a->second);
    if (!trigger || *trigger < started_ || *trigger > now) {
      continue;
    }
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - *trigger).count();
    metrics_.network_programming_duration_seconds.observe(static_cast<double>(us) / 1e6);
    max_latency_us = std::max(max_latency_us.value_or(0), us);
  }
}

void sync_loop::update_gauges(const cluster& state) {
  size_t endpoints = 0;
  for (const auto& [key, slice] : state.endpoint_slices) {
    endpoints += slice.endpoints.size();
  }
  metrics_.services.set(static_cast<double>(state.services.size()));
  metrics_.endpoints.set(static_cast<double>(endpoints));
  metrics_.frontends.set(static_cast<double>(cache_.frontends().size()));

  // Services with a Local policy, some endpoints, and none on this node (kube-proxy's
  // sync_proxy_rules_no_local_endpoints_total, a gauge despite its name).
  std::set<std::string> internal, external;
  for (const auto& [key, f] : cache_.frontends()) {
    const std::string service = f.name.substr(0, f.name.rfind(':'));
    if (f.kind == frontend_kind::cluster_ip && f.backends.empty() &&
        f.when_empty == empty_verdict::drop) {
      internal.insert(service);
    }
    if (f.external_local && f.external_backends.empty() && !f.backends.empty()) {
      external.insert(service);
    }
  }
  metrics_.sync_proxy_rules_no_local_endpoints_total.with({"internal"}).set(
      static_cast<double>(internal.size()));
  metrics_.sync_proxy_rules_no_local_endpoints_total.with({"external"}).set(
      static_cast<double>(external.size()));
}

void sync_loop::publish_health_checks() {
  std::vector<desired_health_check> checks = cache_.health_checks();
  if (checks_published_ && checks == published_checks_) {
    return;
  }
  metrics_.health_check_ports.set(static_cast<double>(checks.size()));
  if (http_ != nullptr) {
    http_->set_health_checks(checks);
  }
  published_checks_ = std::move(checks);
  checks_published_ = true;
}

void sync_loop::log_conflicts() {
  std::set<std::string> now;
  for (std::string& line : cache_.conflicts()) {
    if (!known_conflicts_.contains(line)) {
      spdlog::error("conflict: {}", line);
      metrics_.frontend_conflicts_total.inc();
    }
    now.insert(std::move(line));
  }
  known_conflicts_ = std::move(now);
}

void sync_loop::track_not_programmed(const sync_round& round,
                                     const std::set<frontend_key>& touched) {
  std::map<frontend_key, reconcile_error> now;
  if (!round.full) {
    now = not_programmed_;
    for (const frontend_key& k : touched) {
      now.erase(k);
    }
  }
  for (const reconcile_error& e : round.report.errors) {
    now.insert_or_assign(e.key, e);
  }
  for (const auto& [key, e] : now) {
    const auto was = not_programmed_.find(key);
    if (was == not_programmed_.end() || was->second.reason != e.reason) {
      spdlog::error("not programmed: {}: {}", e.name, e.what);
    }
  }
  for (const auto& [key, e] : not_programmed_) {
    if (!now.contains(key) && cache_.frontends().contains(key)) {
      spdlog::info("programmed now: {} (was not: {})", e.name, to_string(e.reason));
    }
  }
  not_programmed_ = std::move(now);
  std::map<not_programmed_reason, size_t> by_reason;
  for (const auto& [key, e] : not_programmed_) {
    ++by_reason[e.reason];
  }
  for (const auto r : {not_programmed_reason::duplicate, not_programmed_reason::too_many_backends,
                       not_programmed_reason::no_service_id, not_programmed_reason::map_full}) {
    metrics_.frontends_not_programmed.with({std::string(to_string(r))})
        .set(static_cast<double>(by_reason[r]));
  }
}

std::optional<std::chrono::steady_clock::time_point> sync_loop::next_due() const {
  if (retry_at_) {
    return retry_at_;
  }
  if (generation_ == 0) {
    return std::nullopt;
  }
  return last_full_ + opts_.full_sync_period;
}

void sync_loop::plan_ahead() {
  if (generation_ != 0) {
    return;
  }
  store_.take([&](const cluster& state, const plan_changes& changes) {
    (void)cache_.update(state, opts_.plan, changes);
    metrics_.sync_proxy_rules_service_changes_total.inc(
        static_cast<double>(changes.services.size()));
    metrics_.sync_proxy_rules_endpoint_changes_total.inc(
        static_cast<double>(changes.slices.size()));
    planned_ahead_ = true;
  });
}

std::optional<sync_round> sync_loop::run_once(bool force) {
  const auto start = steady::now();
  sync_round round;
  std::set<frontend_key> touched;
  bool node_eligible = true;
  const bool took = store_.take([&](const cluster& state, const plan_changes& changes) {
    plan_changes effective = changes;
    if (generation_ == 0 && !planned_ahead_) {
      effective.all = true;  // the first plan after start-up covers everything
    }
    touched = cache_.update(state, opts_.plan, effective);
    metrics_.sync_proxy_rules_service_changes_total.inc(
        static_cast<double>(changes.services.size()));
    metrics_.sync_proxy_rules_endpoint_changes_total.inc(
        static_cast<double>(changes.slices.size()));
    if (state.self_node) {
      node_eligible = http::node_eligible(*state.self_node);
    }
    // Cheap enough per round at 10k services, but not free: at most once a second.
    if (generation_ == 0 || steady::now() - last_gauges_ >= std::chrono::seconds(1)) {
      update_gauges(state);
      last_gauges_ = steady::now();
    }
    pending_slices_.insert(changes.slices.begin(), changes.slices.end());
  }, force || (generation_ == 0 && planned_ahead_));  // plan_ahead() may have taken it all
  if (!took) {
    return std::nullopt;
  }
  if (http_ != nullptr) {
    http_->set_node_eligible(node_eligible);
  }

  round.full = need_full_ || steady::now() - last_full_ >= opts_.full_sync_period;
  round.touched = touched.size();
  if (round.full) {
    round.report = writer_.sync(cache_.frontends());
    last_full_ = steady::now();
  } else {
    round.report = writer_.sync_subset(cache_.frontends(), touched);
  }
  if (round.full || cache_.unproxied_changed()) {
    // sluicectl's list of Services not proxied: small, written whole when it changed.
    std::vector<unproxied_service> unproxied;
    unproxied.reserve(cache_.unproxied().size());
    for (const auto& [key, u] : cache_.unproxied()) {
      unproxied.push_back(u);
    }
    const sync_report names = writer_.sync_unproxied(make_unproxied(unproxied));
    round.report.ops += names.ops;
    round.report.syscalls += names.syscalls;
    round.report.failed_ops += names.failed_ops;
  }
  track_not_programmed(round, touched);
  log_conflicts();
  publish_health_checks();
  round.took_us = micros_since(start);
  metrics_.sync_proxy_rules_duration_seconds.observe(static_cast<double>(round.took_us) / 1e6);

  if (round.report.failed_ops > 0) {
    // The writer re-read the maps; a full diff retries exactly what is missing. Back off so a
    // persistent failure (a full map) neither spins nor floods the log.
    need_full_ = true;
    retry_at_ = steady::now() + retry_backoff_;
    metrics_.sync_failures_total.inc();
    spdlog::error("sync incomplete: {} of {} map operations failed; full sync again in {} s",
                  round.report.failed_ops, round.report.ops, retry_backoff_.count());
    retry_backoff_ = std::min(retry_backoff_ * 2, std::chrono::seconds(30));
    return round;
  }
  retry_at_.reset();
  retry_backoff_ = std::chrono::seconds(1);
  need_full_ = false;
  if (std::ranges::any_of(not_programmed_, [](const auto& e) {
        return e.second.reason == not_programmed_reason::map_full;
      })) {
    // Room may come from this round's deletes (they follow its writes) or from later ones:
    // plan everything again, soon after a round that changed the maps, else backing off while
    // they stay full.
    if (round.report.ops > 0) {
      full_retry_backoff_ = std::chrono::seconds(1);
    }
    need_full_ = true;
    retry_at_ = steady::now() + full_retry_backoff_;
    full_retry_backoff_ = std::min(full_retry_backoff_ * 2, std::chrono::seconds(30));
  } else {
    full_retry_backoff_ = std::chrono::seconds(1);
  }
  ++generation_;
  round.generation = generation_;
  {
    // Trigger times are read after programming, so the latency covers the whole path.
    std::optional<int64_t> latency;
    store_.with_state([&](const cluster& state) {
      observe_programming(state, pending_slices_, latency);
    });
    round.programming_latency_us = latency;
  }
  pending_slices_.clear();
  const auto now_s = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  metrics_.sync_proxy_rules_last_timestamp_seconds.set(now_s);
  if (http_ != nullptr) {
    http_->updated();
  }
  std::string extra;
  if (!source_note_.empty()) {
    extra += " " + source_note_;
  }
  if (round.programming_latency_us) {
    extra += fmt::format(" latency_us={}", *round.programming_latency_us);
  }
  spdlog::info(
      "synced generation={} frontends={} backends={} ops={} touched={} full={} conflicts={} "
      "not_programmed={}{} took_us={}",
      generation_, round.report.frontends, round.report.backends, round.report.ops,
      round.touched, round.full ? 1 : 0, known_conflicts_.size(), not_programmed_.size(), extra,
      round.took_us);
  return round;
}

}  // namespace sluice
