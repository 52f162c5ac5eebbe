#include "agent/sync/collectors.h"

#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
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

// Conntrack evictions. An LRU map evicts silently, but every entry that enters or leaves a
// conntrack table is counted somewhere: the datapath counts what it creates and deletes
// (lb_ct_counts_v1), the agent what its GC deletes. From one reading to the next,
//   evicted = created - deleted by the datapath - deleted by the GC - growth of the table.
// The table's size comes from a walk while traffic goes on, so the created count is read
// before the walk and the deleted counts after it: an insert or delete during the walk then
// makes the figure smaller, never larger, and the counter only takes what exceeds its last
// value. It is a lower bound, exact whenever the table is quiet during a scrape. Entries removed
// by `sluicectl ct flush` are counted as evicted.
class ct_evictions {
 public:
  ct_evictions(::sluice_bpf* skel, const ct_gc_totals& gc) : skel_(skel), gc_(gc) {
    for (int f = 0; f < 2; ++f) {
      base_[f] = read(f);
    }
  }

  // Evictions since this object was made, per family; nullopt if a map could not be read.
  std::optional<int64_t> evicted(int f) const {
    const auto now = read(f);
    if (!now) {
      return std::nullopt;
    }
    const auto& b = base_[f];
    if (!b) {
      return std::nullopt;
    }
    return static_cast<int64_t>(now->created - b->created) -
           static_cast<int64_t>(now->deleted - b->deleted) -
           static_cast<int64_t>(now->gc - b->gc) -
           (static_cast<int64_t>(now->entries) - static_cast<int64_t>(b->entries));
  }

 private:
  struct reading {
    uint64_t created = 0, deleted = 0, gc = 0;
    size_t entries = 0;
  };

  std::optional<reading> read(int f) const {
    const int counts = bpf_map__fd(skel_->maps.lb_ct_counts_v1);
    const auto key = static_cast<uint32_t>(f);
    reading r;
    lb_ct_count c{};
    if (!percpu_sum(counts, key, c)) {
      return std::nullopt;
    }
    r.created = c.created;
    const auto n = count_entries(bpf_map__fd(f == 0 ? skel_->maps.lb4_ct_v2 : skel_->maps.lb6_ct_v2));
    if (!n || !percpu_sum(counts, key, c)) {
      return std::nullopt;
    }
    r.entries = *n;
    r.deleted = c.deleted;
    r.gc = gc_.deleted[f].load(std::memory_order_relaxed);
    return r;
  }

  ::sluice_bpf* skel_;
  const ct_gc_totals& gc_;
  std::array<std::optional<reading>, 2> base_;
};

void add_datapath_collectors(metrics::agent_metrics& m, ::sluice_bpf* skel,
                             const ct_gc_totals& gc) {
  static const char* const names[LB_STAT_MAX] = LB_STAT_NAMES_INIT;
  auto deltas = std::make_shared<delta_tracker>();
  auto evictions = std::make_shared<ct_evictions>(skel, gc);
  m.reg.add_collect_hook([&m, skel, deltas, evictions] {
    for (int f = 0; f < 2; ++f) {
      if (const auto n = evictions->evicted(f)) {
        const char* fam = f == 0 ? "ipv4" : "ipv6";
        deltas->feed(m.conntrack_evictions_total.with({fam}), std::string("evicted/") + fam,
                     static_cast<double>(*n));
      }
    }
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
    const auto& mp = skel->maps;
    const std::array<std::tuple<const bpf_map*, size_t>, 11> maps{{
        {mp.lb4_services_v1, fill->services4},
        {mp.lb6_services_v1, fill->services6},
        {mp.lb4_backends_v1, fill->backends4},
        {mp.lb6_backends_v1, fill->backends6},
        {mp.lb4_ct_v2, fill->ct4},
        {mp.lb6_ct_v2, fill->ct6},
        {mp.lb4_affinity_v1, fill->affinity4},
        {mp.lb6_affinity_v1, fill->affinity6},
        {mp.lb4_src_ranges_v1, fill->src_ranges4},
        {mp.lb6_src_ranges_v1, fill->src_ranges6},
        {mp.lb_maglev_v2, fill->maglev},
    }};
    for (const auto& [map, entries] : maps) {
      const std::string name = bpf_map__name(map);
      m.map_entries.with({name}).set(static_cast<double>(entries));
      m.map_capacity.with({name}).set(static_cast<double>(bpf_map__max_entries(map)));
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
    const auto since = source.unreachable_since();
    m.api_unreachable_seconds.set(
        since ? std::chrono::duration<double>(std::chrono::system_clock::now() - *since).count()
              : 0.0);
    for (const object_kind kind : {object_kind::service, object_kind::endpoint_slice,
                                   object_kind::node, object_kind::pod}) {
      const std::string name(kind_name(kind));
      deltas->feed(m.objects_rejected_total.with({name}), name,
                   static_cast<double>(source.decode_stats(kind).rejected.load()));
    }
  });
}

}  // namespace sluice
