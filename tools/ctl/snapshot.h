// What sluicectl reads from the pinned maps, decoded into plain data (host-order ports, ip_addr
// addresses), and the words it prints for the datapath's enums. Pure: reading the maps is
// read.h's job, printing format.h's, so both sides are tested separately (format without root).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/planner/desired.h"
#include "maps/sluice_abi.h"

namespace sluice::ctl {

/// One entry of lb{4,6}_backends_v1.
struct backend_entry {
  uint32_t id = 0;
  ip_addr addr;
  uint16_t port = 0;  // host order
  uint8_t proto = 0;
  uint8_t state = LB_BACKEND_ACTIVE;
  uint32_t svc_id = 0;
};

/// The master and slot entries of one (VIP, port, protocol) in lb{4,6}_services_v1.
struct frontend_entry {
  ip_addr vip;
  uint16_t port = 0;  // host order
  uint8_t proto = 0;
  std::optional<lb_svc_value> master;           // scope ALL, slot 0
  std::map<uint16_t, uint32_t> slots;           // scope ALL: slot -> backend id
  std::optional<lb_svc_value> external_master;  // LB_SCOPE_EXTERNAL (externalTrafficPolicy Local)
  std::map<uint16_t, uint32_t> external_slots;
};

/// One entry of lb{4,6}_ct_v2.
struct ct_entry {
  ip_addr saddr, daddr;
  uint16_t sport = 0, dport = 0;  // host order
  uint8_t proto = 0;
  lb_ct_state state{};            // as stored (nat_port, snat_port in network order)
  ip_addr nat_addr, snat_addr;
};

/// One entry of lb_unproxied_v1.
struct unproxied_entry {
  std::string namespace_, name;
  uint8_t reason = 0;  // enum lb_unproxied_reason
  std::string external_name;
};

/// Everything the commands print, as read at one moment.
struct snapshot {
  std::vector<frontend_entry> frontends;  // sorted by (vip, port, proto)
  std::map<uint32_t, backend_entry> backends;
  std::map<uint32_t, lb_svc_info> info;          // svc_id -> kind and names
  std::vector<unproxied_entry> unproxied;        // sorted by namespace/name
  std::map<uint32_t, std::vector<ip_prefix>> src_ranges;  // svc_id -> allowed prefixes
  std::map<uint32_t, lb_svc_stat_value> svc_stats;        // svc_id -> summed over CPUs
  std::array<lb_stat_value, LB_STAT_MAX> stats{};         // summed over CPUs
  std::vector<ct_entry> ct;   // read only by the commands that need it
  uint64_t now_ns = 0;        // CLOCK_MONOTONIC when read (the datapath's clock)

  /// The frontend whose master has this svc_id (nullptr if none).
  const frontend_entry* frontend_of(uint32_t svc_id) const;
};

// ---- words for the datapath's values ---------------------------------------------------------

std::string stat_name(uint32_t stat);                  // enum lb_stat, "stat_N" if unknown
std::vector<std::string> svc_flag_names(uint16_t flags);  // enum lb_svc_flags
std::vector<std::string> ct_flag_names(uint8_t flags);    // enum lb_ct_flags
std::string kind_name(uint8_t kind);                   // enum lb_svc_kind: "ClusterIP", ...
std::string unproxied_reason_name(uint8_t reason);     // "headless", "external_name", ...
std::string proto_name(uint8_t proto);                 // "TCP", "UDP", "ICMP", "ICMPv6", "N"
std::string backend_state_name(uint8_t state);         // "active" / "terminating"

/// "10.0.0.1:80", "[fd00::1]:80".
std::string endpoint_str(const ip_addr& a, uint16_t port);
/// "10.96.0.10:80/TCP".
std::string frontend_str(const ip_addr& vip, uint16_t port, uint8_t proto);
/// A NUL-padded string field of an ABI struct.
template <size_t N>
std::string field_str(const char (&field)[N]) {
  size_t n = 0;
  while (n < N && field[n] != '\0') {
    ++n;
  }
  return std::string(field, n);
}

/// An address of a map entry: 4 or 16 bytes at `raw`.
ip_addr addr_of(const void* raw, bool v6);

}  // namespace sluice::ctl
