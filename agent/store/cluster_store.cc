#include "agent/store/cluster_store.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace sluice {

namespace {

// Stored objects by kind. Nodes are keyed by name only (namespace ""), and only ours is kept.
template <typename T>
const std::string& version_of(const T& object) {
  return object.resource_version;
}

}  // namespace

std::string_view kind_name(object_kind kind) {
  switch (kind) {
    case object_kind::service:
      return "Service";
    case object_kind::endpoint_slice:
      return "EndpointSlice";
    case object_kind::node:
      return "Node";
    case object_kind::pod:
      return "Pod";
    case object_kind::endpoints:
      return "Endpoints";
  }
  return "?";
}

object_kind kind_of(const kube_object& object) {
  return static_cast<object_kind>(object.index());
}

cluster_store::cluster_store(std::string node_name) : node_name_(std::move(node_name)) {
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    // Start-up only: without it the sync loop could never be woken.
    throw std::system_error(errno, std::generic_category(), "eventfd");
  }
}

cluster_store::~cluster_store() { close(event_fd_); }

void cluster_store::wake() {
  const uint64_t one = 1;
  // EAGAIN means the counter is saturated, which still wakes the reader.
  [[maybe_unused]] const ssize_t n = write(event_fd_, &one, sizeof one);
}

void cluster_store::drain_eventfd() {
  uint64_t value = 0;
  [[maybe_unused]] const ssize_t n = read(event_fd_, &value, sizeof value);
  signalled_ = false;
}

void cluster_store::signal() {
  dirty_ = true;
  if (!signalled_) {
    signalled_ = true;
    wake();
  }
}

void cluster_store::keep_listed(object_kind kind, const object_key& key) {
  std::lock_guard lock(mu_);
  if (const auto it = listing_.find(kind); it != listing_.end()) {
    it->second.insert(key);
  }
}

void cluster_store::mark(object_kind kind, const object_key& key) {
  switch (kind) {
    case object_kind::service:
      changes_.services.insert(key);
      break;
    case object_kind::endpoint_slice:
      changes_.slices.insert(key);
      break;
    case object_kind::node:
      changes_.node = true;
      break;
    case object_kind::pod:
      changes_.pods = true;
      break;
    case object_kind::endpoints:
      // Legacy Endpoints only matter through the slices a source derives from them.
      changes_.all = true;
      break;
  }
  signal();
}

void cluster_store::list_begin(object_kind kind) {
  std::lock_guard lock(mu_);
  listing_[kind].clear();
}

void cluster_store::list_abort(object_kind kind) {
  std::lock_guard lock(mu_);
  listing_.erase(kind);
}

void cluster_store::list_end(object_kind kind) {
  std::lock_guard lock(mu_);
  const auto found = listing_.find(kind);
  if (found == listing_.end()) {
    return;
  }
  const std::set<object_key> seen = std::move(found->second);
  listing_.erase(found);
  std::vector<object_key> gone;
  const auto collect = [&](const auto& objects) {
    for (const auto& [key, object] : objects) {
      if (!seen.contains(key)) {
        gone.push_back(key);
      }
    }
  };
  switch (kind) {
    case object_kind::service:
      collect(cluster_.services);
      break;
    case object_kind::endpoint_slice:
      collect(cluster_.endpoint_slices);
      break;
    case object_kind::pod:
      collect(cluster_.pods);
      break;
    case object_kind::endpoints:
      collect(cluster_.legacy_endpoints);
      break;
    case object_kind::node:
      if (cluster_.self_node && !seen.contains({"", cluster_.self_node->name})) {
        gone.push_back({"", cluster_.self_node->name});
      }
      break;
  }
  for (const object_key& key : gone) {
    erase_locked(kind, key);
  }
  if (synced_.insert(kind).second) {
    // The first complete list of a kind may be what the sync loop is waiting for, even when
    // changes are already pending (the loop drains wake-ups while it waits).
    dirty_ = true;
    signalled_ = true;
    wake();
  }
}

bool cluster_store::holds_locked(object_kind kind, const object_key& key,
                                 std::string_view resource_version) const {
  const auto held = [&](const auto& objects) {
    const auto it = objects.find(key);
    return it != objects.end() && version_of(it->second) == resource_version;
  };
  switch (kind) {
    case object_kind::service:
      return held(cluster_.services);
    case object_kind::endpoint_slice:
      return held(cluster_.endpoint_slices);
    case object_kind::pod:
      return held(cluster_.pods);
    case object_kind::endpoints:
      return false;
    case object_kind::node:
      return cluster_.self_node && cluster_.self_node->name == key.name &&
             cluster_.self_node->resource_version == resource_version;
  }
  return false;
}

bool cluster_store::holds_version(object_kind kind, const object_key& key,
                                  std::string_view resource_version) {
  if (resource_version.empty()) {
    return false;
  }
  std::lock_guard lock(mu_);
  if (!holds_locked(kind, key, resource_version)) {
    return false;
  }
  ++counters_.unchanged;
  if (const auto it = listing_.find(kind); it != listing_.end()) {
    it->second.insert(key);
  }
  return true;
}

void cluster_store::put(kube_object&& object) {
  std::lock_guard lock(mu_);
  const object_kind kind = kind_of(object);
  object_key key;
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, node>) {
          key = {"", o.name};
        } else {
          key = o.key();
        }
      },
      object);
  if (const auto it = listing_.find(kind); it != listing_.end()) {
    it->second.insert(key);
  }
  const bool same = std::visit(
      [&](const auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, endpoints>) {
          return false;
        } else {
          return !o.resource_version.empty() && holds_locked(kind, key, o.resource_version);
        }
      },
      object);
  if (same) {
    ++counters_.unchanged;
    return;
  }
  ++counters_.upserts;
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, service>) {
          cluster_.services.insert_or_assign(key, std::move(o));
        } else if constexpr (std::is_same_v<T, endpoint_slice>) {
          cluster_.endpoint_slices.insert_or_assign(key, std::move(o));
        } else if constexpr (std::is_same_v<T, pod>) {
          cluster_.pods.insert_or_assign(key, std::move(o));
        } else if constexpr (std::is_same_v<T, endpoints>) {
          cluster_.legacy_endpoints.insert_or_assign(key, std::move(o));
        } else {
          static_assert(std::is_same_v<T, node>);
          if (o.name != node_name_) {
            --counters_.upserts;  // someone else's Node: not ours to plan with
            return;
          }
          cluster_.self_node = std::move(o);
        }
        mark(kind, key);
      },
      object);
}

void cluster_store::erase_locked(object_kind kind, const object_key& key) {
  size_t erased = 0;
  switch (kind) {
    case object_kind::service:
      erased = cluster_.services.erase(key);
      break;
    case object_kind::endpoint_slice:
      erased = cluster_.endpoint_slices.erase(key);
      break;
    case object_kind::pod:
      erased = cluster_.pods.erase(key);
      break;
    case object_kind::endpoints:
      erased = cluster_.legacy_endpoints.erase(key);
      break;
    case object_kind::node:
      if (cluster_.self_node && cluster_.self_node->name == key.name) {
        cluster_.self_node.reset();
        erased = 1;
      }
      break;
  }
  if (erased > 0) {
    ++counters_.deletes;
    mark(kind, key);
  }
}

void cluster_store::erase(object_kind kind, const object_key& key) {
  std::lock_guard lock(mu_);
  erase_locked(kind, key);
}

void cluster_store::replace_all(cluster&& next) {
  std::lock_guard lock(mu_);
  cluster_ = std::move(next);
  listing_.clear();
  synced_ = {object_kind::service, object_kind::endpoint_slice, object_kind::node,
             object_kind::pod, object_kind::endpoints};
  changes_.all = true;
  signal();
}

void cluster_store::touch_all() {
  std::lock_guard lock(mu_);
  changes_.all = true;
  signal();
}

bool cluster_store::synced(std::initializer_list<object_kind> kinds) const {
  std::lock_guard lock(mu_);
  for (const object_kind kind : kinds) {
    if (!synced_.contains(kind)) {
      return false;
    }
  }
  return true;
}

store_counters cluster_store::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace sluice
