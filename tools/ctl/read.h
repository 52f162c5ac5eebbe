// Reading and flushing the pinned maps of one agent (its --bpffs-root). The only part of
// sluicectl besides trace.h that makes bpf() calls.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <string>

#include "tools/ctl/snapshot.h"

namespace sluice::ctl {

/// A pinned map opened read-write; closed with the object.
class pinned_map {
 public:
  static std::expected<pinned_map, std::string> open(const std::string& root, const char* name);
  pinned_map(pinned_map&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  pinned_map& operator=(pinned_map&& o) noexcept;
  ~pinned_map();
  pinned_map(const pinned_map&) = delete;
  pinned_map& operator=(const pinned_map&) = delete;
  int fd() const { return fd_; }

 private:
  explicit pinned_map(int fd) : fd_(fd) {}
  int fd_ = -1;
};

enum read_parts : unsigned {
  read_services = 1u << 0,  // services, backends, names, source ranges, per-service counters
  read_stats = 1u << 1,     // lb_stats_v3
  read_ct = 1u << 2,        // both conntrack maps
  read_all = read_services | read_stats | read_ct,
};

/// Reads the parts asked for. A map that cannot be opened is an error naming the pin and the
/// root; the name maps (lb_svc_info_v1, lb_unproxied_v1) may be missing (an older agent) and
/// are then left empty.
std::expected<snapshot, std::string> read_snapshot(const std::string& root, unsigned parts);

/// Deletes every conntrack entry (both families) for which `match` is true; returns how many
/// were deleted (an entry the datapath or the agent removed meanwhile is not counted).
std::expected<size_t, std::string> flush_ct(const std::string& root,
                                            const std::function<bool(const ct_entry&)>& match);

/// CLOCK_MONOTONIC in ns (the datapath stamps with CLOCK_MONOTONIC_COARSE: never ahead of it).
uint64_t monotonic_ns();

}  // namespace sluice::ctl
