// Pass-through, first packet, established flows, replies and backend re-pinning.
#include "cases.h"

using namespace bpftest;

namespace {

constexpr std::uint8_t TCP = kProtoTcp;
constexpr std::uint8_t UDP = kProtoUdp;

std::vector<Service> both_services(const Fam& f) { return {service(f, TCP, {0}), service(f, UDP, {0})}; }

void expect_no_flows(Fixture& fx) {
  CHECK_MESSAGE(fx.ct_entries(false) == 0, "a passed packet created lb4 conntrack entries");
  CHECK_MESSAGE(fx.ct_entries(true) == 0, "a passed packet created lb6 conntrack entries");
}

// ---- rule 1: not for a service -> TC_ACT_OK, byte-identical, LB_STAT_PASS --------------------

Case pass_case(const char* name, std::vector<Service> svcs, Bytes in) {
  return mk(name, std::move(svcs), {with_after(pass_step("not for a service", std::move(in)), expect_no_flows)});
}

// ---- rule 2: first packet ---------------------------------------------------------------------

Case first_packet(const char* name, const Fam& f, std::uint8_t proto) {
  const Pkt in = client_pkt(f, proto);
  const Pkt out = to_backend(in, f, 0);
  return mk(name, {service(f, proto, {0})},
            {with_after(fwd_new_step("first packet", in, out, svc_id(f, proto)), [=](Fixture& fx) {
              check_ct_pair(fx, in, out, backend_id(f, proto, 0), svc_id(f, proto));
              CHECK(fx.ct_entries(f.client.v6) == 2);
              CHECK_MESSAGE(fx.affinity_entries(f.client.v6) == 0, "affinity entry without LB_SVC_F_AFFINITY");
            })});
}

Case first_packet_payload(const char* name, const Fam& f, std::uint8_t proto, Bytes payload) {
  const Pkt in = client_pkt(f, proto).with_payload(std::move(payload));
  return mk(name, {service(f, proto, {0})},
            {fwd_new_step("first packet with payload", in, to_backend(in, f, 0), svc_id(f, proto))});
}

// A SYN as Linux sends it: MSS, SACK permitted, timestamps, window scale (data offset 10).
Case translated_syn_with_options(const char* name, const Fam& f) {
  const Pkt in = client_pkt(f, TCP).with_tcp_options(
      {0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07});
  return mk(name, {service(f, TCP, {0})},
            {fwd_new_step("SYN with TCP options", in, to_backend(in, f, 0), svc_id(f, TCP))});
}

// ---- rule 3: later packets stick to the conntrack's backend ---------------------------------

std::function<void(Fixture&)> move_slot1_to_backend1(const Fam& f, std::uint8_t proto) {
  return [=](Fixture& fx) {
    fx.put_backend(backend(f, proto, 1), proto, svc_id(f, proto));
    fx.put_slot(service(f, proto, {0}), 1, backend_id(f, proto, 1));
  };
}

Case established(const char* name, const Fam& f, std::uint8_t proto) {
  const Pkt first = client_pkt(f, proto);
  const Pkt next = client_next(f, proto);
  const Pkt other_flow = client_pkt(f, proto, kCPort + 1);
  return mk(name, {service(f, proto, {0})},
            {fwd_new_step("first packet", first, to_backend(first, f, 0), svc_id(f, proto)),
             with_before(fwd_est_step("later packet after slot 1 moved to backend 1", next, to_backend(next, f, 0),
                                      svc_id(f, proto)),
                         move_slot1_to_backend1(f, proto)),
             fwd_new_step("a new flow follows the new slot", other_flow, to_backend(other_flow, f, 1),
                          svc_id(f, proto))});
}

// A retransmitted SYN whose backend still exists keeps it.
Case syn_retransmit(const char* name, const Fam& f) {
  const Pkt syn = client_pkt(f, TCP);
  return mk(name, {service(f, TCP, {0})},
            {fwd_new_step("SYN", syn, to_backend(syn, f, 0), svc_id(f, TCP)),
             with_before(fwd_est_step("retransmitted SYN, backend still there", syn, to_backend(syn, f, 0),
                                      svc_id(f, TCP)),
                         move_slot1_to_backend1(f, TCP))});
}

// Once conntrack (and affinity, fragments) are cleared, the same tuple is a new flow again.
Case new_after_flows_cleared(const char* name, const Fam& f) {
  const Pkt syn = client_pkt(f, TCP);
  return mk(name, {service(f, TCP, {0})},
            {fwd_new_step("SYN", syn, to_backend(syn, f, 0), svc_id(f, TCP)),
             with_before(fwd_new_step("same SYN after the flows were cleared and slot 1 moved", syn,
                                      to_backend(syn, f, 1), svc_id(f, TCP)),
                         [=](Fixture& fx) {
                           fx.clear_flows();
                           REQUIRE(fx.ct_entries(f.client.v6) == 0);
                           move_slot1_to_backend1(f, TCP)(fx);
                         })});
}

// ---- rule 3 exception: UDP / TCP SYN re-pinned when the backend is gone ---------------------

Case repin(const char* name, const Fam& f, std::uint8_t proto, bool moved_to_other_svc) {
  const Pkt first = client_pkt(f, proto);
  const Pkt again = proto == TCP ? first : client_next(f, proto);  // TCP: retransmitted SYN
  const Pkt again_out = to_backend(again, f, 1);
  const Pkt reply = reply_pkt(f, proto, 1);
  const std::uint32_t svc = svc_id(f, proto);
  return mk(
      name, {service(f, proto, {0})},
      {fwd_new_step("first packet", first, to_backend(first, f, 0), svc),
       with_after(with_before(fwd_new_step(moved_to_other_svc ? "backend 0 now belongs to another service"
                                                              : "backend 0 deleted",
                                           again, again_out, svc),
                              [=](Fixture& fx) {
                                if (moved_to_other_svc) {
                                  Backend b = backend(f, proto, 0);
                                  b.svc_id = 99;
                                  fx.put_backend(b, proto, svc);
                                } else {
                                  fx.delete_backend(f.client.v6, backend_id(f, proto, 0));
                                }
                                move_slot1_to_backend1(f, proto)(fx);
                              }),
                  [=](Fixture& fx) { check_ct_pair(fx, again, again_out, backend_id(f, proto, 1), svc); }),
       reply_step("reply from the new backend", reply, from_vip(reply, f), svc)});
}

// TCP without SYN keeps its conntrack entry even when the backend is gone.
Case tcp_ack_keeps_deleted_backend(const char* name, const Fam& f) {
  const Pkt syn = client_pkt(f, TCP);
  const Pkt ack = client_next(f, TCP);
  const Pkt reply = reply_pkt(f, TCP, 0);
  const std::uint32_t svc = svc_id(f, TCP);
  return mk(name, {service(f, TCP, {0})},
            {fwd_new_step("SYN", syn, to_backend(syn, f, 0), svc),
             with_before(fwd_est_step("ACK after backend 0 was deleted", ack, to_backend(ack, f, 0), svc),
                         [=](Fixture& fx) {
                           fx.delete_backend(f.client.v6, backend_id(f, TCP, 0));
                           move_slot1_to_backend1(f, TCP)(fx);
                         }),
             reply_step("reply from the deleted backend still translated", reply, from_vip(reply, f), svc)});
}

// ---- rule 4: replies --------------------------------------------------------------------------

Case reply(const char* name, const Fam& f, std::uint8_t proto) {
  const Pkt first = client_pkt(f, proto);
  const Pkt r = reply_pkt(f, proto, 0);
  const Pkt next = client_next(f, proto);
  const std::uint32_t svc = svc_id(f, proto);
  return mk(name, {service(f, proto, {0})},
            {fwd_new_step("first packet", first, to_backend(first, f, 0), svc),
             reply_step("reply from the backend", r, from_vip(r, f), svc),
             fwd_est_step("client continues", next, to_backend(next, f, 0), svc),
             reply_step("second reply", r.seqs(7001, 1019).flags(kAck), from_vip(r.seqs(7001, 1019).flags(kAck), f),
                        svc)});
}

Case reply_other_tuple(const char* name, const Fam& f) {
  const Pkt first = client_pkt(f, TCP);
  const Pkt r = reply_pkt(f, TCP, 0);
  const Pkt other_sport = r.from(f.be[0], kTcpBPort + 1);
  const Pkt other_dport = r.to(f.client, kCPort + 1);
  const Pkt other_backend = reply_pkt(f, TCP, 1);
  return mk(name, {service(f, TCP, {0})},
            {fwd_new_step("first packet", first, to_backend(first, f, 0), svc_id(f, TCP)),
             pass_step("backend answers from another port", build(other_sport)),
             pass_step("backend answers to another client port", build(other_dport)),
             pass_step("another backend answers the client", build(other_backend))});
}

// A direct conversation with the backend from the port an earlier service flow used: the old
// flow's REPLY entry must not turn the backend's answers into ones from the VIP.
Case direct_after_service(const char* name, const Fam& f, std::uint8_t proto) {
  const Pkt first = client_pkt(f, proto);
  const Pkt r = reply_pkt(f, proto, 0);
  const Pkt direct = to_backend(first, f, 0);  // same client port, straight to the backend
  return mk(name, {service(f, proto, {0})},
            {fwd_new_step("first packet to the service", first, to_backend(first, f, 0),
                          svc_id(f, proto)),
             reply_step("reply from the backend", r, from_vip(r, f), svc_id(f, proto)),
             with_after(pass_step("direct packet to the backend from the same port", build(direct)),
                        [f](Fixture& fx) {
                          CHECK_MESSAGE(fx.ct_entries(f.client.v6) == 0,
                                        "the old service flow's entries were kept");
                        }),
             pass_step("the backend's answer to the direct packet stays untouched", build(r))});
}

const std::array kCases = std::to_array<Case>({
    direct_after_service("tc_pod_lb4_udp_direct_after_service_flow", kV4, UDP),
    direct_after_service("tc_pod_lb6_udp_direct_after_service_flow", kV6, UDP),
    direct_after_service("tc_pod_lb4_tcp_direct_syn_after_service_flow", kV4, TCP),
    direct_after_service("tc_pod_lb6_tcp_direct_syn_after_service_flow", kV6, TCP),
    // rule 1
    pass_case("tc_pod_pass_arp", both_services(kV4), arp_request(kMacClient, kV4.client, kV4.vip)),
    pass_case("tc_pod_pass_lb4_icmp_echo_to_vip", both_services(kV4), build(icmp_echo(kV4.client, kV4.vip))),
    pass_case("tc_pod_pass_lb6_icmp6_echo_to_vip", both_services(kV6), build(icmp_echo(kV6.client, kV6.vip))),
    pass_case("tc_pod_pass_lb4_udp_to_tcp_only_port", {service(kV4, TCP, {0})},
              build(udp(kV4.client, kCPort, kV4.vip, kTcpVPort))),
    pass_case("tc_pod_pass_lb6_udp_to_tcp_only_port", {service(kV6, TCP, {0})},
              build(udp(kV6.client, kCPort, kV6.vip, kTcpVPort))),
    pass_case("tc_pod_pass_lb4_tcp_to_udp_only_port", {service(kV4, UDP, {0})},
              build(tcp(kV4.client, kCPort, kV4.vip, kUdpVPort))),
    pass_case("tc_pod_pass_lb4_tcp_unknown_port_on_vip", both_services(kV4),
              build(tcp(kV4.client, kCPort, kV4.vip, 81))),
    pass_case("tc_pod_pass_lb6_tcp_unknown_port_on_vip", both_services(kV6),
              build(tcp(kV6.client, kCPort, kV6.vip, 81))),
    pass_case("tc_pod_pass_lb4_tcp_not_a_service", both_services(kV4),
              build(tcp(kV4.client, kCPort, kV4.other, kTcpVPort))),
    pass_case("tc_pod_pass_lb6_udp_not_a_service", both_services(kV6),
              build(udp(kV6.client, kCPort, kV6.other, kUdpVPort))),
    // rule 2
    first_packet("tc_pod_lb4_tcp_first_packet", kV4, TCP),
    first_packet("tc_pod_lb4_udp_first_packet", kV4, UDP),
    first_packet("tc_pod_lb6_tcp_first_packet", kV6, TCP),
    first_packet("tc_pod_lb6_udp_first_packet", kV6, UDP),
    first_packet_payload("tc_pod_lb4_udp_first_packet_odd_payload", kV4, UDP, Bytes{1, 2, 3, 4, 5, 6, 7, 8, 9}),
    first_packet_payload("tc_pod_lb6_tcp_first_packet_with_data", kV6, TCP, Bytes(333, 0xa5)),
    translated_syn_with_options("tc_pod_lb4_tcp_syn_with_tcp_options", kV4),
    translated_syn_with_options("tc_pod_lb6_tcp_syn_with_tcp_options", kV6),
    // rule 3
    established("tc_pod_lb4_tcp_established_keeps_backend", kV4, TCP),
    established("tc_pod_lb4_udp_established_keeps_backend", kV4, UDP),
    established("tc_pod_lb6_tcp_established_keeps_backend", kV6, TCP),
    established("tc_pod_lb6_udp_established_keeps_backend", kV6, UDP),
    syn_retransmit("tc_pod_lb4_tcp_syn_retransmit_keeps_live_backend", kV4),
    new_after_flows_cleared("tc_pod_lb4_tcp_new_flow_after_conntrack_cleared", kV4),
    repin("tc_pod_lb4_udp_repin_after_backend_deleted", kV4, UDP, false),
    repin("tc_pod_lb6_udp_repin_after_backend_deleted", kV6, UDP, false),
    repin("tc_pod_lb4_udp_repin_after_backend_moved_to_other_service", kV4, UDP, true),
    repin("tc_pod_lb4_tcp_syn_repin_after_backend_deleted", kV4, TCP, false),
    repin("tc_pod_lb6_tcp_syn_repin_after_backend_deleted", kV6, TCP, false),
    tcp_ack_keeps_deleted_backend("tc_pod_lb4_tcp_ack_keeps_deleted_backend", kV4),
    // rule 4
    reply("tc_pod_lb4_tcp_reply", kV4, TCP),
    reply("tc_pod_lb4_udp_reply", kV4, UDP),
    reply("tc_pod_lb6_tcp_reply", kV6, TCP),
    reply("tc_pod_lb6_udp_reply", kV6, UDP),
    reply_other_tuple("tc_pod_lb4_reply_other_tuple_passes", kV4),
    reply_other_tuple("tc_pod_lb6_reply_other_tuple_passes", kV6),
});

[[maybe_unused]] const int kRegistered = register_table<kCases>(__FILE__);

}  // namespace
