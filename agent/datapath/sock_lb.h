// Socket-LB on the kernel side: which cgroup v2 the socket programs attach to, their links
// (pinned under --bpffs-root so they outlive the agent), and the agent's own network namespace,
// which the programs treat as the node's (cfg_host_netns_cookie).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/datapath/error.h"

struct sluice_bpf;

namespace sluice {

/// The mount point of the cgroup v2 hierarchy in a /proc/mounts text (the first one listed),
/// or nullopt. Hybrid hosts have it at /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup.
std::optional<std::string> find_cgroup2_mount(std::string_view proc_mounts);

/// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE), as
/// bpf_get_netns_cookie() returns it for sockets there.
result<uint64_t> current_netns_cookie();

/// Whether this process shares PID 1's network namespace (the node's, for an agent on a real
/// node; false when it runs inside another namespace, as the tests do).
bool in_init_netns();

/// The cgroup socket-LB attaches to: `requested` (--cgroup) when set, which must be a
/// directory on cgroup2; otherwise the cgroup v2 root: /run/sluice/cgroupv2 when that is a
/// cgroup2 mount (the DaemonSet mounts the host's hierarchy there), else the first cgroup2
/// mount in /proc/mounts, else a new mount at /run/sluice/cgroupv2. Only for an agent in the
/// node's network namespace: elsewhere the root also holds processes of namespaces the agent
/// does not take for the node's own, so nullopt (socket-LB stays off) and `why` says so.
result<std::optional<std::string>> resolve_sock_lb_cgroup(const std::string& requested,
                                                          std::string& why);

/// The nine programs (connect, sendmsg, recvmsg, getpeername, v4 and v6; sock_release) on
/// cgroup_path, each through a link pinned as bpffs_root/LB_SOCK_LINK_PREFIX<program>. A link pinned by an
/// earlier agent on the same cgroup gets the new program in place (the cgroup is never without
/// one); a link on another cgroup is unpinned (detached) first. Returns one line per program.
result<std::vector<std::string>> attach_sock_lb(::sluice_bpf* skel, const std::string& bpffs_root,
                                                const std::string& cgroup_path);

/// Unpins (so detaches) every socket-LB link under bpffs_root. Returns what it removed.
result<std::vector<std::string>> detach_sock_lb(const std::string& bpffs_root);

}  // namespace sluice
