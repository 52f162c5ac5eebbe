// The map diff: what the datapath maps hold (as the writer mirrors them) vs what the planner
// wants, turned into an ordered list of map operations. Pure; the kernel side that executes the
// operations is agent/datapath/map_writer.
//
// Order (no reader ever sees a half-updated frontend, see docs/architecture.md):
//   1. backends (new or changed)      nothing points at them yet
//   2. slots 1..N                     both scopes; may briefly mix old and new backends, all valid
//   3. new source-range prefixes      a reader without LB_SVC_F_SOURCE_RANGES ignores them
//   4. Maglev tables (whole, swapped) before the master whose LB_SVC_F_MAGLEV sends readers there
//   5. masters                        the commit point: count switches to the new set; per
//                                     frontend the LB_SCOPE_EXTERNAL master first, so a reader
//                                     that sees LB_SVC_F_EXT_LOCAL finds the EXTERNAL entries
//   6. surplus slots                  beyond the new count, no longer read; EXTERNAL entries the
//                                     master no longer points at (master, then slots)
//   7. masters of removed frontends   the frontend disappears at once (ALL, then EXTERNAL)
//   8. slots of removed frontends
//   9. stale source-range prefixes, Maglev tables and names (of removed frontends too)
//  10. backends no longer referenced  conntrack keeps TCP flows on them by address meanwhile
// A frontend's name and kind (lb_svc_info_v1, read by sluicectl only) go just before its master.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "agent/planner/desired.h"
#include "agent/planner/maglev.h"
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

/// How external traffic picks a backend (--lb-algorithm).
enum class lb_algorithm : uint8_t {
  random,  ///< a uniformly random slot, as for traffic from pods
  maglev,  ///< lb_maglev_v2[svc_id]: the same table on every node (same size, seed, backends),
           ///< so a datapath that hashes a flow into it picks the same backend on any node
};

/// What the diff and the writer need beyond the planner's output. The datapath's per-flow hash
/// must use the same table size and seed (maglev.seed.flow_hash0/1()) as the tables written here.
struct reconcile_options {
  lb_algorithm algorithm = lb_algorithm::random;
  maglev_options maglev;  ///< table size M and seed; used with lb_algorithm::maglev only
};

/// The LB_SCOPE_EXTERNAL master and slots of a frontend with externalTrafficPolicy Local. Same
/// svc_id as the ALL entries; its slots may name backends the ALL set lacks (a local terminating
/// endpoint), which still belong to that svc_id.
struct scope_record {
  uint32_t affinity_timeout_s = 0;
  uint16_t flags = 0;
  std::vector<uint32_t> slots;  // backend ids; slots[i] is slot i+1

  bool operator==(const scope_record&) const = default;
};

struct frontend_record {
  uint32_t svc_id = 0;
  uint32_t affinity_timeout_s = 0;
  uint16_t flags = 0;
  std::vector<uint32_t> slots;  // backend ids; slots[i] is slot i+1
  std::optional<scope_record> external;  // the LB_SCOPE_EXTERNAL master exists

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

/// A frontend's lb_svc_info_v1 value (kind and names for sluicectl), compared as the kernel
/// holds it: names cut to the field sizes, NUL-padded.
struct svc_info {
  lb_svc_info value{};

  bool operator==(const svc_info& o) const {
    return std::memcmp(&value, &o.value, sizeof(value)) == 0;
  }
};

/// The value lb_svc_info_v1 holds for `f`: its kind, and its name ("namespace/name:port",
/// see desired_frontend::name) split into namespace, name and port name.
svc_info make_svc_info(const desired_frontend& f);

struct map_op;
struct maglev_build;

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
  /// lb{4,6}_src_ranges_v1: svc_id -> its prefixes (host bits clear). Keyed like the kernel
  /// maps, so entries whose svc_id no frontend uses (an interrupted run) have a place too.
  std::map<uint32_t, std::set<ip_prefix>> src_ranges;
  /// lb_maglev_v2: svc_id -> the backend ids its table was built from, ascending. The table is
  /// a function of those ids' (address, port, protocol) and the options, so equal ids mean an
  /// equal table. Empty: a table restore() could not vouch for (another size or seed, content
  /// not written by this agent); the next diff rewrites or deletes it.
  std::map<uint32_t, std::vector<uint32_t>> maglev;
  /// lb_svc_info_v1: svc_id -> the frontend's kind and names (sluicectl's; the datapath never
  /// reads them). Keyed like the kernel map, so an orphan entry has a place too.
  std::map<uint32_t, svc_info> info;

  /// The index, rebuilt first if the entry counts show it is stale (O(n) then, else O(1)).
  const map_index& index() const;
  void reindex() const;

  map_state() = default;
  /// A copy gets its own index on first use (the index points into the content it describes).
  map_state(const map_state& o)
      : frontends(o.frontends),
        backends(o.backends),
        src_ranges(o.src_ranges),
        maglev(o.maglev),
        info(o.info) {}
  map_state& operator=(const map_state& o) {
    frontends = o.frontends;
    backends = o.backends;
    src_ranges = o.src_ranges;
    maglev = o.maglev;
    info = o.info;
    index_ = stale_index();
    return *this;
  }
  map_state(map_state&&) = default;
  map_state& operator=(map_state&&) = default;

  /// Compares the content only.
  bool operator==(const map_state& o) const {
    return frontends == o.frontends && backends == o.backends && src_ranges == o.src_ranges &&
           maglev == o.maglev && info == o.info;
  }

 private:
  friend void apply_ops(map_state& state, const std::vector<map_op>& ops,
                        std::span<const maglev_build> maglev, std::span<const svc_info> info);
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
  put_src_range,     // lb{4,6}_src_ranges_v1[(svc_id, prefix)] = 1
  delete_src_range,
  put_maglev,        // a new inner table swapped into lb_maglev_v2[svc_id]
  delete_maglev,
  put_info,          // lb_svc_info_v1[svc_id] = reconcile_result::info[backend_id]
  delete_info,
};

/// One map write. Which fields matter depends on kind.
///
/// Range ops keep their prefix in fields the other kinds use (backend.addr, prefix_len; see
/// range()) rather than in a field of their own: a first sync makes one op per backend and per
/// slot, hundreds of thousands at 10k Services, and this keeps every op at 80 bytes.
struct map_op {
  op_kind kind{};
  uint8_t scope = LB_SCOPE_ALL;  // slot/master ops: enum lb_scope
  frontend_key key;          // slot/master ops; range/maglev ops: the frontend (for logs)
  uint16_t slot = 0;         // put_slot / delete_slot
  lb_svc_value value{};      // put_slot / put_master (host-order fields, as in the map);
                             // range/maglev ops: value.svc_id is the key's svc_id
  uint32_t backend_id = 0;   // backend ops; put_maglev: index into reconcile_result::maglev;
                             // put_info: index into reconcile_result::info
  backend_record backend;    // put_backend; range ops: backend.addr is the prefix's address
  bool new_svc_id = false;   // put_master of a freshly allocated id: per-service counters reset
  uint8_t prefix_len = 0;    // range ops

  ip_prefix range() const { return {backend.addr, prefix_len}; }
};

/// A Maglev table to build and swap in (put_maglev): the backends external traffic uses, as the
/// ids the table holds and as the identities build_maglev_table() hashes. Built by the writer,
/// one at a time, so a plan never holds M entries per frontend.
struct maglev_build {
  uint32_t svc_id = 0;
  std::vector<uint32_t> ids;             // ascending, unique
  std::vector<maglev_backend> backends;  // backends[i] is the backend with id ids[i]
};

/// Why a frontend could not be planned into the maps.
struct reconcile_error {
  frontend_key key;
  std::string name;
  std::string what;
};

struct reconcile_result {
  std::vector<map_op> ops;
  std::vector<maglev_build> maglev;  // what put_maglev ops build, by index
  std::vector<svc_info> info;        // what put_info ops write, by index
  std::vector<reconcile_error> errors;
  /// Frontends programmed with less than asked (a Maglev table too small for their backends:
  /// random choice instead).
  std::vector<reconcile_error> warnings;
};

/// Computes the ordered operations that turn `current` into `desired`. Stable ids: a frontend
/// keeps its svc_id and a backend (same frontend, address, port) its backend id across calls
/// and restarts. Unchanged state produces no operation. Frontends that do not fit the id space
/// or the slot range are reported in errors and left as they are. Also deletes backends,
/// source-range prefixes and Maglev tables whose svc_id no frontend uses (left by an
/// interrupted earlier run). A second frontend with the same key is reported in errors and
/// ignored.
///
/// What a frontend becomes:
/// - ALL master flags: LB_SVC_F_AFFINITY when affinity_timeout_s > 0, LB_SVC_F_DROP_EMPTY when
///   when_empty == drop, LB_SVC_F_EXTERNAL when kind != cluster_ip and not loopback,
///   LB_SVC_F_LOOPBACK when loopback, LB_SVC_F_OUTSIDE_ONLY when outside_only,
///   LB_SVC_F_SOURCE_RANGES when source_ranges is non-empty, LB_SVC_F_EXT_LOCAL when
///   external_local, LB_SVC_F_MAGLEV when options.algorithm is maglev, kind != cluster_ip, not
///   loopback, and the table is non-empty.
/// - external_local: LB_SCOPE_EXTERNAL master (count = external_backends.size(), the ALL
///   master's affinity, LB_SVC_F_DROP_EMPTY when empty) and slots. A backend in both sets has
///   one id and record (the ALL set's state wins if they disagreed).
/// - one lb{4,6}_src_ranges_v1 entry per source_ranges prefix of the VIP's family.
/// - Maglev: a table over external_backends when external_local, else backends. A set larger
///   than the table is programmed without Maglev and reported in warnings.
/// - lb_svc_info_v1[svc_id] = make_svc_info(frontend), written when it differs.
reconcile_result reconcile(const map_state& current, const desired_state& desired,
                           const reconcile_options& options = {});

/// The same over the planner's frontends by key (no copy of the desired state; keys are unique
/// by construction, so there is no duplicate to report).
reconcile_result reconcile(const map_state& current,
                           const std::map<frontend_key, desired_frontend>& desired,
                           const reconcile_options& options = {});

/// The same diff restricted to `touched` keys: a touched key present in `desired` is added or
/// updated, one absent from it is removed; untouched frontends are neither read nor changed.
/// For those keys the ops (order and ids included) are exactly the ones reconcile() produces
/// when everything else is unchanged. Cost: O(sum over touched keys of their backend counts,
/// times log n), independent of the size of `current` otherwise. Orphans (backends, prefixes,
/// tables of no frontend) are left to the full reconcile().
reconcile_result reconcile_subset(const map_state& current,
                                  const std::map<frontend_key, desired_frontend>& desired,
                                  const std::set<frontend_key>& touched,
                                  const reconcile_options& options = {});

/// Applies ops to a map_state, exactly as the kernel maps would change, and keeps its index.
/// Used by the writer to keep its mirror and by tests to check that applying the ops yields the
/// desired state. O(ops * log n). put_maglev ops look their table's ids up in `maglev` (the
/// plan's reconcile_result::maglev); without it the table is recorded as unverified. put_info
/// ops take their value from `info` (reconcile_result::info); without it a zero value.
void apply_ops(map_state& state, const std::vector<map_op>& ops,
               std::span<const maglev_build> maglev = {}, std::span<const svc_info> info = {});

/// The same with the whole plan.
inline void apply_ops(map_state& state, const reconcile_result& plan) {
  apply_ops(state, plan.ops, plan.maglev, plan.info);
}

// ---- services not proxied (lb_unproxied_v1) -------------------------------------------------

/// lb_unproxied_v1's content as the writer mirrors it: namespace/name -> value, strings cut to
/// the fields' sizes as the kernel holds them.
struct unproxied_record {
  uint8_t reason = 0;  // enum lb_unproxied_reason
  std::string external_name;

  auto operator<=>(const unproxied_record&) const = default;
  bool operator==(const unproxied_record&) const = default;
};
using unproxied_map = std::map<std::pair<std::string, std::string>, unproxied_record>;

/// The desired content of lb_unproxied_v1 (strings cut as the kernel would hold them).
unproxied_map make_unproxied(std::span<const unproxied_service> services);

/// One write to lb_unproxied_v1: a put when `value` is set, else a delete.
struct unproxied_op {
  std::pair<std::string, std::string> key;  // namespace, name
  std::optional<unproxied_record> value;
};

/// Puts for new or changed entries, deletes for entries no longer wanted, in key order.
/// Unchanged content gives no op. Pure; O(n) over both sides.
std::vector<unproxied_op> reconcile_unproxied(const unproxied_map& current,
                                              const unproxied_map& desired);

}  // namespace sluice
