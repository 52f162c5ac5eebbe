// Unit tests of the packet builder and of the checksum verifier, against hand-computed values
// and published examples, before either is trusted to judge the datapath.
#include <doctest/doctest.h>

#include "cases.h"
#include "packet.h"

using namespace bpftest;

namespace {

Bytes from_hex(std::string_view s) {
  Bytes b;
  int hi = -1;
  for (char c : s) {
    const int v = detail::hexval(c);
    if (v < 0) continue;
    if (hi < 0) {
      hi = v;
    } else {
      b.push_back(static_cast<std::uint8_t>(hi * 16 + v));
      hi = -1;
    }
  }
  return b;
}

std::uint16_t be16(const Bytes& b, std::size_t at) { return static_cast<std::uint16_t>(b.at(at) << 8 | b.at(at + 1)); }

}  // namespace

TEST_SUITE("packet") {

TEST_CASE("packet_address_parsing") {
  static_assert(ip("10.0.0.2").b[0] == 10 && ip("10.0.0.2").b[3] == 2 && !ip("10.0.0.2").v6);
  constexpr IpAddr a = ip("fd00:30::41");
  static_assert(a.v6 && a.b[0] == 0xfd && a.b[1] == 0x00 && a.b[2] == 0x00 && a.b[3] == 0x30 && a.b[15] == 0x41 &&
                a.b[14] == 0);
  CHECK(ip("fd00:30::41").str() == "fd00:30::41");
  CHECK(ip("::1").str() == "::1");
  CHECK(ip("fd00::").str() == "fd00::");
  CHECK(ip("1:2:3:4:5:6:7:8").str() == "1:2:3:4:5:6:7:8");
  CHECK(ip("172.30.0.41").str() == "172.30.0.41");
  CHECK_THROWS(ip("1.2.3"));
  CHECK_THROWS(ip("1::2::3"));
  CHECK(mac("02:00:00:00:01:01").b[4] == 1);
}

TEST_CASE("packet_verifier_rfc1071_example") {
  // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2, checksum 220d.
  CHECK(verifier_internet_checksum(from_hex("0001 f203 f4f5 f6f7")) == 0x220d);
  CHECK(verifier_internet_checksum(from_hex("0001 f203 f4f5 f6f7 220d")) == 0);
  // Odd length: the last byte is padded with zero.
  CHECK(verifier_internet_checksum(from_hex("0102 03")) == static_cast<std::uint16_t>(~(0x0102 + 0x0300)));
}

TEST_CASE("packet_builder_ipv4_header_matches_known_good") {
  // The classic example header (192.168.0.1 -> 192.168.0.199, UDP, DF, tot_len 0x73): b861.
  const Bytes known = from_hex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7");
  CHECK(verifier_internet_checksum(known) == 0);
  Pkt p = udp(ip("192.168.0.1"), 1, ip("192.168.0.199"), 2).with_payload(Bytes(0x73 - 28, 0));
  p.df = true;
  const Bytes f = build(p);
  CHECK(Bytes(f.begin() + 14, f.begin() + 34) == known);
}

TEST_CASE("packet_builder_udp4_hand_computed") {
  // 10.0.0.2:40000 -> 172.30.0.41:53 "hi": computed by hand, checksum 0x44b2.
  const Bytes f = build(udp(ip("10.0.0.2"), 40000, ip("172.30.0.41"), 53).with_payload({'h', 'i'}));
  REQUIRE(f.size() == 14 + 20 + 10);
  CHECK(be16(f, 12) == 0x0800);
  CHECK(Bytes(f.begin() + 34, f.end()) == from_hex("9c40 0035 000a 44b2 6869"));
  CHECK(verify_checksums(f).ok());
}

TEST_CASE("packet_builder_tcp4_hand_computed") {
  // SYN 10.0.0.2:40000 -> 172.30.0.41:80, seq 1000, window 64240: checksum 0x5e30.
  const Bytes f = build(tcp(ip("10.0.0.2"), 40000, ip("172.30.0.41"), 80));
  REQUIRE(f.size() == 14 + 20 + 20);
  CHECK(Bytes(f.begin() + 34, f.end()) == from_hex("9c40 0050 0000 03e8 0000 0000 5002 faf0 5e30 0000"));
  CHECK(verify_checksums(f).ok());
  CHECK(Bytes(f.begin(), f.begin() + 14) == from_hex("020000000001 020000000002 0800"));
}

TEST_CASE("packet_builder_tcp_options") {
  // MSS 1460, SACK permitted, NOP, window scale 7: data offset 8 (32 bytes).
  const Bytes opts = from_hex("0204 05b4 0402 0103 0307 0000");
  const Bytes f = build(tcp(ip("10.0.0.2"), 40000, ip("172.30.0.41"), 80).with_tcp_options(opts));
  REQUIRE(f.size() == 14 + 20 + 32);
  CHECK(f[34 + 12] == 0x80);
  CHECK(Bytes(f.begin() + 54, f.end()) == opts);
  CHECK(verify_checksums(f).ok());
}

TEST_CASE("packet_builder_icmp6_hand_computed") {
  // Echo request fd00::2 -> fd00:30::41, id 0x4242 seq 1, no data: checksum 0x4305.
  const Bytes f = build(icmp_echo(ip("fd00::2"), ip("fd00:30::41")).with_payload({}));
  REQUIRE(f.size() == 14 + 40 + 8);
  CHECK(be16(f, 12) == 0x86dd);
  CHECK(Bytes(f.begin() + 14, f.begin() + 22) == from_hex("6000 0000 0008 3a40"));
  CHECK(Bytes(f.begin() + 54, f.end()) == from_hex("8000 4305 4242 0001"));
  CHECK(verify_checksums(f).ok());
}

TEST_CASE("packet_verifier_accepts_every_builder_packet") {
  for (const Fam* f : {&kV4, &kV6}) {
    for (std::uint8_t proto : {kProtoTcp, kProtoUdp}) {
      CAPTURE(f->tag);
      CAPTURE(static_cast<int>(proto));
      const Pkt p = client_next(*f, proto);
      CHECK(verify_checksums(build(p)).ok());
      CHECK(verify_checksums(build(to_backend(p, *f, 2))).ok());
      CHECK(verify_checksums(build(p.with_payload({1, 2, 3}))).ok());  // odd length
      CHECK(verify_checksums(icmp_port_unreachable(p)).ok());
    }
  }
  CHECK(verify_checksums(build(icmp_echo(kV4.client, kV4.vip))).ok());
  CHECK(verify_checksums(build(icmp_echo(kV6.client, kV6.vip))).ok());
  CHECK(verify_checksums(build(client_pkt(kV4, kProtoTcp).with_options({0x94, 4, 0, 0, 1, 1, 1, 0}))).ok());
  CHECK(verify_checksums(build(client_pkt(kV6, kProtoTcp).with_ext({hop_by_hop(), dest_opts()}))).ok());
  CHECK(verify_checksums(build(client_pkt(kV6, kProtoUdp).with_ext({routing(0, {kV6.vip})}))).ok());
  CHECK(verify_checksums(build(client_pkt(kV4, kProtoUdp).zero_csum())).ok());
  CHECK(verify_checksums(arp_request(kMacClient, kV4.client, kV4.vip)).ok());
}

TEST_CASE("packet_verifier_routing_header_final_destination") {
  // With segments left, the pseudo header uses the final destination (segment list [0]).
  const Pkt p = client_pkt(kV6, kProtoTcp).with_ext({routing(1, {kV6.far, kV6.vip})});
  const Bytes f = build(p);
  CHECK(verify_checksums(f).ok());
  // The same segment with the checksum computed against the IPv6 destination must fail.
  const Bytes wrong_seg = l4_segment(client_pkt(kV6, kProtoTcp));
  Bytes g = f;
  std::copy(wrong_seg.begin(), wrong_seg.end(), g.end() - static_cast<long>(wrong_seg.size()));
  CHECK_FALSE(verify_checksums(g).ok());
}

TEST_CASE("packet_verifier_rejects_corruption") {
  const std::vector<Bytes> good = {
      build(client_next(kV4, kProtoTcp)),      build(client_next(kV4, kProtoUdp)),
      build(client_next(kV6, kProtoTcp)),      build(client_next(kV6, kProtoUdp)),
      build(icmp_echo(kV4.client, kV4.vip)),   build(icmp_echo(kV6.client, kV6.vip)),
      icmp_port_unreachable(client_pkt(kV4, kProtoTcp)), icmp_port_unreachable(client_pkt(kV6, kProtoUdp)),
  };
  for (const Bytes& g : good) {
    REQUIRE(verify_checksums(g).ok());
    // Flip one bit in every byte from the addresses on: every checksum must notice.
    const std::size_t from = be16(g, 12) == 0x0800 ? 14 + 12 : 14 + 8;
    for (std::size_t i = from; i < g.size(); ++i) {
      Bytes b = g;
      b[i] ^= 0x10;
      CAPTURE(i);
      CHECK_FALSE(verify_checksums(b).ok());
    }
  }
  // IPv4 header checksum itself.
  Bytes h = build(client_pkt(kV4, kProtoTcp));
  h[14 + 10] ^= 1;
  CHECK_FALSE(verify_checksums(h).ok());
}

TEST_CASE("packet_verifier_udp_zero_checksum_rules") {
  CHECK(verify_checksums(build(client_pkt(kV4, kProtoUdp).zero_csum())).ok());
  CHECK_FALSE(verify_checksums(build(client_pkt(kV6, kProtoUdp).zero_csum())).ok());
}

TEST_CASE("packet_builder_udp_zero_sum_is_sent_as_ffff") {
  for (const Fam* f : {&kV4, &kV6}) {
    Pkt p = client_pkt(*f, kProtoUdp);
    const auto w = udp_zero_sum_word(p);
    p.payload[0] = w[0];
    p.payload[1] = w[1];
    const Bytes seg = l4_segment(p);
    CHECK(be16(seg, 6) == 0xffff);
    CHECK(verify_checksums(build(p)).ok());
  }
}

TEST_CASE("packet_builder_fragments_reassemble") {
  for (const Fam* f : {&kV4, &kV6}) {
    const Pkt p = udp(f->client, kCPort, f->vip, kUdpVPort).with_payload(Bytes(40, 0x5a));
    const Bytes a = build(p.fragment(0, 24, true, 0x1234));
    const Bytes b = build(p.fragment(24, std::nullopt, false, 0x1234));
    CHECK(verify_checksums(a).ok());
    CHECK(verify_checksums(b).ok());
    CHECK(verify_reassembled({a, b}).ok());
    CHECK(verify_reassembled({b, a}).ok());
    CHECK_FALSE(verify_reassembled({a}).ok());
    // Second fragment from a different source: not one datagram.
    const Bytes c = build(p.from(f->other, kCPort).fragment(24, std::nullopt, false, 0x1234));
    CHECK_FALSE(verify_reassembled({a, c}).ok());
    // Payload changed in the second fragment: L4 checksum of the whole fails.
    Bytes d = b;
    d.back() ^= 0xff;
    CHECK_FALSE(verify_reassembled({a, d}).ok());
  }
  // IPv4 fragment fields.
  const Bytes a = build(udp(kV4.client, kCPort, kV4.vip, kUdpVPort).with_payload(Bytes(40, 1)).fragment(24, 8, true, 0xbeef));
  CHECK(be16(a, 14 + 4) == 0xbeef);
  CHECK(be16(a, 14 + 6) == (0x2000 | 3));
  CHECK(be16(a, 14 + 2) == 28);
  // IPv6 fragment header: next header UDP, offset 3 (units of 8) with M, id.
  const Bytes v = build(client_pkt(kV6, kProtoUdp).with_payload(Bytes(40, 1)).fragment(24, 8, true, 0xdeadbeef));
  CHECK(v[14 + 6] == 44);
  CHECK(v[54] == kProtoUdp);
  CHECK(be16(v, 56) == (3 << 3 | 1));
  CHECK(be16(v, 58) == 0xdead);
  CHECK(be16(v, 60) == 0xbeef);
}

TEST_CASE("packet_builder_icmp_unreachable_layout") {
  const Pkt p = client_pkt(kV4, kProtoTcp).with_options({1, 1, 1, 0}).with_payload(Bytes(100, 7));
  const Bytes in = build(p);
  const Bytes r = icmp_port_unreachable(p);
  REQUIRE(r.size() == 14 + 20 + 8 + 24 + 8);
  CHECK(Bytes(r.begin(), r.begin() + 6) == Bytes(kMacClient.b.begin(), kMacClient.b.end()));
  CHECK(Bytes(r.begin() + 6, r.begin() + 12) == Bytes(kMacHost.b.begin(), kMacHost.b.end()));
  CHECK(r[14] == 0x45);
  CHECK(r[15] == 0xc0);
  CHECK(be16(r, 16) == 20 + 8 + 32);
  CHECK(r[22] == 64);
  CHECK(r[23] == 1);
  CHECK(Bytes(r.begin() + 26, r.begin() + 30) == Bytes(kV4.vip.b.begin(), kV4.vip.b.begin() + 4));
  CHECK(Bytes(r.begin() + 30, r.begin() + 34) == Bytes(kV4.client.b.begin(), kV4.client.b.begin() + 4));
  CHECK(r[34] == 3);
  CHECK(r[35] == 3);
  CHECK(Bytes(r.begin() + 42, r.end()) == Bytes(in.begin() + 14, in.begin() + 14 + 32));
  CHECK(verify_checksums(r).ok());

  const Pkt q = client_pkt(kV6, kProtoUdp).with_ext({hop_by_hop()});
  const Bytes in6 = build(q);
  const Bytes r6 = icmp_port_unreachable(q);
  REQUIRE(r6.size() == 14 + 40 + 8 + 40 + 8 + 8);
  CHECK(be16(r6, 18) == 8 + 56);
  CHECK(r6[20] == 58);
  CHECK(r6[21] == 64);
  CHECK(r6[54] == 1);
  CHECK(r6[55] == 4);
  CHECK(Bytes(r6.begin() + 62, r6.end()) == Bytes(in6.begin() + 14, in6.begin() + 14 + 56));
  CHECK(verify_checksums(r6).ok());
}

TEST_CASE("packet_hex_diff_marks_differences") {
  const std::string d = hex_diff(Bytes{1, 2, 3}, Bytes{1, 9, 3, 4});
  CHECK(d.find("02*") != std::string::npos);
  CHECK(d.find("09*") != std::string::npos);
  CHECK(d.find("04*") != std::string::npos);
}

}  // TEST_SUITE
