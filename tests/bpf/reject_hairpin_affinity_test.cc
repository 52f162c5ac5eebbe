// Reject for services without backends (TCP: RST, UDP: ICMP port unreachable), hairpin,
// ClientIP session affinity.
#include <memory>

#include "cases.h"

using namespace bpftest;

namespace {

constexpr std::uint8_t TCP = kProtoTcp;
constexpr std::uint8_t UDP = kProtoUdp;

// ---- rule 5: count == 0 -> ICMP port unreachable, TC_ACT_REDIRECT ---------------------------

Case reject(const char* name, const Fam& f, const Pkt& in, Service svc) {
  const std::uint32_t id = svc.svc_id;
  return mk(name, {std::move(svc)},
            {with_after(reject_step("packet to a service without backends", in, id), [=](Fixture& fx) {
              CHECK_MESSAGE(fx.ct_entries(f.client.v6) == 0, "a rejected packet created conntrack entries");
            })});
}

Case reject(const char* name, const Fam& f, const Pkt& in) {
  return reject(name, f, in, service(f, in.proto, {}));
}

// A 208-byte destination options header (PadN options): the quote is 40 + 208 + 8 = 256 bytes.
Ext6 long_dest_opts() {
  Ext6 e = dest_opts();
  e.opts.clear();
  for (int k = 0; k < 2; ++k) {
    e.opts.push_back(1);    // PadN
    e.opts.push_back(101);  // 101 bytes of padding
    e.opts.insert(e.opts.end(), 101, 0);
  }
  return e;  // 2 + 206 = 208 bytes
}

// count == 0 although a stale slot 1 and its backend are still in the maps.
Service stale_slot_service(const Fam& f) {
  Service s = service(f, UDP, {0});
  s.count = 0;
  return s;
}

// ---- rule 6: hairpin ----------------------------------------------------------------------

Case hairpin(const char* name, const Fam& f, std::uint8_t proto) {
  Service s = service(f, proto, {});
  Backend self;
  self.id = backend_id(f, proto, 0);
  self.addr = f.client;  // the client is its own backend
  self.port = bport(proto);
  s.backends.push_back(self);
  const std::uint32_t svc = s.svc_id;
  const Pkt in = client_pkt(f, proto);
  const Pkt out = in.from(f.vip, kCPort).to(f.client, bport(proto));  // source port kept
  Pkt back = l4(proto, f.client, bport(proto), f.vip, kCPort);         // the backend answers the VIP
  if (proto == TCP) back = back.flags(kSyn | kAck).seqs(7000, 1001);
  else back = back.with_payload({'h', 'a', 'i', 'r'});
  const Pkt back_out = back.from(f.vip, vport(proto)).to(f.client, kCPort);
  return mk(name, {s},
            {with_after(fwd_new_step("client -> VIP, backend is the client itself", in, out, svc),
                        [=](Fixture& fx) {
                          check_ct_pair(fx, in, out, self.id, svc);
                          const auto fwd = fx.ct(CtKey{in.src, in.dst, in.sport, in.dport, in.proto});
                          REQUIRE(fwd.has_value());
                          CHECK_MESSAGE((fwd->flags & LB_CT_F_SNAT) != 0, "FORWARD entry lacks LB_CT_F_SNAT");
                          CHECK_MESSAGE(fwd->snat_addr == f.vip,
                                        "FORWARD snat_addr " << fwd->snat_addr.str() << ", expected the VIP");
                        }),
             reply_step("the backend (client) answers the VIP", back, back_out, svc)});
}

// ---- rule 7: ClientIP affinity --------------------------------------------------------------

Service affinity_service(const Fam& f, std::vector<int> backends) {
  return service(f, TCP, std::move(backends), LB_SVC_F_AFFINITY, kAffinityTimeout);
}

std::vector<Bytes> candidates(const Pkt& in, const Fam& f) {
  std::vector<Bytes> c;
  for (int i = 0; i < 4; ++i) c.push_back(build(to_backend(in, f, i)));
  return c;
}

int which_backend(const Bytes& out, const Pkt& in, const Fam& f) {
  for (int i = 0; i < 4; ++i)
    if (out == build(to_backend(in, f, i))) return i;
  return -1;
}

// New flows from one client all land on the backend chosen for the first one.
Case affinity_same_backend(const char* name, const Fam& f) {
  const std::uint32_t svc = svc_id(f, TCP);
  return mk(name, {affinity_service(f, {0, 1, 2, 3})}, {}, [=](Fixture& fx, const std::vector<Bytes>&) {
    const Pkt first = client_pkt(f, TCP);
    Step s = fwd_new_step("first flow", first, first, svc);
    s.out_any = candidates(first, f);
    const std::uint64_t t0 = monotonic_ns();
    const int k = which_backend(run_step(fx, s, {svc}), first, f);
    const std::uint64_t t1 = monotonic_ns();
    REQUIRE_MESSAGE(k >= 0, "first flow went to no known backend");
    const auto a = fx.affinity(f.client, svc);
    REQUIRE_MESSAGE(a.has_value(), "no affinity entry {client, svc_id} after a new flow");
    CHECK(a->backend_id == backend_id(f, TCP, k));
    CHECK(a->last_used_ns >= t0);
    CHECK(a->last_used_ns <= t1);
    for (std::uint16_t j = 1; j <= 12; ++j) {
      const Pkt in = client_pkt(f, TCP, static_cast<std::uint16_t>(kCPort + j));
      run_step(fx, fwd_new_step("new flow from the same client, port " + std::to_string(kCPort + j), in,
                                to_backend(in, f, k), svc),
               {svc});
    }
    CHECK(fx.affinity_entries(f.client.v6) == 1);
  });
}

enum class AffinityEntry { Fresh, Expired, BackendGone, BackendOtherSvc };

// Slots point only at backend 1; the affinity entry names backend 0.
Case affinity_entry(const char* name, const Fam& f, AffinityEntry kind) {
  const std::uint32_t svc = svc_id(f, TCP);
  const Pkt in = client_pkt(f, TCP);
  const int want = kind == AffinityEntry::Fresh ? 0 : 1;
  auto written = std::make_shared<std::uint64_t>(0);
  auto before_run = std::make_shared<std::uint64_t>(0);
  const char* what = kind == AffinityEntry::Fresh         ? "fresh entry for backend 0 (not in any slot)"
                     : kind == AffinityEntry::Expired     ? "expired entry for backend 0"
                     : kind == AffinityEntry::BackendGone ? "fresh entry for a deleted backend"
                                                          : "fresh entry for a backend of another service";
  Step s = fwd_new_step(what, in, to_backend(in, f, want), svc);
  s.before = [=](Fixture& fx) {
    if (kind != AffinityEntry::BackendGone) {
      Backend b = backend(f, TCP, 0);
      if (kind == AffinityEntry::BackendOtherSvc) b.svc_id = 99;
      fx.put_backend(b, TCP, svc);
    }
    const std::uint64_t now = monotonic_ns();
    const std::uint64_t stale = (kAffinityTimeout + 5) * 1'000'000'000ull;
    REQUIRE_MESSAGE(now > stale, "CLOCK_MONOTONIC too small to fake an expired entry");
    *written = kind == AffinityEntry::Expired ? now - stale : now;
    fx.put_affinity(f.client, svc, lb_affinity_value{.last_used_ns = *written, .backend_id = backend_id(f, TCP, 0), .pad = 0});
    *before_run = monotonic_ns();
  };
  s.after = [=](Fixture& fx) {
    const auto a = fx.affinity(f.client, svc);
    REQUIRE_MESSAGE(a.has_value(), "affinity entry vanished");
    CHECK_MESSAGE(a->backend_id == backend_id(f, TCP, want), "affinity entry names backend id " << a->backend_id);
    CHECK_MESSAGE(a->last_used_ns >= *before_run, "affinity last_used_ns not refreshed by the new connection");
    CHECK(a->last_used_ns <= monotonic_ns());
  };
  return mk(name, {affinity_service(f, {1})}, {s});
}

// Without LB_SVC_F_AFFINITY no entry is ever created.
Case no_affinity_without_flag(const char* name, const Fam& f) {
  const std::uint32_t svc = svc_id(f, TCP);
  std::vector<Step> steps;
  for (std::uint16_t j = 0; j < 3; ++j) {
    const Pkt in = client_pkt(f, TCP, static_cast<std::uint16_t>(kCPort + j));
    Step s = fwd_new_step("new flow " + std::to_string(j), in, in, svc);
    s.out_any = candidates(in, f);
    s.after = [=](Fixture& fx) {
      CHECK_MESSAGE(fx.affinity_entries(f.client.v6) == 0, "affinity entry created without LB_SVC_F_AFFINITY");
    };
    steps.push_back(std::move(s));
  }
  return mk(name, {service(f, TCP, {0, 1, 2, 3})}, std::move(steps));
}

const std::array kCases = std::to_array<Case>({
    // rule 5
    reject("tc_pod_lb4_tcp_reject_no_backend", kV4, client_pkt(kV4, TCP)),
    reject("tc_pod_lb4_udp_reject_no_backend", kV4, client_pkt(kV4, UDP)),
    reject("tc_pod_lb6_tcp_reject_no_backend", kV6, client_pkt(kV6, TCP)),
    reject("tc_pod_lb6_udp_reject_no_backend", kV6, client_pkt(kV6, UDP)),
    reject("tc_pod_lb4_tcp_reset_drops_ip_options", kV4,
           client_pkt(kV4, TCP).with_options({0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00})),
    reject("tc_pod_lb4_udp_reject_quotes_ip_options", kV4,
           client_pkt(kV4, UDP).with_options({0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00})),
    reject("tc_pod_lb4_tcp_reset_takes_seq_from_ack", kV4,
           client_next(kV4, TCP).with_payload(Bytes(100, 0x21))),
    reject("tc_pod_lb4_udp_reject_trims_payload", kV4, client_pkt(kV4, UDP).with_payload(Bytes(600, 0x33))),
    reject("tc_pod_lb6_udp_reject_quotes_ext_headers", kV6,
           client_pkt(kV6, UDP).with_ext({hop_by_hop(), dest_opts()}).with_payload(Bytes(300, 0x44))),
    reject("tc_pod_lb6_udp_reject_quotes_long_dest_opts", kV6, client_pkt(kV6, UDP).with_ext({long_dest_opts()})),
    reject("tc_pod_lb6_tcp_reset_with_long_dest_opts", kV6, client_pkt(kV6, TCP).with_ext({long_dest_opts()})),
    reject("tc_pod_lb6_tcp_reset_acks_syn_fin_and_payload", kV6,
           client_pkt(kV6, TCP).flags(kSyn | kFin).with_payload(Bytes(900, 0x55))),
    reject("tc_pod_lb6_tcp_reset_takes_seq_from_ack", kV6, client_next(kV6, TCP).with_payload(Bytes(900, 0x55))),
    reject("tc_pod_lb4_udp_reject_count_zero_with_stale_slot", kV4, client_pkt(kV4, UDP), stale_slot_service(kV4)),
    // rule 6
    hairpin("tc_pod_lb4_tcp_hairpin", kV4, TCP),
    hairpin("tc_pod_lb4_udp_hairpin", kV4, UDP),
    hairpin("tc_pod_lb6_tcp_hairpin", kV6, TCP),
    hairpin("tc_pod_lb6_udp_hairpin", kV6, UDP),
    // rule 7
    affinity_same_backend("tc_pod_lb4_tcp_affinity_same_backend_for_new_flows", kV4),
    affinity_same_backend("tc_pod_lb6_tcp_affinity_same_backend_for_new_flows", kV6),
    affinity_entry("tc_pod_lb4_tcp_affinity_fresh_entry_wins", kV4, AffinityEntry::Fresh),
    affinity_entry("tc_pod_lb6_tcp_affinity_fresh_entry_wins", kV6, AffinityEntry::Fresh),
    affinity_entry("tc_pod_lb4_tcp_affinity_expired_entry_rechosen", kV4, AffinityEntry::Expired),
    affinity_entry("tc_pod_lb6_tcp_affinity_expired_entry_rechosen", kV6, AffinityEntry::Expired),
    affinity_entry("tc_pod_lb4_tcp_affinity_deleted_backend_rechosen", kV4, AffinityEntry::BackendGone),
    affinity_entry("tc_pod_lb6_tcp_affinity_deleted_backend_rechosen", kV6, AffinityEntry::BackendGone),
    affinity_entry("tc_pod_lb4_tcp_affinity_backend_of_other_service_rechosen", kV4, AffinityEntry::BackendOtherSvc),
    no_affinity_without_flag("tc_pod_lb4_tcp_no_affinity_without_flag", kV4),
    no_affinity_without_flag("tc_pod_lb6_tcp_no_affinity_without_flag", kV6),
});

[[maybe_unused]] const int kRegistered = register_table<kCases>(__FILE__);

}  // namespace
