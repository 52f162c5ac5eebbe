#include "agent/datapath/sock_lb.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "agent/datapath/fd.h"
#include "maps/sluice_abi.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace fs = std::filesystem;

namespace {

// Where the DaemonSet mounts the host's cgroup v2 hierarchy, and the agent one when none is.
constexpr const char* k_fallback_cgroup2 = "/run/sluice/cgroupv2";

struct link_deleter {
  // The link stays attached while its pin exists: destroying the object only closes our fd.
  void operator()(bpf_link* l) const { bpf_link__destroy(l); }
};
using link_ptr = std::unique_ptr<bpf_link, link_deleter>;


bool on_cgroup2(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

std::array<bpf_program*, 9> sock_programs(::sluice_bpf* s) {
  return {s->progs.lb4_connect,     s->progs.lb6_connect,     s->progs.lb4_sendmsg,
          s->progs.lb6_sendmsg,     s->progs.lb4_recvmsg,     s->progs.lb6_recvmsg,
          s->progs.lb4_getpeername, s->progs.lb6_getpeername, s->progs.lb_sock_release};
}

// The program names, also when no skeleton is loaded (--cleanup, --socket-lb=false).
constexpr std::array<const char*, 9> k_sock_prog_names = {
    LB4_CONNECT_PROG, LB6_CONNECT_PROG, LB4_SENDMSG_PROG,     LB6_SENDMSG_PROG,
    LB4_RECVMSG_PROG, LB6_RECVMSG_PROG, LB4_GETPEERNAME_PROG, LB6_GETPEERNAME_PROG,
    LB_SOCK_RELEASE_PROG};

std::string link_pin(const std::string& root, const char* prog) {
  return (fs::path(root) / (std::string(LB_SOCK_LINK_PREFIX) + prog)).string();
}

}  // namespace

std::optional<std::string> find_cgroup2_mount(std::string_view proc_mounts) {
  std::istringstream in{std::string(proc_mounts)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string source, target, type;
    if (!(fields >> source >> target >> type) || type != "cgroup2") {
      continue;
    }
    // /proc/mounts escapes blanks as octal (\040); such a path is not worth supporting here.
    return target;
  }
  return std::nullopt;
}

result<uint64_t> current_netns_cookie() {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return os_error(-1, "socket for SO_NETNS_COOKIE");
  }
  owned_fd guard(fd);
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
    return os_error(-1, "getsockopt SO_NETNS_COOKIE");
  }
  return cookie;
}

bool in_init_netns() {
  struct stat self {}, init {};
  return stat("/proc/self/ns/net", &self) == 0 && stat("/proc/1/ns/net", &init) == 0 &&
         self.st_dev == init.st_dev && self.st_ino == init.st_ino;
}

result<std::optional<std::string>> resolve_sock_lb_cgroup(const std::string& requested,
                                                          std::string& why) {
  if (!requested.empty()) {
    if (!on_cgroup2(requested)) {
      return std::unexpected(error{std::make_error_code(std::errc::invalid_argument),
                                   fmt::format("--cgroup {} is not a cgroup v2 directory",
                                               requested)});
    }
    return std::optional<std::string>(requested);
  }
  if (!in_init_netns()) {
    why = "this agent is not in the node's network namespace (PID 1's) and --cgroup is not "
          "set: the cgroup v2 root also holds processes of namespaces it would not take for "
          "the node's own";
    return std::optional<std::string>();
  }
  // Sluice's own view of the node's hierarchy: the DaemonSet mounts the host's cgroup2 here
  // (in the pod, /sys/fs/cgroup is the pod's cgroup namespace), and so does the agent when
  // the host has none mounted.
  if (on_cgroup2(k_fallback_cgroup2)) {
    return std::optional<std::string>(k_fallback_cgroup2);
  }
  std::ifstream mounts("/proc/self/mounts");
  std::stringstream text;
  text << mounts.rdbuf();
  if (auto found = find_cgroup2_mount(text.str())) {
    return std::optional<std::string>(*found);
  }
  // A host with cgroup v1 only: the v2 hierarchy exists all the same, unmounted.
  std::error_code ec;
  fs::create_directories(k_fallback_cgroup2, ec);
  if (!on_cgroup2(k_fallback_cgroup2) &&
      mount("none", k_fallback_cgroup2, "cgroup2", 0, nullptr) != 0) {
    return os_error(-1, fmt::format("mount cgroup2 at {}", k_fallback_cgroup2));
  }
  return std::optional<std::string>(k_fallback_cgroup2);
}

result<std::vector<std::string>> attach_sock_lb(::sluice_bpf* skel, const std::string& bpffs_root,
                                                const std::string& cgroup_path) {
  std::vector<std::string> done;
  const int cg = open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0) {
    return os_error(-1, fmt::format("open cgroup {}", cgroup_path));
  }
  owned_fd cg_guard(cg);
  struct stat cg_stat {};
  if (fstat(cg, &cg_stat) != 0) {
    return os_error(-1, fmt::format("stat cgroup {}", cgroup_path));
  }
  // On cgroup2 a cgroup's id is its directory's inode number.
  const uint64_t cg_id = cg_stat.st_ino;

  for (bpf_program* prog : sock_programs(skel)) {
    const char* name = bpf_program__name(prog);
    const std::string pin = link_pin(bpffs_root, name);
    if (access(pin.c_str(), F_OK) == 0) {
      link_ptr old(bpf_link__open(pin.c_str()));
      bpf_link_info info{};
      uint32_t len = sizeof(info);
      const bool same = old && bpf_obj_get_info_by_fd(bpf_link__fd(old.get()), &info, &len) == 0 &&
                        info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == cg_id &&
                        info.cgroup.attach_type == bpf_program__expected_attach_type(prog);
      if (same) {
        if (int rc = bpf_link__update_program(old.get(), prog);
            rc != 0) {
          return os_error(rc, fmt::format("replace the program of link {}", pin));
        }
        done.push_back(fmt::format("{} on {}: program replaced in the pinned link", name,
                                   cgroup_path));
        continue;
      }
      // Another cgroup (a new --cgroup) or not a link of ours: its pin goes, which detaches it.
      if (unlink(pin.c_str()) != 0) {
        return os_error(-1, fmt::format("unpin {}", pin));
      }
      done.push_back(fmt::format("{}: detached the link pinned for another cgroup", name));
    }
    link_ptr link(bpf_program__attach_cgroup(prog, cg));
    if (!link) {
      return os_error(-errno, fmt::format("attach {} to cgroup {}", name, cgroup_path));
    }
    if (int rc = bpf_link__pin(link.get(), pin.c_str()); rc != 0) {
      // The link object's destruction below detaches it: no unpinned attachment is left.
      return os_error(rc, fmt::format("pin link {}", pin));
    }
    done.push_back(fmt::format("{} attached to {}", name, cgroup_path));
  }
  return done;
}

result<std::vector<std::string>> detach_sock_lb(const std::string& bpffs_root) {
  std::vector<std::string> done;
  for (const char* name : k_sock_prog_names) {
    const std::string pin = link_pin(bpffs_root, name);
    if (unlink(pin.c_str()) == 0) {
      done.push_back(fmt::format("unpinned (detached) {}", pin));
    } else if (errno != ENOENT) {
      return os_error(-1, fmt::format("unpin {}", pin));
    }
  }
  return done;
}

}  // namespace sluice
