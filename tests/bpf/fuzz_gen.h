// Inputs for the packet fuzzer (fuzz_test.cc): a realistic set of services in the test network
// (netns.h), a reader of raw frames written independently of the datapath's parser, and the
// generator of runs: random frames, valid packets of that service set, answers and ICMP errors
// derived from what the datapath sent, and structure-aware mutations of all of them.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "fixture.h"
#include "netns.h"
#include "packet.h"

namespace bpftest::fuzz {

// ---- raw frames ------------------------------------------------------------------------------

// What a frame says about itself, read without trusting any field: every offset is checked
// against the frame's size. Not the datapath's parser: the test's own reading of the RFCs.
struct View {
  std::uint16_t ethertype = 0;
  bool ip = false;           // a whole IPv4 (version 4, ihl >= 5) or IPv6 fixed header
  bool v6 = false;
  IpAddr src{}, dst{};
  bool chain_ok = false;     // IPv4 header with options / IPv6 extension chain inside the frame
  std::size_t l3_len = 0;    // IPv4 header with options, IPv6 header + extension headers
  std::uint8_t proto = 0;    // the upper-layer protocol (after the extension headers)
  bool frag = false;         // a fragment (MF or offset > 0)
  bool later = false;        // a fragment without the L4 header (offset > 0)
  bool routing_left = false; // IPv6 routing header with segments left
  std::size_t l4 = 0;        // offset of the upper-layer header in the frame
  bool l4_ok = false;        // TCP >= 20, UDP/ICMP >= 8 bytes at l4 (not a later fragment)
  std::uint16_t sport = 0, dport = 0;  // host order, TCP/UDP with l4_ok
  std::size_t pseudo_dst = 0;  // IPv6: offset of the pseudo header's destination (RFC 8200 8.1)
  bool tcp_or_udp() const { return proto == kProtoTcp || proto == kProtoUdp; }
  bool icmp() const { return (!v6 && proto == kProtoIcmp) || (v6 && proto == kProtoIcmp6); }
};

View view(std::span<const std::uint8_t> f);

// Recomputes the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum of a frame (not of
// fragments) after a raw mutation, so that the checksum properties still apply to it. Lengths
// are left as the mutation made them.
void fix_checksums(Bytes& f);

// Where a frame's DSR option names a service: IPv4 option 0x9a as the sole option, IPv6
// destination option 0x1b first in a destination options header right after the fixed header.
std::optional<std::pair<IpAddr, std::uint16_t>> dsr_option_of(std::span<const std::uint8_t> f);

// ---- the service set ---------------------------------------------------------------------------

// One frontend as the agent writes it: the ALL-scope master and slots, the EXTERNAL scope for
// externalTrafficPolicy Local, backends only a Maglev table names, source ranges.
struct Front {
  std::string what;
  Service all;
  std::optional<Service> ext;
  std::vector<Backend> maglev;  // in the backend map, named by the table only
  std::vector<std::uint32_t> table;  // backend ids the Maglev table cycles through (none: no table)
  std::vector<std::pair<IpAddr, std::uint32_t>> ranges;  // allowed client prefixes
  bool external() const { return (all.flags & LB_SVC_F_EXTERNAL) != 0; }
  // Every backend a flow of this frontend may be sent to (all scopes, Maglev table).
  std::vector<const Backend*> backends() const;
  bool backend(const IpAddr& a, std::optional<std::uint16_t> port) const;
  bool ext_backend(const IpAddr& a, std::optional<std::uint16_t> port) const;
  bool in_ranges(const IpAddr& client) const;
};

// Addresses of one family in the test network (netns.h).
struct Net {
  IpAddr n0, n1;             // this node: n0's and n1's addresses (NodePorts, SNAT sources)
  IpAddr client, client2;    // outside: on n0's link, and behind no route
  IpAddr router, node2;      // on n0's link
  IpAddr pod[3];             // this node's pods (behind pod0)
  IpAddr remote[2];          // node2's pods (behind n0)
  IpAddr far;                // node3's pod (behind n1, MTU 1400)
  IpAddr unresolved;         // behind a gateway without neighbour entry
  IpAddr cip[4];             // ClusterIPs
  IpAddr lb[2];              // LoadBalancer IPs
  IpAddr ext_ip;             // an ExternalIP
  IpAddr internet;           // no service, not this node's
};

const Net& net(bool v6);

inline constexpr std::uint32_t kMaglevSize = 251;  // a prime; the fixture's table size

struct World {
  std::vector<Front> fronts;            // both families
  std::vector<IpAddr> vips;             // every frontend address (deduplicated)
  std::vector<IpAddr> addresses;        // every address of the test network and services
  std::uint32_t max_svc_id = 0;
  const Front* by_id(std::uint32_t id) const;
  // The frontend of dst:dport/proto (ALL scope master), if any.
  const Front* front_of(const IpAddr& dst, std::uint16_t dport, std::uint8_t proto) const;
  bool is_vip(const IpAddr& a) const;
  bool is_node(const IpAddr& a) const;
  // Installs every frontend, backend, Maglev table, source range and native device.
  void install(Fixture& fx) const;
};

World make_world();

// ---- runs ----------------------------------------------------------------------------------

struct Shot {
  Prog prog = Prog::PodIngress;
  Dev dev = Dev::None;
  Bytes in;
  std::optional<Pkt> desc;  // the description `in` was built from (none: raw bytes)
  std::string how;          // how the generator made it, for the failure report
};

// A frame the datapath sent on after a translation: material for answers, later packets of the
// flow and ICMP errors about it.
struct Sent {
  Prog prog;
  Dev dev;
  std::optional<Pkt> in;  // the input, when built from a description
  Bytes out;
};

using Rng = std::mt19937_64;

class Generator {
 public:
  Generator(const World& w, std::uint64_t seed) : w_(w), rng_(seed) {}
  Shot next();
  // Remembers the output of a translation (bounded: the oldest go).
  void sent(Sent s);
  void forget() { pool_.clear(); }

 private:
  std::uint32_t below(std::uint32_t n) { return n == 0 ? 0 : static_cast<std::uint32_t>(rng_() % n); }
  bool chance(std::uint32_t percent) { return below(100) < percent; }
  template <typename T>
  const T& pick(const std::vector<T>& v) { return v[below(static_cast<std::uint32_t>(v.size()))]; }
  IpAddr any_addr(bool v6);
  Bytes random_bytes(std::size_t n);
  std::uint16_t any_port();

  Shot random_frame();
  Shot valid();
  Shot derived();
  void mutate(Pkt& p);
  void mutate_icmp(Pkt& p);
  void mutate_raw(Bytes& f);
  Pkt icmp_about(const Bytes& quoted, const IpAddr& from, const IpAddr& to);
  // The program and device a packet from `from` arrives at (mostly where it really would).
  void place(Shot& s, const IpAddr& from);

  const World& w_;
  Rng rng_;
  std::vector<Sent> pool_;
  std::size_t next_slot_ = 0;
};

std::string prog_name(Prog p);
std::string dev_name(Dev d);

}  // namespace bpftest::fuzz
