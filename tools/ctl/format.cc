#include "tools/ctl/format.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <vector>

#include "agent/model/model.h"

namespace sluice::ctl {

namespace {

// ---- tables ----------------------------------------------------------------------------------

// Columns sized to their content; numbers right-aligned; the last column is not padded. Each
// row may carry lines printed under it (a frontend's backends).
struct table {
  std::vector<std::string> head;
  std::vector<bool> right;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<std::string>> under;

  void add(std::vector<std::string> row, std::vector<std::string> below = {}) {
    rows.push_back(std::move(row));
    under.push_back(std::move(below));
  }

  std::string render() const {
    std::vector<size_t> width(head.size());
    for (size_t c = 0; c < head.size(); ++c) {
      width[c] = head[c].size();
      for (const auto& r : rows) {
        width[c] = std::max(width[c], r[c].size());
      }
    }
    const auto line = [&](const std::vector<std::string>& cells) {
      std::string out;
      for (size_t c = 0; c < cells.size(); ++c) {
        const bool last = c + 1 == cells.size();
        if (c > 0) {
          out += "  ";
        }
        if (right[c]) {
          out += fmt::format("{:>{}}", cells[c], width[c]);
        } else {
          out += last ? cells[c] : fmt::format("{:<{}}", cells[c], width[c]);
        }
      }
      while (!out.empty() && out.back() == ' ') {
        out.pop_back();
      }
      return out + "\n";
    };
    std::string out = line(head);
    for (size_t i = 0; i < rows.size(); ++i) {
      out += line(rows[i]);
      for (const auto& u : under[i]) {
        out += "    " + u + "\n";
      }
    }
    return out;
  }
};

std::string str(const json& v) {
  if (v.is_null()) {
    return "-";
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return s.empty() ? "-" : s;
  }
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) {
      out += (out.empty() ? "" : ",") + str(e);
    }
    return out.empty() ? "-" : out;
  }
  if (v.is_boolean()) {
    return v.get<bool>() ? "yes" : "no";
  }
  return v.dump();
}

json names(const std::vector<std::string>& v) {
  json a = json::array();
  for (const auto& s : v) {
    a.push_back(s);
  }
  return a;
}

// ---- shared pieces ---------------------------------------------------------------------------

// "namespace/name:port" (":port" only for a named port), or null without a name.
json service_name(const snapshot& s, uint32_t svc_id) {
  const auto it = s.info.find(svc_id);
  if (it == s.info.end()) {
    return nullptr;
  }
  const std::string ns = field_str(it->second.ns), name = field_str(it->second.name),
                    port = field_str(it->second.port_name);
  std::string out = ns.empty() ? name : ns + "/" + name;
  if (!port.empty()) {
    out += ":" + port;
  }
  return out;
}

json backend_json(const snapshot& s, uint32_t id) {
  const auto it = s.backends.find(id);
  if (it == s.backends.end()) {
    return {{"id", id}, {"address", nullptr}, {"state", "missing"}};
  }
  return {{"id", id},
          {"address", endpoint_str(it->second.addr, it->second.port)},
          {"state", backend_state_name(it->second.state)}};
}

json backends_of(const snapshot& s, const lb_svc_value& master,
                 const std::map<uint16_t, uint32_t>& slots) {
  json out = json::array();
  for (uint16_t slot = 1; slot <= master.count; ++slot) {
    const auto it = slots.find(slot);
    if (it != slots.end()) {
      out.push_back(backend_json(s, it->second));
    }
  }
  return out;
}

json frontend_json(const snapshot& s, const frontend_entry& f) {
  const lb_svc_value& m = *f.master;
  json j;
  j["frontend"] = frontend_str(f.vip, f.port, f.proto);
  j["address"] = format_ip(f.vip);
  j["port"] = f.port;
  j["protocol"] = proto_name(f.proto);
  j["svc_id"] = m.svc_id;
  const auto info = s.info.find(m.svc_id);
  if (info != s.info.end()) {
    const std::string kind = kind_name(info->second.kind);
    j["type"] = kind.empty() ? json(nullptr) : json(kind);
    j["namespace"] = field_str(info->second.ns);
    j["name"] = field_str(info->second.name);
    j["port_name"] = field_str(info->second.port_name);
  } else {
    j["type"] = nullptr;
    j["namespace"] = nullptr;
    j["name"] = nullptr;
    j["port_name"] = nullptr;
  }
  j["flags"] = names(svc_flag_names(m.flags));
  j["affinity_timeout"] = m.affinity_timeout;
  j["when_empty"] = (m.flags & LB_SVC_F_DROP_EMPTY) ? "drop" : "reject";
  if (m.flags & LB_SVC_F_SOURCE_RANGES) {
    json ranges = json::array();
    if (const auto it = s.src_ranges.find(m.svc_id); it != s.src_ranges.end()) {
      for (const ip_prefix& p : it->second) {
        ranges.push_back(fmt::format("{}/{}", format_ip(p.addr), p.length));
      }
    }
    j["source_ranges"] = ranges;
  }
  j["backends"] = backends_of(s, m, f.slots);
  if ((m.flags & LB_SVC_F_EXT_LOCAL) && f.external_master) {
    j["local_backends"] = backends_of(s, *f.external_master, f.external_slots);
  }
  const auto st = s.svc_stats.find(m.svc_id);
  const lb_svc_stat_value c = st == s.svc_stats.end() ? lb_svc_stat_value{} : st->second;
  j["counters"] = {{"new_flows", c.new_flows},         {"fwd_packets", c.fwd_packets},
                   {"fwd_bytes", c.fwd_bytes},         {"reply_packets", c.reply_packets},
                   {"reply_bytes", c.reply_bytes},     {"rejected", c.rejected}};
  return j;
}

std::string backend_line(const json& b) {
  return fmt::format("{} (id {}, {})", str(b["address"]), b["id"].get<uint32_t>(),
                     b["state"].get<std::string>());
}

}  // namespace

uint64_t seconds_since(uint64_t now_ns, uint64_t stamp_ns) {
  return now_ns > stamp_ns ? (now_ns - stamp_ns) / 1'000'000'000ull : 0;
}

// ---- service list ----------------------------------------------------------------------------

json service_list_json(const snapshot& s) {
  json fes = json::array();
  for (const frontend_entry& f : s.frontends) {
    if (f.master) {
      fes.push_back(frontend_json(s, f));
    }
  }
  json skipped = json::array();
  for (const unproxied_entry& u : s.unproxied) {
    json j{{"namespace", u.namespace_}, {"name", u.name},
           {"reason", unproxied_reason_name(u.reason)}};
    if (u.reason == LB_UNPROXIED_EXTERNAL_NAME) {
      j["external_name"] = u.external_name;
    }
    skipped.push_back(j);
  }
  return {{"frontends", fes}, {"not_proxied", skipped}};
}

std::string service_list_table(const json& j) {
  table t{{"FRONTEND", "TYPE", "SERVICE", "PORT", "ID", "FLAGS", "NEW_FLOWS", "FWD_PKTS",
           "REPLY_PKTS", "REJECTED"},
          {false, false, false, false, true, false, true, true, true, true}};
  for (const auto& f : j["frontends"]) {
    const json& c = f["counters"];
    std::string service = "-";
    if (!f["name"].is_null()) {
      service = f["namespace"].get<std::string>() + "/" + f["name"].get<std::string>();
    }
    std::vector<std::string> below;
    for (const auto& b : f["backends"]) {
      below.push_back("backend " + backend_line(b));
    }
    if (f.contains("local_backends")) {
      for (const auto& b : f["local_backends"]) {
        below.push_back("local backend " + backend_line(b) + ": external traffic (Local policy)");
      }
      if (f["local_backends"].empty()) {
        below.push_back("no local backend: external traffic dropped (Local policy)");
      }
    }
    if (f.contains("source_ranges")) {
      below.push_back("source ranges " + str(f["source_ranges"]));
    }
    if (f["backends"].empty()) {
      below.push_back(f["when_empty"] == "drop"
                          ? "no backend: new flows dropped (Local policy, endpoints elsewhere)"
                          : "no backend: new flows rejected");
    }
    t.add({f["frontend"].get<std::string>(), str(f["type"]), service, str(f["port_name"]),
           std::to_string(f["svc_id"].get<uint32_t>()), str(f["flags"]),
           std::to_string(c["new_flows"].get<uint64_t>()),
           std::to_string(c["fwd_packets"].get<uint64_t>()),
           std::to_string(c["reply_packets"].get<uint64_t>()),
           std::to_string(c["rejected"].get<uint64_t>())},
          std::move(below));
  }
  std::string out = t.render();
  if (!j["not_proxied"].empty()) {
    table n{{"NOT PROXIED", "REASON"}, {false, false}};
    for (const auto& u : j["not_proxied"]) {
      std::string why = u["reason"].get<std::string>();
      if (u.contains("external_name")) {
        why += " " + u["external_name"].get<std::string>();
      }
      n.add({u["namespace"].get<std::string>() + "/" + u["name"].get<std::string>(), why});
    }
    out += "\n" + n.render();
  }
  return out;
}

// ---- backend list ----------------------------------------------------------------------------

json backend_list_json(const snapshot& s) {
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> flows;  // (svc_id, backend id) -> FORWARD entries
  for (const ct_entry& e : s.ct) {
    if (e.state.dir == LB_CT_FORWARD) {
      ++flows[{e.state.svc_id, e.state.backend_id}];
    }
  }
  json out = json::array();
  for (const auto& [id, b] : s.backends) {
    const frontend_entry* f = s.frontend_of(b.svc_id);
    const auto n = flows.find({b.svc_id, id});
    out.push_back({{"id", id},
                   {"address", endpoint_str(b.addr, b.port)},
                   {"protocol", proto_name(b.proto)},
                   {"state", backend_state_name(b.state)},
                   {"svc_id", b.svc_id},
                   {"frontend", f ? json(frontend_str(f->vip, f->port, f->proto)) : json(nullptr)},
                   {"service", service_name(s, b.svc_id)},
                   {"flows", n == flows.end() ? 0 : n->second}});
  }
  return out;
}

std::string backend_list_table(const json& j) {
  table t{{"ID", "ADDRESS", "PROTO", "STATE", "SVC", "FRONTEND", "SERVICE", "FLOWS"},
          {true, false, false, false, true, false, false, true}};
  for (const auto& b : j) {
    t.add({std::to_string(b["id"].get<uint32_t>()), b["address"].get<std::string>(),
           b["protocol"].get<std::string>(), b["state"].get<std::string>(),
           std::to_string(b["svc_id"].get<uint32_t>()), str(b["frontend"]), str(b["service"]),
           std::to_string(b["flows"].get<uint64_t>())});
  }
  return t.render();
}

// ---- conntrack -------------------------------------------------------------------------------

namespace {

// What the entry's flags say about the connection (TCP), or whether it was answered (UDP).
std::string ct_state_word(const ct_entry& e) {
  const uint8_t f = e.state.flags;
  if (e.proto == IPPROTO_TCP) {
    if (f & LB_CT_F_RST) {
      return "reset";
    }
    if ((f & LB_CT_F_FIN_FWD) && (f & LB_CT_F_FIN_REPLY)) {
      return "closed";
    }
    if (f & (LB_CT_F_FIN_FWD | LB_CT_F_FIN_REPLY)) {
      return "closing";
    }
  }
  return "open";
}

// Past the datapath's idle timeout (the defaults of maps/sluice_abi.h; the agent keeps them).
bool ct_expired(const ct_entry& e, uint64_t now_ns) {
  uint64_t timeout_s = LB_CT_UDP_TIMEOUT_S;
  if (e.proto == IPPROTO_TCP) {
    const std::string st = ct_state_word(e);
    timeout_s = st == "reset" || st == "closed" ? LB_CT_TCP_CLOSE_S : LB_CT_TCP_TIMEOUT_S;
  }
  return now_ns > e.state.last_seen_ns &&
         now_ns - e.state.last_seen_ns > timeout_s * 1'000'000'000ull;
}

}  // namespace

json ct_list_json(const snapshot& s, const ct_filter& f, const std::set<uint32_t>* svc_ids) {
  std::vector<const ct_entry*> sel;
  for (const ct_entry& e : s.ct) {
    if (ct_matches(e, f, svc_ids)) {
      sel.push_back(&e);
    }
  }
  // A flow's two entries together: by service, then the client's end of the flow (FORWARD:
  // the source; REPLY: the destination, or the client SNAT hid), FORWARD first.
  const auto order = [](const ct_entry* e) {
    const bool reply = e->state.dir == LB_CT_REPLY;
    const bool snat = e->state.flags & LB_CT_F_SNAT;
    const ip_addr& client = !reply ? e->saddr : snat ? e->snat_addr : e->daddr;
    const uint16_t port = !reply ? e->sport : snat ? ntohs(e->state.snat_port) : e->dport;
    return std::tuple(e->state.svc_id, e->proto, client, port, e->state.dir, e->saddr, e->sport);
  };
  std::sort(sel.begin(), sel.end(),
            [&](const ct_entry* a, const ct_entry* b) { return order(a) < order(b); });
  json out = json::array();
  for (const ct_entry* e : sel) {
    const bool fwd = e->state.dir == LB_CT_FORWARD;
    const bool snat = e->state.flags & LB_CT_F_SNAT;
    json j;
    j["direction"] = fwd ? "forward" : e->state.dir == LB_CT_REPLY ? "reply" : "?";
    j["protocol"] = proto_name(e->proto);
    j["src"] = endpoint_str(e->saddr, e->sport);
    j["dst"] = endpoint_str(e->daddr, e->dport);
    // FORWARD: the destination becomes the backend; REPLY: the source becomes the service.
    j["nat"] = endpoint_str(e->nat_addr, ntohs(e->state.nat_port));
    j["snat"] = snat ? json(endpoint_str(e->snat_addr, ntohs(e->state.snat_port))) : json(nullptr);
    j["svc_id"] = e->state.svc_id;
    j["service"] = service_name(s, e->state.svc_id);
    j["backend_id"] = e->state.backend_id;
    j["flags"] = names(ct_flag_names(e->state.flags));
    j["state"] = ct_state_word(*e);
    j["age_s"] = seconds_since(s.now_ns, e->state.created_ns);
    j["idle_s"] = seconds_since(s.now_ns, e->state.last_seen_ns);
    j["expired"] = ct_expired(*e, s.now_ns);
    out.push_back(j);
  }
  return out;
}

std::string ct_list_table(const json& j) {
  table t{{"DIR", "PROTO", "SOURCE", "DESTINATION", "NAT", "SNAT", "SVC", "BACKEND", "FLAGS",
           "STATE", "AGE", "IDLE"},
          {false, false, false, false, false, false, true, true, false, false, true, true}};
  for (const auto& e : j) {
    std::string state = e["state"].get<std::string>();
    if (e["expired"].get<bool>()) {
      state += ",expired";
    }
    t.add({e["direction"].get<std::string>(), e["protocol"].get<std::string>(),
           e["src"].get<std::string>(), e["dst"].get<std::string>(), e["nat"].get<std::string>(),
           str(e["snat"]), std::to_string(e["svc_id"].get<uint32_t>()),
           std::to_string(e["backend_id"].get<uint32_t>()), str(e["flags"]), state,
           fmt::format("{}s", e["age_s"].get<uint64_t>()),
           fmt::format("{}s", e["idle_s"].get<uint64_t>())});
  }
  return t.render();
}

// ---- stats -----------------------------------------------------------------------------------

json stats_json(const snapshot& s) {
  json verdicts = json::array();
  for (uint32_t i = 0; i < LB_STAT_MAX; ++i) {
    verdicts.push_back({{"reason", stat_name(i)},
                        {"drop", LB_STAT_IS_DROP(i)},
                        {"packets", s.stats[i].packets},
                        {"bytes", s.stats[i].bytes}});
  }
  json services = json::array();
  for (const frontend_entry& f : s.frontends) {
    if (!f.master) {
      continue;
    }
    const uint32_t id = f.master->svc_id;
    const auto st = s.svc_stats.find(id);
    const lb_svc_stat_value c = st == s.svc_stats.end() ? lb_svc_stat_value{} : st->second;
    services.push_back({{"svc_id", id},
                        {"frontend", frontend_str(f.vip, f.port, f.proto)},
                        {"service", service_name(s, id)},
                        {"new_flows", c.new_flows},
                        {"fwd_packets", c.fwd_packets},
                        {"fwd_bytes", c.fwd_bytes},
                        {"reply_packets", c.reply_packets},
                        {"reply_bytes", c.reply_bytes},
                        {"rejected", c.rejected}});
  }
  return {{"verdicts", verdicts}, {"services", services}};
}

std::string stats_table(const json& j) {
  table v{{"REASON", "DROP", "PACKETS", "BYTES"}, {false, false, true, true}};
  for (const auto& r : j["verdicts"]) {
    v.add({r["reason"].get<std::string>(), r["drop"].get<bool>() ? "yes" : "no",
           std::to_string(r["packets"].get<uint64_t>()),
           std::to_string(r["bytes"].get<uint64_t>())});
  }
  std::string out = v.render();
  if (!j["services"].empty()) {
    table t{{"SVC", "FRONTEND", "SERVICE", "NEW_FLOWS", "FWD_PKTS", "FWD_BYTES", "REPLY_PKTS",
             "REPLY_BYTES", "REJECTED"},
            {true, false, false, true, true, true, true, true, true}};
    for (const auto& r : j["services"]) {
      t.add({std::to_string(r["svc_id"].get<uint32_t>()), r["frontend"].get<std::string>(),
             str(r["service"]), std::to_string(r["new_flows"].get<uint64_t>()),
             std::to_string(r["fwd_packets"].get<uint64_t>()),
             std::to_string(r["fwd_bytes"].get<uint64_t>()),
             std::to_string(r["reply_packets"].get<uint64_t>()),
             std::to_string(r["reply_bytes"].get<uint64_t>()),
             std::to_string(r["rejected"].get<uint64_t>())});
    }
    out += "\n" + t.render();
  }
  return out;
}

// ---- trace -----------------------------------------------------------------------------------

namespace {

// The program's return value as the kernel names it.
std::string action_name(hook h, uint32_t retval) {
  if (h == hook::xdp) {
    static const char* const xdp[] = {"XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX",
                                      "XDP_REDIRECT"};
    return retval < 5 ? xdp[retval] : fmt::format("XDP {}", retval);
  }
  switch (retval) {
    case 0:
      return "TC_ACT_OK";
    case 2:
      return "TC_ACT_SHOT";
    case 7:
      return "TC_ACT_REDIRECT";
    default:
      return fmt::format("TC {}", retval);
  }
}

std::string ct_word(uint8_t ct) {
  switch (ct) {
    case LB_TRACE_CT_NEW:
      return "new";
    case LB_TRACE_CT_RENEW:
      return "renew";
    case LB_TRACE_CT_FORWARD:
      return "forward";
    case LB_TRACE_CT_REPLY:
      return "reply";
    default:
      return "none";
  }
}

std::string pick_word(uint8_t pick) {
  switch (pick) {
    case LB_PICK_RANDOM:
      return "random";
    case LB_PICK_AFFINITY:
      return "affinity";
    case LB_PICK_MAGLEV:
      return "maglev";
    default:
      return "";
  }
}

}  // namespace

json trace_json(const trace_request& r, const trace_run& run, const snapshot& s) {
  json j;
  const packet_summary in = read_packet(run.in);
  j["packet"] = in.str();
  j["hook"] = hook_name(r.where);
  j["program"] = run.program;
  j["prog_id"] = run.prog_id;
  j["device"] = r.dev.empty() ? json(nullptr) : json(r.dev);
  j["action"] = action_name(r.where, run.retval);
  j["retval"] = run.retval;
  if (!run.record) {
    j["verdict"] = nullptr;
    j["note"] = "the program recorded no decision (it did not handle the packet)";
    return j;
  }
  const lb_trace& t = *run.record;
  const bool v6 = r.packet.src.family == ip_family::v6;
  j["verdict"] = stat_name(t.stat);
  j["drop"] = LB_STAT_IS_DROP(t.stat);
  if (t.svc_id != 0) {
    json svc{{"svc_id", t.svc_id}};
    if (const frontend_entry* f = s.frontend_of(t.svc_id)) {
      svc["frontend"] = frontend_str(f->vip, f->port, f->proto);
    }
    if (const auto info = s.info.find(t.svc_id); info != s.info.end()) {
      svc["type"] = kind_name(info->second.kind);
    }
    svc["name"] = service_name(s, t.svc_id);
    j["service"] = svc;
  } else {
    j["service"] = nullptr;
  }
  json ct{{"entry", ct_word(t.ct)}};
  if (t.ct != LB_TRACE_CT_NONE) {
    ct["direction"] = t.ct_dir == LB_CT_REPLY ? "reply" : "forward";
    ct["flags"] = names(ct_flag_names(t.ct_flags));
  }
  if (t.ct == LB_TRACE_CT_FORWARD || t.ct == LB_TRACE_CT_REPLY) {
    ct["age_s"] = seconds_since(s.now_ns, t.created_ns);
    ct["idle_s"] = seconds_since(s.now_ns, t.last_seen_ns);
  }
  j["conntrack"] = ct;
  // The backend: a FORWARD entry's translation (a REPLY entry's is the service).
  const bool fwd = t.ct == LB_TRACE_CT_NEW || t.ct == LB_TRACE_CT_RENEW ||
                   t.ct == LB_TRACE_CT_FORWARD;
  if (fwd && t.backend_id != 0) {
    json b = backend_json(s, t.backend_id);
    b["address"] = endpoint_str(addr_of(t.nat_addr, v6), ntohs(t.nat_port));
    j["backend"] = b;
  } else if (t.ct == LB_TRACE_CT_REPLY && t.backend_id != 0) {
    j["backend"] = backend_json(s, t.backend_id);
  } else {
    j["backend"] = nullptr;
  }
  const std::string pick = pick_word(t.pick);
  j["pick"] = pick.empty() ? json(nullptr) : json(pick);
  j["snat"] = (t.ct_flags & LB_CT_F_SNAT)
                  ? json(endpoint_str(addr_of(t.snat_addr, v6), ntohs(t.snat_port)))
                  : json(nullptr);
  if (t.where == LB_TRACE_TO_STACK) {
    j["leaves"] = "stack";
  } else {
    j["leaves"] = {{"device", run.out_dev.empty() ? json(nullptr) : json(run.out_dev)},
                   {"ifindex", t.ifindex},
                   {"neighbour", t.where == LB_TRACE_OUT_NEIGH ? "resolved by the kernel"
                                                               : "from the FIB"}};
  }
  const bool dropped = LB_STAT_IS_DROP(t.stat);
  if (dropped || run.out.empty()) {
    j["output"] = nullptr;
  } else {
    const packet_summary out = read_packet(run.out);
    j["output"] = out.str();
    if (out.ok) {
      j["output_l2"] = mac_str(out.smac) + " -> " + mac_str(out.dmac);
      j["output_checksums"] =
          out.checksum_errors.empty() ? json("ok") : names(out.checksum_errors);
    }
  }
  j["dry_run"] = "no map was changed";
  return j;
}

std::string trace_table(const json& j) {
  std::vector<std::pair<std::string, std::string>> lines;
  lines.emplace_back("packet", j["packet"].get<std::string>());
  lines.emplace_back("hook", fmt::format("{} ({}{}, prog id {})", j["hook"].get<std::string>(),
                                         j["program"].get<std::string>(),
                                         j["device"].is_null() ? "" : " on " + str(j["device"]),
                                         j["prog_id"].get<uint32_t>()));
  if (j["verdict"].is_null()) {
    lines.emplace_back("verdict", j["action"].get<std::string>() + ": " + str(j["note"]));
  } else {
    lines.emplace_back("verdict", j["verdict"].get<std::string>() + " (" +
                                      j["action"].get<std::string>() + ")");
    if (!j["service"].is_null()) {
      const json& svc = j["service"];
      std::string text = svc.contains("frontend") ? svc["frontend"].get<std::string>() : "?";
      if (svc.contains("type") && !svc["type"].get<std::string>().empty()) {
        text += " " + svc["type"].get<std::string>();
      }
      if (!svc["name"].is_null()) {
        text += " " + svc["name"].get<std::string>();
      }
      lines.emplace_back("service", fmt::format("{} (svc {})", text, svc["svc_id"].get<uint32_t>()));
    }
    if (!j["backend"].is_null()) {
      std::string text = backend_line(j["backend"]);
      const std::string pick = str(j["pick"]);
      if (pick == "random") {
        text += ", a random slot (another run may pick another)";
      } else if (pick == "affinity") {
        text += ", the client's ClientIP affinity";
      } else if (pick == "maglev") {
        text += ", the Maglev table";
      }
      lines.emplace_back("backend", text);
    }
    const json& ct = j["conntrack"];
    const std::string entry = ct["entry"].get<std::string>();
    std::string ct_text;
    if (entry == "new") {
      ct_text = "new flow";
    } else if (entry == "renew") {
      ct_text = "a stale flow on this tuple, replaced by a new one";
    } else if (entry == "forward" || entry == "reply") {
      ct_text = fmt::format("established ({} entry, age {}s, idle {}s)", entry,
                            ct["age_s"].get<uint64_t>(), ct["idle_s"].get<uint64_t>());
    } else {
      ct_text = "no flow";
    }
    if (ct.contains("flags") && !ct["flags"].empty()) {
      ct_text += ", flags " + str(ct["flags"]);
    }
    lines.emplace_back("conntrack", ct_text);
    if (!j["snat"].is_null()) {
      lines.emplace_back("snat", "source becomes " + j["snat"].get<std::string>());
    }
    if (j["leaves"].is_string()) {
      lines.emplace_back("leaves", "to the stack");
    } else {
      lines.emplace_back("leaves", fmt::format("out of {} (ifindex {}), neighbour {}",
                                               str(j["leaves"]["device"]),
                                               j["leaves"]["ifindex"].get<uint32_t>(),
                                               j["leaves"]["neighbour"].get<std::string>()));
    }
  }
  if (j.contains("output") && !j["output"].is_null()) {
    std::string out = j["output"].get<std::string>();
    if (j.contains("output_checksums") && j["output_checksums"] != "ok") {
      out += " (bad checksums: " + str(j["output_checksums"]) + ")";
    }
    lines.emplace_back("output", out);
    if (j.contains("output_l2")) {
      lines.emplace_back("l2", j["output_l2"].get<std::string>());
    }
  }
  if (j.contains("dry_run")) {
    lines.emplace_back("dry run", j["dry_run"].get<std::string>());
  }
  std::string text;
  for (const auto& [k, v] : lines) {
    text += fmt::format("{:<10} {}\n", k, v);
  }
  return text;
}

}  // namespace sluice::ctl
