// Conntrack and affinity garbage collection: expired flows, and kube-proxy's UDP conntrack
// reconciler (kube-semantics.md §1.10, §5.4) for the datapath's own flow table.
#pragma once

#include <cstddef>
#include <cstdint>

#include "agent/datapath/error.h"
#include "agent/reconcile/reconcile.h"

struct sluice_bpf;

namespace sluice {

/// What one sweep did, for metrics. Entries, not flows: a flow has two conntrack entries.
struct ct_sweep_counts {
  uint64_t scanned = 0;           // conntrack and affinity entries looked at
  uint64_t expired = 0;           // conntrack entries of flows past their timeout
  uint64_t udp_stale = 0;         // UDP conntrack entries whose backend left the service
  uint64_t affinity_stale = 0;    // affinity entries whose backend left the service
  uint64_t affinity_expired = 0;  // affinity entries past the service's timeout (or without one)
  bool complete = false;          // this call reached the end of the last map
};

struct ct_sweep_options {
  uint64_t now_ns = 0;  // CLOCK_MONOTONIC in ns (the datapath stamps with its coarse form); 0 = now
  size_t budget = 0;    // entries to look at in this call, over all maps; 0 = one full pass
};

/// Walks lb{4,6}_ct_v2 and lb{4,6}_affinity_v1 and deletes:
///   - conntrack entries of expired flows: lb_ct_timeout_ns() of maps/sluice_abi.h with the
///     loaded program's cfg_ct_* timeouts, as the datapath, applied to the flow, i.e. both entries: a flow
///     lives while either entry is fresh (lb_ct_alive), and both go together;
///   - both entries of a UDP flow whose backend is no longer a backend of its service (removed
///     or not serving: the planner leaves non-serving endpoints out), so a one-way sender is
///     re-balanced at once (kube-proxy's UDP conntrack reconciler);
///   - affinity entries whose backend is no longer in the service, or older than its timeout.
/// TCP flows to removed or terminating backends are kept until they end or time out (graceful
/// termination, as kube-proxy). "Backend of the service" is read from `mirror`, the writer's
/// view of the maps (map_writer::mirror()); it must have been restored from the pins first, or
/// every UDP flow would look stale. An entry is re-read just before it is deleted and kept if
/// the datapath changed it meanwhile.
///
/// Iterates with BPF_MAP_LOOKUP_BATCH (bucket cursor: deletions never restart the walk) and
/// deletes entry by entry, so the datapath never waits on more than one bucket lock. With a
/// budget, each call looks at about that many entries and the next call continues there.
class ct_sweeper {
 public:
  explicit ct_sweeper(::sluice_bpf* skel) : skel_(skel) {}

  result<ct_sweep_counts> sweep(const map_state& mirror, const ct_sweep_options& opts = {});

 private:
  ::sluice_bpf* skel_;
  int map_ = 0;         // 0 lb4_ct, 1 lb6_ct, 2 lb4_affinity, 3 lb6_affinity
  uint32_t batch_ = 0;  // the kernel's bucket cursor within map_
  bool started_ = false;
};

/// One full pass over every map (ct_sweeper without a budget).
result<ct_sweep_counts> ct_sweep(::sluice_bpf* skel, const map_state& mirror, uint64_t now_ns = 0);

}  // namespace sluice
