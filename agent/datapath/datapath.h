// The loaded datapath: the BPF skeleton with its maps pinned under --bpffs-root, and the
// operations on the kernel that the agent needs (tc attach/detach, cleanup).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/datapath/error.h"

struct sluice_bpf;  // the skeleton (sluice_bpf.skel.h), kept out of this header

namespace sluice_dp {
struct skel_deleter {
  void operator()(::sluice_bpf* s) const;
};
}  // namespace sluice_dp

namespace sluice {

/// Makes sure `root` is a directory on a bpf filesystem. Mounts bpffs at /sys/fs/bpf when the
/// root lies under it and it is not mounted yet (fresh hosts), then creates the directory.
result<void> ensure_bpffs(const std::string& root);

class datapath {
 public:
  /// Opens and loads the skeleton; maps are pinned by name under bpffs_root, and pins left by an
  /// earlier run are reused, so conntrack and ids survive restarts.
  static result<datapath> load(const std::string& bpffs_root);

  int pod_ingress_fd() const;
  ::sluice_bpf* skel() const { return skel_.get(); }

  /// Attaches lb_pod_ingress to the clsact ingress hook of ifindex, atomically replacing an
  /// earlier sluice program there (same handle and priority).
  result<void> attach_pod_device(int ifindex) const;

 private:
  explicit datapath(std::unique_ptr<::sluice_bpf, sluice_dp::skel_deleter> s) : skel_(std::move(s)) {}
  std::unique_ptr<::sluice_bpf, sluice_dp::skel_deleter> skel_;
};

/// Detaches sluice's tc filter from every link of this network namespace and removes every pin
/// under bpffs_root (and the directory itself). Returns what was done, one line each.
result<std::vector<std::string>> cleanup(const std::string& bpffs_root);

}  // namespace sluice
