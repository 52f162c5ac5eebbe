// The loaded datapath: the BPF skeleton with its maps pinned under --bpffs-root, and the
// operations on the kernel that the agent needs (tc attach/detach, cleanup).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "maps/sluice_abi.h"

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

/// Settings compiled into the programs at load (read-only data): changing one needs a restart.
struct datapath_options {
  uint32_t lb_mode = LB_MODE_SNAT;  ///< enum lb_mode: how north-south flows reach other nodes
  uint16_t snat_port_min = LB_SNAT_PORT_MIN;
  uint16_t snat_port_max = LB_SNAT_PORT_MAX;
  uint32_t maglev_table_size = LB_MAGLEV_DEFAULT_SIZE;
  uint32_t maglev_seed0 = 0x71dcda46;  ///< the per-flow hash's seeds (maglev_seed::flow_hash0/1)
  uint32_t maglev_seed1 = 0x92505688;
  /// Socket-LB: the agent's network namespace (current_netns_cookie()), the node's to the
  /// socket programs; with sock_host_only they translate there only (--socket-lb-host-only).
  uint64_t host_netns_cookie = 0;
  bool sock_host_only = false;
};

enum class xdp_mode { native, generic, off };

/// A native device's addresses, used as the SNAT source of flows leaving by it.
struct device_addrs {
  uint32_t addr4 = 0;                 ///< network order, 0 = none
  std::array<uint8_t, 16> addr6{};    ///< :: = none
};

/// The first global IPv4 and IPv6 address of ifindex (getifaddrs).
device_addrs device_addresses(int ifindex);

class datapath {
 public:
  /// Opens and loads the skeleton; maps are pinned by name under bpffs_root, and pins left by an
  /// earlier run are reused, so conntrack and ids survive restarts.
  static result<datapath> load(const std::string& bpffs_root, const datapath_options& options = {});

  int pod_ingress_fd() const;
  ::sluice_bpf* skel() const { return skel_.get(); }

  /// Attaches lb_pod_ingress to the clsact ingress hook of ifindex, atomically replacing an
  /// earlier sluice program there (same handle and priority).
  result<void> attach_pod_device(int ifindex) const;

  /// A native device (--devices): lb_node_xdp in `mode` (unless off; an XDP program of someone
  /// else there is an error, sluice's own is replaced), lb_node_ingress and lb_node_egress on
  /// clsact, and its addresses into lb_devices_v1. Native mode on a driver without XDP fails.
  result<void> attach_native_device(int ifindex, xdp_mode mode, const device_addrs& addrs) const;

  /// lb_devices_v1[ifindex]: the device's SNAT source addresses (and whether XDP runs there).
  result<void> set_native_device(int ifindex, xdp_mode mode, const device_addrs& addrs) const;
  /// Removes lb_devices_v1[ifindex] (gone already: not an error).
  result<void> forget_native_device(int ifindex) const;
  /// The ifindexes lb_devices_v1 holds (also entries an earlier run left).
  result<std::vector<int>> native_device_entries() const;

 private:
  explicit datapath(std::unique_ptr<::sluice_bpf, sluice_dp::skel_deleter> s) : skel_(std::move(s)) {}
  std::unique_ptr<::sluice_bpf, sluice_dp::skel_deleter> skel_;
};

/// Detaches sluice's tc filters (ingress and egress) and XDP program from every link of this
/// network namespace and removes every pin under bpffs_root (and the directory itself). Returns
/// what was done, one line each.
result<std::vector<std::string>> cleanup(const std::string& bpffs_root);

}  // namespace sluice
