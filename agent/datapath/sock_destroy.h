// Destroys the connected UDP sockets socket-LB pointed at a backend that has left its service
// (reconcile/stale_sockets.h decides which), with netlink SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY)
// in each network namespace that holds one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/datapath/error.h"
#include "agent/reconcile/reconcile.h"
#include "agent/reconcile/stale_sockets.h"

struct sluice_bpf;

namespace sluice {

/// Every entry of lb4_sock_revnat_v1 and lb6_sock_revnat_v1 (batch lookup).
result<std::vector<sock_revnat_entry>> read_sock_revnat(::sluice_bpf* skel);

struct sock_destroy_counts {
  size_t entries = 0;     ///< reverse entries read
  size_t stale = 0;       ///< UDP entries whose backend left (deleted from the map afterwards)
  size_t namespaces = 0;  ///< network namespaces searched (those holding a stale entry's socket)
  size_t destroyed = 0;   ///< sockets destroyed
};

/// One pass: reads the reverse maps, finds the stale UDP entries against `mirror` (the writer's
/// view), and destroys the matching connected sockets. Namespaces are found through the
/// processes of cgroup_path and its descendants (the sockets socket-LB translated belong to
/// them); each is entered on a thread of its own (setns) that ends with the pass, so the
/// agent's threads never change namespace. The stale entries are deleted afterwards, found or
/// not: a socket not found now (its process left the cgroup, it closed) is not found later.
result<sock_destroy_counts> destroy_stale_udp_sockets(::sluice_bpf* skel, const map_state& mirror,
                                                      const std::string& cgroup_path);

/// The UDP sockets connected to anything in the calling thread's network namespace, both
/// families (sock_diag dump). For tests and diagnostics.
result<std::vector<udp_socket>> list_connected_udp_sockets();

}  // namespace sluice
