// Devices: which links match --pod-devices / --devices, now and as they come, change and go
// (rtnetlink: links and addresses).
#pragma once

#include <string>
#include <vector>

#include "agent/datapath/error.h"

namespace sluice {

struct link_info {
  int ifindex = 0;
  std::string name;
};

/// True when name matches one of the shell globs (fnmatch).
bool matches_any(const std::string& name, const std::vector<std::string>& globs);

/// Every link of this network namespace.
std::vector<link_info> list_links();

/// What rtnetlink reported since the last drain.
struct link_events {
  std::vector<link_info> links;  ///< created or changed (RTM_NEWLINK)
  std::vector<int> removed;      ///< deleted (RTM_DELLINK)
  std::vector<int> addresses;    ///< an address added or removed (RTM_NEWADDR / RTM_DELADDR)
  /// Events were lost (ENOBUFS): `links` holds every link now; the caller re-checks all.
  bool lost = false;
};

/// A non-blocking rtnetlink socket subscribed to link and IPv4/IPv6 address events.
class link_watch {
 public:
  static result<link_watch> open();
  link_watch(link_watch&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  link_watch& operator=(link_watch&&) = delete;
  ~link_watch();

  int fd() const { return fd_; }
  /// Reads pending messages.
  result<link_events> drain();

 private:
  explicit link_watch(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace sluice
