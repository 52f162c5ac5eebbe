#include "tools/ctl/args.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cctype>

#include "agent/model/model.h"

namespace sluice::ctl {

std::string hook_name(hook h) {
  switch (h) {
    case hook::pod:
      return "pod";
    case hook::xdp:
      return "xdp";
    case hook::tc_ingress:
      return "tc-ingress";
    case hook::tc_egress:
      return "tc-egress";
  }
  return "?";
}

const char* hook_program(hook h) {
  switch (h) {
    case hook::pod:
      return LB_POD_INGRESS_PROG;
    case hook::xdp:
      return LB_NODE_XDP_PROG;
    case hook::tc_ingress:
      return LB_NODE_INGRESS_PROG;
    case hook::tc_egress:
      return LB_NODE_EGRESS_PROG;
  }
  return "";
}

namespace {

template <typename T>
std::optional<T> number(const std::string& s, T max) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || v > max) {
    return std::nullopt;
  }
  return static_cast<T>(v);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

std::optional<std::pair<ip_addr, uint16_t>> parse_endpoint(const std::string& s) {
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string::npos) {
      return std::nullopt;
    }
    const auto a = parse_ip(s.substr(1, close - 1));
    if (!a || a->family != ip_family::v6) {
      return std::nullopt;
    }
    if (close + 1 == s.size()) {
      return std::pair{*a, uint16_t{0}};
    }
    if (s[close + 1] != ':') {
      return std::nullopt;
    }
    const auto port = number<uint16_t>(s.substr(close + 2), 65535);
    return port ? std::optional(std::pair{*a, *port}) : std::nullopt;
  }
  if (const auto a = parse_ip(s)) {
    return std::pair{*a, uint16_t{0}};  // a bare address (IPv6 without brackets included)
  }
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || s.find(':') != colon) {
    return std::nullopt;
  }
  const auto a = parse_ip(s.substr(0, colon));
  const auto port = number<uint16_t>(s.substr(colon + 1), 65535);
  if (!a || !port || a->family != ip_family::v4) {
    return std::nullopt;
  }
  return std::pair{*a, *port};
}

std::expected<trace_request, std::string> parse_trace_args(const std::vector<std::string>& words) {
  trace_request r;
  std::optional<uint8_t> proto;
  std::optional<uint8_t> flags;
  std::vector<std::string> ends;
  const auto fail = [](std::string why) { return std::unexpected(std::move(why)); };
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string w = lower(words[i]);
    const bool has_value = i + 1 < words.size();
    if (w == "pod" || w == "xdp" || w == "tc-ingress" || w == "tc-egress") {
      r.where = w == "pod" ? hook::pod : w == "xdp" ? hook::xdp
                : w == "tc-ingress" ? hook::tc_ingress : hook::tc_egress;
    } else if (w == "tcp" || w == "udp" || w == "icmp") {
      proto = w == "tcp" ? IPPROTO_TCP : w == "udp" ? IPPROTO_UDP : IPPROTO_ICMP;
    } else if (w == "dev" || w == "flags" || w == "len" || w == "ttl" || w == "smac" ||
               w == "dmac") {
      if (!has_value) {
        return fail(fmt::format("'{}' needs a value", w));
      }
      const std::string& v = words[++i];
      if (w == "dev") {
        r.dev = v;
      } else if (w == "flags") {
        flags = parse_tcp_flags(v);
        if (!flags) {
          return fail(fmt::format("bad TCP flags '{}' (syn, ack, fin, rst, psh, comma-separated)", v));
        }
      } else if (w == "len") {
        const auto n = number<size_t>(v, 1400);
        if (!n) {
          return fail(fmt::format("bad payload length '{}' (0..1400)", v));
        }
        r.packet.payload = *n;
      } else if (w == "ttl") {
        const auto n = number<uint8_t>(v, 255);
        if (!n || *n == 0) {
          return fail(fmt::format("bad ttl '{}' (1..255)", v));
        }
        r.packet.ttl = *n;
      } else {
        const auto m = parse_mac(v);
        if (!m) {
          return fail(fmt::format("bad MAC address '{}'", v));
        }
        (w == "smac" ? r.packet.smac : r.packet.dmac) = *m;
        r.dmac_given = r.dmac_given || w == "dmac";
      }
    } else {
      ends.push_back(words[i]);
    }
  }
  if (!proto) {
    return fail("which protocol? (tcp, udp or icmp)");
  }
  if (ends.size() != 2) {
    return fail(ends.size() < 2 ? "need a source and a destination (ADDR:PORT ADDR:PORT)"
                                : fmt::format("unexpected '{}'", ends[2]));
  }
  const auto src = parse_endpoint(ends[0]);
  const auto dst = parse_endpoint(ends[1]);
  if (!src) {
    return fail(fmt::format("bad source '{}' (ADDR:PORT or [ADDR6]:PORT)", ends[0]));
  }
  if (!dst) {
    return fail(fmt::format("bad destination '{}' (ADDR:PORT or [ADDR6]:PORT)", ends[1]));
  }
  if (src->first.family != dst->first.family) {
    return fail("source and destination are of different address families");
  }
  if (*proto != IPPROTO_ICMP && (src->second == 0 || dst->second == 0)) {
    return fail("TCP and UDP need both ports (ADDR:PORT)");
  }
  if (flags && *proto != IPPROTO_TCP) {
    return fail("flags are for tcp");
  }
  r.packet.proto = *proto;
  r.packet.src = src->first;
  r.packet.dst = dst->first;
  r.packet.sport = *proto == IPPROTO_ICMP ? 0x51ce : src->second;  // echo: identifier
  r.packet.dport = *proto == IPPROTO_ICMP ? 1 : dst->second;       // echo: sequence
  r.packet.tcp_flags = flags.value_or(tcp_syn);
  if (r.where != hook::pod && r.dev.empty()) {
    return fail(fmt::format("hook {} needs 'dev IFNAME' (the native device)", hook_name(r.where)));
  }
  return r;
}

std::expected<ct_filter, std::string> parse_ct_filter(const std::vector<std::string>& words) {
  ct_filter f;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string w = lower(words[i]);
    if (i + 1 >= words.size()) {
      return std::unexpected(fmt::format("'{}' needs a value (address, port or service)", w));
    }
    const std::string& v = words[++i];
    if (w == "address" || w == "addr") {
      const auto a = parse_ip(v);
      if (!a) {
        return std::unexpected(fmt::format("bad address '{}'", v));
      }
      f.address = *a;
    } else if (w == "port") {
      const auto p = number<uint16_t>(v, 65535);
      if (!p) {
        return std::unexpected(fmt::format("bad port '{}'", v));
      }
      f.port = *p;
    } else if (w == "service" || w == "svc") {
      f.service = v;
    } else {
      return std::unexpected(fmt::format("unknown filter '{}' (address, port, service)", w));
    }
  }
  return f;
}

std::expected<std::set<uint32_t>, std::string> resolve_service(const snapshot& s,
                                                               const std::string& word) {
  std::set<uint32_t> ids;
  if (const auto id = number<uint32_t>(word, UINT32_MAX)) {
    ids.insert(*id);
    return ids;
  }
  if (const size_t slash = word.find('/');
      slash != std::string::npos && !parse_endpoint(word.substr(0, slash))) {
    const std::string ns = word.substr(0, slash), name = word.substr(slash + 1);
    for (const auto& [id, info] : s.info) {
      if (field_str(info.ns) == ns && field_str(info.name) == name) {
        ids.insert(id);
      }
    }
    if (ids.empty()) {
      return std::unexpected(fmt::format("no frontend of service {} in the maps", word));
    }
    return ids;
  }
  std::string ep = word;
  std::optional<uint8_t> proto;
  if (const size_t slash = word.rfind('/'); slash != std::string::npos) {
    const std::string p = lower(word.substr(slash + 1));
    if (p != "tcp" && p != "udp") {
      return std::unexpected(fmt::format("bad protocol in '{}' (tcp or udp)", word));
    }
    proto = p == "tcp" ? IPPROTO_TCP : IPPROTO_UDP;
    ep = word.substr(0, slash);
  }
  const auto e = parse_endpoint(ep);
  if (!e) {
    return std::unexpected(fmt::format(
        "bad service '{}' (a svc id, NAMESPACE/NAME or ADDR:PORT[/tcp|udp])", word));
  }
  for (const frontend_entry& f : s.frontends) {
    if (f.master && f.vip == e->first && f.port == e->second && (!proto || f.proto == *proto)) {
      ids.insert(f.master->svc_id);
    }
  }
  if (ids.empty()) {
    return std::unexpected(fmt::format("no frontend {} in the maps", word));
  }
  return ids;
}

bool ct_matches(const ct_entry& e, const ct_filter& f, const std::set<uint32_t>* svc_ids) {
  if (svc_ids != nullptr && !svc_ids->contains(e.state.svc_id)) {
    return false;
  }
  const bool snat = e.state.flags & LB_CT_F_SNAT;
  if (f.address && !(e.saddr == *f.address || e.daddr == *f.address ||
                     e.nat_addr == *f.address || (snat && e.snat_addr == *f.address))) {
    return false;
  }
  if (f.port) {
    const uint16_t nat_port = ntohs(e.state.nat_port), snat_port = ntohs(e.state.snat_port);
    if (!(e.sport == *f.port || e.dport == *f.port || nat_port == *f.port ||
          (snat && snat_port == *f.port))) {
      return false;
    }
  }
  return true;
}

}  // namespace sluice::ctl
