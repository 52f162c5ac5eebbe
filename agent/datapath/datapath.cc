#include "agent/datapath/datapath.h"

#include <linux/magic.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <filesystem>

#include "maps/sluice_abi.h"
#include "sluice_bpf.skel.h"

void sluice_dp::skel_deleter::operator()(::sluice_bpf* s) const { sluice_bpf::destroy(s); }

namespace sluice {
namespace fs = std::filesystem;

namespace {

bool on_bpffs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

constexpr const char* k_default_bpffs = "/sys/fs/bpf";

bpf_tc_hook ingress_hook(int ifindex) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = BPF_TC_INGRESS;
  return hook;
}

}  // namespace

result<void> ensure_bpffs(const std::string& root) {
  std::error_code ec;
  fs::path p = fs::absolute(root, ec);
  fs::path probe = p;
  while (!probe.empty() && !fs::exists(probe, ec)) {
    probe = probe.parent_path();
  }
  if (!on_bpffs(probe.string())) {
    const fs::path sysbpf(k_default_bpffs);
    const bool under_sys = p.string().starts_with(sysbpf.string());
    if (!under_sys) {
      return std::unexpected(error{std::make_error_code(std::errc::invalid_argument),
                                   fmt::format("{} is not on a bpf filesystem (mount -t bpf bpf "
                                               "DIR)", root)});
    }
    fs::create_directories(sysbpf, ec);
    if (mount("bpf", k_default_bpffs, "bpf", 0, "mode=0700") != 0) {
      return os_error(-1, fmt::format("mount bpffs at {}", k_default_bpffs));
    }
  }
  fs::create_directories(p, ec);
  if (ec) {
    return std::unexpected(error{ec, fmt::format("create {}", p.string())});
  }
  // Pinned state (flows, ids) is for root only.
  chmod(p.c_str(), 0700);
  return {};
}

result<datapath> datapath::load(const std::string& bpffs_root) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = bpffs_root.c_str());
  ::sluice_bpf* raw = ::sluice_bpf::open(&opts);
  if (!raw) {
    return os_error(-1, "open BPF skeleton");
  }
  std::unique_ptr<::sluice_bpf, sluice_dp::skel_deleter> s(raw);
  if (int rc = ::sluice_bpf::load(s.get()); rc != 0) {
    return os_error(rc, fmt::format("load BPF skeleton (pins under {})", bpffs_root));
  }
  // Maps an older release pinned under names this one no longer uses (a layout change got a new
  // name): nothing reads them any more.
  for (const char* old : {"lb_stats_v1", "lb_stats_v2", "lb4_ct_v1", "lb6_ct_v1"}) {
    unlink((fs::path(bpffs_root) / old).c_str());
  }
  return datapath(std::move(s));
}

int datapath::pod_ingress_fd() const { return bpf_program__fd(skel_->progs.lb_pod_ingress); }

result<void> datapath::attach_pod_device(int ifindex) const {
  auto hook = ingress_hook(ifindex);
  int rc = bpf_tc_hook_create(&hook);
  if (rc != 0 && rc != -EEXIST) {
    return os_error(rc, fmt::format("create clsact on ifindex {}", ifindex));
  }
  LIBBPF_OPTS(bpf_tc_opts, tc, .prog_fd = pod_ingress_fd(), .flags = BPF_TC_F_REPLACE,
              .handle = LB_TC_HANDLE, .priority = LB_TC_PRIORITY);
  rc = bpf_tc_attach(&hook, &tc);
  if (rc != 0) {
    return os_error(rc, fmt::format("attach tc ingress on ifindex {}", ifindex));
  }
  return {};
}

result<std::vector<std::string>> cleanup(const std::string& bpffs_root) {
  std::vector<std::string> done;
  // Probing links without a clsact qdisc makes libbpf print kernel errors: expected here.
  struct quiet_libbpf {
    libbpf_print_fn_t old = libbpf_set_print(nullptr);
    ~quiet_libbpf() { libbpf_set_print(old); }
  } quiet;
  if (struct if_nameindex* links = if_nameindex()) {
    for (auto* l = links; l->if_index != 0; ++l) {
      auto hook = ingress_hook(static_cast<int>(l->if_index));
      LIBBPF_OPTS(bpf_tc_opts, q, .handle = LB_TC_HANDLE, .priority = LB_TC_PRIORITY);
      if (bpf_tc_query(&hook, &q) != 0) {
        continue;
      }
      LIBBPF_OPTS(bpf_tc_opts, d, .handle = LB_TC_HANDLE, .priority = LB_TC_PRIORITY);
      if (int rc = bpf_tc_detach(&hook, &d); rc != 0) {
        if_freenameindex(links);
        return os_error(rc, fmt::format("detach tc from {}", l->if_name));
      }
      done.push_back(fmt::format("detached {} from {}", LB_POD_INGRESS_PROG, l->if_name));
    }
    if_freenameindex(links);
  }

  std::error_code ec;
  if (!fs::exists(bpffs_root, ec)) {
    return done;
  }
  if (!on_bpffs(bpffs_root)) {
    return std::unexpected(error{std::make_error_code(std::errc::invalid_argument),
                                 fmt::format("{} is not on a bpf filesystem", bpffs_root)});
  }
  for (const auto& e : fs::directory_iterator(bpffs_root, ec)) {
    // maps.debug / progs.debug: the kernel's own iterators in every bpffs mount root.
    if (e.path().extension() == ".debug") {
      continue;
    }
    if (unlink(e.path().c_str()) != 0) {
      return os_error(-1, fmt::format("unpin {}", e.path().string()));
    }
    done.push_back(fmt::format("unpinned {}", e.path().string()));
  }
  // The root itself, unless it is a mount point someone else made (tests mount their own).
  struct stat self {}, parent {};
  const fs::path rp = fs::absolute(bpffs_root);
  if (stat(rp.c_str(), &self) == 0 && stat(rp.parent_path().c_str(), &parent) == 0 &&
      self.st_dev == parent.st_dev && rmdir(rp.c_str()) == 0) {
    done.push_back(fmt::format("removed {}", rp.string()));
  }
  return done;
}

}  // namespace sluice
