// The incremental planner (see plan_cache.h).
#include "agent/planner/plan_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>
#include <utility>

namespace sluice {

namespace {

constexpr uint8_t owner_service = 0;
constexpr uint8_t owner_pod = 1;

std::string_view proto_name(uint8_t proto) { return proto == IPPROTO_UDP ? "UDP" : "TCP"; }

}  // namespace

std::set<frontend_key> plan_cache::update(const cluster& state, const plan_options& options,
                                          const plan_changes& changes) {
  stats_ = {};
  unproxied_changed_ = false;
  std::set<frontend_key> changed;
  // Every planning input outside the Services, slices and Pods goes through the node
  // context, so comparing it catches node and option changes whatever `changes.node` says.
  node_context node = make_node_context(state, options);
  if (changes.all || !primed_ || node != node_) {
    node_ = std::move(node);
    rebuild(state, changed);
    primed_ = true;
    return changed;
  }

  std::set<object_key> dirty = changes.services;
  for (const object_key& slice_key : changes.slices) {
    index_slice(slice_key, state, dirty);
  }
  std::set<frontend_key> affected;
  for (const object_key& key : dirty) {
    replan_service(state, key, affected);
  }
  if (changes.pods) {
    replan_pods(state, affected);
  }
  merge(affected, changed);
  return changed;
}

void plan_cache::index_slice(const object_key& slice_key, const cluster& state,
                             std::set<object_key>& dirty_services) {
  if (const auto old = slice_owner_.find(slice_key); old != slice_owner_.end()) {
    dirty_services.insert(old->second);
    const auto owned = service_slices_.find(old->second);
    owned->second.erase(slice_key);
    if (owned->second.empty()) {
      service_slices_.erase(owned);
    }
    slice_owner_.erase(old);
  }
  const auto slice = state.endpoint_slices.find(slice_key);
  if (slice == state.endpoint_slices.end()) {
    return;
  }
  if (const std::optional<object_key> owner = sluice::slice_owner(slice->second, node_.service_proxy_name)) {
    slice_owner_.emplace(slice_key, *owner);
    service_slices_[*owner].insert(slice_key);
    dirty_services.insert(*owner);
  }
}

void plan_cache::rebuild(const cluster& state, std::set<frontend_key>& changed) {
  stats_.full = true;
  std::map<frontend_key, desired_frontend> before = std::move(frontends_);
  const std::map<object_key, unproxied_service> unproxied_before = std::move(unproxied_);
  unproxied_.clear();
  slice_owner_.clear();
  service_slices_.clear();
  services_.clear();
  pods_.clear();
  health_.clear();
  claims_.clear();
  contested_.clear();
  frontends_.clear();

  for (const auto& [key, slice] : state.endpoint_slices) {
    if (const std::optional<object_key> owner = sluice::slice_owner(slice, node_.service_proxy_name)) {
      slice_owner_.emplace(key, *owner);
      service_slices_[*owner].insert(key);
    }
  }
  std::set<frontend_key> affected;
  for (const auto& [key, svc] : state.services) {
    replan_service(state, key, affected);
  }
  replan_pods(state, affected);
  unproxied_changed_ = unproxied_ != unproxied_before;
  std::set<frontend_key> rebuilt;  // every key now claimed; the diff against `before` matters
  merge(affected, rebuilt);
  for (const auto& [key, frontend] : before) {
    const auto now = frontends_.find(key);
    if (now == frontends_.end() || now->second != frontend) {
      changed.insert(key);
    }
  }
  for (const auto& [key, frontend] : frontends_) {
    if (!before.contains(key)) {
      changed.insert(key);
    }
  }
}

void plan_cache::replan_service(const cluster& state, const object_key& key,
                                std::set<frontend_key>& affected) {
  service_plan next;
  std::optional<unproxied_service> skipped;
  if (const auto svc = state.services.find(key); svc != state.services.end()) {
    skipped = sluice::unproxied(svc->second, node_.service_proxy_name);
    std::vector<const endpoint_slice*> slices;
    if (const auto owned = service_slices_.find(key); owned != service_slices_.end()) {
      slices.reserve(owned->second.size());
      for (const object_key& slice_key : owned->second) {
        slices.push_back(&state.endpoint_slices.at(slice_key));
      }
    }
    ++stats_.services_planned;
    stats_.slices_read += slices.size();
    next = plan_service(svc->second, slices, node_);
  }
  if (const auto had = unproxied_.find(key); had == unproxied_.end()) {
    if (skipped) {
      unproxied_.emplace(key, std::move(*skipped));
      unproxied_changed_ = true;
    }
  } else if (!skipped) {
    unproxied_.erase(had);
    unproxied_changed_ = true;
  } else if (had->second != *skipped) {
    had->second = std::move(*skipped);
    unproxied_changed_ = true;
  }

  const auto current = services_.find(key);
  if (current != services_.end() && current->second == next) {
    return;
  }
  if (next.health_check) {
    health_[key] = *next.health_check;
  } else {
    health_.erase(key);
  }
  if (current == services_.end() && next.frontends.empty()) {
    return;
  }
  // Keep the old plan alive until its claims are gone: the claims point into it.
  service_plan old;
  if (current != services_.end()) {
    old = std::move(current->second);
    services_.erase(current);
  }
  const std::vector<desired_frontend>* fresh = nullptr;
  if (!next.frontends.empty() || next.health_check) {
    fresh = &services_.insert_or_assign(key, std::move(next)).first->second.frontends;
  }
  replace(key, owner_service, &old.frontends, fresh, affected);
}

void plan_cache::replan_pods(const cluster& state, std::set<frontend_key>& affected) {
  // Pods that had hostPorts and are gone.
  for (auto it = pods_.begin(); it != pods_.end();) {
    if (state.pods.contains(it->first)) {
      ++it;
      continue;
    }
    std::vector<desired_frontend> old = std::move(it->second);
    const object_key key = it->first;
    it = pods_.erase(it);
    replace(key, owner_pod, &old, nullptr, affected);
  }
  for (const auto& [key, p] : state.pods) {
    ++stats_.pods_planned;
    std::vector<desired_frontend> next = plan_host_ports(p, node_);
    const auto current = pods_.find(key);
    if (current == pods_.end() ? next.empty() : current->second == next) {
      continue;
    }
    std::vector<desired_frontend> old;
    if (current != pods_.end()) {
      old = std::move(current->second);
      pods_.erase(current);
    }
    const std::vector<desired_frontend>* fresh = nullptr;
    if (!next.empty()) {
      fresh = &pods_.insert_or_assign(key, std::move(next)).first->second;
    }
    replace(key, owner_pod, &old, fresh, affected);
  }
}

void plan_cache::replace(const object_key& owner, uint8_t owner_kind,
                         const std::vector<desired_frontend>* old_frontends,
                         const std::vector<desired_frontend>* new_frontends,
                         std::set<frontend_key>& affected) {
  if (old_frontends != nullptr) {
    for (size_t i = 0; i < old_frontends->size(); ++i) {
      const frontend_key key = (*old_frontends)[i].key();
      affected.insert(key);
      const auto found = claims_.find(key);
      found->second.erase(claimant{owner, owner_kind, static_cast<uint32_t>(i)});
      if (found->second.empty()) {
        claims_.erase(found);
      }
    }
  }
  if (new_frontends != nullptr) {
    for (size_t i = 0; i < new_frontends->size(); ++i) {
      const desired_frontend& frontend = (*new_frontends)[i];
      affected.insert(frontend.key());
      claims_[frontend.key()].emplace(claimant{owner, owner_kind, static_cast<uint32_t>(i)},
                                      &frontend);
    }
  }
}

void plan_cache::merge(const std::set<frontend_key>& affected, std::set<frontend_key>& changed) {
  for (const frontend_key& key : affected) {
    const auto claimed = claims_.find(key);
    const auto current = frontends_.find(key);
    if (claimed == claims_.end()) {
      contested_.erase(key);
      if (current != frontends_.end()) {
        frontends_.erase(current);
        changed.insert(key);
      }
      continue;
    }
    if (claimed->second.size() > 1) {
      contested_.insert(key);
    } else {
      contested_.erase(key);
    }
    const desired_frontend& winner = *claimed->second.begin()->second;
    if (current == frontends_.end()) {
      frontends_.emplace(key, winner);
      changed.insert(key);
    } else if (current->second != winner) {
      current->second = winner;
      changed.insert(key);
    }
  }
}

std::vector<desired_health_check> plan_cache::health_checks() const {
  std::vector<desired_health_check> out;
  out.reserve(health_.size());
  for (const auto& [key, check] : health_) {
    out.push_back(check);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return std::tie(a.port, a.namespace_, a.name) < std::tie(b.port, b.namespace_, b.name);
  });
  return out;
}

std::vector<std::string> plan_cache::conflicts() const {
  std::vector<std::string> out;
  for (const frontend_key& key : contested_) {
    const claims& claimed = claims_.at(key);
    const desired_frontend& winner = *claimed.begin()->second;
    for (auto it = std::next(claimed.begin()); it != claimed.end(); ++it) {
      const desired_frontend& loser = *it->second;
      if (loser == winner) {
        continue;  // the same object listing one address twice is not a conflict
      }
      out.push_back(fmt::format("{} left out: {} already uses {} port {}/{}", loser.name,
                                winner.name, format_ip(key.vip), key.port, proto_name(key.proto)));
    }
  }
  return out;
}

desired_state plan_cache::state() const {
  desired_state out;
  out.frontends.reserve(frontends_.size());
  for (const auto& [key, frontend] : frontends_) {
    out.frontends.push_back(frontend);
  }
  out.health_checks = health_checks();
  out.conflicts = conflicts();
  out.unproxied.reserve(unproxied_.size());
  for (const auto& [key, u] : unproxied_) {
    out.unproxied.push_back(u);
  }
  return out;
}

}  // namespace sluice
