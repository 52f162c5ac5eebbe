// The agent's one copy of the cluster: both sources (the Kubernetes API reflectors and the
// manifest directory) write decoded objects into it from their own threads; the sync loop takes
// the accumulated changes and plans only what they touch. Thread-safe; wakes the sync loop
// through an eventfd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "agent/model/model.h"
#include "agent/planner/plan_cache.h"
#include "agent/sources/decode.h"

namespace sluice {

/// The object kinds the store holds, in the order of kube_object's alternatives.
enum class object_kind : uint8_t { service, endpoint_slice, node, pod, endpoints };

/// "Service", "EndpointSlice", ...
std::string_view kind_name(object_kind kind);

/// The kind of a decoded object.
object_kind kind_of(const kube_object& object);

/// Counters of what the store was given (read by /metrics).
struct store_counters {
  uint64_t upserts = 0;    ///< objects added or changed
  uint64_t unchanged = 0;  ///< relisted objects whose resourceVersion did not move
  uint64_t deletes = 0;
};

class cluster_store {
 public:
  /// `node_name` selects which Node object is ours (others are ignored).
  explicit cluster_store(std::string node_name);
  ~cluster_store();
  cluster_store(const cluster_store&) = delete;
  cluster_store& operator=(const cluster_store&) = delete;

  /// Readable (eventfd) when changes are pending; take() clears it.
  int notify_fd() const { return event_fd_; }

  /// A LIST of `kind` starts: objects not put() again before list_end() are then deleted, so
  /// a relist after 410 Gone converges without transient deletions.
  void list_begin(object_kind kind);
  /// Ends a LIST: deletes what it did not contain and marks the kind synced.
  void list_end(object_kind kind);
  /// A LIST failed midway; the kind keeps its objects until the next complete list.
  void list_abort(object_kind kind);

  /// Adds or replaces an object (ADDED / MODIFIED / a list item). An object whose
  /// resourceVersion is unchanged (non-empty) is not re-planned.
  void put(kube_object&& object);
  /// For a LIST item: true (and the key counts as listed) when the store already holds this
  /// object at `resource_version`, so the caller can skip decoding it. Empty versions never
  /// match.
  bool holds_version(object_kind kind, const object_key& key, std::string_view resource_version);
  /// Removes an object (DELETED).
  void erase(object_kind kind, const object_key& key);
  /// For a LIST item the source could not use (rejected): the key counts as listed, so the
  /// previous good version survives list_end().
  void keep_listed(object_kind kind, const object_key& key);

  /// Replaces everything (the manifest directory source) and marks every kind synced.
  void replace_all(cluster&& next);

  /// True once every kind in `kinds` has completed one LIST (or replace_all ran).
  bool synced(std::initializer_list<object_kind> kinds) const;

  /// Runs `fn(const cluster&, const plan_changes&)` under the store's lock with the changes
  /// accumulated since the last call, then clears them. Returns false (fn not called) when
  /// nothing changed, unless `force` (a retry or a periodic full sync).
  template <typename Fn>
  bool take(Fn&& fn, bool force = false) {
    std::lock_guard lock(mu_);
    drain_eventfd();
    if (!dirty_ && !force) {
      return false;
    }
    plan_changes changes = std::move(changes_);
    changes_ = {};
    dirty_ = false;
    fn(static_cast<const cluster&>(cluster_), changes);
    return true;
  }

  /// Consumes pending wake-ups without taking the changes (while waiting for the sources'
  /// first complete list). The next change or completed list wakes again.
  void drain_wakeups() {
    std::lock_guard lock(mu_);
    drain_eventfd();
  }

  /// Runs `fn(const cluster&)` under the store's lock, leaving pending changes alone.
  template <typename Fn>
  void with_state(Fn&& fn) const {
    std::lock_guard lock(mu_);
    fn(static_cast<const cluster&>(cluster_));
  }

  /// Marks everything changed (e.g. options changed, or a forced full resync).
  void touch_all();

  store_counters counters() const;

 private:
  void mark(object_kind kind, const object_key& key);
  void erase_locked(object_kind kind, const object_key& key);
  void wake();
  void drain_eventfd();
  void signal();
  bool holds_locked(object_kind kind, const object_key& key, std::string_view rv) const;

  const std::string node_name_;
  int event_fd_ = -1;
  mutable std::mutex mu_;
  cluster cluster_;
  plan_changes changes_;
  bool dirty_ = false;
  bool signalled_ = false;  ///< eventfd written and not drained since
  std::set<object_kind> synced_;
  std::map<object_kind, std::set<object_key>> listing_;  ///< keys seen by a running LIST
  store_counters counters_;
};

}  // namespace sluice
