// Socket-LB and removed backends: which connected UDP sockets to destroy. connect() pointed such
// a socket at a backend once; its datagrams go there for as long as it lives (sendmsg() on a
// connected socket runs no program), so when the backend leaves its service the socket would
// blackhole (DNS clients, Cilium's recurring complaint). kube-proxy deletes UDP conntrack
// entries in that case; the socket equivalent is to destroy it (the application sees an error
// and opens a new one, which connect() balances again). Pure; agent/datapath/sock_destroy reads
// the kernel (reverse map, sock_diag) and destroys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "agent/planner/desired.h"
#include "agent/reconcile/reconcile.h"

namespace sluice {

/// One entry of lb{4,6}_sock_revnat_v1, decoded (ports in host order).
struct sock_revnat_entry {
  uint64_t cookie = 0;        ///< the socket (bpf_get_socket_cookie)
  uint64_t netns_cookie = 0;  ///< its network namespace
  ip_addr backend;            ///< what the socket was pointed at
  uint16_t backend_port = 0;
  ip_addr vip;                ///< the service it stands for
  uint16_t vip_port = 0;
  uint8_t proto = 0;
  uint32_t svc_id = 0;
  uint32_t backend_id = 0;

  bool operator==(const sock_revnat_entry&) const = default;
};

/// The UDP entries whose backend (address and port) is no longer a backend of their frontend
/// (svc_id) in `mirror`, the writer's view of the maps, or whose frontend is gone: kube-proxy's
/// rule for UDP conntrack. A terminating but serving endpoint is still a backend (the planner
/// leaves non-serving ones out). TCP entries are never stale here: TCP drains gracefully.
std::vector<sock_revnat_entry> stale_udp_entries(std::span<const sock_revnat_entry> entries,
                                                 const map_state& mirror);

/// A UDP socket as sock_diag lists it (ports in host order).
struct udp_socket {
  uint64_t cookie = 0;
  ip_addr peer;  ///< the connected destination (an IPv6 socket's may be v4-mapped)
  uint16_t peer_port = 0;
};

/// Indices into `sockets` of those to destroy: connected to exactly the backend of a stale entry
/// with their cookie. A socket connected elsewhere since (or never through the service) and
/// unconnected sockets (their next sendmsg() picks a backend again) are left alone. A
/// v4-mapped peer (::ffff:a.b.c.d) matches the IPv4 backend.
std::vector<size_t> sockets_to_destroy(std::span<const udp_socket> sockets,
                                       std::span<const sock_revnat_entry> stale);

}  // namespace sluice
