// The words after OBJECT COMMAND (bpftool grammar: keyword value pairs), parsed without any
// kernel access.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tools/ctl/packet.h"
#include "tools/ctl/snapshot.h"

namespace sluice::ctl {

/// Where a traced packet enters the datapath.
enum class hook : uint8_t {
  pod,         ///< lb_pod_ingress: tc ingress of a pod-facing device (what a pod sends)
  xdp,         ///< lb_node_xdp: XDP on a native device (traffic from outside the node)
  tc_ingress,  ///< lb_node_ingress: tc ingress of a native device (no XDP, or XDP passed it)
  tc_egress,   ///< lb_node_egress: tc egress of a native device (what the node sends)
};

std::string hook_name(hook h);         // "pod", "xdp", "tc-ingress", "tc-egress"
const char* hook_program(hook h);      // the program's name (LB_*_PROG)

struct trace_request {
  hook where = hook::pod;
  std::string dev;        ///< device the packet arrives on ("" = none: no FIB context)
  packet_spec packet;
  bool dmac_given = false;  ///< else the device's own address (when dev is given)
};

/// [pod|xdp|tc-ingress|tc-egress] [dev IFNAME] {tcp|udp|icmp} SRC DST [flags F,...]
/// [len N] [ttl N] [smac MAC] [dmac MAC]. SRC/DST: ADDR:PORT, [ADDR6]:PORT, or ADDR (icmp).
std::expected<trace_request, std::string> parse_trace_args(const std::vector<std::string>& words);

/// "10.0.0.1:80", "[fd00::1]:80", "10.0.0.1", "fd00::1" -> address and port (0 when absent).
std::optional<std::pair<ip_addr, uint16_t>> parse_endpoint(const std::string& s);

/// ct list / ct flush: [address ADDR] [port PORT] [service SVC].
struct ct_filter {
  std::optional<ip_addr> address;  ///< any address of the entry (tuple or translation)
  std::optional<uint16_t> port;    ///< any port of the entry
  std::optional<std::string> service;  ///< see resolve_service()

  bool empty() const { return !address && !port && !service; }
};
std::expected<ct_filter, std::string> parse_ct_filter(const std::vector<std::string>& words);

/// The svc ids a service word names: a number (svc id), NAMESPACE/NAME (every frontend of that
/// Service, from lb_svc_info_v1), or a frontend ADDR:PORT[/tcp|udp]. Error when none match.
std::expected<std::set<uint32_t>, std::string> resolve_service(const snapshot& s,
                                                               const std::string& word);

/// Whether a conntrack entry passes the filter (`svc_ids`: the resolved service, if any).
bool ct_matches(const ct_entry& e, const ct_filter& f, const std::set<uint32_t>* svc_ids);

}  // namespace sluice::ctl
