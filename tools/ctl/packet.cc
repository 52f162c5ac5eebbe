#include "tools/ctl/packet.h"

#include <netinet/in.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "agent/model/model.h"
#include "maps/sluice_abi.h"

namespace sluice::ctl {

namespace {

constexpr uint16_t eth_ipv4 = 0x0800;
constexpr uint16_t eth_ipv6 = 0x86dd;
constexpr size_t eth_len = 14;

void put16(bytes& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
}

void put32(bytes& b, size_t off, uint32_t v) {
  put16(b, off, static_cast<uint16_t>(v >> 16));
  put16(b, off + 2, static_cast<uint16_t>(v));
}

uint16_t get16(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}

// RFC 1071: the 32-bit sum of 16-bit big-endian words (an odd byte padded with zero).
uint32_t sum16(std::span<const uint8_t> b, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < b.size(); i += 2) {
    sum += get16(b, i);
  }
  if (b.size() % 2 != 0) {
    sum += static_cast<uint32_t>(b.back()) << 8;
  }
  return sum;
}

uint16_t fold(uint32_t sum) {
  while (sum >> 16) {
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<uint16_t>(~sum);
}

// The pseudo header's sum (RFC 793 / 768 for IPv4, RFC 8200 8.1 for IPv6).
uint32_t pseudo_sum(const ip_addr& src, const ip_addr& dst, uint8_t proto, size_t l4_len) {
  const size_t n = src.family == ip_family::v6 ? 16 : 4;
  uint32_t sum = sum16({src.bytes.data(), n});
  sum = sum16({dst.bytes.data(), n}, sum);
  sum += proto;
  sum += static_cast<uint32_t>(l4_len & 0xffff) + static_cast<uint32_t>(l4_len >> 16);
  return sum;
}

bool is_v6(const ip_addr& a) { return a.family == ip_family::v6; }

}  // namespace

bytes build_packet(const packet_spec& s) {
  const bool v6 = is_v6(s.src);
  const bool icmp = s.proto == IPPROTO_ICMP || s.proto == IPPROTO_ICMPV6;
  const uint8_t l4_proto = !icmp ? s.proto : v6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP};
  const size_t l4_hdr = s.proto == IPPROTO_TCP ? 20 : 8;
  const size_t l4_len = l4_hdr + s.payload;
  const size_t l3_len = v6 ? 40 : 20;
  bytes b(eth_len + l3_len + l4_len, 0);

  std::copy(s.dmac.begin(), s.dmac.end(), b.begin());
  std::copy(s.smac.begin(), s.smac.end(), b.begin() + 6);
  put16(b, 12, v6 ? eth_ipv6 : eth_ipv4);

  const size_t l3 = eth_len;
  if (v6) {
    put32(b, l3, 0x60000000u);
    put16(b, l3 + 4, static_cast<uint16_t>(l4_len));
    b[l3 + 6] = l4_proto;
    b[l3 + 7] = s.ttl;
    std::copy_n(s.src.bytes.begin(), 16, b.begin() + static_cast<long>(l3 + 8));
    std::copy_n(s.dst.bytes.begin(), 16, b.begin() + static_cast<long>(l3 + 24));
  } else {
    b[l3] = 0x45;
    put16(b, l3 + 2, static_cast<uint16_t>(l3_len + l4_len));
    put16(b, l3 + 4, 0x51ce);  // identification: any value
    put16(b, l3 + 6, s.proto == IPPROTO_TCP ? 0x4000 : 0);  // DF for TCP, as Linux sends
    b[l3 + 8] = s.ttl;
    b[l3 + 9] = l4_proto;
    std::copy_n(s.src.bytes.begin(), 4, b.begin() + static_cast<long>(l3 + 12));
    std::copy_n(s.dst.bytes.begin(), 4, b.begin() + static_cast<long>(l3 + 16));
    put16(b, l3 + 10, fold(sum16({b.data() + l3, l3_len})));
  }

  const size_t l4 = l3 + l3_len;
  size_t csum_off = 0;
  if (s.proto == IPPROTO_TCP) {
    put16(b, l4, s.sport);
    put16(b, l4 + 2, s.dport);
    put32(b, l4 + 4, 1);                                  // sequence
    put32(b, l4 + 8, (s.tcp_flags & tcp_ack) ? 1 : 0);    // acknowledgment
    b[l4 + 12] = 5 << 4;                                  // data offset: no options
    b[l4 + 13] = s.tcp_flags;
    put16(b, l4 + 14, 64240);                             // window
    csum_off = l4 + 16;
  } else if (s.proto == IPPROTO_UDP) {
    put16(b, l4, s.sport);
    put16(b, l4 + 2, s.dport);
    put16(b, l4 + 4, static_cast<uint16_t>(l4_len));
    csum_off = l4 + 6;
  } else {
    b[l4] = v6 ? 128 : 8;  // echo request
    put16(b, l4 + 4, s.sport);
    put16(b, l4 + 6, s.dport);
    csum_off = l4 + 2;
  }
  // ICMPv4 sums the message alone; everything else includes the pseudo header.
  const uint32_t seed = l4_proto == IPPROTO_ICMP ? 0 : pseudo_sum(s.src, s.dst, l4_proto, l4_len);
  uint16_t csum = fold(sum16({b.data() + l4, l4_len}, seed));
  if (csum == 0 && s.proto == IPPROTO_UDP) {
    csum = 0xffff;  // RFC 768: a computed zero is sent as all ones
  }
  put16(b, csum_off, csum);
  return b;
}

std::optional<uint8_t> parse_tcp_flags(const std::string& words) {
  uint8_t flags = 0;
  std::stringstream in(words);
  std::string w;
  while (std::getline(in, w, ',')) {
    std::transform(w.begin(), w.end(), w.begin(), [](unsigned char c) { return std::tolower(c); });
    if (w == "syn") {
      flags |= tcp_syn;
    } else if (w == "ack") {
      flags |= tcp_ack;
    } else if (w == "fin") {
      flags |= tcp_fin;
    } else if (w == "rst") {
      flags |= tcp_rst;
    } else if (w == "psh") {
      flags |= tcp_psh;
    } else if (w == "none") {
      continue;
    } else {
      return std::nullopt;
    }
  }
  return flags;
}

std::string tcp_flags_str(uint8_t flags) {
  static constexpr std::pair<uint8_t, const char*> names[] = {
      {tcp_syn, "SYN"}, {tcp_ack, "ACK"}, {tcp_fin, "FIN"}, {tcp_rst, "RST"}, {tcp_psh, "PSH"}};
  std::string out;
  for (const auto& [bit, name] : names) {
    if (flags & bit) {
      out += out.empty() ? "" : ",";
      out += name;
    }
  }
  return out;
}

std::optional<mac_addr> parse_mac(const std::string& s) {
  mac_addr m{};
  unsigned v[6];
  char tail = 0;
  if (s.size() != 17 || std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2],
                                    &v[3], &v[4], &v[5], &tail) != 6) {
    return std::nullopt;
  }
  for (size_t i = 0; i < 6; ++i) {
    m[i] = static_cast<uint8_t>(v[i]);
  }
  return m;
}

std::string mac_str(const mac_addr& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                     m[5]);
}

namespace {

ip_addr addr_at(std::span<const uint8_t> b, size_t off, bool v6) {
  ip_addr a;
  a.family = v6 ? ip_family::v6 : ip_family::v4;
  std::copy_n(b.begin() + static_cast<long>(off), v6 ? 16 : 4, a.bytes.begin());
  return a;
}

std::string endpoint(const ip_addr& a, uint16_t port) {
  return is_v6(a) ? fmt::format("[{}]:{}", format_ip(a), port)
                  : fmt::format("{}:{}", format_ip(a), port);
}

// The quoted packet of an ICMP error at `off`: addresses, protocol and (TCP/UDP) ports.
void read_quote(std::span<const uint8_t> b, size_t off, bool v6, packet_summary& out) {
  size_t l4 = 0;
  ip_addr s, d;
  if (!v6 && off + 20 <= b.size()) {
    const size_t ihl = static_cast<size_t>(b[off] & 0x0f) * 4;
    out.quoted_proto = b[off + 9];
    s = addr_at(b, off + 12, false);
    d = addr_at(b, off + 16, false);
    l4 = off + ihl;
  } else if (v6 && off + 40 <= b.size()) {
    out.quoted_proto = b[off + 6];
    s = addr_at(b, off + 8, true);
    d = addr_at(b, off + 24, true);
    l4 = off + 40;
  } else {
    return;
  }
  if (l4 + 4 <= b.size() &&
      (out.quoted_proto == IPPROTO_TCP || out.quoted_proto == IPPROTO_UDP)) {
    out.quoted = std::array<std::string, 2>{endpoint(s, get16(b, l4)), endpoint(d, get16(b, l4 + 2))};
  } else {
    out.quoted = std::array<std::string, 2>{format_ip(s), format_ip(d)};
  }
}

}  // namespace

packet_summary read_packet(std::span<const uint8_t> b) {
  packet_summary out;
  out.length = b.size();
  const auto fail = [&](std::string why) {
    out.error = std::move(why);
    return out;
  };
  if (b.size() < eth_len) {
    return fail("shorter than an Ethernet header");
  }
  std::copy_n(b.begin(), 6, out.dmac.begin());
  std::copy_n(b.begin() + 6, 6, out.smac.begin());
  const uint16_t type = get16(b, 12);
  const bool v6 = type == eth_ipv6;
  if (type != eth_ipv4 && !v6) {
    return fail(fmt::format("ethertype {:#06x} is not IP", type));
  }
  const size_t l3 = eth_len;
  size_t l4 = 0, l4_len = 0;
  bool later_fragment = false;
  if (!v6) {
    if (b.size() < l3 + 20) {
      return fail("truncated IPv4 header");
    }
    const size_t ihl = static_cast<size_t>(b[l3] & 0x0f) * 4;
    const size_t total = get16(b, l3 + 2);
    if (ihl < 20 || b.size() < l3 + ihl || total < ihl || b.size() < l3 + total) {
      return fail("inconsistent IPv4 lengths");
    }
    if (fold(sum16(b.subspan(l3, ihl))) != 0) {
      out.checksum_errors.push_back("IPv4 header");
    }
    // Options: the DSR option names the service (maps/sluice_abi.h, LB_DSR_OPT4_TYPE).
    for (size_t o = l3 + 20; o < l3 + ihl;) {
      const uint8_t t = b[o];
      if (t == 0) {
        break;
      }
      if (t == 1) {
        ++o;
        continue;
      }
      if (o + 1 >= l3 + ihl || b[o + 1] < 2) {
        break;
      }
      if (t == LB_DSR_OPT4_TYPE && b[o + 1] == 8) {
        out.dsr = std::pair{addr_at(b, o + 4, false), get16(b, o + 2)};
      }
      o += b[o + 1];
    }
    out.proto = b[l3 + 9];
    out.ttl = b[l3 + 8];
    out.src = addr_at(b, l3 + 12, false);
    out.dst = addr_at(b, l3 + 16, false);
    later_fragment = (get16(b, l3 + 6) & 0x1fff) != 0;
    l4 = l3 + ihl;
    l4_len = total - ihl;
  } else {
    if (b.size() < l3 + 40) {
      return fail("truncated IPv6 header");
    }
    const size_t payload = get16(b, l3 + 4);
    if (b.size() < l3 + 40 + payload) {
      return fail("inconsistent IPv6 payload length");
    }
    out.ttl = b[l3 + 7];
    out.src = addr_at(b, l3 + 8, true);
    out.dst = addr_at(b, l3 + 24, true);
    uint8_t next = b[l3 + 6];
    size_t off = l3 + 40;
    const size_t end = l3 + 40 + payload;
    // Extension headers: hop-by-hop, routing, destination options (DSR), fragment.
    while (next == 0 || next == 43 || next == 60 || next == 44) {
      if (off + 8 > end) {
        return fail("truncated IPv6 extension header");
      }
      const size_t len = next == 44 ? 8 : (static_cast<size_t>(b[off + 1]) + 1) * 8;
      if (off + len > end) {
        return fail("truncated IPv6 extension header");
      }
      if (next == 60) {
        for (size_t o = off + 2; o + 1 < off + len;) {
          if (b[o] == 0) {
            ++o;
            continue;
          }
          if (b[o] == LB_DSR_OPT6_TYPE && b[o + 1] == 18 && o + 20 <= off + len) {
            out.dsr = std::pair{addr_at(b, o + 2, true), get16(b, o + 18)};
          }
          o += 2 + b[o + 1];
        }
      }
      if (next == 44) {
        later_fragment = (get16(b, off + 2) & 0xfff8) != 0;
      }
      next = b[off];
      off += len;
    }
    out.proto = next;
    l4 = off;
    l4_len = end - off;
  }
  if (later_fragment) {
    out.ok = true;  // no L4 header in this piece
    return out;
  }
  const auto l4_span = b.subspan(l4, l4_len);
  const auto l4_ok = [&](uint8_t proto) {
    const uint32_t seed = proto == IPPROTO_ICMP ? 0 : pseudo_sum(out.src, out.dst, proto, l4_len);
    return fold(sum16(l4_span, seed)) == 0;
  };
  if (out.proto == IPPROTO_TCP) {
    if (l4_len < 20) {
      return fail("truncated TCP header");
    }
    out.sport = get16(b, l4);
    out.dport = get16(b, l4 + 2);
    out.tcp_flags = b[l4 + 13];
    if (!l4_ok(IPPROTO_TCP)) {
      out.checksum_errors.push_back("TCP");
    }
  } else if (out.proto == IPPROTO_UDP) {
    if (l4_len < 8) {
      return fail("truncated UDP header");
    }
    out.sport = get16(b, l4);
    out.dport = get16(b, l4 + 2);
    const bool zero = get16(b, l4 + 6) == 0;
    if (zero ? v6 : !l4_ok(IPPROTO_UDP)) {
      out.checksum_errors.push_back(zero ? "UDP (zero on IPv6)" : "UDP");
    }
  } else if (out.proto == IPPROTO_ICMP || out.proto == IPPROTO_ICMPV6) {
    if (l4_len < 8) {
      return fail("truncated ICMP header");
    }
    out.icmp_type = b[l4];
    out.icmp_code = b[l4 + 1];
    if (!l4_ok(out.proto)) {
      out.checksum_errors.push_back(out.proto == IPPROTO_ICMP ? "ICMP" : "ICMPv6");
    }
    const bool error = out.proto == IPPROTO_ICMP
                           ? (out.icmp_type == 3 || out.icmp_type == 11)
                           : (out.icmp_type >= 1 && out.icmp_type <= 3);
    if (error) {
      read_quote(b, l4 + 8, v6, out);
    }
  }
  out.ok = true;
  return out;
}

std::string packet_summary::str() const {
  if (!ok) {
    return "unreadable: " + error;
  }
  std::string s;
  const std::string proto_word = proto == IPPROTO_TCP    ? "TCP"
                                 : proto == IPPROTO_UDP  ? "UDP"
                                 : proto == IPPROTO_ICMP ? "ICMP"
                                 : proto == IPPROTO_ICMPV6 ? "ICMPv6"
                                                           : fmt::format("proto {}", proto);
  if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
    s = fmt::format("{} {} -> {}", proto_word, endpoint(src, sport), endpoint(dst, dport));
    if (proto == IPPROTO_TCP) {
      s += fmt::format(" [{}]", tcp_flags_str(tcp_flags));
    }
  } else {
    s = fmt::format("{} {} -> {}", proto_word, format_ip(src), format_ip(dst));
    if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
      s += fmt::format(" type {} code {}", icmp_type, icmp_code);
    }
  }
  if (quoted) {
    s += fmt::format(" quoting {} {} -> {}", quoted_proto == IPPROTO_TCP   ? "TCP"
                                             : quoted_proto == IPPROTO_UDP ? "UDP"
                                                                           : "IP",
                     (*quoted)[0], (*quoted)[1]);
  }
  if (dsr) {
    s += fmt::format(" dsr {}", endpoint(dsr->first, dsr->second));
  }
  return s;
}

}  // namespace sluice::ctl
