// Executes reconcile()'s operations on the kernel maps and keeps a mirror of what they hold.
#pragma once

#include <cstdint>
#include <map>
#include <set>

#include "agent/datapath/error.h"
#include "agent/planner/desired.h"
#include "agent/reconcile/reconcile.h"

struct sluice_bpf;

namespace sluice {

struct sync_report {
  size_t ops = 0;            // map writes and deletes done
  size_t syscalls = 0;       // bpf() calls that did them (batches count once)
  size_t failed_ops = 0;     // rejected by the kernel (map full, ...), logged each
  size_t frontends = 0;      // in the maps after the sync
  size_t backends = 0;
  size_t maglev_tables = 0;  // Maglev tables built and swapped in by this sync
  size_t src_ranges = 0;     // source-range prefixes in the maps after the sync
  std::vector<reconcile_error> errors;  // frontends that could not be planned
};

class map_writer {
 public:
  /// `options` (load-balancing algorithm, Maglev size and seed) hold for the writer's life; the
  /// datapath must be loaded with the same Maglev size and seed. The capacities are the loaded
  /// maps' max_entries: a frontend that does not fit is reported, not half written.
  explicit map_writer(::sluice_bpf* skel, reconcile_options options = {});

  /// Reads the maps (pinned state of an earlier run) into the mirror, so ids stay stable across
  /// restarts and an unchanged cluster costs no write: services of both scopes, backends,
  /// source-range prefixes, and each Maglev table through its inner map's id. A table is kept
  /// when its name is the fingerprint of what the frontend's slots and the current options
  /// would build it from, or else when its content, read back, is exactly what they build from
  /// the ids it holds. Any other table (another size or seed) is recorded as unverified: the
  /// next sync rewrites it.
  result<void> restore();

  /// Brings the maps to `desired`. Failed writes are logged and counted; the mirror is then
  /// re-read from the kernel so the next sync retries exactly what is missing.
  sync_report sync(const desired_state& desired);
  /// The same over the planner's frontends by key (the agent's full sync: no copy of them).
  sync_report sync(const std::map<frontend_key, desired_frontend>& desired);

  /// lb_unproxied_v1 (sluicectl's list of Services not proxied) to `desired`: writes only what
  /// differs from the mirror. sync(desired_state) includes it; the agent's sync loop calls it
  /// when the planner's set changed.
  sync_report sync_unproxied(const unproxied_map& desired);

  /// The same for the `touched` frontends only (see reconcile_subset): O(their sizes), for the
  /// agent's incremental path. Orphan backends are left to the next full sync().
  sync_report sync_subset(const std::map<frontend_key, desired_frontend>& desired,
                          const std::set<frontend_key>& touched);

  const map_state& mirror() const { return mirror_; }
  const unproxied_map& unproxied() const { return unproxied_; }
  const reconcile_options& options() const { return opts_; }

 private:
  sync_report run(reconcile_result plan);
  ::sluice_bpf* skel_;
  reconcile_options opts_;
  map_state mirror_;
  unproxied_map unproxied_;
};

/// Entries per map, for metrics. The kernel keeps no element count for HASH / LRU_HASH maps
/// that user space can read, so each map is walked with BPF_MAP_LOOKUP_BATCH: O(entries), about
/// one syscall per 4096 entries plus the copy (a full 262144-entry conntrack map is tens of
/// milliseconds). Call it at scrape time, not per packet or per sync. For the agent-owned maps
/// the writer's mirror knows the same numbers for free (frontends + slots, backends).
struct map_fill {
  size_t services4 = 0, services6 = 0;  // master + slot entries
  size_t backends4 = 0, backends6 = 0;
  size_t ct4 = 0, ct6 = 0;  // two entries per flow
  size_t affinity4 = 0, affinity6 = 0;
  size_t src_ranges4 = 0, src_ranges6 = 0;  // source-range prefixes (key walk: batch lookup
                                            // of LPM tries is recent)
  size_t maglev = 0;                        // Maglev tables (lb_maglev_v2 entries)
};
result<map_fill> read_map_fill(::sluice_bpf* skel);

/// Number of entries of any map with batch lookup support (hash and LRU hash maps).
result<size_t> count_entries(int map_fd);

}  // namespace sluice
