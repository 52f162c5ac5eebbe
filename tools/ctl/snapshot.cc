#include "tools/ctl/snapshot.h"

#include <netinet/in.h>

#include <fmt/format.h>

#include <cstring>
#include <utility>

#include "agent/model/model.h"

namespace sluice::ctl {

const frontend_entry* snapshot::frontend_of(uint32_t svc_id) const {
  for (const frontend_entry& f : frontends) {
    if (f.master && f.master->svc_id == svc_id) {
      return &f;
    }
  }
  return nullptr;
}

std::string stat_name(uint32_t stat) {
  static const char* const names[LB_STAT_MAX] = LB_STAT_NAMES_INIT;
  if (stat < LB_STAT_MAX && names[stat] != nullptr) {
    return names[stat];
  }
  return fmt::format("stat_{}", stat);
}

namespace {

template <typename T, size_t N>
std::vector<std::string> bit_names(T flags, const std::pair<T, const char*> (&names)[N]) {
  std::vector<std::string> out;
  T known = 0;
  for (const auto& [bit, name] : names) {
    known = static_cast<T>(known | bit);
    if (flags & bit) {
      out.emplace_back(name);
    }
  }
  if (const T rest = static_cast<T>(flags & ~known); rest != 0) {
    out.push_back(fmt::format("{:#x}", rest));
  }
  return out;
}

}  // namespace

std::vector<std::string> svc_flag_names(uint16_t flags) {
  static constexpr std::pair<uint16_t, const char*> names[] = {
      {LB_SVC_F_AFFINITY, "affinity"},
      {LB_SVC_F_DROP_EMPTY, "drop_empty"},
      {LB_SVC_F_EXTERNAL, "external"},
      {LB_SVC_F_EXT_LOCAL, "ext_local"},
      {LB_SVC_F_SOURCE_RANGES, "source_ranges"},
      {LB_SVC_F_MAGLEV, "maglev"},
      {LB_SVC_F_LOOPBACK, "loopback"},
      {LB_SVC_F_OUTSIDE_ONLY, "outside_only"},
  };
  return bit_names(flags, names);
}

std::vector<std::string> ct_flag_names(uint8_t flags) {
  static constexpr std::pair<uint8_t, const char*> names[] = {
      {LB_CT_F_SNAT, "snat"},           {LB_CT_F_FIN_FWD, "fin_fwd"},
      {LB_CT_F_FIN_REPLY, "fin_reply"}, {LB_CT_F_RST, "rst"},
      {LB_CT_F_SEEN_REPLY, "seen_reply"}, {LB_CT_F_DSR, "dsr"},
      {LB_CT_F_REMOTE, "remote"},       {LB_CT_F_VIP_LOCAL, "vip_local"},
  };
  return bit_names(flags, names);
}

std::string kind_name(uint8_t kind) {
  switch (kind) {
    case LB_KIND_CLUSTER_IP:
      return "ClusterIP";
    case LB_KIND_NODE_PORT:
      return "NodePort";
    case LB_KIND_LOAD_BALANCER:
      return "LoadBalancer";
    case LB_KIND_EXTERNAL_IP:
      return "ExternalIP";
    case LB_KIND_HOST_PORT:
      return "HostPort";
    default:
      return "";
  }
}

std::string unproxied_reason_name(uint8_t reason) {
  switch (reason) {
    case LB_UNPROXIED_HEADLESS:
      return "headless";
    case LB_UNPROXIED_EXTERNAL_NAME:
      return "external_name";
    case LB_UNPROXIED_NO_CLUSTER_IP:
      return "no_cluster_ip";
    case LB_UNPROXIED_OTHER_PROXY:
      return "other_proxy";
    default:
      return fmt::format("reason_{}", reason);
  }
}

std::string proto_name(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    case IPPROTO_ICMP:
      return "ICMP";
    case IPPROTO_ICMPV6:
      return "ICMPv6";
    default:
      return std::to_string(proto);
  }
}

std::string backend_state_name(uint8_t state) {
  return state == LB_BACKEND_TERMINATING ? "terminating" : "active";
}

std::string endpoint_str(const ip_addr& a, uint16_t port) {
  return a.family == ip_family::v6 ? fmt::format("[{}]:{}", format_ip(a), port)
                                   : fmt::format("{}:{}", format_ip(a), port);
}

std::string frontend_str(const ip_addr& vip, uint16_t port, uint8_t proto) {
  return fmt::format("{}/{}", endpoint_str(vip, port), proto_name(proto));
}

ip_addr addr_of(const void* raw, bool v6) {
  ip_addr a;
  a.family = v6 ? ip_family::v6 : ip_family::v4;
  std::memcpy(a.bytes.data(), raw, v6 ? 16 : 4);
  return a;
}

}  // namespace sluice::ctl
