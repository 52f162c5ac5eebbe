// sluicectl: read the pinned datapath maps. bpftool grammar (OBJECT COMMAND), human tables by
// default, -j for JSON (errors too). Exit codes: 0 ok, 1 error, 2 usage.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "agent/datapath/map_access.h"
#include "agent/model/model.h"
#include "maps/sluice_abi.h"

namespace {

using json = nlohmann::json;

struct ctx {
  std::string root = "/sys/fs/bpf/sluice";
  bool json_out = false;
};

[[noreturn]] void fail(const ctx& c, const std::string& msg) {
  if (c.json_out) {
    fmt::print("{}\n", json{{"error", msg}}.dump());
  } else {
    fmt::print(stderr, "Error: {}\n", msg);
  }
  std::exit(1);
}

class pinned_map {
 public:
  pinned_map(const ctx& c, const char* name) {
    const std::string path = c.root + "/" + name;
    fd_ = bpf_obj_get(path.c_str());
    if (fd_ < 0) {
      fail(c, fmt::format("open {}: {} (is sluice-agent running with --bpffs-root {}?)", path,
                          strerror(errno), c.root));
    }
  }
  ~pinned_map() { close(fd_); }
  pinned_map(const pinned_map&) = delete;
  pinned_map& operator=(const pinned_map&) = delete;
  int fd() const { return fd_; }

  template <typename K, typename V, typename Fn>
  void each(Fn&& fn) const {
    sluice::for_each_entry<K, V>(fd_, std::forward<Fn>(fn));
  }

 private:
  int fd_ = -1;
};

std::string addr_str(const void* raw, size_t len) {
  sluice::ip_addr a;
  a.family = len == 4 ? sluice::ip_family::v4 : sluice::ip_family::v6;
  std::memcpy(a.bytes.data(), raw, len);
  return sluice::format_ip(a);
}

std::string endpoint_str(const std::string& addr, uint16_t port, bool v6) {
  return v6 ? fmt::format("[{}]:{}", addr, port) : fmt::format("{}:{}", addr, port);
}

const char* proto_str(uint8_t p) {
  switch (p) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    default:
      return "?";
  }
}

// enum lb_svc_flags as comma-separated words ("" for none).
std::string flag_names(uint16_t flags) {
  static constexpr std::pair<uint16_t, const char*> names[] = {
      {LB_SVC_F_AFFINITY, "affinity"},     {LB_SVC_F_DROP_EMPTY, "drop_empty"},
      {LB_SVC_F_EXTERNAL, "external"},     {LB_SVC_F_EXT_LOCAL, "ext_local"},
      {LB_SVC_F_SOURCE_RANGES, "source_ranges"}, {LB_SVC_F_MAGLEV, "maglev"},
      {LB_SVC_F_LOOPBACK, "loopback"},     {LB_SVC_F_OUTSIDE_ONLY, "outside_only"}};
  std::string out;
  for (const auto& [bit, name] : names) {
    if (flags & bit) {
      out += out.empty() ? "" : ",";
      out += name;
    }
  }
  return out;
}

template <typename SvcKey, typename Backend>
void collect_services(const ctx& c, const char* svc_map, const char* be_map, bool v6,
                      const pinned_map& stats, json& out) {
  pinned_map svcs(c, svc_map), bes(c, be_map);
  std::map<uint32_t, Backend> backends;
  bes.each<uint32_t, Backend>([&](uint32_t id, const Backend& b) { backends[id] = b; });
  struct fe {
    SvcKey key;
    lb_svc_value master{};
    std::map<uint16_t, uint32_t> slots;
  };
  std::map<std::tuple<std::string, uint16_t, uint8_t>, fe> fes;
  svcs.each<SvcKey, lb_svc_value>([&](const SvcKey& k, const lb_svc_value& v) {
    if (k.scope != LB_SCOPE_ALL) {
      return;  // eTP=Local's EXTERNAL entries share the key; listed through the ALL master
    }
    auto& f = fes[{addr_str(&k.vip, sizeof(k.vip)), ntohs(k.port), k.proto}];
    f.key = k;
    if (k.slot == 0) {
      f.master = v;
    } else {
      f.slots[k.slot] = v.backend_id;
    }
  });
  for (const auto& [id, f] : fes) {
    const auto& [vip, port, proto] = id;
    lb_svc_stat_value st{};
    sluice::percpu_sum(stats.fd(), f.master.svc_id, st);
    json j{{"frontend", endpoint_str(vip, port, v6)},
           {"protocol", proto_str(proto)},
           {"svc_id", f.master.svc_id},
           {"affinity_timeout", f.master.affinity_timeout},
           {"flags", flag_names(f.master.flags)},
           {"new_flows", st.new_flows},
           {"fwd_packets", st.fwd_packets},
           {"reply_packets", st.reply_packets},
           {"rejected", st.rejected},
           {"backends", json::array()}};
    for (uint16_t s = 1; s <= f.master.count; ++s) {
      auto it = f.slots.find(s);
      if (it == f.slots.end()) {
        continue;
      }
      auto b = backends.find(it->second);
      if (b == backends.end()) {
        continue;
      }
      j["backends"].push_back(
          {{"id", it->second},
           {"address", endpoint_str(addr_str(&b->second.addr, sizeof(b->second.addr)),
                                    ntohs(b->second.port), v6)},
           {"state", b->second.state == LB_BACKEND_TERMINATING ? "terminating" : "active"}});
    }
    out.push_back(j);
  }
}

void service_list(const ctx& c) {
  pinned_map stats(c, LB_SVC_STATS_MAP);
  json out = json::array();
  collect_services<lb4_svc_key, lb4_backend>(c, LB4_SERVICES_MAP, LB4_BACKENDS_MAP, false, stats,
                                             out);
  collect_services<lb6_svc_key, lb6_backend>(c, LB6_SERVICES_MAP, LB6_BACKENDS_MAP, true, stats,
                                             out);
  if (c.json_out) {
    fmt::print("{}\n", out.dump());
    return;
  }
  fmt::print("{:<44} {:<5} {:>6} {:>10} {:>10} {:>8}  {}\n", "FRONTEND", "PROTO", "SVCID",
             "NEW_FLOWS", "FWD_PKTS", "REJECTED", "BACKENDS");
  for (const auto& j : out) {
    std::string bes;
    for (const auto& b : j["backends"]) {
      bes += (bes.empty() ? "" : ",") + b["address"].get<std::string>() +
             (b["state"] == "terminating" ? "(terminating)" : "");
    }
    fmt::print("{:<44} {:<5} {:>6} {:>10} {:>10} {:>8}  {}\n",
               j["frontend"].get<std::string>(), j["protocol"].get<std::string>(),
               j["svc_id"].get<uint32_t>(), j["new_flows"].get<uint64_t>(),
               j["fwd_packets"].get<uint64_t>(), j["rejected"].get<uint64_t>(),
               bes.empty() ? "(none: rejected)" : bes);
  }
}

void stats_show(const ctx& c) {
  static const char* names[LB_STAT_MAX] = LB_STAT_NAMES_INIT;
  pinned_map stats(c, LB_STATS_MAP);
  json out = json::array();
  for (uint32_t i = 0; i < LB_STAT_MAX; ++i) {
    lb_stat_value v{};
    sluice::percpu_sum(stats.fd(), i, v);
    out.push_back({{"reason", names[i]},
                   {"drop", LB_STAT_IS_DROP(i)},
                   {"packets", v.packets},
                   {"bytes", v.bytes}});
  }
  if (c.json_out) {
    fmt::print("{}\n", out.dump());
    return;
  }
  fmt::print("{:<24} {:>5} {:>14} {:>16}\n", "REASON", "DROP", "PACKETS", "BYTES");
  for (const auto& j : out) {
    fmt::print("{:<24} {:>5} {:>14} {:>16}\n", j["reason"].get<std::string>(),
               j["drop"].get<bool>() ? "yes" : "no", j["packets"].get<uint64_t>(),
               j["bytes"].get<uint64_t>());
  }
}

}  // namespace

int main(int argc, char** argv) {
  ctx c;
  CLI::App app{"sluicectl: inspect the sluice datapath (pinned maps)"};
  app.add_option("--bpffs-root", c.root, "where sluice-agent pins its maps")->capture_default_str();
  app.add_flag("-j,--json", c.json_out, "JSON output (errors too)");
  app.require_subcommand(1);
  auto* service = app.add_subcommand("service", "service frontends");
  service->require_subcommand(1);
  service->add_subcommand("list", "frontends with backends and counters")
      ->callback([&] { service_list(c); });
  app.add_subcommand("stats", "packets by verdict and drop reason")->callback([&] {
    stats_show(c);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  return 0;
}
