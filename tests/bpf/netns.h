// The test process's own network namespace for the north-south programs: bpf_fib_lookup()
// needs real devices, addresses, routes and neighbours to decide "this node" vs "another node"
// and to fill in the MAC addresses. Created once per process (unshare(CLONE_NEWNET)), the first
// time a case asks for it; it goes away with the process. Nothing outside it is touched.
//
//   n0 (veth, peer n0peer)  02:50:00:00:00:11  192.168.50.11/24  fd50::11/64   native device
//       client  192.168.50.1  / fd50::1   02:50:00:00:00:01  (permanent neighbour)
//       node2   192.168.50.12 / fd50::12  02:50:00:00:00:12  (permanent neighbour)
//       10.201.2.0/24 via node2, fd01:2::/64 via node2        (node2's pods)
//       10.201.4.0/24 via 192.168.50.14, fd01:4::/64 via fd50::14 (no neighbour: unresolved)
//   n1 (veth, peer n1peer)  02:51:00:00:00:11  192.168.51.11/24  fd51::11/64   native device,
//                           MTU 1400 (the way out that a large datagram does not fit)
//       node3   192.168.51.13 / fd51::13  02:51:00:00:00:13  (permanent neighbour)
//       10.201.3.0/24 via node3, fd01:3::/64 via node3        (node3's pods)
//   pod0 (veth, peer pod0peer)  10.201.1.0/24, fd01:1::/64   this node's pods
//   forwarding on (bpf_fib_lookup() refuses otherwise)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "packet.h"

namespace bpftest {

enum class Dev : std::uint8_t { None, N0, N1, Pod0 };

inline constexpr Mac kMacN0 = mac("02:50:00:00:00:11");
inline constexpr Mac kMacN1 = mac("02:51:00:00:00:11");
inline constexpr Mac kMacNClient = mac("02:50:00:00:00:01");
inline constexpr Mac kMacNode2 = mac("02:50:00:00:00:12");
inline constexpr Mac kMacNode3 = mac("02:51:00:00:00:13");
inline constexpr Mac kMacRouter = mac("02:50:00:00:00:fe");  // sends ICMP errors; no neighbour

struct TestNet {
  bool ok = false;
  std::string why;  // when !ok: what failed
  std::uint32_t n0 = 0, n1 = 0, pod0 = 0;
  std::uint32_t ifindex(Dev d) const { return d == Dev::N0 ? n0 : d == Dev::N1 ? n1 : d == Dev::Pod0 ? pod0 : 0; }
};

// Runs each shell command (stderr folded in) in the calling thread's network namespace; stops
// at the first failure, with its output in why.
bool run_commands(const std::vector<std::string>& cmds, std::string& why);

// Sets the namespace up on the first call (never from static initialisation: main() checks for
// root first). Later calls return the same result.
const TestNet& test_net();

}  // namespace bpftest
