#include "agent/reconcile/stale_sockets.h"

#include <netinet/in.h>

#include <algorithm>
#include <set>
#include <tuple>

namespace sluice {
namespace {

// ::ffff:a.b.c.d as a.b.c.d; any other address unchanged.
ip_addr unmapped(const ip_addr& a) {
  static constexpr std::array<uint8_t, 12> prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (a.family != ip_family::v6 || !std::equal(prefix.begin(), prefix.end(), a.bytes.begin())) {
    return a;
  }
  ip_addr v4;
  std::copy(a.bytes.begin() + 12, a.bytes.end(), v4.bytes.begin());
  return v4;
}

}  // namespace

std::vector<sock_revnat_entry> stale_udp_entries(std::span<const sock_revnat_entry> entries,
                                                 const map_state& mirror) {
  std::vector<sock_revnat_entry> out;
  const map_index& index = mirror.index();
  for (const sock_revnat_entry& e : entries) {
    if (e.proto != IPPROTO_UDP) {
      continue;
    }
    bool serves = false;
    if (const auto it = index.backends_by_svc.find(e.svc_id); it != index.backends_by_svc.end()) {
      serves = std::any_of(it->second.begin(), it->second.end(), [&](const auto& id_record) {
        const backend_record& b = *id_record.second;
        return b.addr == e.backend && b.port == e.backend_port && b.proto == e.proto;
      });
    }
    if (!serves) {
      out.push_back(e);
    }
  }
  return out;
}

std::vector<size_t> sockets_to_destroy(std::span<const udp_socket> sockets,
                                       std::span<const sock_revnat_entry> stale) {
  std::set<std::tuple<uint64_t, ip_addr, uint16_t>> wanted;
  for (const sock_revnat_entry& e : stale) {
    wanted.emplace(e.cookie, unmapped(e.backend), e.backend_port);
  }
  std::vector<size_t> out;
  for (size_t i = 0; i < sockets.size(); ++i) {
    const udp_socket& s = sockets[i];
    if (s.peer_port == 0) {
      continue;  // not connected
    }
    if (wanted.contains(std::make_tuple(s.cookie, unmapped(s.peer), s.peer_port))) {
      out.push_back(i);
    }
  }
  return out;
}

}  // namespace sluice
