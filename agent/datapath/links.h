// Pod-facing devices: which links match --pod-devices, now and as they appear (rtnetlink).
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

/// A non-blocking rtnetlink socket subscribed to link events.
class link_watch {
 public:
  static result<link_watch> open();
  link_watch(link_watch&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  link_watch& operator=(link_watch&&) = delete;
  ~link_watch();

  int fd() const { return fd_; }
  /// Reads pending messages; returns links that were created or changed (RTM_NEWLINK).
  result<std::vector<link_info>> drain();

 private:
  explicit link_watch(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace sluice
