// Packet builder and independent checksum verifier for the bpf test tier.
//
// Nothing here is shared with the datapath (bpf/): the builder computes every checksum from
// scratch (IPv4 header, TCP/UDP with pseudo header, ICMP, ICMPv6), and the verifier re-parses
// any frame and re-checks every checksum with a second, differently written summing routine.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bpftest {

using Bytes = std::vector<std::uint8_t>;

// ---- addresses ------------------------------------------------------------------------------

struct Mac {
  std::array<std::uint8_t, 6> b{};
  bool operator==(const Mac&) const = default;
};

// An IPv4 or IPv6 address in network byte order (IPv4 uses b[0..3]).
struct IpAddr {
  bool v6 = false;
  std::array<std::uint8_t, 16> b{};
  bool operator==(const IpAddr&) const = default;
  std::size_t size() const { return v6 ? 16 : 4; }
  std::string str() const;
};

namespace detail {
constexpr int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace detail

// "02:00:00:00:00:01"
constexpr Mac mac(std::string_view s) {
  Mac m{};
  if (s.size() != 17) throw std::invalid_argument("bad mac");
  for (std::size_t i = 0; i < 6; ++i) {
    const int hi = detail::hexval(s[i * 3]), lo = detail::hexval(s[i * 3 + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':')) throw std::invalid_argument("bad mac");
    m.b[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return m;
}

// "10.0.0.2" or "fd00:30::41" (no embedded IPv4 form). Usable in constant expressions.
constexpr IpAddr ip(std::string_view s) {
  IpAddr a{};
  if (s.find(':') == std::string_view::npos) {
    std::size_t i = 0;
    for (int oct = 0; oct < 4; ++oct) {
      int v = 0, digits = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (s[i] - '0');
        ++i;
        ++digits;
      }
      if (digits == 0 || v > 255) throw std::invalid_argument("bad ipv4");
      a.b[static_cast<std::size_t>(oct)] = static_cast<std::uint8_t>(v);
      if (oct < 3) {
        if (i >= s.size() || s[i] != '.') throw std::invalid_argument("bad ipv4");
        ++i;
      }
    }
    if (i != s.size()) throw std::invalid_argument("bad ipv4");
    return a;
  }
  a.v6 = true;
  std::array<std::uint16_t, 8> head{}, tail{};
  int nhead = 0, ntail = 0;
  bool gap = false;
  std::size_t i = 0;
  if (s.substr(0, 2) == "::") {
    gap = true;
    i = 2;
  }
  while (i < s.size()) {
    int v = 0, digits = 0;
    while (i < s.size() && detail::hexval(s[i]) >= 0) {
      v = v * 16 + detail::hexval(s[i]);
      ++i;
      ++digits;
    }
    if (digits == 0 || digits > 4) throw std::invalid_argument("bad ipv6");
    if (gap) {
      if (ntail >= 8) throw std::invalid_argument("bad ipv6");
      tail[static_cast<std::size_t>(ntail++)] = static_cast<std::uint16_t>(v);
    } else {
      if (nhead >= 8) throw std::invalid_argument("bad ipv6");
      head[static_cast<std::size_t>(nhead++)] = static_cast<std::uint16_t>(v);
    }
    if (i == s.size()) break;
    if (s[i] != ':') throw std::invalid_argument("bad ipv6");
    ++i;
    if (i < s.size() && s[i] == ':') {
      if (gap) throw std::invalid_argument("bad ipv6");
      gap = true;
      ++i;
    }
  }
  if (nhead + ntail > 8 || (!gap && nhead != 8)) throw std::invalid_argument("bad ipv6");
  std::array<std::uint16_t, 8> g{};
  for (int k = 0; k < nhead; ++k) g[static_cast<std::size_t>(k)] = head[static_cast<std::size_t>(k)];
  for (int k = 0; k < ntail; ++k)
    g[static_cast<std::size_t>(8 - ntail + k)] = tail[static_cast<std::size_t>(k)];
  for (std::size_t k = 0; k < 8; ++k) {
    a.b[k * 2] = static_cast<std::uint8_t>(g[k] >> 8);
    a.b[k * 2 + 1] = static_cast<std::uint8_t>(g[k] & 0xff);
  }
  return a;
}

// ---- packet description ---------------------------------------------------------------------

inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;
inline constexpr std::uint8_t kProtoIcmp6 = 58;

inline constexpr std::uint8_t kFin = 0x01;
inline constexpr std::uint8_t kSyn = 0x02;
inline constexpr std::uint8_t kRst = 0x04;
inline constexpr std::uint8_t kPsh = 0x08;
inline constexpr std::uint8_t kAck = 0x10;

// An IPv6 extension header, in chain order.
struct Ext6 {
  enum Kind : std::uint8_t { HopByHop = 0, Routing = 43, Fragment = 44, DestOpts = 60 };
  Kind kind = HopByHop;
  Bytes opts;                    // HopByHop/DestOpts: option bytes; (2 + size) % 8 == 0
  std::uint8_t segments_left = 0;  // Routing (type 4, SRH)
  std::vector<IpAddr> segments;  // Routing: segment list; [0] is the final destination
  // Fragment: fields come from Pkt::frag and Pkt::frag_id.
};

Ext6 hop_by_hop();                 // 8 bytes, one PadN option
Ext6 dest_opts();                  // 8 bytes, one PadN option
Ext6 routing(std::uint8_t segments_left, std::vector<IpAddr> segments);
Ext6 fragment_hdr();               // position of the fragment header in the chain

// Carry only part of the L4 segment (IP fragmentation).
struct Frag {
  std::uint32_t offset = 0;                // byte offset in the L4 segment, multiple of 8
  std::optional<std::uint32_t> length;     // bytes carried; nullopt = the rest
  bool mf = false;
};

struct Pkt {
  Mac src_mac = mac("02:00:00:00:00:02");
  Mac dst_mac = mac("02:00:00:00:00:01");
  IpAddr src{}, dst{};
  std::uint8_t proto = kProtoTcp;
  std::uint16_t sport = 0, dport = 0;   // host order; ICMP echo: id, sequence
  std::uint8_t tcp_flags = kSyn;
  std::uint32_t seq = 1000, ack_seq = 0;
  std::uint16_t window = 64240;
  Bytes tcp_options;                    // size % 4 == 0, at most 40
  bool udp_zero_csum = false;
  std::uint8_t icmp_type = 8, icmp_code = 0;
  Bytes payload;
  std::optional<Bytes> l4_raw;          // replaces the whole L4 segment, no checksum computed
  // IPv4
  std::uint8_t tos = 0, ttl = 64;
  std::uint16_t ip_id = 0;
  bool df = false;
  Bytes ip_options;                     // size % 4 == 0
  // IPv6
  std::uint8_t tclass = 0;
  std::uint32_t flow_label = 0;
  std::uint8_t hop_limit = 64;
  std::vector<Ext6> ext;
  std::uint32_t frag_id = 0;            // IPv6 fragment header identification
  std::optional<Frag> frag;

  bool v6() const { return src.v6; }

  // Copies with one thing changed, for deriving expected packets.
  Pkt from(IpAddr a, std::uint16_t port) const;
  Pkt to(IpAddr a, std::uint16_t port) const;
  Pkt flags(std::uint8_t f) const;
  Pkt with_payload(Bytes b) const;
  Pkt with_options(Bytes b) const;
  Pkt with_ext(std::vector<Ext6> e) const;
  Pkt fragment(std::uint32_t offset, std::optional<std::uint32_t> length, bool mf,
               std::uint32_t id) const;
  Pkt zero_csum() const;
  Pkt raw_l4(Bytes b) const;
  Pkt macs(Mac src, Mac dst) const;
  Pkt seqs(std::uint32_t s, std::uint32_t a) const;
  Pkt with_tcp_options(Bytes b) const;
};

Pkt tcp(IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport,
        std::uint8_t flags = kSyn);
Pkt udp(IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport);
Pkt l4(std::uint8_t proto, IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport);
// ICMP echo request (v4) or ICMPv6 echo request (v6).
Pkt icmp_echo(IpAddr src, IpAddr dst);

// The full L4 segment (all fragments together), checksummed.
Bytes l4_segment(const Pkt& p);
// IPv4 header length incl. options, or IPv6 header + extension headers.
std::size_t l3_header_len(const Pkt& p);
// The whole Ethernet frame.
Bytes build(const Pkt& p);
// The exact ICMP/ICMPv6 error that sluice answers `orig` with: from orig's destination to its
// source, out of the device it came in by (MACs swapped), quoting its IP header + 8 bytes.
// `info` is the 32-bit word after the checksum.
Bytes icmp_error_answer(const Pkt& orig, std::uint8_t type, std::uint8_t code, std::uint32_t info);
// Port unreachable, as sluice answers `orig` (UDP) to a service without endpoints.
Bytes icmp_port_unreachable(const Pkt& orig);
// Fragmentation needed (v4) / packet too big (v6) announcing `mtu`.
Bytes icmp_too_big(const Pkt& orig, std::uint16_t mtu);
// The exact TCP RST that sluice must answer `orig` (TCP) with: RFC 793 reset for a closed port,
// from the service address, IPv4 with DF and TTL 64 (IPv6 hop limit 64), window 0, no options.
Bytes tcp_reset(const Pkt& orig);
Bytes arp_request(Mac src, IpAddr sender, IpAddr target);

// Bytes that, placed at an even payload offset of `p` (a UDP packet), make its UDP checksum
// compute to zero (so it must be transmitted as 0xffff).
std::array<std::uint8_t, 2> udp_zero_sum_word(const Pkt& p);

// ---- checksum verifier (independent of the builder) ----------------------------------------

struct CsumReport {
  std::vector<std::string> checked;   // what was verified
  std::vector<std::string> errors;    // what failed
  bool ok() const { return errors.empty(); }
  std::string str() const;
};

// Parses an Ethernet frame and verifies every checksum it can: IPv4 header, TCP, UDP (0 allowed
// on IPv4 only), ICMP (and the IPv4 header quoted in an ICMP error), ICMPv6 (pseudo header).
// An ICMP/ICMPv6 error that quotes a whole TCP/UDP datagram (IPv6: without extension headers)
// gets the quoted L4 checksum verified too.
// L4 checksums of fragments are not verifiable alone: see verify_reassembled().
CsumReport verify_checksums(std::span<const std::uint8_t> frame);
// Reassembles the IP fragments (one datagram) and verifies the L4 checksum of the whole.
CsumReport verify_reassembled(const std::vector<Bytes>& frames);

// RFC 1071 one's complement sum of a byte string, folded and complemented (verifier's routine).
std::uint16_t verifier_internet_checksum(std::span<const std::uint8_t> data);

// ---- printing -------------------------------------------------------------------------------

std::string hex(std::span<const std::uint8_t> b);
// Side-by-side hex dump of expected vs got, differing bytes marked.
std::string hex_diff(std::span<const std::uint8_t> expected, std::span<const std::uint8_t> got);

}  // namespace bpftest
