// The planner's output: what the datapath maps should hold. Pure data, no kernel types.
// Produced by sluice::plan() (agent/planner/planner.h), consumed by the map writer
// (agent/datapath/map_writer.h). Addresses are kept in network byte order so they can be
// copied into the ABI structs of maps/sluice_abi.h without conversion.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice {

enum class ip_family : uint8_t { v4 = 4, v6 = 6 };

/// An IPv4 or IPv6 address, bytes in network order. IPv4 uses bytes[0..3], the rest are zero.
struct ip_addr {
  ip_family family = ip_family::v4;
  std::array<uint8_t, 16> bytes{};

  auto operator<=>(const ip_addr&) const = default;
  bool operator==(const ip_addr&) const = default;
};

/// One endpoint behind a frontend.
struct desired_backend {
  ip_addr addr;
  uint16_t port = 0;         // host order
  bool terminating = false;  // serving && terminating (only present when nothing is ready)

  auto operator<=>(const desired_backend&) const = default;
  bool operator==(const desired_backend&) const = default;
};

/// One frontend = one (VIP, port, protocol); the unit that gets a svc_id in the maps.
struct desired_frontend {
  ip_addr vip;
  uint16_t port = 0;                 // host order
  uint8_t proto = 0;                 // IPPROTO_TCP / IPPROTO_UDP
  std::string name;                  // "namespace/service:portname" (portname may be empty)
  uint32_t affinity_timeout_s = 0;   // 0 = no ClientIP affinity
  std::vector<desired_backend> backends;  // usable backends, sorted, deduplicated; empty = reject

  bool operator==(const desired_frontend&) const = default;
};

/// Everything the maps should hold, frontends sorted by (vip, port, proto).
struct desired_state {
  std::vector<desired_frontend> frontends;
  /// Frontends left out because an earlier service (by namespace/name) claims the same
  /// (vip, port, proto): one line each, for the agent to log and count.
  std::vector<std::string> conflicts;
  bool operator==(const desired_state&) const = default;
};

}  // namespace sluice
