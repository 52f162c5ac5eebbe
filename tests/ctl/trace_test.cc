// sluicectl trace through the programs an agent loaded and pinned, against its maps, in the
// test process's own network namespace (tests/bpf/netns.h: devices, routes and neighbours for
// bpf_fib_lookup()). Every verdict: pass, new flow, established, reply, reject (RST, ICMP),
// drops (no local endpoint, source range), north-south at XDP (SNAT, DSR) and at tc ingress
// and egress; after every trace each pinned map is byte-for-byte what it was, and a live run
// of the same packet (no dry-run mark) does change them, so that check can fail. The output
// frame is compared with the input byte by byte outside the rewritten fields, and its checksums
// are verified by the bpf tier's independent verifier.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <sstream>
#include <tuple>

#include "ctl_helpers.h"
#include "netns.h"
#include "packet.h"
#include "tools/ctl/format.h"
#include "tools/ctl/packet.h"
#include "tools/ctl/read.h"
#include "tools/ctl/trace.h"

namespace sluice::ctltest {
namespace {

using json = nlohmann::json;

// Addresses of the test network (tests/bpf/netns.h).
constexpr const char* node = "192.168.50.11";   // n0
constexpr const char* client = "192.168.50.1";  // on n0's link
constexpr const char* pod = "10.201.1.9";       // a pod of this node (behind pod0)
constexpr const char* local_be = "10.201.1.5";  // another pod of this node
constexpr const char* remote_be = "10.201.2.7";  // a pod of node2 (behind n0)

desired_frontend fe(const char* vip, uint16_t port, uint8_t proto, frontend_kind kind,
                    const char* name, std::vector<desired_backend> backends) {
  desired_frontend f;
  f.vip = v4(vip);
  f.port = port;
  f.proto = proto;
  f.kind = kind;
  f.name = name;
  f.backends = std::move(backends);
  return f;
}

desired_state services() {
  desired_state d;
  d.frontends = {
      fe("10.96.0.10", 80, IPPROTO_TCP, frontend_kind::cluster_ip, "default/web:http",
         {{v4(local_be), 8080, false}}),
      fe("10.96.0.11", 53, IPPROTO_UDP, frontend_kind::cluster_ip, "kube-system/dns:dns",
         {{v4(local_be), 5353, false}}),
      fe("10.96.0.20", 80, IPPROTO_TCP, frontend_kind::cluster_ip, "default/empty:http", {}),
      fe("10.96.0.20", 53, IPPROTO_UDP, frontend_kind::cluster_ip, "default/empty:dns", {}),
      fe(node, 30080, IPPROTO_TCP, frontend_kind::node_port, "default/remote:http",
         {{v4(remote_be), 8080, false}}),
      fe(node, 30081, IPPROTO_TCP, frontend_kind::node_port, "default/web:http",
         {{v4(local_be), 8080, false}}),
      fe(node, 30082, IPPROTO_TCP, frontend_kind::node_port, "default/hostnet:http",
         {{v4(node), 9000, false}}),
  };
  auto local_only = fe("10.96.0.30", 80, IPPROTO_TCP, frontend_kind::cluster_ip,
                       "default/local:http", {});
  local_only.when_empty = empty_verdict::drop;
  d.frontends.push_back(local_only);
  auto lb = fe("203.0.113.10", 443, IPPROTO_TCP, frontend_kind::load_balancer,
               "shop/front:https", {{v4(remote_be), 8443, false}});
  lb.source_ranges = {{v4("10.0.0.0"), 8}};
  d.frontends.push_back(lb);
  auto sticky = fe("10.96.0.40", 80, IPPROTO_TCP, frontend_kind::cluster_ip, "default/sticky:http",
                   {{v4(local_be), 8080, false}, {v4("10.201.1.6"), 8080, false}});
  sticky.affinity_timeout_s = 600;
  d.frontends.push_back(sticky);
  desired_frontend web6;
  web6.vip = v6("fd96::10");
  web6.port = 80;
  web6.proto = IPPROTO_TCP;
  web6.name = "default/web:http";
  web6.backends = {{v6("fd01:1::5"), 8080, false}};
  d.frontends.push_back(web6);
  std::sort(d.frontends.begin(), d.frontends.end(),
            [](const auto& a, const auto& b) { return a.key() < b.key(); });
  return d;
}

// An agent in the test network: its services, n0 and n1 as native devices.
struct node_agent : agent {
  explicit node_agent(uint32_t lb_mode = LB_MODE_SNAT) : agent(datapath_options{.lb_mode = lb_mode}) {
    const bpftest::TestNet& n = bpftest::test_net();
    REQUIRE_MESSAGE(n.ok, n.why);
    sync(services());
    for (const auto& [ifindex, a4, a6] : {std::tuple{n.n0, "192.168.50.11", "fd50::11"},
                                          std::tuple{n.n1, "192.168.51.11", "fd51::11"}}) {
      lb_device d{};
      inet_pton(AF_INET, a4, &d.addr4);
      inet_pton(AF_INET6, a6, d.addr6);
      REQUIRE(bpf_map_update_elem(bpf_map__fd(skel()->maps.lb_devices_v1), &ifindex, &d,
                                  BPF_ANY) == 0);
    }
  }
};

struct traced {
  json j;                        // sluicectl -j trace's document
  std::vector<uint8_t> in, out;  // the frames fed in and given back
};

// What `sluicectl -j trace WORDS` prints, from the same library calls (one run: the frames
// and the document describe the same random choices), and that no map changed.
traced trace(const agent& a, const std::string& words) {
  std::vector<std::string> w;
  std::istringstream in(words);
  for (std::string s; in >> s;) {
    w.push_back(s);
  }
  INFO("sluicectl trace " << words);
  const auto req = ctl::parse_trace_args(w);
  REQUIRE_MESSAGE(req, (req ? "" : req.error()));
  const map_dump before = dump_maps(a.root());
  const auto run = ctl::run_trace(a.root(), *req);
  REQUIRE_MESSAGE(run, (run ? "" : run.error()));
  const map_dump after = dump_maps(a.root());
  CHECK_MESSAGE(changed_maps(before, after).empty(),
                "the trace changed " << changed_maps(before, after));
  const auto snap = ctl::read_snapshot(a.root(), ctl::read_services);
  REQUIRE(snap);
  traced t;
  t.j = json::parse(ctl::trace_json(*req, *run, *snap).dump());
  INFO(t.j.dump(2));
  REQUIRE(run->record.has_value());
  t.in = run->in;
  t.out = run->out;
  return t;
}

// The output frame is the input with only these bytes changed (plus the IPv4 header and L4
// checksums), and every checksum in it is right.
void expect_rewrite(const traced& t, std::vector<std::pair<size_t, std::vector<uint8_t>>> fields) {
  const auto report = bpftest::verify_checksums(t.out);
  INFO(report.str());
  CHECK(report.ok());
  REQUIRE(t.out.size() == t.in.size());
  std::vector<uint8_t> want = t.in;
  for (const auto& [off, bytes] : fields) {
    std::copy(bytes.begin(), bytes.end(), want.begin() + static_cast<long>(off));
  }
  // IPv4 without options: header checksum at 24, TCP's at 50, UDP's at 40.
  for (const size_t csum : {size_t{24}, size_t{50}, size_t{40}}) {
    if (csum + 1 < want.size()) {
      want[csum] = t.out[csum];
      want[csum + 1] = t.out[csum + 1];
    }
  }
  INFO(bpftest::hex_diff(want, t.out));
  CHECK(want == t.out);
}

std::vector<uint8_t> addr4(const char* a) {
  std::vector<uint8_t> b(4);
  inet_pton(AF_INET, a, b.data());
  return b;
}

std::vector<uint8_t> port(uint16_t p) { return {static_cast<uint8_t>(p >> 8), static_cast<uint8_t>(p)}; }

// Offsets in an IPv4 frame without options.
constexpr size_t ip_src = 26, ip_dst = 30, l4_sport = 34, l4_dport = 36;

// A live run (no dry-run mark): what a real packet does to the maps.
uint32_t live_run(const agent& a, const char* prog, const std::vector<uint8_t>& frame,
                  uint32_t ifindex = 0) {
  const int fd = bpf_obj_get((a.root() + "/" LB_PROG_PIN_PREFIX + prog).c_str());
  REQUIRE(fd >= 0);
  std::vector<uint8_t> out(frame.size() + 256);
  __sk_buff skb{};
  skb.ifindex = ifindex;
  skb.ingress_ifindex = ifindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
              .data_size_in = static_cast<__u32>(frame.size()),
              .data_size_out = static_cast<__u32>(out.size()), .repeat = 1);
  if (ifindex != 0) {
    opts.ctx_in = &skb;
    opts.ctx_size_in = sizeof(skb);
  }
  REQUIRE(bpf_prog_test_run_opts(fd, &opts) == 0);
  close(fd);
  return opts.retval;
}

ctl::packet_spec tcp(const char* src, uint16_t sport, const char* dst, uint16_t dport,
                     uint8_t flags = ctl::tcp_syn) {
  ctl::packet_spec s;
  s.src = v4(src);
  s.dst = v4(dst);
  s.proto = IPPROTO_TCP;
  s.sport = sport;
  s.dport = dport;
  s.tcp_flags = flags;
  return s;
}

TEST_CASE("trace at a pod's device: pass, new flow, established, reply, reject, drop") {
  node_agent a;

  SUBCASE("pass: pod to pod, not a service; the frame is untouched") {
    const auto t = trace(a, fmt::format("pod tcp {}:40000 {}:8080", pod, local_be));
    CHECK(t.j["verdict"] == "pass");
    CHECK(t.j["action"] == "TC_ACT_OK");
    CHECK(t.j["service"].is_null());
    CHECK(t.j["conntrack"]["entry"] == "none");
    CHECK(t.out == t.in);
    const auto echo = trace(a, "pod icmp 10.201.1.9 10.96.0.10");
    CHECK(echo.j["verdict"] == "pass");
    CHECK(echo.out == echo.in);
  }
  SUBCASE("new flow: the ClusterIP's backend, DNAT") {
    const auto t = trace(a, fmt::format("pod tcp {}:40000 10.96.0.10:80", pod));
    CHECK(t.j["verdict"] == "forward_new");
    CHECK(t.j["action"] == "TC_ACT_OK");
    CHECK(t.j["drop"] == false);
    CHECK(t.j["service"]["frontend"] == "10.96.0.10:80/TCP");
    CHECK(t.j["service"]["type"] == "ClusterIP");
    CHECK(t.j["service"]["name"] == "default/web:http");
    CHECK(t.j["backend"]["address"] == "10.201.1.5:8080");
    CHECK(t.j["backend"]["state"] == "active");
    CHECK(t.j["pick"] == "random");
    CHECK(t.j["conntrack"]["entry"] == "new");
    CHECK(t.j["leaves"] == "stack");
    CHECK(t.j["output"] == "TCP 10.201.1.9:40000 -> 10.201.1.5:8080 [SYN]");
    CHECK(t.j["output_checksums"] == "ok");
    expect_rewrite(t, {{ip_dst, addr4(local_be)}, {l4_dport, port(8080)}});
    // The human table of the same trace (prog id varies: normalised).
    const auto table = ctl(a, {"trace", "pod", "tcp", "10.201.1.9:40000", "10.96.0.10:80"});
    CHECK(table.code == 0);
    check_golden("trace_new_flow.txt",
                 std::regex_replace(table.out, std::regex("prog id [0-9]+"), "prog id N"));
  }
  SUBCASE("IPv6 new flow") {
    const auto t = trace(a, "pod tcp [fd01:1::9]:40000 [fd96::10]:80 flags syn len 8");
    CHECK(t.j["verdict"] == "forward_new");
    CHECK(t.j["backend"]["address"] == "[fd01:1::5]:8080");
    CHECK(t.j["output"] == "TCP [fd01:1::9]:40000 -> [fd01:1::5]:8080 [SYN]");
    const auto report = bpftest::verify_checksums(t.out);
    INFO(report.str());
    CHECK(report.ok());
  }
  SUBCASE("UDP new flow") {
    const auto t = trace(a, fmt::format("pod udp {}:5000 10.96.0.11:53 len 20", pod));
    CHECK(t.j["verdict"] == "forward_new");
    CHECK(t.j["backend"]["address"] == "10.201.1.5:5353");
    expect_rewrite(t, {{ip_dst, addr4(local_be)}, {l4_dport, port(5353)}});
  }
  SUBCASE("established and reply: a live SYN made the flow, the trace reads it") {
    const auto syn = ctl::build_packet(tcp(pod, 40010, "10.96.0.10", 80));
    CHECK(live_run(a, LB_POD_INGRESS_PROG, syn) == 0);
    const auto ack = trace(a, fmt::format("pod tcp {}:40010 10.96.0.10:80 flags ack", pod));
    CHECK(ack.j["verdict"] == "forward_established");
    CHECK(ack.j["conntrack"]["entry"] == "forward");
    CHECK(ack.j["conntrack"]["age_s"].get<uint64_t>() < 60);  // made just before
    CHECK(ack.j["pick"].is_null());
    CHECK(ack.j["backend"]["address"] == "10.201.1.5:8080");
    expect_rewrite(ack, {{ip_dst, addr4(local_be)}, {l4_dport, port(8080)}});
    const auto reply = trace(a, fmt::format("pod tcp {}:8080 {}:40010 flags syn,ack", local_be, pod));
    CHECK(reply.j["verdict"] == "reply");
    CHECK(reply.j["conntrack"]["entry"] == "reply");
    CHECK(reply.j["service"]["frontend"] == "10.96.0.10:80/TCP");
    CHECK(reply.j["output"] == "TCP 10.96.0.10:80 -> 10.201.1.9:40010 [SYN,ACK]");
    expect_rewrite(reply, {{ip_src, addr4("10.96.0.10")}, {l4_sport, port(80)}});
  }
  SUBCASE("affinity: the client's entry picks the backend") {
    const auto syn = ctl::build_packet(tcp(pod, 40020, "10.96.0.40", 80));
    CHECK(live_run(a, LB_POD_INGRESS_PROG, syn) == 0);
    const auto t = trace(a, fmt::format("pod tcp {}:40021 10.96.0.40:80", pod));
    CHECK(t.j["verdict"] == "forward_new");
    CHECK(t.j["pick"] == "affinity");
    CHECK(t.j["service"]["name"] == "default/sticky:http");
  }
  SUBCASE("reject: TCP gets a RST, UDP an ICMP port unreachable, from the service") {
    const auto t = trace(a, fmt::format("pod tcp {}:40030 10.96.0.20:80", pod));
    CHECK(t.j["verdict"] == "reject_no_backend");
    CHECK(t.j["action"] == "TC_ACT_REDIRECT");
    CHECK(t.j["backend"].is_null());
    CHECK(t.j["output"] == "TCP 10.96.0.20:80 -> 10.201.1.9:40030 [ACK,RST]");
    CHECK(bpftest::verify_checksums(t.out).ok());
    const auto u = trace(a, fmt::format("pod udp {}:5000 10.96.0.20:53", pod));
    CHECK(u.j["verdict"] == "reject_no_backend");
    CHECK(u.j["output"] ==
          "ICMP 10.96.0.20 -> 10.201.1.9 type 3 code 3 quoting UDP 10.201.1.9:5000 -> 10.96.0.20:53");
    CHECK(bpftest::verify_checksums(u.out).ok());
  }
  SUBCASE("drop: a Local policy without a local endpoint") {
    const auto t = trace(a, fmt::format("pod tcp {}:40040 10.96.0.30:80", pod));
    CHECK(t.j["verdict"] == "drop_no_local_endpoint");
    CHECK(t.j["drop"] == true);
    CHECK(t.j["action"] == "TC_ACT_SHOT");
    CHECK(t.j["output"].is_null());
    CHECK(t.j["service"]["name"] == "default/local:http");
  }
  SUBCASE("a live run of the same packet does change the maps (the check above can fail)") {
    const map_dump before = dump_maps(a.root());
    CHECK(live_run(a, LB_POD_INGRESS_PROG, ctl::build_packet(tcp(pod, 40050, "10.96.0.10", 80))) == 0);
    const std::string changed = changed_maps(before, dump_maps(a.root()));
    CHECK(changed.find(LB4_CT_MAP) != std::string::npos);
    CHECK(changed.find(LB_STATS_MAP) != std::string::npos);
    CHECK(changed.find(LB_SVC_STATS_MAP) != std::string::npos);
  }
}

TEST_CASE("trace north-south: XDP and tc on a native device") {
  node_agent a;
  const bpftest::TestNet& n = bpftest::test_net();

  SUBCASE("XDP: NodePort to another node's backend, SNAT, XDP_TX with the FIB's L2") {
    const auto t = trace(a, fmt::format("xdp dev n0 tcp {}:40000 {}:30080", client, node));
    CHECK(t.j["verdict"] == "forward_remote_new");
    CHECK(t.j["action"] == "XDP_TX");
    CHECK(t.j["service"]["type"] == "NodePort");
    CHECK(t.j["backend"]["address"] == "10.201.2.7:8080");
    CHECK(t.j["leaves"]["device"] == "n0");
    CHECK(t.j["leaves"]["ifindex"] == n.n0);
    const std::string snat = t.j["snat"].get<std::string>();
    REQUIRE(snat.starts_with("192.168.50.11:"));
    const uint16_t sport = static_cast<uint16_t>(std::stoi(snat.substr(14)));
    CHECK(sport >= LB_SNAT_PORT_MIN);
    CHECK(t.j["conntrack"]["flags"] == json::array({"snat", "remote", "vip_local"}));
    CHECK(t.j["output_l2"] == "02:50:00:00:00:11 -> 02:50:00:00:00:12");
    std::vector<uint8_t> dmac{0x02, 0x50, 0, 0, 0, 0x12}, smac{0x02, 0x50, 0, 0, 0, 0x11};
    expect_rewrite(t, {{0, dmac}, {6, smac}, {ip_src, addr4(node)}, {ip_dst, addr4(remote_be)},
                       {l4_sport, port(sport)}, {l4_dport, port(8080)}});
    // The table (prog id, ifindex and the SNAT port vary: normalised).
    const auto table = ctl(a, {"trace", "xdp", "dev", "n0", "tcp", "192.168.50.1:40000",
                               "192.168.50.11:30080"});
    CHECK(table.code == 0);
    std::string text = std::regex_replace(table.out, std::regex("prog id [0-9]+"), "prog id N");
    text = std::regex_replace(text, std::regex("ifindex [0-9]+"), "ifindex N");
    text = std::regex_replace(text, std::regex("192\\.168\\.50\\.11:6[0-9]{4}"), "192.168.50.11:PORT");
    check_golden("trace_xdp_snat.txt", text);
  }
  SUBCASE("XDP: a client outside the source ranges is dropped") {
    const auto t = trace(a, fmt::format("xdp dev n0 tcp {}:40000 203.0.113.10:443", client));
    CHECK(t.j["verdict"] == "drop_source_range");
    CHECK(t.j["action"] == "XDP_DROP");
    CHECK(t.j["service"]["type"] == "LoadBalancer");
    CHECK(t.j["output"].is_null());
  }
  SUBCASE("XDP: a ClusterIP from outside passes untouched") {
    const auto t = trace(a, fmt::format("xdp dev n0 tcp {}:40000 10.96.0.10:80", client));
    CHECK(t.j["verdict"] == "pass");
    CHECK(t.j["action"] == "XDP_PASS");
    CHECK(t.out == t.in);
  }
  SUBCASE("tc ingress: NodePort to this node's pod, DNAT") {
    const auto t = trace(a, fmt::format("tc-ingress dev n0 tcp {}:40000 {}:30081", client, node));
    CHECK(t.j["verdict"] == "forward_new");
    CHECK(t.j["action"] == "TC_ACT_OK");
    CHECK(t.j["backend"]["address"] == "10.201.1.5:8080");
    expect_rewrite(t, {{ip_dst, addr4(local_be)}, {l4_dport, port(8080)}});
  }
  SUBCASE("tc egress: a hostNetwork backend's answer leaves from the NodePort") {
    const auto syn = ctl::build_packet(tcp(client, 40060, node, 30082));
    CHECK(live_run(a, LB_NODE_INGRESS_PROG, syn, n.n0) == 0);
    const auto t = trace(a, fmt::format("tc-egress dev n0 tcp {}:9000 {}:40060 flags syn,ack",
                                        node, client));
    CHECK(t.j["verdict"] == "reply");
    CHECK(t.j["action"] == "TC_ACT_OK");
    CHECK(t.j["service"]["name"] == "default/hostnet:http");
    expect_rewrite(t, {{l4_sport, port(30082)}});
    const auto own = trace(a, fmt::format("tc-egress dev n0 tcp {}:22 {}:5000", node, client));
    CHECK(own.j["verdict"] == "pass");
  }
}

TEST_CASE("trace runs the programs of its own root: an agent in DSR mode beside one in SNAT") {
  node_agent snat;
  node_agent dsr(LB_MODE_DSR);
  const auto s = trace(snat, fmt::format("xdp dev n0 tcp {}:40000 {}:30080", client, node));
  const auto d = trace(dsr, fmt::format("xdp dev n0 tcp {}:40000 {}:30080", client, node));
  CHECK(s.j["snat"].is_string());
  CHECK(d.j["snat"].is_null());
  CHECK(d.j["verdict"] == "forward_remote_new");
  CHECK(d.j["conntrack"]["flags"] == json::array({"dsr", "remote", "vip_local"}));
  CHECK(d.j["output"] ==
        "TCP 192.168.50.1:40000 -> 10.201.2.7:8080 [SYN] dsr 192.168.50.11:30080");
  CHECK(bpftest::verify_checksums(d.out).ok());
  CHECK(d.out.size() == d.in.size() + sizeof(lb_dsr_opt4));
  CHECK(s.j["prog_id"] != d.j["prog_id"]);
}

TEST_CASE("trace refuses a program without dry-run support, and a device that does not exist") {
  node_agent a;
  auto o = ctl(a, {"trace", "xdp", "dev", "nosuchdev0", "tcp", "1.2.3.4:1", "5.6.7.8:2"});
  CHECK(o.code == 1);
  CHECK(o.err.find("device nosuchdev0") != std::string::npos);
  o = ctl(a, {"trace", "xdp", "tcp", "1.2.3.4:1", "5.6.7.8:2"});
  CHECK(o.code == 2);
  CHECK(o.err.find("needs 'dev IFNAME'") != std::string::npos);
  // A program pinned under the root's name without lb_trace_v1 (an older agent's): refused.
  const std::string pin = a.root() + "/" LB_PROG_PIN_PREFIX LB_POD_INGRESS_PROG;
  REQUIRE(unlink(pin.c_str()) == 0);
  const bpf_insn ret0[] = {{.code = 0xb7, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0},  // r0 = 0
                           {.code = 0x95, .dst_reg = 0, .src_reg = 0, .off = 0, .imm = 0}};  // exit
  const int fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "old", "GPL", ret0, 2, nullptr);
  REQUIRE(fd >= 0);
  REQUIRE(bpf_obj_pin(fd, pin.c_str()) == 0);
  close(fd);
  o = ctl(a, {"trace", "tcp", "1.2.3.4:1", "5.6.7.8:2"});
  CHECK(o.code == 1);
  CHECK(o.err.find("predates dry runs") != std::string::npos);
}

}  // namespace
}  // namespace sluice::ctltest
