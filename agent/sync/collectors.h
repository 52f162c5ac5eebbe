// Scrape-time collectors: copy values that live outside the metrics registry (BPF maps,
// reflector counters) into it. They run on the HTTP thread when /metrics is scraped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "agent/metrics/agent_metrics.h"

struct sluice_bpf;

namespace sluice {
namespace kube {
class kube_source;
}

/// Conntrack entries the agent's GC deleted, per family ([0] lb4_ct_v2, [1] lb6_ct_v2), since
/// this process started. Written by the main loop, read at scrape time.
struct ct_gc_totals {
  std::array<std::atomic<uint64_t>, 2> deleted{};
};

/// Datapath verdicts by reason (lb_stats), BPF map fill / capacity, and conntrack evictions.
/// `skel` and `gc` must outlive the registry's scrapes. Reads the conntrack tables' fill once
/// now: evictions are counted from this process's start.
void add_datapath_collectors(metrics::agent_metrics& m, ::sluice_bpf* skel,
                             const ct_gc_totals& gc);

/// API errors, relists and rejected objects of the Kubernetes source.
void add_kube_collectors(metrics::agent_metrics& m, const kube::kube_source& source);

}  // namespace sluice
