// sluice-agent: loads the datapath, attaches it to pod-facing devices, and keeps the service maps
// in step with the manifests directory. Data flows one way: manifests -> model -> planner ->
// map writer.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <bpf/libbpf.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <cstdarg>
#include <optional>

#include "agent/datapath/datapath.h"
#include "agent/datapath/links.h"
#include "agent/datapath/map_writer.h"
#include "agent/planner/planner.h"
#include "agent/sources/dir_watch.h"
#include "agent/sources/manifest.h"
#include "maps/sluice_abi.h"

namespace {

using clock_type = std::chrono::steady_clock;

struct options {
  std::string manifests;
  std::string node_name;
  std::string bpffs_root = "/sys/fs/bpf/sluice";
  std::vector<std::string> pod_devices;
  bool cleanup = false;
  std::string log_level = "info";
  int debounce_ms = 100;
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

class agent {
 public:
  agent(const options& o, sluice::datapath dp)
      : opts_(o), dp_(std::move(dp)), writer_(dp_.skel()) {}

  int run();

 private:
  void attach_matching(const std::vector<sluice::link_info>& links);
  void sync();

  const options& opts_;
  sluice::datapath dp_;
  sluice::map_writer writer_;
  uint64_t generation_ = 0;
  uint64_t rejected_objects_ = 0;
};

void agent::attach_matching(const std::vector<sluice::link_info>& links) {
  for (const auto& l : links) {
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

void agent::sync() {
  const auto start = clock_type::now();
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
  rejected_objects_ += loaded->rejected;
  const auto desired = sluice::plan(loaded->objects, {.node_name = opts_.node_name});
  for (const auto& c : desired.conflicts) {
    spdlog::error("conflict: {}", c);
  }
  const auto rep = writer_.sync(desired);
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - start).count();
  if (rep.failed_ops > 0) {
    spdlog::error("sync incomplete: {} of {} map operations failed; will retry on next change",
                  rep.failed_ops, rep.ops);
    return;
  }
  ++generation_;
  spdlog::info(
      "synced generation={} frontends={} backends={} ops={} objects={} rejected={} "
      "conflicts={} took_us={}",
      generation_, rep.frontends, rep.backends, rep.ops, loaded->loaded, loaded->rejected,
      desired.conflicts.size(), us);
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
  std::optional<sluice::dir_watch> watch;
  if (auto w = sluice::dir_watch::open(opts_.manifests); w) {
    watch.emplace(std::move(*w));
  } else {
    spdlog::critical("watch {}: {}", opts_.manifests, w.error().message());
    return 1;
  }
  if (auto r = writer_.restore(); !r) {
    spdlog::critical("restoring state from pinned maps: {}", r.error().message());
    return 1;
  }
  spdlog::info("restored {} frontends and {} backends from {}", writer_.mirror().frontends.size(),
               writer_.mirror().backends.size(), opts_.bpffs_root);

  // Program the maps before attaching, so the first translated packet sees the full state.
  sync();
  attach_matching(sluice::list_links());

  std::optional<clock_type::time_point> sync_due;
  std::optional<clock_type::time_point> rewatch_due;
  for (;;) {
    const int watch_fd = watch ? watch->fd() : -1;
    std::array<pollfd, 3> fds{
        {{sfd, POLLIN, 0}, {links->fd(), POLLIN, 0}, {watch_fd, POLLIN, 0}}};
    int timeout = -1;
    for (const auto& due : {sync_due, rewatch_due}) {
      if (due) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(*due - clock_type::now());
        const int ms = static_cast<int>(std::max<int64_t>(0, left.count()));
        timeout = timeout < 0 ? ms : std::min(timeout, ms);
      }
    }
    if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      spdlog::critical("poll: {}", strerror(errno));
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        spdlog::info("signal {}: stopping; the datapath stays attached and keeps serving "
                     "(sluice-agent --cleanup removes it)", si.ssi_signo);
        close(sfd);
        return 0;
      }
    }
    if (fds[1].revents & POLLIN) {
      if (auto changed = links->drain(); changed) {
        attach_matching(*changed);
      } else {
        spdlog::error("{}", changed.error().message());
      }
    }
    if (watch && (fds[2].revents & POLLIN) && watch->drain() && !sync_due) {
      // Editors and `kubectl`-style tools write in bursts: coalesce them into one sync.
      sync_due = clock_type::now() + std::chrono::milliseconds(opts_.debounce_ms);
    }
    if (watch && watch->dir_gone()) {
      // Deleted, moved or unmounted: keep serving the last state, look again every second.
      spdlog::error("manifest directory {} is gone; keeping the programmed state",
                    opts_.manifests);
      watch.reset();
      rewatch_due = clock_type::now() + std::chrono::seconds(1);
    }
    if (!watch && rewatch_due && clock_type::now() >= *rewatch_due) {
      if (auto w = sluice::dir_watch::open(opts_.manifests); w) {
        watch.emplace(std::move(*w));
        rewatch_due.reset();
        spdlog::info("manifest directory {} is back", opts_.manifests);
        sync_due = clock_type::now();
      } else {
        rewatch_due = clock_type::now() + std::chrono::seconds(1);
      }
    }
    if (sync_due && clock_type::now() >= *sync_due) {
      sync_due.reset();
      sync();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{
      "sluice-agent: programs the sluice eBPF service load balancer from Kubernetes objects.\n"
      "Standalone mode reads Service and EndpointSlice manifests from --manifests and follows "
      "edits to them."};
  app.add_option("--manifests", o.manifests,
                 "directory of Service/EndpointSlice manifests (YAML or JSON), followed with "
                 "inotify")
      ->check(CLI::ExistingDirectory);
  app.add_option("--pod-devices", o.pod_devices,
                 "globs of pod-facing devices (host side of pod veths) to attach to; "
                 "comma-separated, links created later are attached too")
      ->delimiter(',');
  app.add_option("--node-name", o.node_name, "this node's name (default: the host name)");
  app.add_option("--bpffs-root", o.bpffs_root, "directory on bpffs where maps are pinned")
      ->capture_default_str();
  app.add_flag("--cleanup", o.cleanup,
               "detach from every device of this network namespace, unpin everything under "
               "--bpffs-root, and exit");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--debounce-ms", o.debounce_ms,
                 "wait this long after a manifest change for more before syncing")
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
  if (o.manifests.empty()) {
    spdlog::error("--manifests DIR is required (the Kubernetes API source is not built yet)");
    return 2;
  }
  if (o.node_name.empty()) {
    o.node_name = host_name();
  }
  if (o.pod_devices.empty()) {
    spdlog::warn("no --pod-devices: the datapath is loaded but attached nowhere");
  }

  if (auto r = sluice::ensure_bpffs(o.bpffs_root); !r) {
    spdlog::critical("{}", r.error().message());
    return 1;
  }
  auto dp = sluice::datapath::load(o.bpffs_root);
  if (!dp) {
    spdlog::critical("{}", dp.error().message());
    return 1;
  }
  spdlog::info("datapath loaded, maps pinned under {}, node {}", o.bpffs_root, o.node_name);
  agent a(o, std::move(*dp));
  return a.run();
}
