#include "packet.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

namespace bpftest {

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, b.data(), buf, sizeof buf);
  return buf;
}

// =============================================================================================
// Builder
// =============================================================================================

namespace {

void put8(Bytes& out, std::uint8_t v) { out.push_back(v); }
void put16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}
void put32(Bytes& out, std::uint32_t v) {
  put16(out, static_cast<std::uint16_t>(v >> 16));
  put16(out, static_cast<std::uint16_t>(v));
}
void put_bytes(Bytes& out, std::span<const std::uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }
void put_addr(Bytes& out, const IpAddr& a) { out.insert(out.end(), a.b.begin(), a.b.begin() + static_cast<long>(a.size())); }
void set16(Bytes& out, std::size_t at, std::uint16_t v) {
  out.at(at) = static_cast<std::uint8_t>(v >> 8);
  out.at(at + 1) = static_cast<std::uint8_t>(v);
}

// The builder's checksum: big-endian 16-bit words into a wide accumulator, folded at the end.
// Every part but the last must have even length (true for all headers used here).
class WordSum {
 public:
  void add(std::span<const std::uint8_t> d) {
    std::size_t i = 0;
    for (; i + 1 < d.size(); i += 2) acc_ += static_cast<std::uint32_t>(d[i] << 8 | d[i + 1]);
    if (i < d.size()) acc_ += static_cast<std::uint32_t>(d[i] << 8);
  }
  std::uint16_t finish() const {
    std::uint64_t a = acc_;
    while (a >> 16) a = (a & 0xffff) + (a >> 16);
    return static_cast<std::uint16_t>(~a & 0xffff);
  }

 private:
  std::uint64_t acc_ = 0;
};

IpAddr final_destination(const Pkt& p) {
  for (const auto& e : p.ext)
    if (e.kind == Ext6::Routing && e.segments_left > 0 && !e.segments.empty()) return e.segments[0];
  return p.dst;
}

Bytes pseudo_header(const Pkt& p, std::uint8_t proto, std::size_t l4_len) {
  Bytes ph;
  if (p.v6()) {
    put_addr(ph, p.src);
    put_addr(ph, final_destination(p));
    put32(ph, static_cast<std::uint32_t>(l4_len));
    put8(ph, 0);
    put8(ph, 0);
    put8(ph, 0);
    put8(ph, proto);
  } else {
    put_addr(ph, p.src);
    put_addr(ph, p.dst);
    put8(ph, 0);
    put8(ph, proto);
    put16(ph, static_cast<std::uint16_t>(l4_len));
  }
  return ph;
}

std::uint16_t l4_checksum(const Pkt& p, std::uint8_t proto, const Bytes& seg) {
  WordSum s;
  if (!(proto == kProtoIcmp && !p.v6())) s.add(pseudo_header(p, proto, seg.size()));
  s.add(seg);
  return s.finish();
}

Bytes ext_bytes(const Pkt& p, std::uint8_t final_proto, std::uint8_t* first_nh) {
  std::vector<Ext6> chain = p.ext;
  if (p.frag && std::none_of(chain.begin(), chain.end(),
                             [](const Ext6& e) { return e.kind == Ext6::Fragment; }))
    chain.push_back(fragment_hdr());
  *first_nh = chain.empty() ? final_proto : static_cast<std::uint8_t>(chain[0].kind);
  Bytes out;
  for (std::size_t i = 0; i < chain.size(); ++i) {
    const Ext6& e = chain[i];
    const std::uint8_t nh = i + 1 < chain.size() ? static_cast<std::uint8_t>(chain[i + 1].kind) : final_proto;
    switch (e.kind) {
      case Ext6::HopByHop:
      case Ext6::DestOpts: {
        if ((2 + e.opts.size()) % 8 != 0) throw std::invalid_argument("ext opts size");
        put8(out, nh);
        put8(out, static_cast<std::uint8_t>((2 + e.opts.size()) / 8 - 1));
        put_bytes(out, e.opts);
        break;
      }
      case Ext6::Routing: {  // Segment Routing Header (type 4)
        put8(out, nh);
        put8(out, static_cast<std::uint8_t>(2 * e.segments.size()));
        put8(out, 4);
        put8(out, e.segments_left);
        put8(out, static_cast<std::uint8_t>(e.segments.empty() ? 0 : e.segments.size() - 1));
        put8(out, 0);   // flags
        put16(out, 0);  // tag
        for (const auto& s : e.segments) put_addr(out, s);
        break;
      }
      case Ext6::Fragment: {
        const Frag f = p.frag.value_or(Frag{});
        put8(out, nh);
        put8(out, 0);
        put16(out, static_cast<std::uint16_t>((f.offset / 8) << 3 | (f.mf ? 1 : 0)));
        put32(out, p.frag_id);
        break;
      }
    }
  }
  return out;
}

}  // namespace

Ext6 hop_by_hop() {
  Ext6 e;
  e.kind = Ext6::HopByHop;
  e.opts = {1, 4, 0, 0, 0, 0};  // PadN
  return e;
}
Ext6 dest_opts() {
  Ext6 e;
  e.kind = Ext6::DestOpts;
  e.opts = {1, 4, 0, 0, 0, 0};  // PadN
  return e;
}
Ext6 routing(std::uint8_t segments_left, std::vector<IpAddr> segments) {
  Ext6 e;
  e.kind = Ext6::Routing;
  e.segments_left = segments_left;
  e.segments = std::move(segments);
  return e;
}
Ext6 fragment_hdr() {
  Ext6 e;
  e.kind = Ext6::Fragment;
  return e;
}

Pkt Pkt::from(IpAddr a, std::uint16_t port) const {
  Pkt p = *this;
  p.src = a;
  p.sport = port;
  return p;
}
Pkt Pkt::to(IpAddr a, std::uint16_t port) const {
  Pkt p = *this;
  p.dst = a;
  p.dport = port;
  return p;
}
Pkt Pkt::flags(std::uint8_t f) const {
  Pkt p = *this;
  p.tcp_flags = f;
  return p;
}
Pkt Pkt::with_payload(Bytes b) const {
  Pkt p = *this;
  p.payload = std::move(b);
  return p;
}
Pkt Pkt::with_options(Bytes b) const {
  Pkt p = *this;
  p.ip_options = std::move(b);
  return p;
}
Pkt Pkt::with_ext(std::vector<Ext6> e) const {
  Pkt p = *this;
  p.ext = std::move(e);
  return p;
}
Pkt Pkt::fragment(std::uint32_t offset, std::optional<std::uint32_t> length, bool mf,
                  std::uint32_t id) const {
  Pkt p = *this;
  p.frag = Frag{.offset = offset, .length = length, .mf = mf};
  if (p.v6())
    p.frag_id = id;
  else
    p.ip_id = static_cast<std::uint16_t>(id);
  return p;
}
Pkt Pkt::zero_csum() const {
  Pkt p = *this;
  p.udp_zero_csum = true;
  return p;
}
Pkt Pkt::raw_l4(Bytes b) const {
  Pkt p = *this;
  p.l4_raw = std::move(b);
  return p;
}
Pkt Pkt::macs(Mac s, Mac d) const {
  Pkt p = *this;
  p.src_mac = s;
  p.dst_mac = d;
  return p;
}
Pkt Pkt::with_tcp_options(Bytes b) const {
  Pkt p = *this;
  p.tcp_options = std::move(b);
  return p;
}
Pkt Pkt::seqs(std::uint32_t s, std::uint32_t a) const {
  Pkt p = *this;
  p.seq = s;
  p.ack_seq = a;
  return p;
}

Pkt l4(std::uint8_t proto, IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport) {
  if (src.v6 != dst.v6) throw std::invalid_argument("mixed address families");
  Pkt p;
  p.src = src;
  p.dst = dst;
  p.proto = proto;
  p.sport = sport;
  p.dport = dport;
  if (proto == kProtoUdp) p.payload = {'s', 'l', 'u', 'i', 'c', 'e', '-', 'u', 'd', 'p'};
  return p;
}
Pkt tcp(IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport, std::uint8_t flags) {
  Pkt p = l4(kProtoTcp, src, sport, dst, dport);
  p.tcp_flags = flags;
  return p;
}
Pkt udp(IpAddr src, std::uint16_t sport, IpAddr dst, std::uint16_t dport) {
  return l4(kProtoUdp, src, sport, dst, dport);
}
Pkt icmp_echo(IpAddr src, IpAddr dst) {
  Pkt p = l4(src.v6 ? kProtoIcmp6 : kProtoIcmp, src, 0x4242, dst, 1);
  p.icmp_type = src.v6 ? 128 : 8;
  p.icmp_code = 0;
  p.payload = {'p', 'i', 'n', 'g', '!', 0, 1, 2};
  return p;
}

Bytes l4_segment(const Pkt& p) {
  if (p.l4_raw) return *p.l4_raw;
  Bytes seg;
  std::size_t csum_at = 0;
  bool udp_zero_to_ffff = false;
  switch (p.proto) {
    case kProtoTcp:
      put16(seg, p.sport);
      put16(seg, p.dport);
      put32(seg, p.seq);
      put32(seg, p.ack_seq);
      if (p.tcp_options.size() % 4 != 0 || p.tcp_options.size() > 40)
        throw std::invalid_argument("tcp options size");
      put8(seg, static_cast<std::uint8_t>((5 + p.tcp_options.size() / 4) << 4));
      put8(seg, p.tcp_flags);
      put16(seg, p.window);
      csum_at = seg.size();
      put16(seg, 0);
      put16(seg, 0);  // urgent pointer
      put_bytes(seg, p.tcp_options);
      break;
    case kProtoUdp:
      put16(seg, p.sport);
      put16(seg, p.dport);
      put16(seg, static_cast<std::uint16_t>(8 + p.payload.size()));
      csum_at = seg.size();
      put16(seg, 0);
      udp_zero_to_ffff = true;
      break;
    case kProtoIcmp:
    case kProtoIcmp6:
      put8(seg, p.icmp_type);
      put8(seg, p.icmp_code);
      csum_at = seg.size();
      put16(seg, 0);
      put16(seg, p.sport);
      put16(seg, p.dport);
      break;
    default:
      throw std::invalid_argument("l4_segment: unsupported protocol");
  }
  put_bytes(seg, p.payload);
  if (p.proto == kProtoUdp && p.udp_zero_csum) return seg;
  std::uint16_t c = l4_checksum(p, p.proto, seg);
  if (c == 0 && udp_zero_to_ffff) c = 0xffff;  // RFC 768: computed zero is sent as all ones
  set16(seg, csum_at, c);
  return seg;
}

std::size_t l3_header_len(const Pkt& p) {
  if (!p.v6()) return 20 + p.ip_options.size();
  std::uint8_t nh = 0;
  return 40 + ext_bytes(p, p.proto, &nh).size();
}

Bytes build(const Pkt& p) {
  const Bytes seg = l4_segment(p);
  Bytes carried = seg;
  if (p.frag) {
    const std::size_t off = std::min<std::size_t>(p.frag->offset, seg.size());
    const std::size_t len =
        p.frag->length ? std::min<std::size_t>(*p.frag->length, seg.size() - off) : seg.size() - off;
    carried.assign(seg.begin() + static_cast<long>(off), seg.begin() + static_cast<long>(off + len));
  }
  Bytes f;
  put_bytes(f, p.dst_mac.b);
  put_bytes(f, p.src_mac.b);
  if (p.v6()) {
    put16(f, 0x86dd);
    std::uint8_t first_nh = 0;
    const Bytes ext = ext_bytes(p, p.proto, &first_nh);
    put32(f, 6u << 28 | static_cast<std::uint32_t>(p.tclass) << 20 | (p.flow_label & 0xfffff));
    put16(f, static_cast<std::uint16_t>(ext.size() + carried.size()));
    put8(f, first_nh);
    put8(f, p.hop_limit);
    put_addr(f, p.src);
    put_addr(f, p.dst);
    put_bytes(f, ext);
  } else {
    put16(f, 0x0800);
    if (p.ip_options.size() % 4 != 0 || p.ip_options.size() > 40)
      throw std::invalid_argument("ipv4 options size");
    const std::size_t hl = 20 + p.ip_options.size();
    const std::size_t ip_at = f.size();
    put8(f, static_cast<std::uint8_t>(0x40 | hl / 4));
    put8(f, p.tos);
    put16(f, static_cast<std::uint16_t>(hl + carried.size()));
    put16(f, p.ip_id);
    std::uint16_t fo = 0;
    if (p.frag) fo = static_cast<std::uint16_t>((p.frag->offset / 8) | (p.frag->mf ? 0x2000 : 0));
    if (p.df) fo |= 0x4000;
    put16(f, fo);
    put8(f, p.ttl);
    put8(f, p.proto);
    put16(f, 0);
    put_addr(f, p.src);
    put_addr(f, p.dst);
    put_bytes(f, p.ip_options);
    WordSum s;
    s.add(std::span(f).subspan(ip_at, hl));
    set16(f, ip_at + 10, s.finish());
  }
  put_bytes(f, carried);
  return f;
}

Bytes tcp_reset(const Pkt& orig) {
  // SEG.LEN: the payload plus one for each of SYN and FIN.
  const std::uint32_t seg_len = static_cast<std::uint32_t>(orig.payload.size()) +
                                ((orig.tcp_flags & kSyn) ? 1 : 0) +
                                ((orig.tcp_flags & kFin) ? 1 : 0);
  Pkt r = tcp(orig.dst, orig.dport, orig.src, orig.sport, kRst);
  if (orig.tcp_flags & kAck) {
    r = r.seqs(orig.ack_seq, 0);
  } else {
    r = r.flags(kRst | kAck).seqs(0, orig.seq + seg_len);
  }
  r = r.macs(orig.dst_mac, orig.src_mac);
  r.window = 0;
  r.df = true;
  return build(r);
}

Bytes icmp_error_answer(const Pkt& orig, std::uint8_t type, std::uint8_t code, std::uint32_t info) {
  const Bytes in = build(orig);
  const std::size_t quote_len = std::min(l3_header_len(orig) + 8, in.size() - 14);
  const std::span<const std::uint8_t> quote = std::span(in).subspan(14, quote_len);
  Bytes f;
  put_bytes(f, orig.src_mac.b);  // swapped
  put_bytes(f, orig.dst_mac.b);
  Bytes icmp;
  put8(icmp, type);
  put8(icmp, code);
  put16(icmp, 0);
  put32(icmp, info);
  put_bytes(icmp, quote);
  if (orig.v6()) {
    Pkt ph;
    ph.src = orig.dst;
    ph.dst = orig.src;
    WordSum s;
    s.add(pseudo_header(ph, kProtoIcmp6, icmp.size()));
    s.add(icmp);
    set16(icmp, 2, s.finish());
    put16(f, 0x86dd);
    put32(f, 6u << 28);
    put16(f, static_cast<std::uint16_t>(icmp.size()));
    put8(f, kProtoIcmp6);
    put8(f, 64);
    put_addr(f, orig.dst);
    put_addr(f, orig.src);
  } else {
    WordSum s;
    s.add(icmp);
    set16(icmp, 2, s.finish());
    put16(f, 0x0800);
    const std::size_t ip_at = f.size();
    put8(f, 0x45);
    put8(f, 0xc0);
    put16(f, static_cast<std::uint16_t>(20 + icmp.size()));
    put16(f, 0);
    put16(f, 0);
    put8(f, 64);
    put8(f, kProtoIcmp);
    put16(f, 0);
    put_addr(f, orig.dst);
    put_addr(f, orig.src);
    WordSum h;
    h.add(std::span(f).subspan(ip_at, 20));
    set16(f, ip_at + 10, h.finish());
  }
  put_bytes(f, icmp);
  return f;
}

Bytes icmp_port_unreachable(const Pkt& orig) {
  // destination unreachable, port unreachable
  return orig.v6() ? icmp_error_answer(orig, 1, 4, 0) : icmp_error_answer(orig, 3, 3, 0);
}

Bytes icmp_too_big(const Pkt& orig, std::uint16_t mtu) {
  // RFC 8201 packet too big (32-bit MTU); RFC 1191 fragmentation needed (MTU in the low 16 bits)
  return orig.v6() ? icmp_error_answer(orig, 2, 0, mtu) : icmp_error_answer(orig, 3, 4, mtu);
}

Bytes arp_request(Mac src, IpAddr sender, IpAddr target) {
  Bytes f;
  put_bytes(f, mac("ff:ff:ff:ff:ff:ff").b);
  put_bytes(f, src.b);
  put16(f, 0x0806);
  put16(f, 1);       // Ethernet
  put16(f, 0x0800);  // IPv4
  put8(f, 6);
  put8(f, 4);
  put16(f, 1);  // request
  put_bytes(f, src.b);
  put_addr(f, sender);
  put_bytes(f, Mac{}.b);
  put_addr(f, target);
  return f;
}

std::array<std::uint8_t, 2> udp_zero_sum_word(const Pkt& p) {
  // With the word at zero the checksum is c = ~S; adding the word w = c makes the sum
  // S + ~S = 0xffff, i.e. a computed checksum of 0.
  Pkt q = p;
  if (q.payload.size() < 2) throw std::invalid_argument("udp_zero_sum_word: payload too short");
  q.payload[0] = 0;
  q.payload[1] = 0;
  q.udp_zero_csum = false;
  const Bytes seg = l4_segment(q);
  return {seg[6], seg[7]};
}

// =============================================================================================
// Verifier. Written separately from the builder on purpose: it sums even- and odd-positioned
// bytes of one contiguous buffer (pseudo header copied in front) instead of 16-bit words.
// =============================================================================================

std::uint16_t verifier_internet_checksum(std::span<const std::uint8_t> data) {
  std::uint64_t hi = 0, lo = 0;
  for (std::size_t i = 0; i < data.size(); ++i) (i % 2 == 0 ? hi : lo) += data[i];
  std::uint64_t total = (hi << 8) + lo;
  while (total > 0xffff) total = (total >> 16) + (total & 0xffff);
  return static_cast<std::uint16_t>(0xffff - total);
}

namespace {

struct Reader {
  std::span<const std::uint8_t> d;
  std::uint16_t u16(std::size_t at) const { return static_cast<std::uint16_t>(d[at] * 256 + d[at + 1]); }
  std::uint32_t u32(std::size_t at) const {
    return static_cast<std::uint32_t>(u16(at)) * 65536u + u16(at + 2);
  }
};

std::string fmt_hex16(std::uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

// Verifies `seg` (a whole L4 segment) whose pseudo header fields are given.
void check_l4(CsumReport& r, const std::string& where, std::uint8_t proto,
              std::span<const std::uint8_t> src, std::span<const std::uint8_t> dst,
              std::span<const std::uint8_t> seg, bool v6) {
  std::vector<std::uint8_t> buf;
  auto pseudo = [&] {
    buf.insert(buf.end(), src.begin(), src.end());
    buf.insert(buf.end(), dst.begin(), dst.end());
    const std::uint32_t len = static_cast<std::uint32_t>(seg.size());
    if (v6) {
      for (int sh = 24; sh >= 0; sh -= 8) buf.push_back(static_cast<std::uint8_t>(len >> sh));
      buf.insert(buf.end(), {0, 0, 0, proto});
    } else {
      buf.insert(buf.end(), {0, proto, static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)});
    }
  };
  const Reader rd{seg};
  switch (proto) {
    case kProtoTcp: {
      if (seg.size() < 20) {
        r.errors.push_back(where + " tcp: segment of " + std::to_string(seg.size()) + " bytes < 20");
        return;
      }
      const std::size_t doff = static_cast<std::size_t>(seg[12] >> 4) * 4;
      if (doff < 20 || doff > seg.size()) {
        r.errors.push_back(where + " tcp: bad data offset " + std::to_string(doff));
        return;
      }
      pseudo();
      buf.insert(buf.end(), seg.begin(), seg.end());
      const std::uint16_t c = verifier_internet_checksum(buf);
      if (c != 0)
        r.errors.push_back(where + " tcp checksum " + fmt_hex16(rd.u16(16)) + " wrong (residue " + fmt_hex16(c) + ")");
      else
        r.checked.push_back(where + " tcp");
      return;
    }
    case kProtoUdp: {
      if (seg.size() < 8) {
        r.errors.push_back(where + " udp: segment of " + std::to_string(seg.size()) + " bytes < 8");
        return;
      }
      if (rd.u16(4) != seg.size()) {
        r.errors.push_back(where + " udp: length field " + std::to_string(rd.u16(4)) + " != " +
                           std::to_string(seg.size()));
        return;
      }
      if (rd.u16(6) == 0) {
        if (v6)
          r.errors.push_back(where + " udp: zero checksum is invalid over IPv6");
        else
          r.checked.push_back(where + " udp (checksum 0: none)");
        return;
      }
      pseudo();
      buf.insert(buf.end(), seg.begin(), seg.end());
      const std::uint16_t c = verifier_internet_checksum(buf);
      if (c != 0)
        r.errors.push_back(where + " udp checksum " + fmt_hex16(rd.u16(6)) + " wrong (residue " + fmt_hex16(c) + ")");
      else
        r.checked.push_back(where + " udp");
      return;
    }
    case kProtoIcmp:
    case kProtoIcmp6: {
      if (seg.size() < 8) {
        r.errors.push_back(where + " icmp: message of " + std::to_string(seg.size()) + " bytes < 8");
        return;
      }
      if (proto == kProtoIcmp6) pseudo();
      buf.insert(buf.end(), seg.begin(), seg.end());
      const std::uint16_t c = verifier_internet_checksum(buf);
      const std::string name = proto == kProtoIcmp6 ? "icmpv6" : "icmp";
      if (c != 0)
        r.errors.push_back(where + " " + name + " checksum " + fmt_hex16(rd.u16(2)) + " wrong (residue " + fmt_hex16(c) + ")");
      else
        r.checked.push_back(where + " " + name);
      // ICMP errors quote an IPv4 header: its checksum must still be valid.
      const std::uint8_t type = seg[0];
      if (proto == kProtoIcmp && (type == 3 || type == 4 || type == 5 || type == 11 || type == 12) &&
          seg.size() >= 8 + 20) {
        const auto q = seg.subspan(8);
        const std::size_t qhl = static_cast<std::size_t>(q[0] & 0x0f) * 4;
        if ((q[0] >> 4) == 4 && qhl >= 20 && qhl <= q.size()) {
          if (verifier_internet_checksum(q.subspan(0, qhl)) != 0)
            r.errors.push_back(where + " icmp: quoted ipv4 header checksum wrong");
          else
            r.checked.push_back(where + " icmp quoted ipv4 header");
          // A whole quoted datagram (not a fragment): its L4 checksum must hold too.
          const Reader qr{q};
          const std::size_t qtot = qr.u16(2);
          if (qtot >= qhl && qtot <= q.size() && (qr.u16(6) & 0x3fff) == 0 &&
              (q[9] == kProtoTcp || q[9] == kProtoUdp))
            check_l4(r, where + " quoted", q[9], q.subspan(12, 4), q.subspan(16, 4),
                     q.subspan(qhl, qtot - qhl), false);
        }
      }
      // ICMPv6 errors (destination unreachable, packet too big, time exceeded, parameter
      // problem) quoting a whole TCP/UDP datagram without extension headers.
      if (proto == kProtoIcmp6 && type >= 1 && type <= 4 && seg.size() >= 8 + 40) {
        const auto q = seg.subspan(8);
        const Reader qr{q};
        const std::size_t plen = qr.u16(4);
        if ((q[0] >> 4) == 6 && 40 + plen <= q.size() && (q[6] == kProtoTcp || q[6] == kProtoUdp))
          check_l4(r, where + " quoted", q[6], q.subspan(8, 16), q.subspan(24, 16), q.subspan(40, plen), true);
      }
      return;
    }
    default:
      r.checked.push_back(where + " protocol " + std::to_string(proto) + ": no checksum known");
      return;
  }
}

struct L3Info {
  bool ok = false;
  bool v6 = false;
  std::span<const std::uint8_t> src, dst;  // dst = final destination for the pseudo header
  std::uint8_t proto = 0;
  bool fragment = false;
  std::uint32_t frag_offset = 0;  // bytes
  bool mf = false;
  std::uint32_t id = 0;
  std::span<const std::uint8_t> payload;  // L4 bytes carried by this packet
};

L3Info parse_l3(CsumReport& r, std::span<const std::uint8_t> frame) {
  L3Info info;
  if (frame.size() < 14) {
    r.errors.push_back("ethernet: frame of " + std::to_string(frame.size()) + " bytes < 14");
    return info;
  }
  const Reader fr{frame};
  const std::uint16_t type = fr.u16(12);
  const auto l3 = frame.subspan(14);
  const Reader rd{l3};
  if (type == 0x0800) {
    if (l3.size() < 20 || (l3[0] >> 4) != 4) {
      r.errors.push_back("ipv4: truncated or not version 4");
      return info;
    }
    const std::size_t hl = static_cast<std::size_t>(l3[0] & 0x0f) * 4;
    const std::size_t tot = rd.u16(2);
    if (hl < 20 || hl > l3.size() || tot < hl || tot > l3.size()) {
      r.errors.push_back("ipv4: inconsistent lengths ihl*4=" + std::to_string(hl) +
                         " tot_len=" + std::to_string(tot) + " have=" + std::to_string(l3.size()));
      return info;
    }
    if (verifier_internet_checksum(l3.subspan(0, hl)) != 0)
      r.errors.push_back("ipv4 header checksum " + fmt_hex16(rd.u16(10)) + " wrong");
    else
      r.checked.push_back("ipv4 header");
    info.ok = true;
    info.src = l3.subspan(12, 4);
    info.dst = l3.subspan(16, 4);
    info.proto = l3[9];
    const std::uint16_t fo = rd.u16(6);
    info.mf = (fo & 0x2000) != 0;
    info.frag_offset = static_cast<std::uint32_t>(fo & 0x1fff) * 8;
    info.fragment = info.mf || info.frag_offset != 0;
    info.id = rd.u16(4);
    info.payload = l3.subspan(hl, tot - hl);
    return info;
  }
  if (type == 0x86dd) {
    if (l3.size() < 40 || (l3[0] >> 4) != 6) {
      r.errors.push_back("ipv6: truncated or not version 6");
      return info;
    }
    const std::size_t plen = rd.u16(4);
    if (40 + plen > l3.size()) {
      r.errors.push_back("ipv6: payload_len " + std::to_string(plen) + " beyond the frame");
      return info;
    }
    info.v6 = true;
    info.src = l3.subspan(8, 16);
    info.dst = l3.subspan(24, 16);
    std::uint8_t nh = l3[6];
    std::size_t off = 40;
    const std::size_t end = 40 + plen;
    for (int guard = 0; guard < 16; ++guard) {
      if (nh != 0 && nh != 43 && nh != 44 && nh != 60 && nh != 51) break;
      if (off + 8 > end) {
        r.errors.push_back("ipv6: extension header " + std::to_string(nh) + " truncated");
        return info;
      }
      std::size_t len = nh == 44 ? 8 : nh == 51 ? (l3[off + 1] + 2u) * 4 : (l3[off + 1] + 1u) * 8;
      if (off + len > end) {
        r.errors.push_back("ipv6: extension header " + std::to_string(nh) + " truncated");
        return info;
      }
      if (nh == 43) {
        const std::uint8_t rtype = l3[off + 2], segs_left = l3[off + 3];
        if (segs_left > 0) {
          // RFC 8200 8.1: the pseudo header uses the final destination.
          if (rtype == 4 && len >= 24) info.dst = l3.subspan(off + 8, 16);
          else if (rtype == 2 && len >= 24) info.dst = l3.subspan(off + 8, 16);
          else if (rtype == 0 && len >= 24) info.dst = l3.subspan(off + len - 16, 16);
        }
      }
      if (nh == 44) {
        const std::uint16_t fo = Reader{l3}.u16(off + 2);
        info.frag_offset = static_cast<std::uint32_t>(fo >> 3) * 8;
        info.mf = (fo & 1) != 0;
        info.fragment = true;
        info.id = Reader{l3}.u32(off + 4);
      }
      nh = l3[off];
      off += len;
    }
    info.ok = true;
    info.proto = nh;
    info.payload = l3.subspan(off, end - off);
    r.checked.push_back("ipv6 header (no checksum)");
    return info;
  }
  r.checked.push_back("ethertype " + fmt_hex16(type) + ": nothing to verify");
  return info;
}

}  // namespace

std::string CsumReport::str() const {
  std::ostringstream o;
  o << "checked: [";
  for (std::size_t i = 0; i < checked.size(); ++i) o << (i ? ", " : "") << checked[i];
  o << "] errors: [";
  for (std::size_t i = 0; i < errors.size(); ++i) o << (i ? ", " : "") << errors[i];
  o << "]";
  return o.str();
}

CsumReport verify_checksums(std::span<const std::uint8_t> frame) {
  CsumReport r;
  const L3Info info = parse_l3(r, frame);
  if (!info.ok) return r;
  if (info.fragment && (info.frag_offset != 0 || info.mf)) {
    r.checked.push_back("fragment: L4 checksum needs reassembly");
    return r;
  }
  check_l4(r, info.v6 ? "ipv6" : "ipv4", info.proto, info.src, info.dst, info.payload, info.v6);
  return r;
}

CsumReport verify_reassembled(const std::vector<Bytes>& frames) {
  CsumReport r;
  std::map<std::uint32_t, Bytes> pieces;
  std::optional<L3Info> first;
  std::vector<std::uint8_t> src, dst;
  bool last_seen = false;
  for (const Bytes& f : frames) {
    const L3Info info = parse_l3(r, f);
    if (!info.ok) return r;
    if (!first) {
      first = info;
      src.assign(info.src.begin(), info.src.end());
      dst.assign(info.dst.begin(), info.dst.end());
    } else if (!std::equal(src.begin(), src.end(), info.src.begin(), info.src.end()) ||
               !std::equal(dst.begin(), dst.end(), info.dst.begin(), info.dst.end()) ||
               info.id != first->id || info.proto != first->proto) {
      r.errors.push_back("reassembly: fragments disagree on addresses, id or protocol");
      return r;
    }
    if (!info.mf) last_seen = true;
    pieces[info.frag_offset] = Bytes(info.payload.begin(), info.payload.end());
  }
  if (!first || !last_seen || !pieces.contains(0)) {
    r.errors.push_back("reassembly: incomplete datagram");
    return r;
  }
  Bytes whole;
  for (const auto& [off, data] : pieces) {
    if (off != whole.size()) {
      r.errors.push_back("reassembly: hole or overlap at offset " + std::to_string(off));
      return r;
    }
    whole.insert(whole.end(), data.begin(), data.end());
  }
  check_l4(r, "reassembled", first->proto, src, dst, whole, first->v6);
  return r;
}

// =============================================================================================
// Printing
// =============================================================================================

std::string hex(std::span<const std::uint8_t> b) {
  std::string s;
  char buf[4];
  for (std::size_t i = 0; i < b.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    s += buf;
    if (i + 1 < b.size()) s += (i % 16 == 15) ? "\n" : " ";
  }
  return s;
}

std::string hex_diff(std::span<const std::uint8_t> expected, std::span<const std::uint8_t> got) {
  std::ostringstream o;
  o << "expected " << expected.size() << " bytes, got " << got.size()
    << " bytes; '*' marks differing bytes\n";
  o << "offset  expected                                          got\n";
  const std::size_t n = std::max(expected.size(), got.size());
  char buf[24];
  for (std::size_t row = 0; row < n; row += 16) {
    std::snprintf(buf, sizeof buf, "%04zx", row);
    std::string e, g;
    bool diff = false;
    for (std::size_t i = row; i < row + 16; ++i) {
      const bool he = i < expected.size(), hg = i < got.size();
      const bool d = he != hg || (he && hg && expected[i] != got[i]);
      diff |= d;
      char cell[5];
      if (he) std::snprintf(cell, sizeof cell, "%02x%c", expected[i], d ? '*' : ' ');
      else std::snprintf(cell, sizeof cell, "   ");
      e += cell;
      if (hg) std::snprintf(cell, sizeof cell, "%02x%c", got[i], d ? '*' : ' ');
      else std::snprintf(cell, sizeof cell, "   ");
      g += cell;
    }
    o << (diff ? "! " : "  ") << buf << "  " << e << " " << g << "\n";
  }
  return o.str();
}

}  // namespace bpftest
