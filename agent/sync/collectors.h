// Scrape-time collectors: copy values that live outside the metrics registry (BPF maps,
// reflector counters) into it. They run on the HTTP thread when /metrics is scraped.
#pragma once

#include "agent/metrics/agent_metrics.h"

struct sluice_bpf;

namespace sluice {
namespace kube {
class kube_source;
}

/// Datapath verdicts by reason (lb_stats) and BPF map fill / capacity. `skel` must outlive the
/// registry's scrapes.
void add_datapath_collectors(metrics::agent_metrics& m, ::sluice_bpf* skel);

/// API errors, relists and rejected objects of the Kubernetes source.
void add_kube_collectors(metrics::agent_metrics& m, const kube::kube_source& source);

}  // namespace sluice
