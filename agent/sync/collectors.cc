#include "agent/sync/collectors.h"

#include <spdlog/spdlog.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "agent/datapath/map_access.h"
#include "agent/datapath/map_writer.h"
#include "agent/sources/kube/kube_source.h"
#include "maps/sluice_abi.h"
#include "sluice_bpf.skel.h"

namespace sluice {

namespace {

// Prometheus counters only go up: a source that is itself a monotonic counter (a BPF per-CPU
// sum, a reflector atomic) is exported by adding what it gained since the last scrape.
class delta_tracker {
 public:
  void feed(metrics::counter& c, const std::string& id, double now) {
    double& last = last_[id];
    if (now > last) {
      c.inc(now - last);
    }
    last = now;
  }

 private:
  std::map<std::string, double> last_;
};

}  // namespace

void add_datapath_collectors(metrics::agent_metrics& m, ::sluice_bpf* skel) {
  static const char* const names[LB_STAT_MAX] = LB_STAT_NAMES_INIT;
  auto deltas = std::make_shared<delta_tracker>();
  m.reg.add_collect_hook([&m, skel, deltas] {
    const int fd = bpf_map__fd(skel->maps.lb_stats_v3);
    for (uint32_t i = 0; i < LB_STAT_MAX; ++i) {
      lb_stat_value v{};
      if (!percpu_sum(fd, i, v)) {
        continue;
      }
      deltas->feed(m.datapath_packets_total.with({names[i]}), names[i],
                   static_cast<double>(v.packets));
    }
    const auto fill = read_map_fill(skel);
    if (!fill) {
      spdlog::warn("metrics: reading map fill: {}", fill.error().message());
      return;
    }
    const std::array<std::tuple<const char*, size_t, size_t>, 11> maps{{
        {LB4_SERVICES_MAP, fill->services4, LB_MAX_SVC_ENTRIES},
        {LB6_SERVICES_MAP, fill->services6, LB_MAX_SVC_ENTRIES},
        {LB4_BACKENDS_MAP, fill->backends4, LB_MAX_BACKENDS},
        {LB6_BACKENDS_MAP, fill->backends6, LB_MAX_BACKENDS},
        {LB4_CT_MAP, fill->ct4, LB_MAX_CT_ENTRIES},
        {LB6_CT_MAP, fill->ct6, LB_MAX_CT_ENTRIES},
        {LB4_AFFINITY_MAP, fill->affinity4, LB_MAX_AFFINITY},
        {LB6_AFFINITY_MAP, fill->affinity6, LB_MAX_AFFINITY},
        {LB4_SRC_RANGES_MAP, fill->src_ranges4, LB_MAX_SRC_RANGES},
        {LB6_SRC_RANGES_MAP, fill->src_ranges6, LB_MAX_SRC_RANGES},
        {LB_MAGLEV_MAP, fill->maglev, LB_MAX_SERVICES},
    }};
    for (const auto& [name, entries, capacity] : maps) {
      m.map_entries.with({name}).set(static_cast<double>(entries));
      m.map_capacity.with({name}).set(static_cast<double>(capacity));
    }
  });
}

void add_kube_collectors(metrics::agent_metrics& m, const kube::kube_source& source) {
  auto deltas = std::make_shared<delta_tracker>();
  m.reg.add_collect_hook([&m, &source, deltas] {
    for (const auto& r : source.reflectors()) {
      const std::string& res = r->options().resource;
      const kube::reflector_stats& s = r->stats();
      const auto feed = [&](const char* cls, const std::atomic<uint64_t>& v) {
        deltas->feed(m.api_errors_total.with({res, cls}), res + "/" + cls,
                     static_cast<double>(v.load(std::memory_order_relaxed)));
      };
      feed("4xx", s.errors_4xx);
      feed("5xx", s.errors_5xx);
      feed("transport", s.errors_transport);
      feed("decode", s.decode_errors);
      deltas->feed(m.api_relists_total.with({res}), res + "/relists",
                   static_cast<double>(s.relists.load(std::memory_order_relaxed)));
    }
    for (const object_kind kind : {object_kind::service, object_kind::endpoint_slice,
                                   object_kind::node, object_kind::pod}) {
      const std::string name(kind_name(kind));
      deltas->feed(m.objects_rejected_total.with({name}), name,
                   static_cast<double>(source.decode_stats(kind).rejected.load()));
    }
  });
}

}  // namespace sluice
