// Executes reconcile()'s operations on the kernel maps and keeps a mirror of what they hold.
#pragma once

#include <cstdint>

#include "agent/datapath/error.h"
#include "agent/planner/desired.h"
#include "agent/reconcile/reconcile.h"

struct sluice_bpf;

namespace sluice {

struct sync_report {
  size_t ops = 0;            // map writes and deletes done
  size_t failed_ops = 0;     // rejected by the kernel (map full, ...), logged each
  size_t frontends = 0;      // in the maps after the sync
  size_t backends = 0;
  std::vector<reconcile_error> errors;  // frontends that could not be planned
};

class map_writer {
 public:
  explicit map_writer(::sluice_bpf* skel) : skel_(skel) {}

  /// Reads the services and backends maps (pinned state of an earlier run) into the mirror, so
  /// ids stay stable across restarts and an unchanged cluster costs no write.
  result<void> restore();

  /// Brings the maps to `desired`. Failed writes are logged and counted; the mirror is then
  /// re-read from the kernel so the next sync retries exactly what is missing.
  sync_report sync(const desired_state& desired);

  const map_state& mirror() const { return mirror_; }

 private:
  result<void> execute(const map_op& op);
  ::sluice_bpf* skel_;
  map_state mirror_;
};

}  // namespace sluice
