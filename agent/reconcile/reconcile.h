// The map diff: what the datapath maps hold (as the writer mirrors them) vs what the planner
// wants, turned into an ordered list of map operations. Pure; the kernel side that executes the
// operations is agent/datapath/map_writer.
//
// Order (no reader ever sees a half-updated frontend, see docs/architecture.md):
//   1. backends (new or changed)      nothing points at them yet
//   2. slots 1..N                     may briefly mix old and new backends, all valid
//   3. masters                        the commit point: count switches to the new set
//   4. surplus slots                  beyond the new count, no longer read
//   5. masters of removed frontends   the frontend disappears at once
//   6. slots of removed frontends
//   7. backends no longer referenced  conntrack keeps TCP flows on them by address meanwhile
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/planner/desired.h"
#include "maps/sluice_abi.h"

namespace sluice {

struct backend_record {
  ip_addr addr;
  uint16_t port = 0;  // host order
  uint8_t proto = 0;
  uint8_t state = LB_BACKEND_ACTIVE;
  uint32_t svc_id = 0;

  bool operator==(const backend_record&) const = default;
};

struct frontend_record {
  uint32_t svc_id = 0;
  uint32_t affinity_timeout_s = 0;
  uint16_t flags = 0;
  std::vector<uint32_t> slots;  // backend ids; slots[i] is slot i+1

  bool operator==(const frontend_record&) const = default;
};

/// The free ids of [1, limit) as disjoint intervals, so that taking the lowest free id, marking
/// one used and releasing one each cost O(log n) whatever the number of ids in use.
class id_space {
 public:
  explicit id_space(uint32_t limit) : limit_(limit) {
    if (limit_ > 1) {
      free_.emplace(1, limit_);
    }
  }
  /// Marks id used; ids outside [1, limit) and ids already used are ignored.
  void take(uint32_t id);
  /// Marks id free again; ids outside [1, limit) and free ids are ignored.
  void release(uint32_t id);
  bool is_free(uint32_t id) const;
  /// Free intervals, start -> end (exclusive), ascending.
  const std::map<uint32_t, uint32_t>& free_intervals() const { return free_; }

 private:
  uint32_t limit_;
  std::map<uint32_t, uint32_t> free_;
};

struct map_op;

/// Lookups the diff needs without scanning the whole mirror. Derived from map_state's content.
struct map_index {
  /// svc_id -> its backends (id -> the entry in map_state::backends; std::map nodes are stable)
  std::map<uint32_t, std::map<uint32_t, const backend_record*>> backends_by_svc;
  std::map<uint32_t, uint32_t> svc_users;  // svc_id -> frontends using it
  id_space svc_ids{LB_MAX_SERVICES};
  id_space backend_ids{UINT32_MAX};
  size_t frontends = 0;  // sizes of the content the index describes (a cheap staleness check)
  size_t backends = 0;
};

/// The maps' content as the writer knows it (restored from pinned maps at start-up).
///
/// `frontends` and `backends` are the content. The index is derived from them: apply_ops()
/// keeps it up to date; code that edits the two maps by hand calls reindex() afterwards (a
/// changed entry count is detected and rebuilt automatically, an entry edited in place is not).
struct map_state {
  std::map<frontend_key, frontend_record> frontends;
  std::map<uint32_t, backend_record> backends;

  /// The index, rebuilt first if the entry counts show it is stale (O(n) then, else O(1)).
  const map_index& index() const;
  void reindex() const;

  map_state() = default;
  /// A copy gets its own index on first use (the index points into the content it describes).
  map_state(const map_state& o) : frontends(o.frontends), backends(o.backends) {}
  map_state& operator=(const map_state& o) {
    frontends = o.frontends;
    backends = o.backends;
    index_ = stale_index();
    return *this;
  }
  map_state(map_state&&) = default;
  map_state& operator=(map_state&&) = default;

  /// Compares the content only.
  bool operator==(const map_state& o) const {
    return frontends == o.frontends && backends == o.backends;
  }

 private:
  friend void apply_ops(map_state& state, const std::vector<map_op>& ops);
  mutable map_index index_ = stale_index();
  static map_index stale_index() {
    map_index i;
    i.frontends = SIZE_MAX;
    return i;
  }
};

enum class op_kind : uint8_t {
  put_backend,
  put_slot,
  put_master,
  delete_slot,
  delete_master,
  delete_backend,
};

/// One map write. Which fields matter depends on kind.
struct map_op {
  op_kind kind{};
  frontend_key key;          // slot/master ops
  uint16_t slot = 0;         // put_slot / delete_slot
  lb_svc_value value{};      // put_slot / put_master (host-order fields, as in the map)
  uint32_t backend_id = 0;   // backend ops
  backend_record backend;    // put_backend
  bool new_svc_id = false;   // put_master of a freshly allocated id: per-service counters reset
};

/// Why a frontend could not be planned into the maps.
struct reconcile_error {
  frontend_key key;
  std::string name;
  std::string what;
};

struct reconcile_result {
  std::vector<map_op> ops;
  std::vector<reconcile_error> errors;
};

/// Computes the ordered operations that turn `current` into `desired`. Stable ids: a frontend
/// keeps its svc_id and a backend (same frontend, address, port) its backend id across calls
/// and restarts. Unchanged state produces no operation. Frontends that do not fit the id space
/// or the slot range are reported in errors and left as they are. Also deletes backends whose
/// svc_id no frontend uses (left by an interrupted earlier run). A second frontend with the same
/// key is reported in errors and ignored. Master flags: LB_SVC_F_AFFINITY when
/// affinity_timeout_s > 0, LB_SVC_F_DROP_EMPTY when when_empty == drop. external_backends,
/// external_local and source_ranges are not written (no north-south datapath yet).
reconcile_result reconcile(const map_state& current, const desired_state& desired);

/// The same over the planner's frontends by key (no copy of the desired state; keys are unique
/// by construction, so there is no duplicate to report).
reconcile_result reconcile(const map_state& current,
                           const std::map<frontend_key, desired_frontend>& desired);

/// The same diff restricted to `touched` keys: a touched key present in `desired` is added or
/// updated, one absent from it is removed; untouched frontends are neither read nor changed.
/// For those keys the ops (order and ids included) are exactly the ones reconcile() produces
/// when everything else is unchanged. Cost: O(sum over touched keys of their backend counts,
/// times log n), independent of the size of `current` otherwise. Orphan backends are left to
/// the full reconcile().
reconcile_result reconcile_subset(const map_state& current,
                                  const std::map<frontend_key, desired_frontend>& desired,
                                  const std::set<frontend_key>& touched);

/// Applies ops to a map_state, exactly as the kernel maps would change, and keeps its index.
/// Used by the writer to keep its mirror and by tests to check that applying the ops yields the
/// desired state. O(ops * log n).
void apply_ops(map_state& state, const std::vector<map_op>& ops);

}  // namespace sluice
