// Loads the sluice skeleton (unpinned, so every fixture has fresh maps), fills its maps and runs
// packets through lb_pod_ingress (or the north-south programs lb_node_xdp, lb_node_ingress,
// lb_node_egress) with BPF_PROG_TEST_RUN. Never attaches anything.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "maps/sluice_abi.h"
#include "packet.h"

#include "sluice_bpf.skel.h"

using Skel = sluice_bpf;

namespace bpftest {

inline constexpr std::uint32_t kTcActOk = 0;
inline constexpr std::uint32_t kTcActShot = 2;
inline constexpr std::uint32_t kTcActRedirect = 7;

inline constexpr std::uint32_t kXdpAborted = 0;
inline constexpr std::uint32_t kXdpDrop = 1;
inline constexpr std::uint32_t kXdpPass = 2;
inline constexpr std::uint32_t kXdpTx = 3;
inline constexpr std::uint32_t kXdpRedirect = 4;

// The program a packet runs through.
enum class Prog : std::uint8_t {
  PodIngress,   // lb_pod_ingress (tc)
  NodeXdp,      // lb_node_xdp (XDP on a native device)
  NodeIngress,  // lb_node_ingress (tc ingress of a native device)
  NodeEgress,   // lb_node_egress (tc egress of a native device)
};

// Read-only data set between open and load; unset fields keep the object's defaults.
struct FixtureOptions {
  std::optional<std::uint32_t> lb_mode;        // enum lb_mode
  std::optional<std::uint16_t> snat_port_min;  // host order
  std::optional<std::uint16_t> snat_port_max;
  std::optional<std::uint32_t> maglev_size;    // entries of every Maglev inner map
  std::optional<std::uint64_t> host_netns_cookie;  // socket-LB: the node's network namespace
  std::optional<bool> sock_host_only;              // socket-LB: translate there only
};

struct Backend {
  std::uint32_t id = 0;
  IpAddr addr{};
  std::uint16_t port = 0;                 // host order
  std::uint8_t state = LB_BACKEND_ACTIVE;
  std::optional<std::uint32_t> svc_id;    // default: the service's
  std::optional<std::uint8_t> proto;      // default: the service's
};

struct Service {
  IpAddr vip{};
  std::uint16_t port = 0;                 // host order
  std::uint8_t proto = kProtoTcp;
  std::uint32_t svc_id = 0;
  std::vector<Backend> backends;          // slots 1..n in this order
  std::uint16_t flags = 0;                // LB_SVC_F_*
  std::uint32_t affinity_timeout = 0;     // seconds
  std::optional<std::uint16_t> count;     // default: backends.size()
  std::uint8_t scope = LB_SCOPE_ALL;      // enum lb_scope of the master and slot entries
};

struct CtKey {
  IpAddr saddr{}, daddr{};
  std::uint16_t sport = 0, dport = 0;     // host order
  std::uint8_t proto = 0;
};

struct CtValue {
  IpAddr nat_addr{}, snat_addr{};
  std::uint16_t nat_port = 0;             // host order
  std::uint16_t snat_port = 0;            // host order
  std::uint8_t dir = 0, flags = 0;
  std::uint32_t backend_id = 0, svc_id = 0;
  std::uint64_t created_ns = 0, last_seen_ns = 0;
};

struct RunResult {
  int err = 0;                            // bpf_prog_test_run_opts() return (-errno)
  std::uint32_t retval = 0;               // program verdict
  Bytes out;                              // the frame (XDP: without its metadata)
  Bytes meta;                             // XDP metadata the program left in front of it
};

// lb_node_xdp's metadata mark on a frame it handled and passed up (bpf/sluice.bpf.c
// LB_XDP_DONE, host order: XDP runs on the CPU that reads it).
inline constexpr std::uint32_t kXdpDoneMark = 0x51ce0d0e;

using StatArray = std::array<std::uint64_t, LB_STAT_MAX>;  // packets per enum lb_stat

// CLOCK_MONOTONIC_COARSE in ns: the datapath's clock (bpf_ktime_get_coarse_ns(), lb_now()).
std::uint64_t monotonic_ns();

class Fixture {
 public:
  Fixture() : Fixture(FixtureOptions{}) {}
  explicit Fixture(const FixtureOptions& opts);
  ~Fixture();
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  Skel* skel() const { return skel_; }

  // Master entry, slots 1..n and the backends.
  void add_service(const Service& s);
  void put_master(const Service& s);
  void put_slot(const Service& s, std::uint16_t slot, std::uint32_t backend_id);
  void put_backend(const Backend& b, std::uint8_t proto, std::uint32_t svc_id);
  void delete_backend(bool v6, std::uint32_t id);

  RunResult run(const Bytes& in);
  // Runs `prog`. ifindex 0: no context (as run()). Otherwise XDP gets struct xdp_md
  // {.ingress_ifindex}, tc gets struct __sk_buff {.ifindex, .ingress_ifindex} (ingress
  // programs) or {.ifindex} (egress); the device must exist in the test's network namespace.
  RunResult run(Prog prog, const Bytes& in, std::uint32_t ifindex);

  // lb_devices_v1[ifindex]: a native device and its SNAT addresses (an IpAddr{} = none).
  void put_device(std::uint32_t ifindex, const IpAddr& addr4, const IpAddr& addr6, std::uint32_t flags = 0);
  // lb{4,6}_src_ranges_v1: prefix/len allowed for svc_id.
  void put_src_range(std::uint32_t svc_id, const IpAddr& prefix, std::uint32_t len);
  // lb_maglev_v2[svc_id] = a new inner table (one element) holding `table`.
  void put_maglev(std::uint32_t svc_id, const std::vector<std::uint32_t>& table);

  StatArray stats() const;                          // summed over CPUs
  lb_svc_stat_value svc_stats(std::uint32_t svc_id) const;  // summed over CPUs

  std::optional<CtValue> ct(const CtKey& k) const;
  std::size_t ct_entries(bool v6) const;
  // Rewrites last_seen_ns of an existing conntrack entry (ageing a flow without waiting).
  void set_ct_last_seen(const CtKey& k, std::uint64_t last_seen_ns);
  std::optional<lb_affinity_value> affinity(const IpAddr& client, std::uint32_t svc_id) const;
  void put_affinity(const IpAddr& client, std::uint32_t svc_id, const lb_affinity_value& v);
  std::size_t affinity_entries(bool v6) const;

  std::optional<lb_frag_value> frag(const IpAddr& saddr, const IpAddr& daddr, std::uint32_t id,
                                    std::uint8_t proto) const;

  // Forgets every flow: conntrack, affinity and fragment entries of both families.
  void clear_flows();

 private:
  Skel* skel_ = nullptr;
  int ncpus_ = 0;
};

std::size_t map_entries(const bpf_map* m);
void clear_map(const bpf_map* m);

}  // namespace bpftest
