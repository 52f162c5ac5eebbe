#include "agent/datapath/sock_destroy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "agent/datapath/map_access.h"
#include "agent/datapath/fd.h"
#include "maps/sluice_abi.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace fs = std::filesystem;

namespace {


ip_addr addr_of(const void* bytes, ip_family family) {
  ip_addr a;
  a.family = family;
  std::memcpy(a.bytes.data(), bytes, family == ip_family::v4 ? 4 : 16);
  return a;
}

// A socket as the dump lists it, with what SOCK_DESTROY needs to find it again.
struct diag_socket {
  uint8_t family = 0;
  inet_diag_sockid id{};
};

// Sends one request and feeds every answer message to fn until NLMSG_DONE (dumps) or the
// NLMSG_ERROR ack (returned as -errno, 0 = success).
template <typename Fn>
int nl_request(int fd, nlmsghdr* req, Fn&& fn) {
  if (send(fd, req, req->nlmsg_len, 0) < 0) {
    return -errno;
  }
  alignas(nlmsghdr) std::array<char, 32768> buf;
  for (;;) {
    const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -errno;
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        return 0;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        return static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
      }
      fn(h);
    }
  }
}

struct diag_request {
  nlmsghdr nlh;
  inet_diag_req_v2 req;
};

// Connected UDP sockets (state TCP_ESTABLISHED) of one family in this thread's namespace.
int dump_udp(int fd, uint8_t family, std::vector<diag_socket>& out) {
  diag_request r{};
  r.nlh.nlmsg_len = sizeof(r);
  r.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  r.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  r.req.sdiag_family = family;
  r.req.sdiag_protocol = IPPROTO_UDP;
  r.req.idiag_states = 1u << TCP_ESTABLISHED;
  r.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
  r.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  return nl_request(fd, &r.nlh, [&](const nlmsghdr* h) {
    if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
      return;
    }
    const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
    out.push_back({m->idiag_family, m->id});
  });
}

udp_socket as_udp_socket(const diag_socket& d) {
  udp_socket s;
  s.cookie = d.id.idiag_cookie[0] | (static_cast<uint64_t>(d.id.idiag_cookie[1]) << 32);
  s.peer = addr_of(d.id.idiag_dst, d.family == AF_INET ? ip_family::v4 : ip_family::v6);
  s.peer_port = ntohs(d.id.idiag_dport);
  return s;
}

int destroy(int fd, const diag_socket& d) {
  diag_request r{};
  r.nlh.nlmsg_len = sizeof(r);
  r.nlh.nlmsg_type = SOCK_DESTROY;
  r.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  r.req.sdiag_family = d.family;
  r.req.sdiag_protocol = IPPROTO_UDP;
  r.req.idiag_states = 1u << TCP_ESTABLISHED;
  r.req.id = d.id;  // the tuple and the cookie: the kernel checks both
  return nl_request(fd, &r.nlh, [](const nlmsghdr*) {});
}

result<std::vector<diag_socket>> dump_all(int fd) {
  std::vector<diag_socket> all;
  for (uint8_t family : {AF_INET, AF_INET6}) {
    if (int rc = dump_udp(fd, family, all); rc != 0) {
      return os_error(rc, "sock_diag dump of UDP sockets");
    }
  }
  return all;
}

result<owned_fd> open_sock_diag() {
  const int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) {
    return os_error(-1, "NETLINK_SOCK_DIAG socket");
  }
  return owned_fd(fd);
}

// The network namespaces of the processes in cgroup_path and below, one open fd each.
std::vector<owned_fd> cgroup_namespaces(const std::string& cgroup_path) {
  std::vector<owned_fd> out;
  std::set<std::pair<dev_t, ino_t>> seen;
  std::error_code ec;
  auto visit = [&](const fs::path& dir) {
    std::ifstream procs(dir / "cgroup.procs");
    pid_t pid = 0;
    while (procs >> pid) {
      const std::string ns = fmt::format("/proc/{}/ns/net", pid);
      owned_fd fd(open(ns.c_str(), O_RDONLY | O_CLOEXEC));
      struct stat st {};
      if (fd.get() < 0 || fstat(fd.get(), &st) != 0) {
        continue;  // gone meanwhile
      }
      if (seen.emplace(st.st_dev, st.st_ino).second) {
        out.push_back(std::move(fd));
      }
    }
  };
  visit(cgroup_path);
  for (fs::recursive_directory_iterator it(cgroup_path, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_directory(ec)) {
      visit(it->path());
    }
  }
  return out;
}

template <typename Key, typename Value>
void read_revnat(int fd, ip_family family, std::vector<sock_revnat_entry>& out, bool& ok) {
  ok = for_each_entry_batched<Key, Value>(fd, [&](const Key& k, const Value& v) {
    sock_revnat_entry e;
    e.cookie = k.cookie;
    e.netns_cookie = v.netns_cookie;
    e.backend = addr_of(&k.addr, family);
    e.backend_port = ntohs(k.port);
    e.vip = addr_of(&v.vip, family);
    e.vip_port = ntohs(v.port);
    e.proto = v.proto;
    e.svc_id = v.svc_id;
    e.backend_id = v.backend_id;
    out.push_back(e);
  });
}

}  // namespace

result<std::vector<sock_revnat_entry>> read_sock_revnat(::sluice_bpf* skel) {
  std::vector<sock_revnat_entry> out;
  bool ok = false;
  read_revnat<lb4_sock_revnat_key, lb4_sock_revnat_value>(
      bpf_map__fd(skel->maps.lb4_sock_revnat_v1), ip_family::v4, out, ok);
  if (!ok) {
    return os_error(-1, "read " LB4_SOCK_REVNAT_MAP);
  }
  read_revnat<lb6_sock_revnat_key, lb6_sock_revnat_value>(
      bpf_map__fd(skel->maps.lb6_sock_revnat_v1), ip_family::v6, out, ok);
  if (!ok) {
    return os_error(-1, "read " LB6_SOCK_REVNAT_MAP);
  }
  return out;
}

result<std::vector<udp_socket>> list_connected_udp_sockets() {
  auto fd = open_sock_diag();
  if (!fd) {
    return std::unexpected(fd.error());
  }
  auto all = dump_all(fd->get());
  if (!all) {
    return std::unexpected(all.error());
  }
  std::vector<udp_socket> out;
  for (const diag_socket& d : *all) {
    out.push_back(as_udp_socket(d));
  }
  return out;
}

result<sock_destroy_counts> destroy_stale_udp_sockets(::sluice_bpf* skel, const map_state& mirror,
                                                      const std::string& cgroup_path) {
  sock_destroy_counts counts;
  auto entries = read_sock_revnat(skel);
  if (!entries) {
    return std::unexpected(entries.error());
  }
  counts.entries = entries->size();
  const std::vector<sock_revnat_entry> stale = stale_udp_entries(*entries, mirror);
  counts.stale = stale.size();
  if (stale.empty()) {
    return counts;
  }
  std::map<uint64_t, std::vector<sock_revnat_entry>> by_netns;
  for (const sock_revnat_entry& e : stale) {
    by_netns[e.netns_cookie].push_back(e);
  }

  std::vector<owned_fd> namespaces = cgroup_namespaces(cgroup_path);
  std::optional<error> failed;
  // setns() changes the calling thread's namespace: a thread of its own, gone after the pass.
  std::thread worker([&] {
    for (const owned_fd& ns : namespaces) {
      if (setns(ns.get(), CLONE_NEWNET) != 0) {
        continue;  // the namespace died meanwhile
      }
      auto diag = open_sock_diag();
      if (!diag) {
        failed = diag.error();
        return;
      }
      uint64_t cookie = 0;
      socklen_t len = sizeof(cookie);
      if (getsockopt(diag->get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) != 0) {
        failed = error{std::error_code(errno, std::generic_category()),
                       "getsockopt SO_NETNS_COOKIE"};
        return;
      }
      const auto wanted = by_netns.find(cookie);
      if (wanted == by_netns.end()) {
        continue;
      }
      ++counts.namespaces;
      auto all = dump_all(diag->get());
      if (!all) {
        failed = all.error();
        return;
      }
      std::vector<udp_socket> sockets;
      for (const diag_socket& d : *all) {
        sockets.push_back(as_udp_socket(d));
      }
      for (size_t i : sockets_to_destroy(sockets, wanted->second)) {
        // ENOENT: closed since the dump. Anything else: this socket is left as it is.
        if (destroy(diag->get(), (*all)[i]) == 0) {
          ++counts.destroyed;
        }
      }
    }
  });
  worker.join();
  if (failed) {
    return std::unexpected(*failed);
  }
  const int fd4 = bpf_map__fd(skel->maps.lb4_sock_revnat_v1);
  const int fd6 = bpf_map__fd(skel->maps.lb6_sock_revnat_v1);
  for (const sock_revnat_entry& e : stale) {
    if (e.backend.family == ip_family::v4) {
      lb4_sock_revnat_key k{};
      k.cookie = e.cookie;
      std::memcpy(&k.addr, e.backend.bytes.data(), 4);
      k.port = htons(e.backend_port);
      bpf_map_delete_elem(fd4, &k);
    } else {
      lb6_sock_revnat_key k{};
      k.cookie = e.cookie;
      std::memcpy(k.addr, e.backend.bytes.data(), 16);
      k.port = htons(e.backend_port);
      bpf_map_delete_elem(fd6, &k);
    }
  }
  return counts;
}

}  // namespace sluice
