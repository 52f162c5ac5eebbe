// IPv4 options, IPv6 extension headers, UDP zero checksums, fragments, malformed packets.
#include <arpa/inet.h>

#include <cerrno>

#include "cases.h"

using namespace bpftest;

namespace {

constexpr std::uint8_t TCP = kProtoTcp;
constexpr std::uint8_t UDP = kProtoUdp;

// Router Alert + NOP NOP NOP EOL: ihl = 7.
const Bytes kIpOptions = {0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00};

void expect_no_flows(Fixture& fx) {
  CHECK_MESSAGE(fx.ct_entries(false) == 0, "lb4 conntrack entries created");
  CHECK_MESSAGE(fx.ct_entries(true) == 0, "lb6 conntrack entries created");
}

// ---- rule 8: IPv4 options, IPv6 extension headers -------------------------------------------

Case translated(const char* name, const Fam& f, const Pkt& in) {
  const Pkt out = to_backend(in, f, 0);
  const std::uint32_t svc = svc_id(f, in.proto);
  return mk(name, {service(f, in.proto, {0})},
            {with_after(fwd_new_step("first packet", in, out, svc),
                        [=](Fixture& fx) { check_ct_pair(fx, in, out, backend_id(f, in.proto, 0), svc); })});
}

// The reply of a flow whose packets carry options / extension headers.
Case translated_with_reply(const char* name, const Fam& f, const Pkt& in, const Pkt& reply) {
  Case c = translated(name, f, in);
  c.steps.push_back(reply_step("reply", reply, from_vip(reply, f), svc_id(f, in.proto)));
  return c;
}

Case routing_segments_left(const char* name, std::uint8_t proto) {
  const Pkt in = client_pkt(kV6, proto).with_ext({routing(1, {kV6.far, kV6.vip})});
  return mk(name, {service(kV6, proto, {0})},
            {with_after(pass_step("routing header with segments left", build(in), LB_STAT_PASS_ROUTING_HDR),
                        expect_no_flows)});
}

// ---- rule 9: UDP checksums --------------------------------------------------------------------

Case udp6_zero_csum_dropped(const char* name) {
  Step s;
  s.what = "UDP over IPv6 with checksum 0";
  s.in = build(client_pkt(kV6, UDP).zero_csum());
  s.verdict = kTcActShot;
  s.out = s.in;  // dropped as received
  s.stat = LB_STAT_DROP_UDP6_ZERO_CSUM;
  s.csum = CsumExpect::Invalid;
  s.after = expect_no_flows;
  return mk(name, {service(kV6, UDP, {0})}, {s});
}

// Dropped on an established flow too.
Case udp6_zero_csum_established_dropped(const char* name) {
  const Pkt first = client_pkt(kV6, UDP);
  Step s;
  s.what = "later datagram of the flow with checksum 0";
  s.in = build(client_next(kV6, UDP).zero_csum());
  s.verdict = kTcActShot;
  s.out = s.in;
  s.stat = LB_STAT_DROP_UDP6_ZERO_CSUM;
  s.csum = CsumExpect::Invalid;
  return mk(name, {service(kV6, UDP, {0})},
            {fwd_new_step("first packet", first, to_backend(first, kV6, 0), svc_id(kV6, UDP)), s});
}

// Payload chosen so that the translated datagram's checksum computes to 0 (sent as 0xffff).
Case udp_csum_computes_zero(const char* name, const Fam& f) {
  Pkt out = to_backend(client_pkt(f, UDP), f, 0);
  const auto w = udp_zero_sum_word(out);
  out.payload[0] = w[0];
  out.payload[1] = w[1];
  Pkt in = out.to(f.vip, kUdpVPort);
  const Bytes in_seg = l4_segment(in);
  if ((in_seg[6] | in_seg[7]) == 0) throw std::logic_error("input checksum happens to be 0");
  const Bytes out_seg = l4_segment(out);
  if (out_seg[6] != 0xff || out_seg[7] != 0xff) throw std::logic_error("crafted checksum is not 0xffff");
  return mk(name, {service(f, UDP, {0})},
            {fwd_new_step("translated checksum computes to 0", in, out, svc_id(f, UDP))});
}

// A reply whose translated checksum computes to 0.
Case udp_reply_csum_computes_zero(const char* name, const Fam& f) {
  Pkt rout = from_vip(reply_pkt(f, UDP, 0), f);
  const auto w = udp_zero_sum_word(rout);
  rout.payload[0] = w[0];
  rout.payload[1] = w[1];
  const Pkt rin = rout.from(f.be[0], kUdpBPort);
  const Pkt first = client_pkt(f, UDP);
  return mk(name, {service(f, UDP, {0})},
            {fwd_new_step("first packet", first, to_backend(first, f, 0), svc_id(f, UDP)),
             reply_step("reply whose translated checksum computes to 0", rin, rout, svc_id(f, UDP))});
}

// ---- rule 10: fragments ---------------------------------------------------------------------

Bytes pattern(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 7 + 3);
  return b;
}

constexpr std::uint32_t kFragId4 = 0x1234;
constexpr std::uint32_t kFragId6 = 0x12345678;

// A 48-byte UDP datagram sent in two fragments (so without DF).
Pkt datagram(const Fam& f) {
  Pkt p = client_pkt(f, UDP).with_payload(pattern(40));
  p.df = false;
  return p;
}

Step first_fragment_step(const Fam& f, std::uint32_t id) {
  const Pkt whole = datagram(f);
  Step s = fwd_new_step("first fragment (offset 0, MF)", whole.fragment(0, 24, true, id),
                        to_backend(whole, f, 0).fragment(0, 24, true, id), svc_id(f, UDP));
  s.after = [=](Fixture& fx) {
    const auto v = fx.frag(f.client, f.vip, id, UDP);
    REQUIRE_MESSAGE(v.has_value(), "ports of the first fragment not remembered under {saddr, daddr, id, proto}");
    CHECK(ntohs(v->sport) == kCPort);
    CHECK(ntohs(v->dport) == kUdpVPort);
  };
  return s;
}

Case first_fragment(const char* name, const Fam& f, std::uint32_t id) {
  return mk(name, {service(f, UDP, {0})}, {first_fragment_step(f, id)});
}

// IPv6: hop-by-hop header in front of the fragment header, both fragments.
Case fragments_after_hop_by_hop(const char* name, std::uint32_t id) {
  const Fam& f = kV6;
  const Pkt whole = datagram(f).with_ext({hop_by_hop(), fragment_hdr()});
  const std::uint32_t svc = svc_id(f, UDP);
  return mk(name, {service(f, UDP, {0})},
            {fwd_new_step("first fragment", whole.fragment(0, 16, true, id),
                          to_backend(whole, f, 0).fragment(0, 16, true, id), svc),
             fwd_est_step("later fragment", whole.fragment(16, std::nullopt, false, id),
                          to_backend(whole, f, 0).fragment(16, std::nullopt, false, id), svc)},
            [](Fixture&, const std::vector<Bytes>& outs) {
              const CsumReport r = verify_reassembled(outs);
              CHECK_MESSAGE(r.ok(), "translated fragments do not reassemble to a valid datagram: " << r.str());
            });
}

Case later_fragment(const char* name, const Fam& f, std::uint32_t id) {
  const Pkt whole = datagram(f);
  const Pkt in = whole.fragment(24, std::nullopt, false, id);
  const Pkt out = to_backend(whole, f, 0).fragment(24, std::nullopt, false, id);
  return mk(name, {service(f, UDP, {0})},
            {first_fragment_step(f, id), fwd_est_step("later fragment (offset 24)", in, out, svc_id(f, UDP))},
            [](Fixture&, const std::vector<Bytes>& outs) {
              REQUIRE(outs.size() == 2);
              const CsumReport r = verify_reassembled(outs);
              CHECK_MESSAGE(r.ok(), "translated fragments do not reassemble to a valid datagram: " << r.str());
            });
}

Case unknown_fragment(const char* name, const Fam& f, std::uint32_t first_id, std::uint32_t later_id) {
  const Pkt later = datagram(f).fragment(24, std::nullopt, false, later_id);
  std::vector<Step> steps;
  if (first_id != later_id) steps.push_back(first_fragment_step(f, first_id));
  steps.push_back(pass_step("non-first fragment of an unseen datagram", build(later), LB_STAT_PASS_FRAG_UNKNOWN));
  return mk(name, {service(f, UDP, {0})}, std::move(steps));
}

// ---- rule 11: malformed ---------------------------------------------------------------------

Case malformed(const char* name, const Fam& f, Bytes in) {
  return mk(name, {service(f, TCP, {0}), service(f, UDP, {0})},
            {with_after(pass_step("malformed", std::move(in), LB_STAT_PASS_MALFORMED, CsumExpect::Skip),
                        expect_no_flows)});
}

// Kernels with "bpf: test_run: reject IPv4/IPv6 packets shorter than their header" (6.18.y has
// it) refuse an ETH_P_IP frame with < 20 bytes of L3, or ETH_P_IPV6 with < 40, with EINVAL before
// the program runs. Then the case only checks that nothing ran; on other kernels the program
// must pass the frame untouched with LB_STAT_PASS_MALFORMED.
Case malformed_l3_short(const char* name, const Fam& f, Bytes in) {
  Case c = malformed(name, f, std::move(in));
  c.steps[0].tolerated_err = -EINVAL;
  return c;
}

Bytes truncated(Bytes b, std::size_t n) {
  b.resize(n);
  return b;
}

Bytes with_byte(Bytes b, std::size_t at, std::uint8_t v) {
  b.at(at) = v;
  return b;
}

Pkt short_l4(const Fam& f, std::uint8_t proto, std::size_t n) {
  const Pkt p = client_pkt(f, proto);
  const Bytes seg = l4_segment(p);
  return p.raw_l4(Bytes(seg.begin(), seg.begin() + static_cast<long>(n)));
}

Case eth_too_short(const char* name) {
  Step s;
  s.what = "13-byte frame";
  s.in = truncated(build(client_pkt(kV4, TCP)), 13);
  s.expect_err = -EINVAL;  // BPF_PROG_TEST_RUN for tc needs at least ETH_HLEN bytes
  return mk(name, {service(kV4, TCP, {0})}, {s});
}

// IPv6: next header hop-by-hop with a payload length too short for it.
Bytes ipv6_ext_cut_short() {
  Bytes b = build(client_pkt(kV6, UDP).with_ext({hop_by_hop()}));
  b.resize(14 + 40 + 4);
  b[14 + 4] = 0;
  b[14 + 5] = 4;
  return b;
}

const std::array kCases = std::to_array<Case>({
    // rule 8
    translated_with_reply("tc_pod_lb4_tcp_ip_options", kV4, client_pkt(kV4, TCP).with_options(kIpOptions),
                          reply_pkt(kV4, TCP, 0).with_options(kIpOptions)),
    translated("tc_pod_lb4_udp_ip_options", kV4, client_pkt(kV4, UDP).with_options(kIpOptions)),
    translated_with_reply("tc_pod_lb6_tcp_hop_by_hop", kV6, client_pkt(kV6, TCP).with_ext({hop_by_hop()}),
                          reply_pkt(kV6, TCP, 0).with_ext({hop_by_hop()})),
    translated("tc_pod_lb6_udp_dest_opts", kV6, client_pkt(kV6, UDP).with_ext({dest_opts()})),
    translated("tc_pod_lb6_tcp_hop_by_hop_and_dest_opts", kV6,
               client_pkt(kV6, TCP).with_ext({hop_by_hop(), dest_opts()})),
    translated("tc_pod_lb6_udp_hop_by_hop_and_dest_opts", kV6,
               client_pkt(kV6, UDP).with_ext({hop_by_hop(), dest_opts()})),
    routing_segments_left("tc_pod_lb6_tcp_routing_segments_left_passes", TCP),
    routing_segments_left("tc_pod_lb6_udp_routing_segments_left_passes", UDP),
    translated("tc_pod_lb6_tcp_routing_segments_left_zero_translated", kV6,
               client_pkt(kV6, TCP).with_ext({routing(0, {kV6.vip, kV6.far})})),
    // rule 9
    translated("tc_pod_lb4_udp_zero_csum_stays_zero", kV4, client_pkt(kV4, UDP).zero_csum()),
    udp6_zero_csum_dropped("tc_pod_lb6_udp_zero_csum_dropped"),
    udp6_zero_csum_established_dropped("tc_pod_lb6_udp_zero_csum_established_dropped"),
    udp_csum_computes_zero("tc_pod_lb4_udp_csum_computing_zero_sent_as_ffff", kV4),
    udp_csum_computes_zero("tc_pod_lb6_udp_csum_computing_zero_sent_as_ffff", kV6),
    udp_reply_csum_computes_zero("tc_pod_lb4_udp_reply_csum_computing_zero_sent_as_ffff", kV4),
    // rule 10
    first_fragment("tc_pod_lb4_udp_first_fragment", kV4, kFragId4),
    later_fragment("tc_pod_lb4_udp_later_fragment", kV4, kFragId4),
    unknown_fragment("tc_pod_lb4_udp_fragment_unknown_passes", kV4, kFragId4, kFragId4),
    unknown_fragment("tc_pod_lb4_udp_fragment_other_id_passes", kV4, kFragId4, kFragId4 + 1),
    first_fragment("tc_pod_lb6_udp_first_fragment", kV6, kFragId6),
    later_fragment("tc_pod_lb6_udp_later_fragment", kV6, kFragId6),
    unknown_fragment("tc_pod_lb6_udp_fragment_unknown_passes", kV6, kFragId6, kFragId6),
    fragments_after_hop_by_hop("tc_pod_lb6_udp_fragments_after_hop_by_hop", kFragId6 + 7),
    // rule 11
    eth_too_short("tc_pod_malformed_eth_shorter_than_14"),
    malformed_l3_short("tc_pod_malformed_ipv4_header_truncated", kV4, truncated(build(client_pkt(kV4, TCP)), 14 + 19)),
    malformed("tc_pod_malformed_ipv4_ihl_below_5", kV4, with_byte(build(client_pkt(kV4, TCP)), 14, 0x44)),
    malformed("tc_pod_malformed_ipv4_ihl_beyond_packet", kV4, with_byte(build(client_pkt(kV4, UDP)), 14, 0x4f)),
    malformed_l3_short("tc_pod_malformed_ipv6_header_truncated", kV6, truncated(build(client_pkt(kV6, TCP)), 14 + 30)),
    malformed("tc_pod_malformed_lb6_ext_header_truncated", kV6, ipv6_ext_cut_short()),
    malformed("tc_pod_malformed_lb4_tcp_header_truncated", kV4, build(short_l4(kV4, TCP, 10))),
    malformed("tc_pod_malformed_lb6_tcp_header_truncated", kV6, build(short_l4(kV6, TCP, 10))),
    malformed("tc_pod_malformed_lb4_udp_header_truncated", kV4, build(short_l4(kV4, UDP, 4))),
    malformed("tc_pod_malformed_lb6_udp_header_truncated", kV6, build(short_l4(kV6, UDP, 4))),
});

[[maybe_unused]] const int kRegistered = register_table<kCases>(__FILE__);

}  // namespace
