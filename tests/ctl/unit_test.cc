// sluicectl without root: the packet builder (byte for byte against the bpf tier's builder,
// checksums by its independent verifier), the reader of output frames, argument parsing,
// service words, conntrack filters, JSON and tables of hand-built snapshots, bash completion.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "agent/model/model.h"
#include "packet.h"  // tests/bpf: the independent builder and verifier
#include "tools/ctl/args.h"
#include "tools/ctl/format.h"
#include "tools/ctl/packet.h"
#include "tools/ctl/snapshot.h"

namespace sluice::ctl {
namespace {

ip_addr ip4(const char* s) { return parse_ip(s).value(); }
ip_addr ip6(const char* s) { return parse_ip(s).value(); }

bpftest::IpAddr to_bpftest(const ip_addr& a) {
  bpftest::IpAddr b;
  b.v6 = a.family == ip_family::v6;
  b.b = a.bytes;
  return b;
}

// The bpf tier's description of the packet sluicectl builds from `s`.
bpftest::Pkt reference(const packet_spec& s) {
  bpftest::Pkt p = bpftest::l4(s.proto, to_bpftest(s.src), s.sport, to_bpftest(s.dst), s.dport);
  if (s.proto == IPPROTO_ICMP) {
    p = bpftest::icmp_echo(to_bpftest(s.src), to_bpftest(s.dst));
    p.sport = s.sport;
    p.dport = s.dport;
  }
  p.src_mac = bpftest::Mac{s.smac};
  p.dst_mac = bpftest::Mac{s.dmac};
  p.tcp_flags = s.tcp_flags;
  p.seq = 1;
  p.ack_seq = (s.tcp_flags & tcp_ack) ? 1 : 0;
  p.window = 64240;
  p.ip_id = 0x51ce;
  p.df = s.proto == IPPROTO_TCP;
  p.ttl = s.ttl;
  p.hop_limit = s.ttl;
  p.payload.assign(s.payload, 0);
  return p;
}

TEST_CASE("packet builder: the bpf tier's bytes, every checksum right") {
  for (const bool v6 : {false, true}) {
    for (const uint8_t proto : {uint8_t{IPPROTO_TCP}, uint8_t{IPPROTO_UDP}, uint8_t{IPPROTO_ICMP}}) {
      for (const size_t payload : {size_t{0}, size_t{1}, size_t{37}}) {
        packet_spec s;
        s.src = v6 ? ip6("fd00:1::5") : ip4("10.1.0.5");
        s.dst = v6 ? ip6("fd00:96::10") : ip4("10.96.0.10");
        s.proto = proto;
        s.sport = 40000;
        s.dport = 80;
        s.tcp_flags = tcp_syn | tcp_ack;
        s.payload = payload;
        const bytes got = build_packet(s);
        INFO("v6=" << v6 << " proto=" << int(proto) << " payload=" << payload);
        const auto report = bpftest::verify_checksums(got);
        INFO(report.str());
        CHECK(report.ok());
        CHECK(report.checked.size() >= (v6 ? 1u : 2u));
        const bytes want = bpftest::build(reference(s));
        INFO(bpftest::hex_diff(want, got));
        CHECK(got == want);
      }
    }
  }
}

TEST_CASE("packet builder: a UDP checksum that sums to zero is sent as 0xffff") {
  // Search the source port that makes the sum zero (one in 65536 does).
  packet_spec s;
  s.src = ip4("10.1.0.5");
  s.dst = ip4("10.96.0.10");
  s.proto = IPPROTO_UDP;
  s.dport = 53;
  bool found = false;
  for (uint32_t port = 1; port < 65536 && !found; ++port) {
    s.sport = static_cast<uint16_t>(port);
    const bytes b = build_packet(s);
    if (b[40] == 0xff && b[41] == 0xff) {
      found = bpftest::verify_checksums(b).ok();
    }
  }
  CHECK(found);
}

TEST_CASE("reading frames: summaries, DSR options, ICMP quotes, bad checksums") {
  const auto tcp = bpftest::tcp(bpftest::ip("10.1.0.5"), 40000, bpftest::ip("10.96.0.10"), 80);
  auto s = read_packet(bpftest::build(tcp));
  CHECK(s.ok);
  CHECK(s.str() == "TCP 10.1.0.5:40000 -> 10.96.0.10:80 [SYN]");
  CHECK(s.checksum_errors.empty());

  // The answers the datapath builds: a RST, an ICMP port unreachable quoting the datagram.
  s = read_packet(bpftest::tcp_reset(tcp));
  CHECK(s.str() == "TCP 10.96.0.10:80 -> 10.1.0.5:40000 [ACK,RST]");
  const auto udp6 = bpftest::udp(bpftest::ip("fd00:1::5"), 5000, bpftest::ip("fd00:96::10"), 53);
  s = read_packet(bpftest::icmp_port_unreachable(udp6));
  CHECK(s.str() == "ICMPv6 fd00:96::10 -> fd00:1::5 type 1 code 4 quoting UDP [fd00:1::5]:5000 -> "
                   "[fd00:96::10]:53");
  CHECK(s.checksum_errors.empty());

  // DSR options: IPv4 option 0x9a, IPv6 destination option 0x1b (maps/sluice_abi.h).
  auto dsr4 = tcp.with_options({LB_DSR_OPT4_TYPE, 8, 0x75, 0x30, 192, 168, 50, 11});
  s = read_packet(bpftest::build(dsr4));
  CHECK(s.str() == "TCP 10.1.0.5:40000 -> 10.96.0.10:80 [SYN] dsr 192.168.50.11:30000");
  bpftest::Ext6 opt;
  opt.kind = bpftest::Ext6::DestOpts;
  opt.opts = {LB_DSR_OPT6_TYPE, 18, 0xfd, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
              0x75, 0x30, 0, 0};
  s = read_packet(bpftest::build(udp6.with_ext({opt})));
  CHECK(s.ok);
  CHECK(s.str() == "UDP [fd00:1::5]:5000 -> [fd00:96::10]:53 dsr [fd50::11]:30000");

  // A flipped bit is a checksum error of both the IPv4 header and TCP (the address is in both).
  bytes bad = bpftest::build(tcp);
  bad[29] ^= 1;
  s = read_packet(bad);
  CHECK(s.checksum_errors == std::vector<std::string>{"IPv4 header", "TCP"});
  CHECK_FALSE(read_packet(bytes(10, 0)).ok);
}

TEST_CASE("trace arguments: hooks, endpoints, flags, and what is refused") {
  auto r = parse_trace_args({"xdp", "dev", "eth0", "tcp", "10.0.0.1:40000", "10.96.0.10:80",
                             "flags", "syn,ack", "len", "10", "dmac", "02:00:00:00:00:aa"});
  REQUIRE(r);
  CHECK(r->where == hook::xdp);
  CHECK(r->dev == "eth0");
  CHECK(r->packet.tcp_flags == (tcp_syn | tcp_ack));
  CHECK(r->packet.payload == 10);
  CHECK(r->packet.sport == 40000);
  CHECK(r->dmac_given);
  CHECK(r->packet.dmac == mac_addr{2, 0, 0, 0, 0, 0xaa});
  r = parse_trace_args({"udp", "[fd00::1]:53", "[fd00:96::a]:53"});
  REQUIRE(r);
  CHECK(r->where == hook::pod);
  CHECK(r->packet.dst == ip6("fd00:96::a"));
  r = parse_trace_args({"icmp", "fd00::1", "fd00::2"});
  REQUIRE(r);
  CHECK(r->packet.proto == IPPROTO_ICMP);

  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"10.0.0.1:1", "10.0.0.2:2"}, "which protocol? (tcp, udp or icmp)"},
      {{"tcp", "10.0.0.1:1"}, "need a source and a destination (ADDR:PORT ADDR:PORT)"},
      {{"tcp", "10.0.0.1", "10.0.0.2:80"}, "TCP and UDP need both ports (ADDR:PORT)"},
      {{"tcp", "10.0.0.1:1", "[fd00::1]:80"}, "source and destination are of different address families"},
      {{"udp", "10.0.0.1:1", "10.0.0.2:2", "flags", "syn"}, "flags are for tcp"},
      {{"tcp", "10.0.0.1:1", "10.0.0.2:2", "flags", "syn,urg"}, "bad TCP flags 'syn,urg' (syn, ack, fin, rst, psh, comma-separated)"},
      {{"tcp", "10.0.0.1:1", "10.0.0.2:70000"}, "bad destination '10.0.0.2:70000' (ADDR:PORT or [ADDR6]:PORT)"},
      {{"tc-ingress", "tcp", "10.0.0.1:1", "10.0.0.2:2"}, "hook tc-ingress needs 'dev IFNAME' (the native device)"},
      {{"tcp", "10.0.0.1:1", "10.0.0.2:2", "len"}, "'len' needs a value"},
      {{"tcp", "10.0.0.1:1", "10.0.0.2:2", "extra"}, "unexpected 'extra'"},
  };
  for (const auto& [words, why] : bad) {
    const auto e = parse_trace_args(words);
    REQUIRE_FALSE(e);
    CHECK(e.error() == why);
  }
}

// Two frontends of default/web (ClusterIP, NodePort), one of dns over IPv6.
snapshot sample() {
  snapshot s;
  s.now_ns = 100'000'000'000ull;
  frontend_entry web{.vip = ip4("10.96.0.10"), .port = 80, .proto = IPPROTO_TCP};
  web.master = lb_svc_value{.backend_id = 0, .svc_id = 1, .affinity_timeout = 0, .count = 2,
                            .flags = 0};
  web.slots = {{1, 11}, {2, 12}};
  frontend_entry np{.vip = ip4("192.168.50.11"), .port = 30080, .proto = IPPROTO_TCP};
  np.master = lb_svc_value{.svc_id = 2, .count = 1,
                           .flags = LB_SVC_F_EXTERNAL | LB_SVC_F_EXT_LOCAL | 0x8000};
  np.slots = {{1, 21}};
  np.external_master = lb_svc_value{.svc_id = 2, .count = 0, .flags = LB_SVC_F_DROP_EMPTY};
  frontend_entry dns{.vip = ip6("fd00:96::a"), .port = 53, .proto = IPPROTO_UDP};
  dns.master = lb_svc_value{.svc_id = 3, .count = 0};
  s.frontends = {web, np, dns};
  s.backends[11] = {11, ip4("10.244.1.5"), 8080, IPPROTO_TCP, LB_BACKEND_ACTIVE, 1};
  s.backends[12] = {12, ip4("10.244.2.7"), 8080, IPPROTO_TCP, LB_BACKEND_TERMINATING, 1};
  s.backends[21] = {21, ip4("10.244.1.5"), 8080, IPPROTO_TCP, LB_BACKEND_ACTIVE, 2};
  for (const auto& [id, kind, port] : {std::tuple{1u, LB_KIND_CLUSTER_IP, "http"},
                                       std::tuple{2u, LB_KIND_NODE_PORT, "http"}}) {
    lb_svc_info i{};
    i.kind = static_cast<uint8_t>(kind);
    std::snprintf(i.ns, sizeof(i.ns), "default");
    std::snprintf(i.name, sizeof(i.name), "web");
    std::snprintf(i.port_name, sizeof(i.port_name), "%s", port);
    s.info[id] = i;
  }
  s.unproxied = {{"default", "db", LB_UNPROXIED_HEADLESS, ""}};
  ct_entry e;
  e.saddr = ip4("10.244.9.9");
  e.daddr = ip4("10.96.0.10");
  e.sport = 40000;
  e.dport = 80;
  e.proto = IPPROTO_TCP;
  e.state.dir = LB_CT_FORWARD;
  e.state.svc_id = 1;
  e.state.backend_id = 12;
  e.state.nat_port = htons(8080);
  e.state.created_ns = 40'000'000'000ull;
  e.state.last_seen_ns = 99'000'000'000ull;
  e.nat_addr = ip4("10.244.2.7");
  s.ct.push_back(e);
  return s;
}

TEST_CASE("service words and conntrack filters") {
  const snapshot s = sample();
  CHECK(*resolve_service(s, "3") == std::set<uint32_t>{3});
  CHECK(*resolve_service(s, "default/web") == std::set<uint32_t>{1, 2});
  CHECK(*resolve_service(s, "10.96.0.10:80") == std::set<uint32_t>{1});
  CHECK(*resolve_service(s, "10.96.0.10:80/tcp") == std::set<uint32_t>{1});
  CHECK(*resolve_service(s, "[fd00:96::a]:53/UDP") == std::set<uint32_t>{3});
  CHECK(resolve_service(s, "10.96.0.10:80/udp").error() == "no frontend 10.96.0.10:80/udp in the maps");
  CHECK(resolve_service(s, "default/nope").error() == "no frontend of service default/nope in the maps");
  CHECK(resolve_service(s, "10.96.0.10:80/sctp").error() == "bad protocol in '10.96.0.10:80/sctp' (tcp or udp)");

  const ct_entry& e = s.ct[0];
  const auto f = [](std::vector<std::string> w) { return *parse_ct_filter(w); };
  CHECK(ct_matches(e, f({}), nullptr));
  CHECK(ct_matches(e, f({"address", "10.244.2.7"}), nullptr));  // the translation's
  CHECK_FALSE(ct_matches(e, f({"address", "10.244.1.5"}), nullptr));
  CHECK(ct_matches(e, f({"port", "8080"}), nullptr));
  CHECK_FALSE(ct_matches(e, f({"port", "8081"}), nullptr));
  const std::set<uint32_t> web{1}, dns{3};
  CHECK(ct_matches(e, f({"service", "x"}), &web));
  CHECK_FALSE(ct_matches(e, f({"service", "x"}), &dns));
  CHECK(parse_ct_filter({"port", "x"}).error() == "bad port 'x'");
  CHECK(parse_ct_filter({"address"}).error() == "'address' needs a value (address, port or service)");
}

TEST_CASE("service list: names and types, unknown flags, Local backends, not proxied") {
  const json j = service_list_json(sample());
  REQUIRE(j["frontends"].size() == 3);
  const json& web = j["frontends"][0];
  CHECK(web["frontend"] == "10.96.0.10:80/TCP");
  CHECK(web["type"] == "ClusterIP");
  CHECK(web["backends"][1]["state"] == "terminating");
  const json& np = j["frontends"][1];
  CHECK(np["flags"] == json::array({"external", "ext_local", "0x8000"}));
  CHECK(np["local_backends"].empty());
  const json& dns = j["frontends"][2];
  CHECK(dns["type"].is_null());  // no lb_svc_info_v1 entry (an older agent)
  CHECK(dns["frontend"] == "[fd00:96::a]:53/UDP");
  CHECK(j["not_proxied"][0]["reason"] == "headless");

  const std::string table = service_list_table(j);
  CHECK(table.find("    backend 10.244.2.7:8080 (id 12, terminating)\n") != std::string::npos);
  CHECK(table.find("no local backend: external traffic dropped (Local policy)") != std::string::npos);
  CHECK(table.find("no backend: new flows rejected") != std::string::npos);
  CHECK(table.find("\ndefault/db   headless\n") != std::string::npos);
  CHECK(table.find(" \n") == std::string::npos);  // no line ends in a space
}

TEST_CASE("ct list and backend list: ages, states, flows per backend") {
  const snapshot s = sample();
  const json ct = ct_list_json(s, {}, nullptr);
  REQUIRE(ct.size() == 1);
  CHECK(ct[0]["age_s"] == 60);
  CHECK(ct[0]["idle_s"] == 1);
  CHECK(ct[0]["nat"] == "10.244.2.7:8080");
  CHECK(ct[0]["service"] == "default/web:http");
  CHECK(ct[0]["state"] == "open");
  CHECK(ct[0]["expired"] == false);
  const json be = backend_list_json(s);
  REQUIRE(be.size() == 3);
  CHECK(be[1]["id"] == 12);
  CHECK(be[1]["flows"] == 1);
  CHECK(be[2]["frontend"] == "192.168.50.11:30080/TCP");
}

TEST_CASE("trace report of a recorded decision") {
  trace_request r = *parse_trace_args({"pod", "tcp", "10.244.9.9:40000", "10.96.0.10:80"});
  trace_run run;
  run.program = LB_POD_INGRESS_PROG;
  run.prog_id = 7;
  run.in = build_packet(r.packet);
  packet_spec out = r.packet;
  out.dst = ip4("10.244.2.7");
  out.dport = 8080;
  run.out = build_packet(out);
  lb_trace t{};
  t.stat = LB_STAT_FWD_NEW;
  t.svc_id = 1;
  t.backend_id = 12;
  t.ct = LB_TRACE_CT_NEW;
  t.ct_dir = LB_CT_FORWARD;
  t.pick = LB_PICK_RANDOM;
  t.nat_port = htons(8080);
  inet_pton(AF_INET, "10.244.2.7", t.nat_addr);
  run.record = t;
  const json j = trace_json(r, run, sample());
  CHECK(j["verdict"] == "forward_new");
  CHECK(j["action"] == "TC_ACT_OK");
  CHECK(j["service"]["name"] == "default/web:http");
  CHECK(j["backend"]["address"] == "10.244.2.7:8080");
  CHECK(j["backend"]["state"] == "terminating");
  CHECK(j["output"] == "TCP 10.244.9.9:40000 -> 10.244.2.7:8080 [SYN]");
  const std::string table = trace_table(j);
  CHECK(table.find("backend    10.244.2.7:8080 (id 12, terminating), a random slot") != std::string::npos);
  CHECK(table.find("conntrack  new flow\n") != std::string::npos);

  run.record.reset();
  const json none = trace_json(r, run, sample());
  CHECK(none["verdict"].is_null());
}

std::string complete(const std::string& line) {
  const std::string cmd =
      "bash -c 'source " SLUICE_SOURCE_DIR "/tools/completion/sluicectl.bash; COMP_WORDS=(" + line +
      "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _sluicectl; echo \"${COMPREPLY[*]}\"' 2>&1";
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  REQUIRE(f != nullptr);
  char buf[1024];
  while (std::fgets(buf, sizeof(buf), f) != nullptr) {
    out += buf;
  }
  REQUIRE(pclose(f) == 0);
  return out;
}

TEST_CASE("bash completion offers the objects, commands and trace words") {
  CHECK(complete("sluicectl \"\"") == "service backend ct stats trace\n");
  CHECK(complete("sluicectl -j ct \"\"") == "list flush\n");
  CHECK(complete("sluicectl service \"\"") == "list\n");
  CHECK(complete("sluicectl ct list \"\"") == "address port service\n");
  CHECK(complete("sluicectl --bpffs-root /x trace pod tc") == "tcp\n");
  CHECK(complete("sluicectl trace \"\"") ==
        "dev flags len ttl smac dmac pod xdp tc-ingress tc-egress tcp udp icmp\n");
  CHECK(complete("sluicectl trace tcp 10.0.0.1:1 10.0.0.2:2 flags s") == "syn syn,ack\n");
  CHECK(complete("sluicectl --j") == "--json\n");
}

}  // namespace
}  // namespace sluice::ctl
