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

#include <cstdint>
#include <map>
#include <set>
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

/// The maps' content as the writer knows it (restored from pinned maps at start-up).
struct map_state {
  std::map<frontend_key, frontend_record> frontends;
  std::map<uint32_t, backend_record> backends;

  bool operator==(const map_state&) const = default;
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
/// or the slot range are reported in errors and left as they are.
reconcile_result reconcile(const map_state& current, const desired_state& desired);

/// Applies ops to a map_state, exactly as the kernel maps would change. Used by the writer to
/// keep its mirror and by tests to check that applying the ops yields the desired state.
void apply_ops(map_state& state, const std::vector<map_op>& ops);

}  // namespace sluice
