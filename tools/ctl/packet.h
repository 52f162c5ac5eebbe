// sluicectl's packet builder and reader: the frame `sluicectl trace` feeds the datapath, and
// the summary of what comes out (headers after the rewrite, checksums checked). Pure.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/planner/desired.h"

namespace sluice::ctl {

using bytes = std::vector<uint8_t>;
using mac_addr = std::array<uint8_t, 6>;

inline constexpr uint8_t tcp_fin = 0x01;
inline constexpr uint8_t tcp_syn = 0x02;
inline constexpr uint8_t tcp_rst = 0x04;
inline constexpr uint8_t tcp_psh = 0x08;
inline constexpr uint8_t tcp_ack = 0x10;

/// A packet to build: Ethernet + IPv4/IPv6 + TCP, UDP or ICMP/ICMPv6 echo request.
struct packet_spec {
  ip_addr src, dst;          // same family
  uint8_t proto = 6;         // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP (either family: echo)
  uint16_t sport = 0, dport = 0;  // host order; echo: identifier, sequence
  uint8_t tcp_flags = tcp_syn;
  size_t payload = 0;        // zero bytes after the L4 header
  uint8_t ttl = 64;          // hop limit for IPv6
  mac_addr smac{0x02, 0, 0, 0, 0, 0x01};
  mac_addr dmac{0x02, 0, 0, 0, 0, 0x02};
};

/// The Ethernet frame, every checksum computed (IPv4 header; TCP/UDP/ICMPv6 with the pseudo
/// header; ICMP). IPv4 TCP is sent with DF, as Linux does.
bytes build_packet(const packet_spec& s);

/// "syn,ack" -> flag bits; nullopt for an unknown word.
std::optional<uint8_t> parse_tcp_flags(const std::string& words);
/// Flag bits -> "SYN,ACK" ("" for none).
std::string tcp_flags_str(uint8_t flags);
/// "02:00:00:00:00:01".
std::optional<mac_addr> parse_mac(const std::string& s);
std::string mac_str(const mac_addr& m);

/// What a frame says, as far as sluicectl reads it.
struct packet_summary {
  bool ok = false;           // parsed up to the L4 header (or an ICMP header)
  std::string error;         // when !ok
  mac_addr smac{}, dmac{};
  ip_addr src, dst;
  uint8_t proto = 0;         // after IPv6 extension headers
  uint8_t ttl = 0;
  uint16_t sport = 0, dport = 0;  // TCP/UDP
  uint8_t tcp_flags = 0;
  uint8_t icmp_type = 0, icmp_code = 0;
  /// A DSR option (IPv4 option 0x9a / IPv6 destination option 0x1b): the service it names.
  std::optional<std::pair<ip_addr, uint16_t>> dsr;
  /// An ICMP error's quoted packet: its addresses, protocol and ports.
  std::optional<std::array<std::string, 2>> quoted;  // {"src:port", "dst:port"}
  uint8_t quoted_proto = 0;
  size_t length = 0;         // frame bytes
  std::vector<std::string> checksum_errors;  // empty: every checksum present is right

  /// One line: "TCP 10.0.0.1:40000 -> 10.96.0.10:80 [SYN]", "ICMP dest-unreachable/3 ...".
  std::string str() const;
};

packet_summary read_packet(std::span<const uint8_t> frame);

}  // namespace sluice::ctl
