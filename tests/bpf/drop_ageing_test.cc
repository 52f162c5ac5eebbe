// DROP for a frontend whose policy leaves no usable endpoint (LB_SVC_F_DROP_EMPTY, count 0),
// and flow liveness: a flow lives while either of its two conntrack entries is fresh.
#include "cases.h"

using namespace bpftest;

namespace {

constexpr std::uint8_t TCP = kProtoTcp;
constexpr std::uint8_t UDP = kProtoUdp;

void expect_no_flows(Fixture& fx) {
  CHECK_MESSAGE(fx.ct_entries(false) == 0, "lb4 conntrack entries created");
  CHECK_MESSAGE(fx.ct_entries(true) == 0, "lb6 conntrack entries created");
}

Service drop_service(const Fam& f, std::uint8_t proto) {
  Service s = service(f, proto, {}, LB_SVC_F_DROP_EMPTY);
  return s;
}

// Dropped as received, counted as drop_no_local_endpoint; the service's counters do not move
// (it has no drop counter; "rejected" counts answers sent).
Step drop_step(std::string what, const Pkt& in) {
  Step s;
  s.what = std::move(what);
  s.in = build(in);
  s.verdict = kTcActShot;
  s.out = s.in;
  s.stat = LB_STAT_DROP_NO_LOCAL_ENDPOINT;
  s.after = expect_no_flows;
  return s;
}

// ---- count == 0 with LB_SVC_F_DROP_EMPTY -> TC_ACT_SHOT, no state ----------------------------

Case drop_empty(const char* name, const Fam& f, std::uint8_t proto) {
  return mk(name, {drop_service(f, proto)},
            {drop_step("new flow to a frontend without usable endpoints", client_pkt(f, proto)),
             drop_step("its retransmission is dropped again", client_pkt(f, proto))});
}

// The flag only matters at count 0: the same master without it rejects, with backends it balances.
Case drop_flag_toggled(const char* name, const Fam& f, std::uint8_t proto) {
  const std::uint32_t svc = svc_id(f, proto);
  const Pkt in = client_pkt(f, proto);
  Service no_flag = service(f, proto, {});
  Service with_backend = service(f, proto, {0}, LB_SVC_F_DROP_EMPTY);
  return mk(name, {drop_service(f, proto)},
            {drop_step("flag set, count 0", in),
             with_before(with_after(reject_step("flag cleared, count 0: REJECT as before", in, svc),
                                    expect_no_flows),
                         [=](Fixture& fx) { fx.put_master(no_flag); }),
             with_before(fwd_new_step("flag set, one backend: balanced", in, to_backend(in, f, 0), svc),
                         [=](Fixture& fx) { fx.add_service(with_backend); })});
}

// An established flow keeps its backend when the frontend switches to DROP; new flows drop.
Case drop_keeps_established(const char* name, const Fam& f, std::uint8_t proto) {
  const std::uint32_t svc = svc_id(f, proto);
  const Pkt first = client_pkt(f, proto);
  const Pkt next = client_next(f, proto);
  const Pkt reply = reply_pkt(f, proto, 0);
  const Service emptied = drop_service(f, proto);
  Step other = drop_step("a new flow from another port is dropped",
                         client_pkt(f, proto, static_cast<std::uint16_t>(kCPort + 1)));
  other.after = [=](Fixture& fx) { CHECK(fx.ct_entries(f.client.v6) == 2); };
  return mk(name, {service(f, proto, {0})},
            {fwd_new_step("first packet", first, to_backend(first, f, 0), svc),
             with_before(fwd_est_step("later packet after the switch to DROP", next, to_backend(next, f, 0), svc),
                         [=](Fixture& fx) { fx.put_master(emptied); }),
             reply_step("the backend's answer", reply, from_vip(reply, f), svc), std::move(other)});
}

// ---- liveness: either entry keeps the flow ----------------------------------------------------

constexpr std::uint64_t kOld = 200'000'000'000ull;  // 200 s: past UDP's 120 s

CtKey fwd_key(const Pkt& in) { return CtKey{in.src, in.dst, in.sport, in.dport, in.proto}; }
CtKey reply_key(const Pkt& out) { return CtKey{out.dst, out.src, out.dport, out.sport, out.proto}; }

std::function<void(Fixture&)> age(CtKey k) {
  return [=](Fixture& fx) {
    const std::uint64_t now = monotonic_ns();
    REQUIRE_MESSAGE(now > kOld, "CLOCK_MONOTONIC too small to fake an old entry");
    fx.set_ct_last_seen(k, now - kOld);
  };
}

// A one-way sender refreshes only FORWARD; the backend's rare answer must still be translated.
Case reply_entry_aged_forward_fresh(const char* name, const Fam& f) {
  const std::uint32_t svc = svc_id(f, UDP);
  const Pkt first = client_pkt(f, UDP);
  const Pkt out = to_backend(first, f, 0);
  const Pkt reply = reply_pkt(f, UDP, 0);
  Step s = with_before(reply_step("answer after 200 s of one-way traffic", reply, from_vip(reply, f), svc),
                       age(reply_key(out)));
  s.after = [=](Fixture& fx) {
    const auto r = fx.ct(reply_key(out));
    REQUIRE(r.has_value());
    CHECK_MESSAGE(r->last_seen_ns + 1'000'000'000ull >= monotonic_ns(), "REPLY entry not refreshed");
  };
  return mk(name, {service(f, UDP, {0})}, {fwd_new_step("first datagram", first, out, svc), s});
}

// A server push refreshes only REPLY; the client's next datagram stays on its backend.
Case forward_entry_aged_reply_fresh(const char* name, const Fam& f) {
  const std::uint32_t svc = svc_id(f, UDP);
  const Pkt first = client_pkt(f, UDP);
  const Pkt out = to_backend(first, f, 0);
  const Pkt next = client_next(f, UDP);
  return mk(name, {service(f, UDP, {0})},
            {fwd_new_step("first datagram", first, out, svc),
             with_before(fwd_est_step("client datagram after 200 s of server push", next, to_backend(next, f, 0), svc),
                         age(fwd_key(first)))});
}

// Both entries old: the flow is over. The answer is no longer translated, the client picks again.
Case both_entries_aged(const char* name, const Fam& f) {
  const std::uint32_t svc = svc_id(f, UDP);
  const Pkt first = client_pkt(f, UDP);
  const Pkt out = to_backend(first, f, 0);
  const Pkt reply = reply_pkt(f, UDP, 0);
  const Pkt next = client_next(f, UDP);
  return mk(name, {service(f, UDP, {0})},
            {fwd_new_step("first datagram", first, out, svc),
             with_before(pass_step("answer after both entries aged: not translated", build(reply)),
                         [=](Fixture& fx) {
                           age(fwd_key(first))(fx);
                           age(reply_key(out))(fx);
                         }),
             fwd_new_step("the client's next datagram is a new flow", next, to_backend(next, f, 0), svc)});
}

const std::array kCases = std::to_array<Case>({
    drop_empty("tc_pod_lb4_tcp_drop_empty_frontend", kV4, TCP),
    drop_empty("tc_pod_lb4_udp_drop_empty_frontend", kV4, UDP),
    drop_empty("tc_pod_lb6_tcp_drop_empty_frontend", kV6, TCP),
    drop_empty("tc_pod_lb6_udp_drop_empty_frontend", kV6, UDP),
    drop_flag_toggled("tc_pod_lb4_udp_drop_flag_only_at_count_zero", kV4, UDP),
    drop_flag_toggled("tc_pod_lb6_tcp_drop_flag_only_at_count_zero", kV6, TCP),
    drop_keeps_established("tc_pod_lb4_tcp_drop_keeps_established_flow", kV4, TCP),
    drop_keeps_established("tc_pod_lb6_udp_drop_keeps_established_flow", kV6, UDP),
    reply_entry_aged_forward_fresh("tc_pod_lb4_udp_one_way_flow_reply_still_translated", kV4),
    reply_entry_aged_forward_fresh("tc_pod_lb6_udp_one_way_flow_reply_still_translated", kV6),
    forward_entry_aged_reply_fresh("tc_pod_lb4_udp_server_push_keeps_backend", kV4),
    forward_entry_aged_reply_fresh("tc_pod_lb6_udp_server_push_keeps_backend", kV6),
    both_entries_aged("tc_pod_lb4_udp_both_entries_aged_flow_over", kV4),
});

[[maybe_unused]] const int kRegistered = register_table<kCases>(__FILE__);

}  // namespace
