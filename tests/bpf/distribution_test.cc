// Random backend choice: 400 new flows over 4 backends, every output is one of the 4 and each
// backend gets a fair share (at least 40 of an expected 100; P(fail) for a fair choice < 1e-15).
#include "cases.h"

using namespace bpftest;

namespace {

Case distribution(const char* name, const Fam& f, std::uint8_t proto) {
  const std::uint32_t svc = svc_id(f, proto);
  return mk(name, {service(f, proto, {0, 1, 2, 3})}, {}, [=](Fixture& fx, const std::vector<Bytes>&) {
    std::array<int, 4> hits{};
    int unknown = 0;
    for (int n = 0; n < 400; ++n) {
      const Pkt in = client_pkt(f, proto, static_cast<std::uint16_t>(20000 + n));
      Step s = fwd_new_step("flow " + std::to_string(n), in, in, svc);
      for (int i = 0; i < 4; ++i) s.out_any.push_back(build(to_backend(in, f, i)));
      const Bytes out = run_step(fx, s, {svc});
      int k = -1;
      for (int i = 0; i < 4; ++i)
        if (out == s.out_any[static_cast<std::size_t>(i)]) k = i;
      if (k < 0) ++unknown;
      else ++hits[static_cast<std::size_t>(k)];
    }
    CHECK(unknown == 0);
    for (int i = 0; i < 4; ++i) {
      CAPTURE(i);
      CHECK_MESSAGE(hits[static_cast<std::size_t>(i)] >= 40, "backend " << i << " chosen " << hits[static_cast<std::size_t>(i)]
                                                                       << " times of 400 (" << hits[0] << "/" << hits[1]
                                                                       << "/" << hits[2] << "/" << hits[3] << ")");
    }
    CHECK(fx.svc_stats(svc).new_flows == 400);
    CHECK(fx.ct_entries(f.client.v6) == 800);
  });
}

const std::array kCases = std::to_array<Case>({
    distribution("tc_pod_lb4_tcp_distribution_400_flows", kV4, kProtoTcp),
    distribution("tc_pod_lb6_udp_distribution_400_flows", kV6, kProtoUdp),
});

[[maybe_unused]] const int kRegistered = register_table<kCases>(__FILE__);

}  // namespace
