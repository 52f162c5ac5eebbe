#include "agent/datapath/links.h"

#include <fnmatch.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>

namespace sluice {

bool matches_any(const std::string& name, const std::vector<std::string>& globs) {
  for (const auto& g : globs) {
    if (fnmatch(g.c_str(), name.c_str(), 0) == 0) {
      return true;
    }
  }
  return false;
}

std::vector<link_info> list_links() {
  std::vector<link_info> out;
  if (struct if_nameindex* links = if_nameindex()) {
    for (auto* l = links; l->if_index != 0; ++l) {
      out.push_back({static_cast<int>(l->if_index), l->if_name});
    }
    if_freenameindex(links);
  }
  return out;
}

result<link_watch> link_watch::open() {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) {
    return os_error(-1, "rtnetlink socket");
  }
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    auto e = os_error(-1, "bind rtnetlink to link and address events");
    close(fd);
    return e;
  }
  return link_watch(fd);
}

link_watch::~link_watch() {
  if (fd_ >= 0) {
    close(fd_);
  }
}

result<link_events> link_watch::drain() {
  link_events out;
  alignas(nlmsghdr) std::array<char, 16384> buf;
  for (;;) {
    ssize_t n = recv(fd_, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      if (errno == ENOBUFS) {
        // Events were lost: report every link so the caller re-checks them all.
        out.lost = true;
        continue;
      }
      return os_error(-1, "read rtnetlink");
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_DELADDR) {
        out.addresses.push_back(static_cast<int>(static_cast<ifaddrmsg*>(NLMSG_DATA(h))->ifa_index));
        continue;
      }
      if (h->nlmsg_type == RTM_DELLINK) {
        // A change reported earlier in this batch (the link going down first) is moot now;
        // a link created after this, reusing the index, comes later and stays.
        const int gone = static_cast<ifinfomsg*>(NLMSG_DATA(h))->ifi_index;
        std::erase_if(out.links, [gone](const link_info& l) { return l.ifindex == gone; });
        out.removed.push_back(gone);
        continue;
      }
      if (h->nlmsg_type != RTM_NEWLINK) {
        continue;
      }
      auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(h));
      int alen = static_cast<int>(IFLA_PAYLOAD(h));
      for (auto* a = IFLA_RTA(ifi); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == IFLA_IFNAME) {
          out.links.push_back({ifi->ifi_index, static_cast<const char*>(RTA_DATA(a))});
        }
      }
    }
  }
  if (out.lost) {
    out.links = list_links();
  }
  return out;
}

}  // namespace sluice
