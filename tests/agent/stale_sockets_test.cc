// Socket-LB and removed backends: which reverse entries are stale (kube-proxy's UDP conntrack
// rule, applied to sockets) and which connected UDP sockets are destroyed for them.
#include "agent/reconcile/stale_sockets.h"

#include <doctest/doctest.h>
#include <netinet/in.h>

#include "test_helpers.h"

namespace sluice {
namespace {

using test::ip;

// One frontend 10.96.0.10:53 (svc_id 7 in the mirror) with the backends given, UDP.
map_state mirror_with(std::vector<std::pair<const char*, uint16_t>> backends,
                      uint8_t proto = IPPROTO_UDP) {
  map_state st;
  frontend_record rec;
  rec.svc_id = 7;
  uint32_t id = 100;
  for (const auto& [addr, port] : backends) {
    st.backends[id] = {ip(addr), port, proto, LB_BACKEND_ACTIVE, 7};
    rec.slots.push_back(id++);
  }
  st.frontends[{ip("10.96.0.10"), 53, proto}] = rec;
  return st;
}

sock_revnat_entry entry(uint64_t cookie, const char* backend, uint16_t port,
                        uint8_t proto = IPPROTO_UDP, uint32_t svc_id = 7) {
  sock_revnat_entry e;
  e.cookie = cookie;
  e.netns_cookie = 4096;
  e.backend = ip(backend);
  e.backend_port = port;
  e.vip = ip("10.96.0.10");
  e.vip_port = 53;
  e.proto = proto;
  e.svc_id = svc_id;
  e.backend_id = 100;
  return e;
}

}  // namespace

TEST_CASE("stale_udp_entries: a backend that left its service, at its address and port") {
  const map_state st = mirror_with({{"10.244.0.12", 5353}, {"10.244.0.13", 5353}});
  const std::vector<sock_revnat_entry> entries = {
      entry(1, "10.244.0.12", 5353),                 // still a backend
      entry(2, "10.244.0.14", 5353),                 // left
      entry(3, "10.244.0.13", 5354),                 // same pod, another port: left
      entry(4, "10.244.0.14", 5353, IPPROTO_TCP),    // TCP drains: never stale
      entry(5, "10.244.0.12", 5353, IPPROTO_UDP, 8), // its frontend is gone
  };
  const auto stale = stale_udp_entries(entries, st);
  std::vector<uint64_t> cookies;
  for (const auto& e : stale) {
    cookies.push_back(e.cookie);
  }
  CHECK(cookies == std::vector<uint64_t>{2, 3, 5});
}

TEST_CASE("stale_udp_entries: a terminating (still serving) backend is not stale") {
  map_state st = mirror_with({{"10.244.0.12", 5353}});
  st.backends.begin()->second.state = LB_BACKEND_TERMINATING;
  st.reindex();
  CHECK(stale_udp_entries(std::vector{entry(1, "10.244.0.12", 5353)}, st).empty());
}

TEST_CASE("stale_udp_entries: IPv6 backends compare as IPv6") {
  map_state st = mirror_with({{"fd00:244::12", 5353}});
  CHECK(stale_udp_entries(std::vector{entry(1, "fd00:244::12", 5353)}, st).empty());
  CHECK(stale_udp_entries(std::vector{entry(1, "fd00:244::13", 5353)}, st).size() == 1);
}

TEST_CASE("sockets_to_destroy: connected to the stale backend, with the entry's cookie") {
  const std::vector<sock_revnat_entry> stale = {entry(10, "10.244.0.14", 5353),
                                                entry(11, "10.244.0.15", 5353)};
  const std::vector<udp_socket> sockets = {
      {10, ip("10.244.0.14"), 5353},         // 0: the one
      {10, ip("10.244.0.16"), 5353},         // 1: connected elsewhere since: left alone
      {12, ip("10.244.0.14"), 5353},         // 2: another socket straight to the pod: left
      {11, ip("::ffff:10.244.0.15"), 5353},  // 3: a v4-mapped IPv6 socket: the one
      {11, ip("0.0.0.0"), 0},                // 4: not connected
      {10, ip("10.244.0.14"), 5354},         // 5: other port
  };
  CHECK(sockets_to_destroy(sockets, stale) == std::vector<size_t>{0, 3});
  CHECK(sockets_to_destroy(sockets, {}).empty());
}

}  // namespace sluice
