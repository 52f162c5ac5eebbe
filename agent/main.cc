// sluice-agent: loads the datapath, attaches it to pod-facing devices, and keeps the service maps
// in step with the cluster: the Kubernetes API (list/watch) or a manifests directory
// (standalone). Data flows one way: source -> cluster_store -> planner -> map writer; the HTTP
// thread serves health, metrics and healthCheckNodePorts.
#include <poll.h>
#include <signal.h>
#include <malloc.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdarg>
#include <memory>
#include <optional>

#include "agent/datapath/ct_gc.h"
#include "agent/datapath/datapath.h"
#include "agent/datapath/links.h"
#include "agent/datapath/map_writer.h"
#include "agent/datapath/native_devices.h"
#include "agent/datapath/sock_destroy.h"
#include "agent/datapath/sock_lb.h"
#include "agent/http/http_endpoints.h"
#include "agent/metrics/agent_metrics.h"
#include "agent/sources/derive.h"
#include "agent/sources/dir_watch.h"
#include "agent/sources/kube/api_config.h"
#include "agent/sources/kube/kube_source.h"
#include "agent/sources/manifest.h"
#include "agent/store/cluster_store.h"
#include "agent/sync/collectors.h"
#include "agent/sync/sync_loop.h"
#include "maps/sluice_abi.h"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct options {
  // source
  std::string manifests;
  std::string kubeconfig;
  std::string kube_context;
  std::string api_server;
  std::string service_proxy_name;
  std::vector<std::string> service_cidrs;
  std::string node_port_range = "30000-32767";
  // node and datapath
  std::string node_name;
  std::vector<std::string> nodeport_addresses;
  std::string bpffs_root = "/sys/fs/bpf/sluice";
  std::vector<std::string> pod_devices;
  std::vector<std::string> devices;
  std::string xdp_mode = "native";
  std::string lb_mode = "snat";
  std::string snat_ports = "61000-65535";
  bool cleanup = false;
  // socket-LB
  bool socket_lb = true;
  std::string cgroup;
  bool socket_lb_host_only = false;
  bool localhost_nodeports = true;
  bool external_ip_mitigation = false;
  // endpoints
  std::string healthz_bind_address = "0.0.0.0:10256";
  std::string metrics_bind_address = "127.0.0.1:10249";
  // timing
  std::string log_level = "info";
  int debounce_ms = 100;
  int sync_period_s = 30;
  int full_sync_period_s = 900;
  int ct_gc_interval_s = 10;
  // load balancing of external traffic (parse_lb_flags)
  std::string lb_algorithm = "random";
  std::string maglev_table_size = std::to_string(sluice::maglev_default_table_size);
  std::string maglev_hash_seed{sluice::maglev_default_seed_text};
  sluice::reconcile_options lb;  // parsed from the three above

  // parsed
  std::vector<sluice::ip_prefix> service_cidr_prefixes;
  std::vector<sluice::ip_prefix> nodeport_prefixes;
  uint16_t node_port_min = 30000, node_port_max = 32767;
  sluice::xdp_mode xdp = sluice::xdp_mode::native;
  sluice::datapath_options datapath;
  std::optional<std::string> sock_lb_cgroup;  // where socket-LB attaches; none = off
};

int libbpf_log(libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) {
    return 0;
  }
  std::array<char, 1024> buf;
  int n = vsnprintf(buf.data(), buf.size(), fmt, args);
  std::string_view line(buf.data(), n > 0 ? std::min<size_t>(n, buf.size() - 1) : 0);
  while (!line.empty() && line.back() == '\n') {
    line.remove_suffix(1);
  }
  spdlog::log(level == LIBBPF_WARN ? spdlog::level::warn : spdlog::level::info, "libbpf: {}",
              line);
  return n;
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0) {
    return "localhost";
  }
  return buf.data();
}

// Milliseconds until `due` (0 if past), merged into a poll timeout (-1 = none yet).
void merge_timeout(int& timeout, const std::optional<clock_type::time_point>& due) {
  if (!due) {
    return;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*due - clock_type::now());
  const int ms = static_cast<int>(std::max<int64_t>(0, left.count()));
  timeout = timeout < 0 ? ms : std::min(timeout, ms);
}

bool due_now(const std::optional<clock_type::time_point>& due) {
  return due && clock_type::now() >= *due;
}

class agent {
 public:
  /// `kube` is null in standalone mode; otherwise it is already listing into `store`.
  agent(const options& o, sluice::datapath dp, sluice::metrics::agent_metrics& metrics,
        sluice::cluster_store& store, std::unique_ptr<sluice::kube::kube_source> kube)
      : opts_(o),
        dp_(std::move(dp)),
        writer_(dp_.skel(), o.lb),
        native_(dp_, o.devices, o.xdp),
        sweeper_(dp_.skel()),
        store_(store),
        metrics_(metrics),
        kube_(std::move(kube)) {}

  int run();

 private:
  void attach_matching(const std::vector<sluice::link_info>& links);
  void attach_sock_lb();
  void load_manifests();
  bool source_synced() const;
  void gc_step();
  void reap_sockets();

  const options& opts_;
  sluice::datapath dp_;
  sluice::map_writer writer_;
  sluice::native_devices native_;
  sluice::ct_sweeper sweeper_;
  sluice::cluster_store& store_;
  sluice::metrics::agent_metrics& metrics_;
  std::unique_ptr<sluice::http::http_endpoints> http_;
  std::unique_ptr<sluice::kube::kube_source> kube_;
  std::optional<sluice::sync_loop> loop_;
  sluice::allocator allocator_;
  bool attached_ = false;
  std::optional<clock_type::time_point> gc_due_;
  std::optional<clock_type::time_point> reap_due_;  ///< socket-LB: next stale-socket pass
  clock_type::time_point last_reap_{};
  bool gc_in_pass_ = false;   ///< a sweep pass is under way (it runs in budgeted steps)
  bool gc_again_ = false;     ///< a sync asked for a pass while one was under way
  clock_type::time_point gc_pass_start_{};
  void request_gc();
};

void agent::attach_matching(const std::vector<sluice::link_info>& links) {
  for (const auto& l : links) {
    if (native_.matches(l.name)) {
      native_.on_link(l);
      continue;
    }
    if (!sluice::matches_any(l.name, opts_.pod_devices)) {
      continue;
    }
    if (auto r = dp_.attach_pod_device(l.ifindex); !r) {
      // A link can vanish between the event and the attach; that is not an agent failure.
      spdlog::warn("pod device {}: {}", l.name, r.error().message());
      continue;
    }
    spdlog::info("attached {} to {} (ifindex {})", LB_POD_INGRESS_PROG, l.name, l.ifindex);
  }
}

// Socket-LB on --cgroup, after the first sync like the devices. A failure leaves the node's
// own processes without services but pods keep the packet path: logged as an error, not fatal.
void agent::attach_sock_lb() {
  if (!opts_.sock_lb_cgroup) {
    return;
  }
  auto done = sluice::attach_sock_lb(dp_.skel(), opts_.bpffs_root, *opts_.sock_lb_cgroup);
  if (!done) {
    spdlog::error("socket-LB: {}", done.error().message());
    return;
  }
  for (const auto& line : *done) {
    spdlog::info("socket-LB: {}", line);
  }
}

void agent::load_manifests() {
  auto loaded = sluice::load_manifest_dir(opts_.manifests);
  if (!loaded) {
    // Keep serving the last state rather than emptying the maps on a transient error.
    spdlog::error("reading manifests in {}: {}; keeping the programmed state", opts_.manifests,
                  loaded.error().message());
    return;
  }
  for (const auto& e : loaded->errors) {
    spdlog::error("rejected: {}", e);
  }
  sluice::cluster objects = std::move(loaded->objects);
  if (const auto self = loaded->nodes.find(opts_.node_name); self != loaded->nodes.end()) {
    objects.self_node = self->second;
  }
  const sluice::derive_options derive_opts{.service_cidrs = opts_.service_cidr_prefixes,
                                           .node_port_min = opts_.node_port_min,
                                           .node_port_max = opts_.node_port_max,
                                           .nodes = &loaded->nodes};
  const sluice::derive_result derived = sluice::derive(objects, derive_opts, allocator_);
  for (const auto& line : derived.lines) {
    spdlog::info("{}", line);
  }
  const size_t rejected = loaded->rejected + derived.rejected;
  metrics_.objects_rejected_total.with({"manifest"}).inc(static_cast<double>(rejected));
  loop_->set_source_note(fmt::format("objects={} rejected={}", loaded->loaded, rejected));
  store_.replace_all(std::move(objects));
}

bool agent::source_synced() const { return kube_ == nullptr || kube_->synced(); }

// After a sync that changed the maps: backends may have left, so their UDP flows are swept
// soon (and socket-LB's stale sockets looked for, see reap_sockets). At most one such pass
// starts per second however fast changes come (a pass walks every conntrack map), and a
// request during a pass gets a pass of its own after it: the one under way may already be past
// the removed backend's flows.
void agent::request_gc() {
  if (opts_.sock_lb_cgroup) {
    const auto at = std::max(clock_type::now(), last_reap_ + 1s);
    if (!reap_due_ || at < *reap_due_) {
      reap_due_ = at;
    }
  }
  if (gc_in_pass_) {
    gc_again_ = true;
    return;
  }
  const auto at = std::max(clock_type::now(), gc_pass_start_ + 1s);
  if (!gc_due_ || at < *gc_due_) {
    gc_due_ = at;
  }
}

// Socket-LB's counterpart of the UDP conntrack cleanup: connected UDP sockets whose backend
// left are destroyed, so a DNS client reopens instead of blackholing. Soon after every sync
// that changed the maps (at most one pass a second: a pass reads the reverse maps whole) and
// every --ct-gc-interval.
void agent::reap_sockets() {
  last_reap_ = clock_type::now();
  reap_due_ = last_reap_ + std::chrono::seconds(opts_.ct_gc_interval_s);
  if (!opts_.sock_lb_cgroup) {
    return;
  }
  auto done = sluice::destroy_stale_udp_sockets(dp_.skel(), writer_.mirror(), *opts_.sock_lb_cgroup);
  if (!done) {
    spdlog::error("socket-LB: destroying sockets of removed backends: {}", done.error().message());
    return;
  }
  metrics_.socket_lb_destroyed_total.inc(static_cast<double>(done->destroyed));
  spdlog::debug("socket-LB: {} reverse entries, {} of UDP backends that left", done->entries,
                done->stale);
  if (done->stale > 0) {
    spdlog::info("socket-LB: {} UDP reverse entries of backends that left their service; "
                 "destroyed {} connected sockets in {} network namespaces",
                 done->stale, done->destroyed, done->namespaces);
  }
}

void agent::gc_step() {
  if (!gc_in_pass_) {
    gc_in_pass_ = true;
    gc_pass_start_ = clock_type::now();
  }
  // Bounded work per step, so a big conntrack table never holds up a sync for long; the next
  // step follows at once until the pass is complete, then the next pass after the interval.
  auto swept = sweeper_.sweep(writer_.mirror(), {.budget = 16384});
  if (!swept) {
    spdlog::error("conntrack GC: {}", swept.error().message());
    gc_due_ = clock_type::now() + std::chrono::seconds(opts_.ct_gc_interval_s);
    gc_in_pass_ = false;
    return;
  }
  metrics_.conntrack_gc_deleted_total.with({"expired"}).inc(static_cast<double>(swept->expired));
  metrics_.conntrack_gc_deleted_total.with({"udp_stale"}).inc(
      static_cast<double>(swept->udp_stale));
  metrics_.conntrack_gc_deleted_total.with({"affinity_stale"})
      .inc(static_cast<double>(swept->affinity_stale));
  metrics_.conntrack_gc_deleted_total.with({"affinity_expired"})
      .inc(static_cast<double>(swept->affinity_expired));
  if (swept->udp_stale > 0 || swept->affinity_stale > 0) {
    spdlog::info("conntrack GC: removed {} UDP entries and {} affinity entries of backends that "
                 "left their service",
                 swept->udp_stale, swept->affinity_stale);
  }
  if (!swept->complete) {
    gc_due_ = clock_type::now() + 1ms;
    return;
  }
  gc_in_pass_ = false;
  gc_due_ = clock_type::now() + std::chrono::seconds(opts_.ct_gc_interval_s);
  if (gc_again_) {
    gc_again_ = false;
    request_gc();
  }
}

int agent::run() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) {
    spdlog::critical("signalfd: {}", strerror(errno));
    return 1;
  }

  auto links = sluice::link_watch::open();
  if (!links) {
    spdlog::critical("{}", links.error().message());
    return 1;
  }
  if (auto r = writer_.restore(); !r) {
    spdlog::critical("restoring state from pinned maps: {}", r.error().message());
    return 1;
  }
  if (!writer_.mirror().frontends.empty() || !writer_.mirror().backends.empty()) {
    metrics_.agent_restarts_total.inc();
  }
  spdlog::info("restored {} frontends and {} backends from {}", writer_.mirror().frontends.size(),
               writer_.mirror().backends.size(), opts_.bpffs_root);

  sluice::http::http_options hopts;
  hopts.health_address = opts_.healthz_bind_address;
  hopts.metrics_address = opts_.metrics_bind_address;
  hopts.health_timeout = std::chrono::seconds(2 * opts_.sync_period_s);
  auto http = sluice::http::http_endpoints::start(hopts, metrics_);
  if (!http) {
    spdlog::critical("http endpoints: {}", http.error().message());
    return 1;
  }
  http_ = std::move(*http);
  sluice::add_datapath_collectors(metrics_, dp_.skel());

  sluice::sync_loop_options sopts;
  sopts.plan = {.node_name = opts_.node_name,
                .nodeport_addresses = opts_.nodeport_prefixes,
                .service_proxy_name = opts_.service_proxy_name,
                // 127.0.0.1 frontends exist only for socket-LB to serve
                .localhost_nodeports = opts_.sock_lb_cgroup && opts_.localhost_nodeports,
                .external_ip_mitigation = opts_.external_ip_mitigation};
  sopts.full_sync_period = std::chrono::seconds(opts_.full_sync_period_s);
  loop_.emplace(sopts, writer_, store_, metrics_, http_.get());

  std::optional<sluice::dir_watch> watch;
  std::optional<clock_type::time_point> load_due;
  std::optional<clock_type::time_point> rewatch_due;
  if (!opts_.manifests.empty()) {
    if (auto w = sluice::dir_watch::open(opts_.manifests); w) {
      watch.emplace(std::move(*w));
    } else {
      spdlog::critical("watch {}: {}", opts_.manifests, w.error().message());
      return 1;
    }
    load_manifests();
  } else {
    sluice::add_kube_collectors(metrics_, *kube_);
  }
  gc_due_ = clock_type::now() + std::chrono::seconds(opts_.ct_gc_interval_s);
  reap_due_ = gc_due_;

  bool waiting_logged = false;
  for (;;) {
    const int watch_fd = watch ? watch->fd() : -1;
    std::array<pollfd, 4> fds{{{sfd, POLLIN, 0},
                               {links->fd(), POLLIN, 0},
                               {store_.notify_fd(), POLLIN, 0},
                               {watch_fd, POLLIN, 0}}};
    int timeout = -1;
    merge_timeout(timeout, load_due);
    merge_timeout(timeout, rewatch_due);
    merge_timeout(timeout, gc_due_);
    merge_timeout(timeout, reap_due_);
    merge_timeout(timeout, loop_->next_due());
    if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      spdlog::critical("poll: {}", strerror(errno));
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        spdlog::info("signal {}: stopping; the datapath stays attached and keeps serving "
                     "(sluice-agent --cleanup removes it)", si.ssi_signo);
        if (kube_) {
          kube_->stop();
        }
        http_->stop();
        close(sfd);
        return 0;
      }
    }
    if (fds[1].revents & POLLIN) {
      if (auto ev = links->drain(); !ev) {
        spdlog::error("{}", ev.error().message());
      } else if (attached_) {
        // Gone first: an ifindex may be reused by a link created in the same batch.
        native_.on_removed(ev->lost ? native_.missing(ev->links) : ev->removed);
        attach_matching(ev->links);  // after a loss: every link, addresses re-read
        native_.on_addresses(ev->addresses);
        if (ev->lost) {
          native_.prune();
        }
      }
    }
    const bool forced = due_now(loop_->next_due());
    if ((fds[2].revents & POLLIN) || forced) {
      if (fds[2].revents & POLLIN) {
        http_->queued_update();
      }
      // Drain first, then check: the last kind's first complete list marks it synced and wakes
      // under one lock, so checking after the drain can never lose that wake-up.
      store_.drain_wakeups();
      if (!source_synced()) {
        // Programming before every kind is listed would program services without endpoints;
        // planning what has arrived is harmless and shortens the first sync. This take()
        // drains wake-ups too, so the gate is checked again after it: a list that completed
        // in between is seen now, not lost.
        loop_->plan_ahead();
      }
      if (!source_synced()) {
        if (!waiting_logged) {
          spdlog::info("waiting for the first complete list of Services, EndpointSlices, "
                       "Node and Pods");
          waiting_logged = true;
        }
      } else if (const auto round = loop_->run_once(forced); round) {
        if (!attached_ && round->report.failed_ops == 0) {
          // Program the maps before attaching, so the first translated packet sees the full
          // state.
          attach_matching(sluice::list_links());
          native_.prune();  // entries of devices an earlier run had and that are gone now
          attach_sock_lb();
          attached_ = true;
        }
        if (round->report.ops > 0) {
          request_gc();
        }
      }
    }
    if (watch && (fds[3].revents & POLLIN) && watch->drain() && !load_due) {
      // Editors and `kubectl`-style tools write in bursts: coalesce them into one load.
      load_due = clock_type::now() + std::chrono::milliseconds(opts_.debounce_ms);
    }
    if (watch && watch->dir_gone()) {
      // Deleted, moved or unmounted: keep serving the last state, look again every second.
      spdlog::error("manifest directory {} is gone; keeping the programmed state",
                    opts_.manifests);
      watch.reset();
      rewatch_due = clock_type::now() + 1s;
    }
    if (!watch && due_now(rewatch_due)) {
      if (auto w = sluice::dir_watch::open(opts_.manifests); w) {
        watch.emplace(std::move(*w));
        rewatch_due.reset();
        spdlog::info("manifest directory {} is back", opts_.manifests);
        load_due = clock_type::now();
      } else {
        rewatch_due = clock_type::now() + 1s;
      }
    }
    if (due_now(load_due)) {
      load_due.reset();
      load_manifests();
    }
    if (due_now(gc_due_)) {
      gc_step();
    }
    if (due_now(reap_due_)) {
      reap_sockets();
    }
  }
}

// Start-up parsing of flag values that CLI11 validators cannot express.
// "LOW-HIGH" within 1-65535.
bool parse_port_range(std::string_view flag, const std::string& text, uint16_t& lo_out,
                      uint16_t& hi_out) {
  unsigned lo = 0, hi = 0;
  char dash = 0;
  std::istringstream in(text);
  if (!(in >> lo >> dash >> hi) || dash != '-' || !in.eof() || lo < 1 || hi > 65535 || lo > hi) {
    spdlog::error("{}: {} is not LOW-HIGH within 1-65535", flag, text);
    return false;
  }
  lo_out = static_cast<uint16_t>(lo);
  hi_out = static_cast<uint16_t>(hi);
  return true;
}

bool parse_flags(options& o) {
  for (const std::string& text : o.service_cidrs) {
    const auto p = sluice::parse_prefix(text);
    if (!p) {
      spdlog::error("--service-cidr: {} is not a CIDR", text);
      return false;
    }
    o.service_cidr_prefixes.push_back(*p);
  }
  for (const std::string& text : o.nodeport_addresses) {
    if (text == "primary") {
      continue;  // the default: the Node's primary address per family
    }
    const auto p = sluice::parse_prefix(text, true);
    if (!p) {
      spdlog::error("--nodeport-addresses: {} is not a CIDR or \"primary\"", text);
      return false;
    }
    o.nodeport_prefixes.push_back(*p);
  }
  if (!parse_port_range("--node-port-range", o.node_port_range, o.node_port_min,
                        o.node_port_max) ||
      !parse_port_range("--snat-ports", o.snat_ports, o.datapath.snat_port_min,
                        o.datapath.snat_port_max)) {
    return false;
  }
  // A SNAT port equal to a NodePort would take the node's answers to that NodePort's clients.
  if (o.datapath.snat_port_min <= o.node_port_max && o.node_port_min <= o.datapath.snat_port_max) {
    spdlog::error("--snat-ports {} overlaps --node-port-range {}", o.snat_ports,
                  o.node_port_range);
    return false;
  }
  o.xdp = o.xdp_mode == "off"       ? sluice::xdp_mode::off
          : o.xdp_mode == "generic" ? sluice::xdp_mode::generic
                                    : sluice::xdp_mode::native;
  o.datapath.lb_mode = o.lb_mode == "dsr"      ? LB_MODE_DSR
                       : o.lb_mode == "hybrid" ? LB_MODE_HYBRID
                                               : LB_MODE_SNAT;
  for (const auto& d : o.devices) {
    if (sluice::matches_any(d, o.pod_devices)) {
      spdlog::error("--devices {} is also matched by --pod-devices", d);
      return false;
    }
  }
  return true;
}

// --lb-algorithm, --maglev-table-size, --maglev-hash-seed into o.lb. The size and seed are
// checked whatever the algorithm: the datapath's per-flow hash is configured from them too.
bool parse_lb_flags(options& o) {
  if (o.lb_algorithm == "random") {
    o.lb.algorithm = sluice::lb_algorithm::random;
  } else if (o.lb_algorithm == "maglev") {
    o.lb.algorithm = sluice::lb_algorithm::maglev;
  } else {
    spdlog::error("--lb-algorithm: {} is not random or maglev", o.lb_algorithm);
    return false;
  }
  const std::string& size = o.maglev_table_size;
  const auto [end, ec] =
      std::from_chars(size.data(), size.data() + size.size(), o.lb.maglev.table_size);
  if (ec != std::errc() || end != size.data() + size.size()) {
    spdlog::error("--maglev-table-size: {} is not a number", size);
    return false;
  }
  if (auto ok = sluice::validate_maglev_options(o.lb.maglev); !ok) {
    spdlog::error("--maglev-table-size: {}", ok.error());
    return false;
  }
  const auto seed = sluice::parse_maglev_seed(o.maglev_hash_seed);
  if (!seed) {
    spdlog::error("--maglev-hash-seed: {}", seed.error());
    return false;
  }
  o.lb.maglev.seed = *seed;
  // The datapath hashes flows into the same table size with the seed's other 8 bytes.
  o.datapath.maglev_table_size = o.lb.maglev.table_size;
  o.datapath.maglev_seed0 = o.lb.maglev.seed.flow_hash0();
  o.datapath.maglev_seed1 = o.lb.maglev.seed.flow_hash1();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Megabyte buffers come and go (list pages, the first sync's operations). A fixed mmap
  // threshold hands them back to the kernel when freed; glibc's default threshold rises after
  // the first such free, and they would then stay in the heap and in the RSS (measured: peak
  // RSS at 10k Services / 100k endpoints drops by about 20 MB). Fixing it also pins the trim
  // threshold at 128 KiB, which gave the heap's top back after every small sync only to fault
  // it in again (+2 ms per endpoint change): trim only above 32 MiB.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
  options o;
  CLI::App app{
      "sluice-agent: programs the sluice eBPF service load balancer from Kubernetes objects.\n"
      "With --manifests it runs standalone from a directory of manifests; otherwise it lists and "
      "watches the Kubernetes API (--k8s-api-server, --kubeconfig, $KUBECONFIG, or the "
      "in-cluster service account, in that order)."};
  // The DaemonSet's ConfigMap and the systemd unit's /etc/sluice/*.conf: a misspelt key is an
  // error, not a silently ignored setting.
  app.set_config("--config", "",
                 "read flags from FILE: one `flag-name = value` per line (TOML; lists as "
                 "\"a,b\"); repeatable, a later file wins, the command line wins over files")
      ->expected(1, CLI::detail::expected_max_vector_size)
      ->type_name("FILE");
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("--manifests", o.manifests,
                 "standalone: directory of manifests (Service, EndpointSlice, Endpoints, Pod, "
                 "Node; YAML or JSON), followed with inotify")
      ->check(CLI::ExistingDirectory);
  app.add_option("--kubeconfig", o.kubeconfig, "kubeconfig file to reach the API server");
  app.add_option("--kube-context", o.kube_context,
                 "kubeconfig context to use (default: its current-context)");
  app.add_option("--k8s-api-server", o.api_server,
                 "API server URL (https://HOST:PORT, or unix:///PATH for `kubectl proxy -u`); "
                 "overrides the kubeconfig's server, so the agent never depends on the "
                 "`kubernetes` ClusterIP it implements");
  app.add_option("--service-proxy-name", o.service_proxy_name,
                 "serve only Services labelled service.kubernetes.io/service-proxy-name=NAME "
                 "(default: those without the label, as kube-proxy)");
  app.add_option("--service-cidr", o.service_cidrs,
                 "standalone: CIDRs (one per family) to allocate empty clusterIPs from")
      ->delimiter(',');
  app.add_option("--node-port-range", o.node_port_range,
                 "standalone: range to allocate unset nodePorts from")
      ->capture_default_str();
  app.add_option("--nodeport-addresses", o.nodeport_addresses,
                 "CIDRs selecting the Node addresses NodePorts are served on, or \"primary\" "
                 "(default: the Node's first InternalIP per family, as kube-proxy's nftables "
                 "mode)")
      ->delimiter(',');
  app.add_option("--pod-devices", o.pod_devices,
                 "globs of pod-facing devices (host side of pod veths) to attach to; "
                 "comma-separated, links created later are attached too")
      ->delimiter(',');
  app.add_option("--devices", o.devices,
                 "globs of native devices (where traffic from outside the node arrives) to "
                 "serve NodePort, LoadBalancer, ExternalIP and hostPort on: XDP plus tc ingress "
                 "and egress; comma-separated, links created later are attached too")
      ->delimiter(',');
  app.add_option("--xdp-mode", o.xdp_mode,
                 "XDP on --devices: native (driver), generic (skb, any device) or off (tc only)")
      ->check(CLI::IsMember({"native", "generic", "off"}))
      ->capture_default_str();
  app.add_option("--lb-mode", o.lb_mode,
                 "how north-south flows reach a backend on another node: snat (replies return "
                 "through this node), dsr (the backend's node answers the client directly; the "
                 "service address travels in an IP option), hybrid (dsr for TCP, snat for UDP)")
      ->check(CLI::IsMember({"snat", "dsr", "hybrid"}))
      ->capture_default_str();
  app.add_option("--snat-ports", o.snat_ports,
                 "LOW-HIGH source ports for SNAT to other nodes; must not overlap "
                 "--node-port-range (the default lies above Linux's ephemeral ports)")
      ->capture_default_str();
  app.add_flag("--socket-lb,!--no-socket-lb", o.socket_lb,
               "socket-level load balancing (cgroup connect/sendmsg/recvmsg/getpeername "
               "programs on --cgroup): the node's own processes reach services, pods' service "
               "traffic needs no per-packet NAT; --socket-lb=false puts everything on the "
               "per-packet path (and detaches programs an earlier run left)")
      ->capture_default_str();
  app.add_option("--cgroup", o.cgroup,
                 "cgroup v2 directory socket-LB attaches to (default: the cgroup v2 root: "
                 "/run/sluice/cgroupv2 if mounted there, else from /proc/mounts; only when the "
                 "agent runs in PID 1's network namespace)");
  app.add_flag("--socket-lb-host-only", o.socket_lb_host_only,
               "socket-LB only in the agent's own network namespace (the node's processes); "
               "pods use the per-packet path, so service meshes see service addresses");
  app.add_flag("--localhost-nodeports,!--no-localhost-nodeports", o.localhost_nodeports,
               "with socket-LB: NodePorts also on 127.0.0.1 for the node's own processes "
               "(kube-proxy iptables mode's localhost NodePorts, IPv4, without route_localnet)")
      ->capture_default_str();
  app.add_flag("--external-ip-mitigation", o.external_ip_mitigation,
               "CVE-2020-8554: an ExternalIP that is none of the Node's addresses is served only "
               "to traffic from outside the node; pods and the node reach the real address "
               "(Cilium's default; off = kube-proxy's behaviour, which the "
               "DenyServiceExternalIPs admission plugin guards)");
  app.add_option("--node-name", o.node_name, "this node's name (default: the host name)");
  app.add_option("--bpffs-root", o.bpffs_root, "directory on bpffs where maps are pinned")
      ->capture_default_str();
  app.add_option("--healthz-bind-address", o.healthz_bind_address,
                 "HOST:PORT of /healthz and /livez (kube-proxy compatible); empty disables")
      ->capture_default_str();
  app.add_option("--metrics-bind-address", o.metrics_bind_address,
                 "HOST:PORT of /metrics and /proxyMode; empty disables")
      ->capture_default_str();
  app.add_option("--sync-period", o.sync_period_s,
                 "seconds; /healthz fails when an update waits longer than twice this")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--full-sync-period", o.full_sync_period_s,
                 "seconds between full diffs of every frontend against the maps")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  app.add_option("--ct-gc-interval", o.ct_gc_interval_s,
                 "seconds between conntrack/affinity garbage-collection passes")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  app.add_flag("--cleanup", o.cleanup,
               "detach from every device of this network namespace, unpin everything under "
               "--bpffs-root, and exit");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--lb-algorithm", o.lb_algorithm,
                 "how new flows from outside the node pick a backend: random, or maglev (a "
                 "Maglev consistent-hashing table per NodePort, LoadBalancer, ExternalIP and "
                 "hostPort frontend, the same on every node given the same size and seed)")
      ->capture_default_str();
  app.add_option("--maglev-table-size", o.maglev_table_size,
                 "entries per Maglev table: 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, "
                 "65521 or 131071 (prime; above 100 x a frontend's backends keeps shares within "
                 "1%); 4 bytes of kernel memory per entry per external frontend")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("--maglev-hash-seed", o.maglev_hash_seed,
                 "12 bytes as 16 base64 characters (head -c12 /dev/urandom | base64), the same "
                 "on every node; default Cilium's")
      ->capture_default_str();
  app.add_option("--debounce-ms", o.debounce_ms,
                 "standalone: wait this long after a manifest change for more before loading")
      ->check(CLI::Range(0, 10000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("sluice");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  libbpf_set_print(libbpf_log);

  if (o.cleanup) {
    auto done = sluice::cleanup(o.bpffs_root);
    if (!done) {
      spdlog::error("cleanup: {}", done.error().message());
      return 1;
    }
    for (const auto& line : *done) {
      spdlog::info("{}", line);
    }
    spdlog::info("cleanup done");
    return 0;
  }
  if (!parse_flags(o)) {
    return 2;
  }
  if (!parse_lb_flags(o)) {
    return 2;
  }
  if (!o.manifests.empty() &&
      (!o.kubeconfig.empty() || !o.api_server.empty() || !o.kube_context.empty())) {
    spdlog::error("--manifests runs standalone; it cannot be combined with --kubeconfig, "
                  "--kube-context or --k8s-api-server");
    return 2;
  }
  if (o.node_name.empty()) {
    o.node_name = host_name();
  }
  if (o.pod_devices.empty() && o.devices.empty()) {
    spdlog::warn("no --pod-devices or --devices: the datapath is loaded but attached nowhere");
  }

  // The Kubernetes source starts listing before the datapath loads: creating the BPF maps
  // takes most of a second, and the first plan waits for complete lists anyway.
  sluice::cluster_store store(o.node_name);
  std::unique_ptr<sluice::kube::kube_source> kube;
  if (o.manifests.empty()) {
    sluice::kube::api_config cfg;
    try {
      cfg = sluice::kube::resolve_api_config(
          {.api_server = o.api_server, .kubeconfig = o.kubeconfig, .kube_context = o.kube_context},
          sluice::kube::config_env::from_process());
    } catch (const std::exception& e) {
      spdlog::critical("Kubernetes API configuration: {}", e.what());
      return 2;
    }
    spdlog::info("Kubernetes API at {}{}", cfg.server,
                 cfg.unix_socket.empty() ? "" : " via " + cfg.unix_socket);
    kube = std::make_unique<sluice::kube::kube_source>(
        cfg, store,
        sluice::kube::kube_source_options{.node_name = o.node_name,
                                          .service_proxy_name = o.service_proxy_name});
    kube->start();
  }

  if (auto r = sluice::ensure_bpffs(o.bpffs_root); !r) {
    spdlog::critical("{}", r.error().message());
    return 1;
  }
  if (auto cookie = sluice::current_netns_cookie(); cookie) {
    o.datapath.host_netns_cookie = *cookie;
  } else {
    spdlog::critical("{}", cookie.error().message());
    return 1;
  }
  o.datapath.sock_host_only = o.socket_lb_host_only;
  if (o.socket_lb) {
    std::string why;
    auto cg = sluice::resolve_sock_lb_cgroup(o.cgroup, why);
    if (!cg) {
      spdlog::critical("socket-LB: {}", cg.error().message());
      return 1;
    }
    o.sock_lb_cgroup = *cg;
    if (!o.sock_lb_cgroup) {
      spdlog::warn("socket-LB off: {}", why);
    }
  } else if (!o.cgroup.empty() || o.socket_lb_host_only) {
    spdlog::warn("--cgroup and --socket-lb-host-only have no effect with --socket-lb=false");
  }
  if (!o.sock_lb_cgroup) {
    // Off: every service flow takes the per-packet path, also where an earlier run attached.
    auto gone = sluice::detach_sock_lb(o.bpffs_root);
    if (!gone) {
      spdlog::critical("socket-LB: {}", gone.error().message());
      return 1;
    }
    for (const auto& line : *gone) {
      spdlog::info("socket-LB: {}", line);
    }
  }
  auto dp = sluice::datapath::load(o.bpffs_root, o.datapath);
  if (!dp) {
    spdlog::critical("{}", dp.error().message());
    return 1;
  }
  spdlog::info("datapath loaded, maps pinned under {}, node {}", o.bpffs_root, o.node_name);
  if (o.sock_lb_cgroup) {
    spdlog::info("socket-LB: cgroup {}, node network namespace cookie {}{}; attached after the "
                 "first sync",
                 *o.sock_lb_cgroup, o.datapath.host_netns_cookie,
                 o.socket_lb_host_only ? ", host namespace only" : "");
  }
  sluice::metrics::registry registry;
  sluice::metrics::agent_metrics metrics(registry);
  metrics.agent_start_time_seconds.set(
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  agent a(o, std::move(*dp), metrics, store, std::move(kube));
  return a.run();
}
