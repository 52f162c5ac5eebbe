// The native devices (--devices) and their entries in lb_devices_v1, kept true as links and
// addresses come and go: a device is attached when it appears, its SNAT source addresses are
// rewritten when one of its addresses changes, and its entry is removed when it goes (so an
// ifindex reused by another link never inherits it). Entries an earlier run left for devices
// that no longer match are removed by prune().
#pragma once

#include <map>
#include <string>
#include <vector>

#include "agent/datapath/datapath.h"
#include "agent/datapath/links.h"

namespace sluice {

class native_devices {
 public:
  native_devices(const datapath& dp, std::vector<std::string> globs, xdp_mode mode)
      : dp_(dp), globs_(std::move(globs)), mode_(mode) {}

  /// Whether the link name is one of --devices.
  bool matches(const std::string& name) const { return matches_any(name, globs_); }

  /// A link that matches appeared or changed: attach (again: idempotent) and write its
  /// addresses. Returns false when attaching failed (logged).
  bool on_link(const link_info& l);
  /// Addresses of these ifindexes changed: rewrite the entries of attached devices.
  void on_addresses(const std::vector<int>& ifindexes);
  /// These ifindexes are gone: drop their entries.
  void on_removed(const std::vector<int>& ifindexes);
  /// The attached devices that are not among `links` (every link now): gone meanwhile.
  std::vector<int> missing(const std::vector<link_info>& links) const;
  /// Removes lb_devices_v1 entries of devices not attached now (after the first on_link pass).
  void prune();

  /// ifindex -> name of the attached devices.
  const std::map<int, std::string>& attached() const { return attached_; }

 private:
  const datapath& dp_;
  std::vector<std::string> globs_;
  xdp_mode mode_;
  std::map<int, std::string> attached_;
  std::map<int, device_addrs> written_;  ///< what lb_devices_v1 holds for each attached device
};

}  // namespace sluice
