#include "tools/ctl/commands.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <sstream>

#include "tools/ctl/args.h"
#include "tools/ctl/format.h"
#include "tools/ctl/read.h"
#include "tools/ctl/trace.h"

namespace sluice::ctl {

namespace {

struct settings {
  std::string root = "/sys/fs/bpf/sluice";
  bool json_out = false;
  bool pretty = false;
};

// A command's result: its JSON document and the table rendered from it, or an error.
struct result {
  int code = exit_ok;
  json doc;
  std::string table;
  std::string error;
};

result failed(std::string why, int code = exit_error) {
  result r;
  r.code = code;
  r.error = std::move(why);
  return r;
}

result done(json doc, const std::function<std::string(const json&)>& render) {
  result r;
  r.table = render(doc);
  r.doc = std::move(doc);
  return r;
}

result service_list(const settings& o) {
  auto s = read_snapshot(o.root, read_services);
  return s ? done(service_list_json(*s), service_list_table) : failed(s.error());
}

result backend_list(const settings& o) {
  auto s = read_snapshot(o.root, read_services | read_ct);
  return s ? done(backend_list_json(*s), backend_list_table) : failed(s.error());
}

result stats(const settings& o) {
  auto s = read_snapshot(o.root, read_services | read_stats);
  return s ? done(stats_json(*s), stats_table) : failed(s.error());
}

result ct_list(const settings& o, const std::vector<std::string>& words) {
  const auto f = parse_ct_filter(words);
  if (!f) {
    return failed(f.error(), exit_usage);
  }
  auto s = read_snapshot(o.root, read_services | read_ct);
  if (!s) {
    return failed(s.error());
  }
  std::set<uint32_t> ids;
  if (f->service) {
    auto r = resolve_service(*s, *f->service);
    if (!r) {
      return failed(r.error());
    }
    ids = std::move(*r);
  }
  return done(ct_list_json(*s, *f, f->service ? &ids : nullptr), ct_list_table);
}

result ct_flush(const settings& o, const std::vector<std::string>& words) {
  const auto f = parse_ct_filter(words);
  if (!f) {
    return failed(f.error(), exit_usage);
  }
  std::set<uint32_t> ids;
  if (f->service) {
    auto s = read_snapshot(o.root, read_services);
    if (!s) {
      return failed(s.error());
    }
    auto r = resolve_service(*s, *f->service);
    if (!r) {
      return failed(r.error());
    }
    ids = std::move(*r);
  }
  const ct_filter filter = *f;
  const std::set<uint32_t>* svc = filter.service ? &ids : nullptr;
  auto n = flush_ct(o.root, [&](const ct_entry& e) { return ct_matches(e, filter, svc); });
  if (!n) {
    return failed(n.error());
  }
  return done(json{{"deleted", *n}}, [](const json& j) {
    return fmt::format("deleted {} conntrack entries\n", j["deleted"].get<size_t>());
  });
}

result trace(const settings& o, const std::vector<std::string>& words) {
  const auto req = parse_trace_args(words);
  if (!req) {
    return failed(req.error(), exit_usage);
  }
  auto run = run_trace(o.root, *req);
  if (!run) {
    return failed(run.error());
  }
  // Read after the run: the ids the datapath recorded are described as the maps hold them.
  auto s = read_snapshot(o.root, read_services);
  if (!s) {
    return failed(s.error());
  }
  return done(trace_json(*req, *run, *s), trace_table);
}

bool wants_json(const std::vector<std::string>& args) {
  return std::any_of(args.begin(), args.end(),
                     [](const std::string& a) { return a == "-j" || a == "--json" || a == "-jp"; });
}

}  // namespace

output run(const std::vector<std::string>& args) {
  settings o;
  std::vector<std::string> words;
  std::function<result()> command;
  CLI::App app{
      "sluicectl: see into the sluice datapath. OBJECT COMMAND as bpftool: service list, "
      "backend list, ct list|flush, stats, trace. Tables by default, JSON with -j.",
      "sluicectl"};
  app.add_option("--bpffs-root", o.root, "where sluice-agent pins its maps and programs")
      ->capture_default_str();
  app.add_flag("-j,--json", o.json_out, "JSON output (errors too)");
  app.add_flag("-p,--pretty", o.pretty, "indented JSON (implies -j)");
  app.require_subcommand(1);

  auto* service = app.add_subcommand("service", "service frontends");
  service->require_subcommand(1);
  service->add_subcommand("list", "every frontend: type, name, flags, backends, counters; and "
                                  "the Services not proxied")
      ->callback([&] { command = [&] { return service_list(o); }; });

  auto* backend = app.add_subcommand("backend", "backends");
  backend->require_subcommand(1);
  backend->add_subcommand("list", "every backend with its state, service and flows")
      ->callback([&] { command = [&] { return backend_list(o); }; });

  auto* ct = app.add_subcommand("ct", "connection tracking");
  ct->require_subcommand(1);
  auto* ct_ls = ct->add_subcommand("list", "flows: [address ADDR] [port PORT] [service SVC]");
  ct_ls->add_option("filter", words, "address ADDR | port PORT | service SVC (svc id, "
                                     "NAMESPACE/NAME, or ADDR:PORT[/tcp|udp])");
  ct_ls->callback([&] { command = [&] { return ct_list(o, words); }; });
  auto* ct_fl = ct->add_subcommand("flush", "delete flows: all, or [address] [port] [service]");
  ct_fl->add_option("filter", words, "as for ct list");
  ct_fl->callback([&] { command = [&] { return ct_flush(o, words); }; });

  app.add_subcommand("stats", "packets by verdict and drop reason; counters per service")
      ->callback([&] { command = [&] { return stats(o); }; });

  auto* tr = app.add_subcommand(
      "trace",
      "run a described packet through the loaded program against the live maps (dry run: "
      "nothing is changed): [pod|xdp|tc-ingress|tc-egress] [dev IFNAME] {tcp|udp|icmp} SRC DST "
      "[flags syn,ack,fin,rst,psh] [len N] [ttl N] [smac MAC] [dmac MAC]");
  tr->add_option("packet", words, "the packet's description")->required();
  tr->callback([&] { command = [&] { return trace(o, words); }; });

  // -j, -p and --bpffs-root anywhere on the line, as bpftool takes its options.
  const std::function<void(CLI::App*)> fall = [&](CLI::App* a) {
    for (CLI::App* sub : a->get_subcommands({})) {
      sub->fallthrough();
      fall(sub);
    }
  };
  fall(&app);

  output out;
  std::ostringstream help_out, help_err;
  try {
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e, help_out, help_err);
    out.out = help_out.str();
    if (rc == 0) {
      return out;  // --help
    }
    out.code = exit_usage;
    std::string why = e.what();
    if (wants_json(args)) {
      out.out = json{{"error", why}}.dump() + "\n";
    } else {
      out.err = help_err.str();
    }
    return out;
  }
  o.json_out = o.json_out || o.pretty;
  const result r = command();
  out.code = r.code;
  if (r.code != exit_ok) {
    if (o.json_out) {
      out.out = json{{"error", r.error}}.dump() + "\n";
    } else {
      out.err = "Error: " + r.error + "\n";
    }
    return out;
  }
  out.out = o.json_out ? r.doc.dump(o.pretty ? 2 : -1) + "\n" : r.table;
  return out;
}

}  // namespace sluice::ctl
