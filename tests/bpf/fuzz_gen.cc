#include "fuzz_gen.h"

#include <algorithm>
#include <stdexcept>

#include "cases.h"

namespace bpftest::fuzz {

namespace {

std::uint16_t be16(std::span<const std::uint8_t> f, std::size_t at) {
  return static_cast<std::uint16_t>(f[at] << 8 | f[at + 1]);
}

IpAddr addr_at(std::span<const std::uint8_t> f, std::size_t at, bool v6) {
  IpAddr a;
  a.v6 = v6;
  std::copy_n(f.begin() + static_cast<long>(at), a.size(), a.b.begin());
  return a;
}

// IPv6 extension headers whose length the chain walk knows (RFC 8200 4, RFC 4302).
bool is_ext(std::uint8_t nh) { return nh == 0 || nh == 43 || nh == 44 || nh == 60 || nh == 51; }

}  // namespace

View view(std::span<const std::uint8_t> f) {
  View v;
  if (f.size() < 14) return v;
  v.ethertype = be16(f, 12);
  if (v.ethertype == 0x0800) {
    if (f.size() < 34 || (f[14] >> 4) != 4 || (f[14] & 0x0f) < 5) return v;
    v.ip = true;
    v.src = addr_at(f, 26, false);
    v.dst = addr_at(f, 30, false);
    v.l3_len = static_cast<std::size_t>(f[14] & 0x0f) * 4;
    v.proto = f[23];
    const std::uint16_t fo = be16(f, 20);
    v.later = (fo & 0x1fff) != 0;
    v.frag = v.later || (fo & 0x2000) != 0;
    v.l4 = 14 + v.l3_len;
    v.chain_ok = f.size() >= v.l4;
  } else if (v.ethertype == 0x86dd) {
    if (f.size() < 54 || (f[14] >> 4) != 6) return v;
    v.ip = true;
    v.v6 = true;
    v.src = addr_at(f, 22, true);
    v.dst = addr_at(f, 38, true);
    v.pseudo_dst = 38;
    std::uint8_t nh = f[20];
    std::size_t off = 54;
    for (int n = 0; n < 32 && is_ext(nh); ++n) {
      if (off + 8 > f.size()) return v;
      const std::size_t len = nh == 44 ? 8 : nh == 51 ? (f[off + 1] + 2u) * 4 : (f[off + 1] + 1u) * 8;
      if (nh == 44) {
        v.frag = true;
        v.later = v.later || (be16(f, off + 2) & 0xfff8) != 0;
      }
      if (nh == 43 && f[off + 3] != 0) {
        v.routing_left = true;
        // The pseudo header's destination is the final one: as the checksum verifier reads it.
        if ((f[off + 2] == 4 || f[off + 2] == 2) && len >= 24 && off + 24 <= f.size()) v.pseudo_dst = off + 8;
        else if (f[off + 2] == 0 && len >= 24 && off + len <= f.size()) v.pseudo_dst = off + len - 16;
      }
      nh = f[off];
      off += len;
    }
    if (is_ext(nh)) return v;
    v.proto = nh;
    v.l4 = off;
    v.l3_len = off - 14;
    v.chain_ok = off <= f.size();
  } else {
    return v;
  }
  if (v.chain_ok && !v.later) {
    const std::size_t need = v.proto == kProtoTcp ? 20 : (v.proto == kProtoUdp || v.icmp()) ? 8 : 0;
    if (need != 0 && f.size() >= v.l4 + need) {
      v.l4_ok = true;
      if (v.tcp_or_udp()) {
        v.sport = be16(f, v.l4);
        v.dport = be16(f, v.l4 + 2);
      }
    }
  }
  return v;
}

void fix_checksums(Bytes& f) {
  const View v = view(f);
  if (!v.ip || !v.chain_ok) return;
  std::size_t end = f.size();
  if (!v.v6) {
    f[24] = f[25] = 0;
    const std::uint16_t c = verifier_internet_checksum(std::span(f).subspan(14, v.l3_len));
    f[24] = static_cast<std::uint8_t>(c >> 8);
    f[25] = static_cast<std::uint8_t>(c);
    const std::size_t tot = be16(f, 16);
    if (tot >= v.l3_len) end = std::min(end, 14 + tot);
  } else {
    end = std::min(end, 54 + static_cast<std::size_t>(be16(f, 18)));
  }
  if (v.frag || v.l4 >= end) return;
  std::size_t at = 0;
  if (v.proto == kProtoTcp) at = 16;
  else if (v.proto == kProtoUdp) at = 6;
  else if (v.icmp()) at = 2;
  else return;
  const std::size_t seg_len = end - v.l4;
  if (seg_len < at + 2) return;
  const std::size_t c_at = v.l4 + at;
  if (v.proto == kProtoUdp && !v.v6 && f[c_at] == 0 && f[c_at + 1] == 0) return;  // none stays none
  f[c_at] = f[c_at + 1] = 0;
  Bytes buf;
  if (!(v.proto == kProtoIcmp && !v.v6)) {
    const std::size_t alen = v.v6 ? 16 : 4;
    buf.insert(buf.end(), f.begin() + (v.v6 ? 22 : 26), f.begin() + (v.v6 ? 22 : 26) + static_cast<long>(alen));
    const std::size_t d = v.v6 ? v.pseudo_dst : 30;
    buf.insert(buf.end(), f.begin() + static_cast<long>(d), f.begin() + static_cast<long>(d + alen));
    if (v.v6) buf.insert(buf.end(), {static_cast<std::uint8_t>(seg_len >> 24), static_cast<std::uint8_t>(seg_len >> 16),
                                     static_cast<std::uint8_t>(seg_len >> 8), static_cast<std::uint8_t>(seg_len), 0, 0, 0,
                                     v.proto});
    else buf.insert(buf.end(), {0, v.proto, static_cast<std::uint8_t>(seg_len >> 8), static_cast<std::uint8_t>(seg_len)});
  }
  buf.insert(buf.end(), f.begin() + static_cast<long>(v.l4), f.begin() + static_cast<long>(end));
  std::uint16_t c = verifier_internet_checksum(buf);
  if (v.proto == kProtoUdp && c == 0) c = 0xffff;
  f[c_at] = static_cast<std::uint8_t>(c >> 8);
  f[c_at + 1] = static_cast<std::uint8_t>(c);
}

std::optional<std::pair<IpAddr, std::uint16_t>> dsr_option_of(std::span<const std::uint8_t> f) {
  const View v = view(f);
  if (!v.ip) return std::nullopt;
  if (!v.v6) {
    if (v.l3_len != 28 || f.size() < 42 || f[34] != LB_DSR_OPT4_TYPE || f[35] != 8) return std::nullopt;
    return std::pair{addr_at(f, 38, false), be16(f, 36)};
  }
  if (f[20] != 60 || f.size() < 78 || f[55] != 2 || f[56] != LB_DSR_OPT6_TYPE || f[57] != 18) return std::nullopt;
  return std::pair{addr_at(f, 58, true), be16(f, 74)};
}

// ---- the service set ---------------------------------------------------------------------------

std::vector<const Backend*> Front::backends() const {
  std::vector<const Backend*> out;
  for (const Backend& b : all.backends) out.push_back(&b);
  if (ext)
    for (const Backend& b : ext->backends) out.push_back(&b);
  for (const Backend& b : maglev) out.push_back(&b);
  return out;
}

namespace {

bool holds(const std::vector<const Backend*>& bs, const IpAddr& a, std::optional<std::uint16_t> port) {
  return std::any_of(bs.begin(), bs.end(), [&](const Backend* b) { return b->addr == a && (!port || *port == b->port); });
}

}  // namespace

bool Front::backend(const IpAddr& a, std::optional<std::uint16_t> port) const { return holds(backends(), a, port); }

bool Front::ext_backend(const IpAddr& a, std::optional<std::uint16_t> port) const {
  if (!ext) return backend(a, port);
  std::vector<const Backend*> bs;
  for (const Backend& b : ext->backends) bs.push_back(&b);
  return holds(bs, a, port);
}

bool Front::in_ranges(const IpAddr& client) const {
  for (const auto& [prefix, len] : ranges) {
    if (prefix.v6 != client.v6) continue;
    std::uint32_t bits = len;
    bool match = true;
    for (std::size_t i = 0; i < prefix.size() && bits > 0 && match; ++i) {
      const std::uint32_t take = std::min<std::uint32_t>(bits, 8);
      const auto mask = static_cast<std::uint8_t>(0xff << (8 - take));
      match = (prefix.b[i] & mask) == (client.b[i] & mask);
      bits -= take;
    }
    if (match) return true;
  }
  return false;
}

const Net& net(bool v6) {
  static const Net n4{ip("192.168.50.11"),
                      ip("192.168.51.11"),
                      ip("192.168.50.1"),
                      ip("203.0.113.7"),
                      ip("192.168.50.254"),
                      ip("192.168.50.12"),
                      {ip("10.201.1.5"), ip("10.201.1.6"), ip("10.201.1.7")},
                      {ip("10.201.2.5"), ip("10.201.2.6")},
                      ip("10.201.3.5"),
                      ip("10.201.4.5"),
                      {ip("10.96.0.10"), ip("10.96.0.11"), ip("10.96.0.12"), ip("10.96.0.13")},
                      {ip("192.168.60.100"), ip("192.168.60.101")},
                      ip("192.168.70.5"),
                      ip("198.51.100.20")};
  static const Net n6{ip("fd50::11"),
                      ip("fd51::11"),
                      ip("fd50::1"),
                      ip("2001:db8::7"),
                      ip("fd50::fe"),
                      ip("fd50::12"),
                      {ip("fd01:1::5"), ip("fd01:1::6"), ip("fd01:1::7")},
                      {ip("fd01:2::5"), ip("fd01:2::6")},
                      ip("fd01:3::5"),
                      ip("fd01:4::5"),
                      {ip("fd96::10"), ip("fd96::11"), ip("fd96::12"), ip("fd96::13")},
                      {ip("fd60::100"), ip("fd60::101")},
                      ip("fd70::5"),
                      ip("2001:db8:ffff::20")};
  return v6 ? n6 : n4;
}

namespace {

struct Be {
  IpAddr addr;
  std::uint16_t port;
};

class Builder {
 public:
  explicit Builder(World& w) : w_(w) {}

  Front& add(std::string what, const IpAddr& vip, std::uint16_t port, std::uint8_t proto, std::uint16_t flags,
             const std::vector<Be>& bes, std::uint32_t affinity_s = 0) {
    Front f;
    f.what = std::move(what);
    f.all.vip = vip;
    f.all.port = port;
    f.all.proto = proto;
    f.all.svc_id = ++w_.max_svc_id;
    f.all.flags = flags;
    f.all.affinity_timeout = affinity_s;
    for (const Be& b : bes) f.all.backends.push_back(make(f, b));
    w_.fronts.push_back(std::move(f));
    return w_.fronts.back();
  }

  // externalTrafficPolicy Local: the EXTERNAL scope, flagged as the agent flags it
  // (agent/reconcile: only affinity and "drop when empty"; the north-south flags stay on the
  // ALL master).
  void local(Front& f, const std::vector<Be>& bes) {
    Service s;
    s.vip = f.all.vip;
    s.port = f.all.port;
    s.proto = f.all.proto;
    s.svc_id = f.all.svc_id;
    s.scope = LB_SCOPE_EXTERNAL;
    s.affinity_timeout = f.all.affinity_timeout;
    s.flags = static_cast<std::uint16_t>((f.all.affinity_timeout ? LB_SVC_F_AFFINITY : 0) |
                                         (bes.empty() ? LB_SVC_F_DROP_EMPTY : 0));
    for (const Be& b : bes) s.backends.push_back(make(f, b));
    f.ext = std::move(s);
  }

  // A Maglev table over the external backends (as the agent builds it) plus `extra` ones.
  void maglev(Front& f, const std::vector<Be>& extra) {
    f.all.flags |= LB_SVC_F_MAGLEV;
    for (const Be& b : extra) f.maglev.push_back(make(f, b));
    for (const Backend& b : f.ext ? f.ext->backends : f.all.backends) f.table.push_back(b.id);
    for (const Backend& b : f.maglev) f.table.push_back(b.id);
  }

 private:
  // The same endpoint twice in one frontend keeps its id, as the agent's ids do.
  Backend make(const Front& f, const Be& be) {
    for (const Backend* b : f.backends())
      if (b->addr == be.addr && b->port == be.port) return *b;
    Backend b;
    b.id = f.all.svc_id * 100 + static_cast<std::uint32_t>(f.backends().size()) + 1;
    b.addr = be.addr;
    b.port = be.port;
    return b;
  }

  World& w_;
};

void add_family(Builder& b, bool v6) {
  const Net& n = net(v6);
  const std::uint8_t T = kProtoTcp, U = kProtoUdp;
  const auto E = static_cast<std::uint16_t>(LB_SVC_F_EXTERNAL);
  const auto L = static_cast<std::uint16_t>(LB_SVC_F_EXTERNAL | LB_SVC_F_EXT_LOCAL);
  const auto R = static_cast<std::uint16_t>(LB_SVC_F_SOURCE_RANGES);
  const IpAddr client_net = v6 ? ip("fd50::") : ip("192.168.50.0");
  const IpAddr pod_net = v6 ? ip("fd01::") : ip("10.201.0.0");
  const IpAddr other_net = v6 ? ip("fd99::") : ip("10.0.0.0");
  const std::uint32_t client_len = v6 ? 64 : 24, pod_len = v6 ? 32 : 16, other_len = v6 ? 16 : 8;

  b.add("ClusterIP web", n.cip[0], 80, T, 0, {{n.pod[0], 8080}, {n.remote[0], 8080}, {n.far, 8080}});
  b.add("ClusterIP dns", n.cip[0], 53, U, 0, {{n.pod[1], 5353}, {n.remote[0], 5353}});
  b.add("ClusterIP ClientIP affinity", n.cip[1], 80, T, LB_SVC_F_AFFINITY,
        {{n.pod[1], 8081}, {n.pod[2], 8081}, {n.remote[1], 8081}}, 10);
  b.add("ClusterIP without endpoints (tcp)", n.cip[2], 80, T, 0, {});
  b.add("ClusterIP without endpoints (udp)", n.cip[2], 53, U, 0, {});
  b.add("ClusterIP, one backend (hairpin from it)", n.cip[3], 443, T, 0, {{n.pod[0], 8443}});
  b.add("NodePort on n0 (tcp)", n.n0, 30080, T, E,
        {{n.pod[0], 8080}, {n.remote[0], 8080}, {n.far, 8080}, {n.unresolved, 8080}});
  b.add("NodePort on n0 (udp)", n.n0, 30053, U, E, {{n.pod[1], 5353}, {n.remote[0], 5353}, {n.far, 5353}});
  b.add("NodePort on n1", n.n1, 30080, T, E, {{n.pod[0], 8080}, {n.remote[0], 8080}});
  Front& etp = b.add("NodePort, externalTrafficPolicy Local", n.n0, 30090, T, L, {{n.remote[1], 9090}, {n.pod[2], 9090}});
  b.local(etp, {{n.pod[2], 9090}});
  Front& etp0 = b.add("NodePort, eTP Local without a local endpoint", n.n0, 30091, U, L, {{n.remote[1], 9091}});
  b.local(etp0, {});
  Front& r1 = b.add("LoadBalancer, source ranges with the client", n.lb[0], 443, T, E | R,
                    {{n.pod[0], 8444}, {n.remote[0], 8444}});
  r1.ranges = {{client_net, client_len}, {pod_net, pod_len}};
  Front& r2 = b.add("LoadBalancer, source ranges without the client", n.lb[1], 443, T, E | R, {{n.pod[1], 8445}});
  r2.ranges = {{other_net, other_len}};
  Front& r3 = b.add("LoadBalancer, eTP Local with source ranges without the client", n.lb[1], 80, T, L | R,
                    {{n.remote[1], 8446}, {n.pod[2], 8446}});
  b.local(r3, {{n.pod[2], 8446}});
  r3.ranges = {{other_net, other_len}};
  Front& m1 = b.add("NodePort, Maglev (tcp)", n.n0, 30100, T, E, {{n.pod[0], 8100}});
  b.maglev(m1, {{n.pod[1], 8100}, {n.remote[0], 8100}, {n.far, 8100}});
  Front& m2 = b.add("NodePort, Maglev (udp)", n.n0, 30100, U, E, {{n.pod[1], 8101}});
  b.maglev(m2, {{n.remote[1], 8101}});
  Front& m3 = b.add("NodePort, Maglev and ClientIP affinity", n.n0, 30101, T, E | LB_SVC_F_AFFINITY,
                    {{n.pod[2], 8102}, {n.remote[0], 8102}}, 5);
  b.maglev(m3, {});
  Front& m4 = b.add("NodePort, Maglev and eTP Local", n.n0, 30102, U, L, {{n.remote[0], 8103}, {n.pod[0], 8103}});
  b.local(m4, {{n.pod[0], 8103}, {n.pod[1], 8103}});
  b.maglev(m4, {});
  b.add("ExternalIP", n.ext_ip, 80, T, E, {{n.pod[1], 8082}, {n.remote[0], 8082}});
  b.add("NodePort without endpoints (tcp)", n.n0, 30110, T, E, {});
  b.add("NodePort without endpoints (udp)", n.n0, 30110, U, E, {});
  b.add("hostPort", n.n0, 8888, T, E, {{n.pod[2], 80}});
  b.add("NodePort, hostNetwork backend", n.n0, 30120, T, E, {{n.n0, 9100}, {n.remote[1], 9100}});
  b.add("LoadBalancer dns behind n1 (MTU 1400)", n.lb[0], 53, U, E, {{n.far, 5353}});
}

}  // namespace

const Front* World::by_id(std::uint32_t id) const {
  for (const Front& f : fronts)
    if (f.all.svc_id == id) return &f;
  return nullptr;
}

const Front* World::front_of(const IpAddr& dst, std::uint16_t dport, std::uint8_t proto) const {
  for (const Front& f : fronts)
    if (f.all.vip == dst && f.all.port == dport && f.all.proto == proto) return &f;
  return nullptr;
}

bool World::is_vip(const IpAddr& a) const { return std::find(vips.begin(), vips.end(), a) != vips.end(); }

bool World::is_node(const IpAddr& a) const {
  const Net& n = net(a.v6);
  return a == n.n0 || a == n.n1;
}

void World::install(Fixture& fx) const {
  const TestNet& tn = test_net();
  fx.put_device(tn.n0, net(false).n0, net(true).n0);
  fx.put_device(tn.n1, net(false).n1, net(true).n1);
  for (const Front& f : fronts) {
    if (f.ext) fx.add_service(*f.ext);
    fx.add_service(f.all);
    for (const Backend& b : f.maglev) fx.put_backend(b, f.all.proto, f.all.svc_id);
    if (!f.table.empty()) {
      std::vector<std::uint32_t> t(kMaglevSize);
      for (std::size_t i = 0; i < t.size(); ++i) t[i] = f.table[(i * 7) % f.table.size()];
      fx.put_maglev(f.all.svc_id, t);
    }
    for (const auto& [prefix, len] : f.ranges) fx.put_src_range(f.all.svc_id, prefix, len);
  }
}

World make_world() {
  World w;
  Builder b(w);
  add_family(b, false);
  add_family(b, true);
  for (const Front& f : w.fronts)
    if (!w.is_vip(f.all.vip)) w.vips.push_back(f.all.vip);
  for (bool v6 : {false, true}) {
    const Net& n = net(v6);
    for (const IpAddr& a : {n.n0, n.n1, n.client, n.client2, n.router, n.node2, n.pod[0], n.pod[1], n.pod[2],
                            n.remote[0], n.remote[1], n.far, n.unresolved, n.cip[0], n.cip[1], n.cip[2], n.cip[3],
                            n.lb[0], n.lb[1], n.ext_ip, n.internet})
      w.addresses.push_back(a);
  }
  return w;
}

// ---- the generator ---------------------------------------------------------------------------

std::string prog_name(Prog p) {
  switch (p) {
    case Prog::PodIngress: return "pod";
    case Prog::NodeXdp: return "xdp";
    case Prog::NodeIngress: return "tcin";
    case Prog::NodeEgress: return "tcout";
  }
  return "?";
}

std::string dev_name(Dev d) {
  switch (d) {
    case Dev::None: return "none";
    case Dev::N0: return "n0";
    case Dev::N1: return "n1";
    case Dev::Pod0: return "pod0";
  }
  return "?";
}

IpAddr Generator::any_addr(bool v6) {
  if (chance(85)) {
    IpAddr a;
    do a = pick(w_.addresses);
    while (a.v6 != v6);
    return a;
  }
  IpAddr a;
  a.v6 = v6;
  for (std::size_t i = 0; i < a.size(); ++i) a.b[i] = static_cast<std::uint8_t>(rng_());
  return a;
}

Bytes Generator::random_bytes(std::size_t n) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng_());
  return b;
}

std::uint16_t Generator::any_port() {
  static const std::vector<std::uint16_t> ports = {0, 1, 22, 53, 80, 443, 5353, 8080, 8888, 30053, 30080, 30090,
                                                   30100, 30110, 30120, 40000, 40001, 61000, 65535};
  if (chance(60)) return pick(ports);
  return static_cast<std::uint16_t>(rng_());
}

// The MAC addresses a frame has where it enters.
void macs_for(Pkt& p, Dev dev) {
  p = dev == Dev::Pod0 || dev == Dev::None ? p.macs(kMacClient, kMacHost)
      : dev == Dev::N1                     ? p.macs(kMacNode3, kMacN1)
                                           : p.macs(kMacNClient, kMacN0);
}

void Generator::place(Shot& s, const IpAddr& from) {
  const Net& n = net(from.v6);
  if (chance(15)) {
    s.prog = static_cast<Prog>(below(4));
  } else if (from == n.pod[0] || from == n.pod[1] || from == n.pod[2]) {
    s.prog = Prog::PodIngress;
  } else if (w_.is_node(from)) {
    s.prog = Prog::NodeEgress;
  } else {
    s.prog = chance(50) ? Prog::NodeXdp : Prog::NodeIngress;
  }
  if (s.prog == Prog::PodIngress) s.dev = chance(90) ? Dev::Pod0 : Dev::None;
  else s.dev = from == n.far || chance(10) ? Dev::N1 : Dev::N0;
}

Shot Generator::random_frame() {
  Shot s;
  s.how = "random frame";
  s.prog = static_cast<Prog>(below(4));
  s.dev = s.prog == Prog::PodIngress ? Dev::Pod0 : chance(80) ? Dev::N0 : Dev::N1;
  const std::size_t len = chance(5) ? below(14) : 14 + below(300);
  s.in = random_bytes(len);
  if (len >= 54 && chance(70)) {
    const bool v6 = chance(50);
    s.in[12] = v6 ? 0x86 : 0x08;
    s.in[13] = v6 ? 0xdd : 0x00;
    s.in[14] = static_cast<std::uint8_t>(v6 ? 0x60 | (s.in[14] & 0x0f) : 0x45 + (chance(20) ? below(11) : 0));
    if (chance(70)) {
      // Addresses and ports of the test network, a protocol sluice looks at.
      const IpAddr src = any_addr(v6), dst = any_addr(v6);
      std::copy(src.b.begin(), src.b.begin() + static_cast<long>(src.size()), s.in.begin() + (v6 ? 22 : 26));
      std::copy(dst.b.begin(), dst.b.begin() + static_cast<long>(dst.size()), s.in.begin() + (v6 ? 38 : 30));
      static const std::vector<std::uint8_t> protos = {kProtoTcp, kProtoUdp, kProtoIcmp, kProtoIcmp6, 0, 43, 44, 60};
      s.in[v6 ? 20 : 23] = pick(protos);
      if (!v6) s.in[20] = s.in[21] = 0;  // not a fragment, mostly
      const std::size_t l4 = v6 ? 54 : 14 + static_cast<std::size_t>(s.in[14] & 0x0f) * 4;
      if (l4 + 4 <= s.in.size()) {
        const std::uint16_t sp = any_port(), dp = any_port();
        s.in[l4] = static_cast<std::uint8_t>(sp >> 8);
        s.in[l4 + 1] = static_cast<std::uint8_t>(sp);
        s.in[l4 + 2] = static_cast<std::uint8_t>(dp >> 8);
        s.in[l4 + 3] = static_cast<std::uint8_t>(dp);
      }
    }
    if (chance(50)) fix_checksums(s.in);
  }
  return s;
}

Shot Generator::valid() {
  const bool v6 = chance(50);
  const Net& n = net(v6);
  Shot s;
  const std::uint32_t where = below(100);
  s.prog = where < 35 ? Prog::PodIngress : where < 60 ? Prog::NodeXdp : where < 88 ? Prog::NodeIngress : Prog::NodeEgress;
  IpAddr src, dst;
  std::uint16_t sport = chance(70) ? static_cast<std::uint16_t>(40000 + below(4)) : any_port();
  std::uint16_t dport = 0;
  std::uint8_t proto = chance(55) ? kProtoTcp : kProtoUdp;
  std::optional<std::pair<IpAddr, std::uint16_t>> dsr;
  std::vector<const Front*> fronts;
  for (const Front& f : w_.fronts)
    if (f.all.vip.v6 == v6 && (s.prog == Prog::PodIngress || f.external() || chance(10))) fronts.push_back(&f);
  const bool to_front = s.prog != Prog::NodeEgress && chance(70) && !fronts.empty();
  if (to_front) {
    const Front* f = pick(fronts);
    dst = f->all.vip;
    dport = f->all.port;
    if (chance(90)) proto = f->all.proto;
    s.how = "valid: to " + f->what;
  } else {
    static const std::vector<std::uint16_t> ports = {22, 80, 443, 8080, 30080};
    const std::vector<IpAddr> others = {n.remote[0], n.internet, n.pod[1], n.n0, n.client, n.far};
    dst = pick(others);
    dport = pick(ports);
    s.how = "valid: not for a service";
    if (s.prog == Prog::NodeXdp || s.prog == Prog::NodeIngress) {
      if (chance(40)) {
        // Another node balanced it to a pod here: the DSR option names that node's service.
        dst = n.pod[below(3)];
        dport = 8080;
        const std::vector<IpAddr> vips = {n.node2, n.n0, n.lb[0], n.internet};
        dsr = std::pair{pick(vips), static_cast<std::uint16_t>(chance(50) ? 30080 : any_port())};
        s.how = "valid: DSR option to a pod of this node";
      }
    }
  }
  switch (s.prog) {
    case Prog::PodIngress: src = chance(85) ? n.pod[below(3)] : any_addr(v6); break;
    case Prog::NodeEgress: src = chance(70) ? n.n0 : n.n1; break;
    default: {
      const std::vector<IpAddr> outside = {n.client, n.client, n.client, n.client2, n.node2, n.router};
      src = chance(90) ? pick(outside) : any_addr(v6);
    }
  }
  if (s.prog == Prog::PodIngress) s.dev = chance(90) ? Dev::Pod0 : Dev::None;
  else s.dev = chance(85) ? Dev::N0 : Dev::N1;

  Pkt p;
  if (chance(8)) {
    p = icmp_echo(src, dst);
    s.how = "valid: echo request";
  } else {
    p = l4(proto, src, sport, dst, dport);
    if (proto == kProtoTcp) {
      const std::uint32_t k = below(100);
      p.tcp_flags = k < 50 ? kSyn : k < 70 ? kAck | kPsh : k < 80 ? kFin | kAck : k < 85 ? kRst : k < 95 ? kSyn | kAck
                                                                                                  : static_cast<std::uint8_t>(rng_());
      p.seq = static_cast<std::uint32_t>(rng_());
      if (p.tcp_flags & kAck) p.ack_seq = static_cast<std::uint32_t>(rng_());
    }
    const std::uint32_t size = below(100);
    if (proto == kProtoUdp || (p.tcp_flags & kPsh) || chance(10))
      p.payload = random_bytes(size < 70 ? below(65) : size < 90 ? 64 + below(450) : 1200 + below(261));
    if (dsr) p = with_dsr(p, dsr->first, dsr->second);
  }
  p.df = chance(70);
  p.ttl = static_cast<std::uint8_t>(chance(90) ? 64 : below(256));
  p.hop_limit = p.ttl;
  p.ip_id = static_cast<std::uint16_t>(rng_());
  p.flow_label = chance(50) ? 0 : static_cast<std::uint32_t>(rng_() & 0xfffff);
  macs_for(p, s.dev);
  if (chance(10)) {
    // An ICMP error about this packet, from a router on its way.
    const Bytes b = build(p);
    p = icmp_about(Bytes(b.begin() + 14, b.end()), chance(50) ? n.router : dst, src);
    macs_for(p, s.dev);
    s.how += ", quoted in an ICMP error";
  }
  s.in = build(p);
  s.desc = p;
  return s;
}

Pkt Generator::icmp_about(const Bytes& quoted, const IpAddr& from, const IpAddr& to) {
  const bool v6 = to.v6;
  std::uint8_t type = 0, code = 0;
  std::uint32_t info = 0;
  switch (below(4)) {
    case 0:  // v4 fragmentation needed / v6 packet too big
      type = v6 ? 2 : 3;
      code = v6 ? 0 : 4;
      info = chance(80) ? 1280 : static_cast<std::uint32_t>(rng_());
      break;
    case 1:  // port unreachable
      type = v6 ? 1 : 3;
      code = v6 ? 4 : 3;
      break;
    case 2:  // time exceeded
      type = v6 ? 3 : 11;
      break;
    default:  // host unreachable, or anything
      type = chance(70) ? (v6 ? 1 : 3) : static_cast<std::uint8_t>(below(256));
      code = static_cast<std::uint8_t>(chance(70) ? 1 : below(256));
  }
  // Quotes of every length: the header + 8 bytes RFC 792 asks for, "as much as fits"
  // (RFC 4443), cut inside the header, or nothing at all.
  Bytes q = quoted;
  const std::size_t hdr = q.empty() ? 0 : (q[0] >> 4) == 4 ? static_cast<std::size_t>(q[0] & 0x0f) * 4 : 40;
  switch (below(5)) {
    case 0: break;
    case 1: q.resize(std::min(q.size(), hdr + 8)); break;
    case 2: q.resize(std::min<std::size_t>(q.size(), below(static_cast<std::uint32_t>(hdr + 12)))); break;
    case 3: q.resize(std::min<std::size_t>(q.size(), 28)); break;
    default: q.resize(std::min<std::size_t>(q.size(), hdr + 4)); break;
  }
  return icmp_error(from, to, type, code, info, std::move(q), kMacRouter, kMacN0);
}

Shot Generator::derived() {
  const Sent& sent = pick(pool_);
  const View ov = view(sent.out);
  Shot s;
  const std::uint32_t k = below(100);
  if (k < 35 && ov.ip && ov.l4_ok && ov.tcp_or_udp()) {
    // The answer of whoever the frame went to.
    Pkt a = answer_pkt(ov.proto, ov.dst, ov.dport, ov.src, ov.sport, kMacBackend, kMacHost);
    if (ov.proto == kProtoTcp) {
      static const std::vector<std::uint8_t> flags = {kSyn | kAck, kAck, kAck | kPsh, kFin | kAck, kRst, kRst | kAck};
      a.tcp_flags = pick(flags);
      if (a.tcp_flags & kPsh) a.payload = random_bytes(below(200));
    }
    if (chance(10)) a.payload = random_bytes(1300 + below(160));
    place(s, ov.dst);
    macs_for(a, s.dev);
    s.in = build(a);
    s.desc = a;
    s.how = "derived: the answer to a translated frame";
    return s;
  }
  if (k < 60 && sent.in) {
    // A later packet of the flow (or the same one again).
    Pkt p = *sent.in;
    if (p.proto == kProtoTcp) {
      static const std::vector<std::uint8_t> flags = {kAck, kAck | kPsh, kFin | kAck, kRst, kSyn, kSyn};
      p.tcp_flags = pick(flags);
      p.seq += 1;
    }
    if (chance(50)) p.payload = random_bytes(below(100) < 85 ? below(200) : 1300 + below(160));
    s.prog = sent.prog;
    s.dev = sent.dev;
    s.in = build(p);
    s.desc = p;
    s.how = "derived: a later packet of a translated flow";
    return s;
  }
  if (!ov.ip) return valid();
  // An ICMP error about the translated frame: from a router on its way or from its receiver,
  // back to its source.
  const Net& n = net(ov.v6);
  const IpAddr from = chance(50) ? n.router : ov.dst;
  Pkt e = icmp_about(Bytes(sent.out.begin() + 14, sent.out.end()), from, ov.src);
  place(s, from);
  macs_for(e, s.dev);
  s.in = build(e);
  s.desc = e;
  s.how = "derived: an ICMP error about a translated frame";
  return s;
}

void Generator::mutate_icmp(Pkt& p) {
  switch (below(4)) {
    case 0: p.payload.resize(below(static_cast<std::uint32_t>(p.payload.size() + 1))); break;
    case 1:
      if (!p.payload.empty()) p.payload[below(static_cast<std::uint32_t>(p.payload.size()))] = static_cast<std::uint8_t>(rng_());
      break;
    case 2:
      p.icmp_type = static_cast<std::uint8_t>(below(256));
      p.icmp_code = static_cast<std::uint8_t>(below(256));
      break;
    default:
      // The quote's addresses swapped (a quote of the other direction).
      if (p.payload.size() >= 20 && (p.payload[0] >> 4) == 4) {
        std::swap_ranges(p.payload.begin() + 12, p.payload.begin() + 16, p.payload.begin() + 16);
      } else if (p.payload.size() >= 40 && (p.payload[0] >> 4) == 6) {
        std::swap_ranges(p.payload.begin() + 8, p.payload.begin() + 24, p.payload.begin() + 24);
      }
  }
}

void Generator::mutate(Pkt& p) {
  const bool v6 = p.v6();
  const std::uint32_t times = 1 + below(3);
  for (std::uint32_t t = 0; t < times; ++t) {
    switch (below(16)) {
      case 0: p.tcp_flags = static_cast<std::uint8_t>(rng_()); break;
      case 1: p.sport = chance(50) ? any_port() : static_cast<std::uint16_t>(p.sport + 1); break;
      case 2: p.dport = chance(50) ? any_port() : static_cast<std::uint16_t>(p.dport - 1); break;
      case 3: p.dst = any_addr(v6); break;
      case 4: p.src = any_addr(v6); break;
      case 5: {
        const std::uint32_t k = below(4);
        p.l4_raw.reset();
        if (k == 0) p.proto = kProtoTcp;
        else if (k == 1) p.proto = kProtoUdp;
        else if (k == 2) {
          p.proto = v6 ? kProtoIcmp6 : kProtoIcmp;
          p.icmp_type = static_cast<std::uint8_t>(chance(50) ? (v6 ? 1 : 3) : below(256));
        } else {
          static const std::vector<std::uint8_t> others = {0, 2, 4, 41, 43, 44, 47, 50, 51, 60, 132, 136, 255};
          p.proto = pick(others);
          p.l4_raw = random_bytes(below(48));
        }
        break;
      }
      case 6:
      case 7:
        if (!v6) {
          static const std::vector<Bytes> opts = {
              {0x94, 0x04, 0x00, 0x00},                          // router alert
              {0x01, 0x01, 0x01, 0x00},                          // NOPs, EOL
              {0x9a, 0x07, 0x00, 0x50, 10, 96, 0, 10},           // DSR type, wrong length
              {0x9a, 0x08, 0x75, 0x80, 192, 168, 50, 12, 1, 1, 1, 0},  // DSR, then NOPs (not alone)
              {0x44, 0x0c, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0},  // timestamp
              {0x00, 0x00, 0x00, 0x00},                          // EOL
              {0x07, 0xff, 0x00, 0x00},                          // record route, length past the header
          };
          if (chance(70)) {
            p.ip_options = pick(opts);
          } else {
            p.ip_options = random_bytes(4 * below(11));
          }
        } else {
          std::vector<Ext6> chain;
          const std::uint32_t len = 1 + below(chance(20) ? 9 : 4);
          for (std::uint32_t i = 0; i < len; ++i) {
            switch (below(5)) {
              case 0: chain.push_back(hop_by_hop()); break;
              case 1: chain.push_back(dest_opts()); break;
              case 2: {
                Ext6 e = dest_opts();
                e.opts = random_bytes(6 + 8 * below(3));
                chain.push_back(e);
                break;
              }
              case 3: chain.push_back(routing(static_cast<std::uint8_t>(chance(50) ? 0 : 1), {any_addr(true), p.dst})); break;
              default: chain.push_back(fragment_hdr());
            }
          }
          p.ext = std::move(chain);
        }
        break;
      case 8: {
        static const std::vector<std::uint32_t> ids = {0x1234, 0x4321, 7};
        const std::uint32_t id = chance(80) ? pick(ids) : static_cast<std::uint32_t>(rng_());
        if (chance(50)) p = p.fragment(0, 8 * (1 + below(4)), true, id);
        else p = p.fragment(8 * (1 + below(8)), std::nullopt, chance(30), id);
        break;
      }
      case 9: p.udp_zero_csum = !p.udp_zero_csum; break;
      case 10: {
        const std::uint32_t k = below(100);
        p.payload = random_bytes(k < 60 ? below(64) : k < 85 ? below(600) : 1300 + below(180));
        break;
      }
      case 11:
        p.df = !p.df;
        p.ttl = static_cast<std::uint8_t>(chance(50) ? below(2) : below(256));
        p.hop_limit = p.ttl;
        p.tos = static_cast<std::uint8_t>(rng_());
        p.tclass = p.tos;
        break;
      case 12:
        if (chance(50)) {
          p.tcp_options = random_bytes(4 * below(11));
        } else {
          static const std::vector<Bytes> opts = {
              {0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0, 1, 2, 3, 0, 0, 0, 0, 0x01, 0x03, 0x03, 0x07},
              {0x02, 0x00, 0x00, 0x00},  // MSS with length 0
              {0x08, 0xff, 0x00, 0x00},  // timestamps with a length past the header
          };
          p.tcp_options = pick(opts);
        }
        break;
      case 13: {
        const Front& f = pick(w_.fronts);
        const IpAddr vip = f.all.vip.v6 == v6 && chance(70) ? f.all.vip : any_addr(v6);
        p = with_dsr(p, vip, chance(80) ? f.all.port : any_port());
        break;
      }
      case 14:
        if (p.proto == kProtoIcmp || p.proto == kProtoIcmp6) mutate_icmp(p);
        else p = p.seqs(static_cast<std::uint32_t>(rng_()), static_cast<std::uint32_t>(rng_()));
        break;
      default: {
        // The other family: addresses of the same role, family-specific headers dropped.
        p.src = any_addr(!v6);
        p.dst = any_addr(!v6);
        p.ip_options.clear();
        p.ext.clear();
        if (p.proto == kProtoIcmp || p.proto == kProtoIcmp6) p.proto = v6 ? kProtoIcmp : kProtoIcmp6;
        return;
      }
    }
  }
}

void Generator::mutate_raw(Bytes& f) {
  const View v = view(f);
  switch (below(7)) {
    case 0: {
      // Cut short, mostly near a header boundary.
      std::vector<std::size_t> at = {14, 14 + 20, 14 + 40};
      if (v.ip) at.insert(at.end(), {14 + v.l3_len, v.l4 + 8, v.l4 + 20});
      std::size_t n = chance(70) ? pick(at) + below(5) - 2 : below(static_cast<std::uint32_t>(f.size() + 1));
      f.resize(std::min(f.size(), n));
      break;
    }
    case 1: {
      const Bytes tail = random_bytes(1 + below(64));
      f.insert(f.end(), tail.begin(), tail.end());
      break;
    }
    case 2: {
      const std::uint32_t bits = 1 + below(4);
      for (std::uint32_t i = 0; i < bits && !f.empty(); ++i) {
        const std::size_t at = below(static_cast<std::uint32_t>(std::min<std::size_t>(f.size(), 120)));
        f[at] ^= static_cast<std::uint8_t>(1u << below(8));
      }
      break;
    }
    case 3:
      // A length field that lies: IPv4 total length or header length, IPv6 payload length,
      // UDP length, TCP data offset.
      if (v.ip && !v.v6 && f.size() >= 18) {
        if (chance(50)) {
          const std::uint16_t len = static_cast<std::uint16_t>(chance(50) ? rng_() : f.size() - 14 + below(9) - 4);
          f[16] = static_cast<std::uint8_t>(len >> 8);
          f[17] = static_cast<std::uint8_t>(len);
        } else {
          f[14] = static_cast<std::uint8_t>(0x40 | below(16));
        }
      } else if (v.ip && f.size() >= 20) {
        const std::uint16_t len = static_cast<std::uint16_t>(chance(50) ? rng_() : f.size() - 54 + below(9) - 4);
        f[18] = static_cast<std::uint8_t>(len >> 8);
        f[19] = static_cast<std::uint8_t>(len);
      }
      if (v.l4_ok && v.proto == kProtoUdp && chance(50)) {
        const std::uint16_t len = static_cast<std::uint16_t>(rng_());
        f[v.l4 + 4] = static_cast<std::uint8_t>(len >> 8);
        f[v.l4 + 5] = static_cast<std::uint8_t>(len);
      }
      if (v.l4_ok && v.proto == kProtoTcp && chance(50)) f[v.l4 + 12] = static_cast<std::uint8_t>(below(16) << 4);
      break;
    case 4:
      if (f.size() > 14) f[14] = static_cast<std::uint8_t>((below(16) << 4) | (f[14] & 0x0f));
      break;
    case 5:
      if (f.size() >= 14) {
        if (chance(40)) {
          // An 802.1Q tag in front of the IP header.
          const Bytes tag = {0x81, 0x00, 0x00, 0x05};
          f.insert(f.begin() + 12, tag.begin(), tag.end());
        } else {
          static const std::vector<std::uint16_t> types = {0x0800, 0x86dd, 0x0806, 0x8847, 0x88cc};
          const std::uint16_t t = chance(80) ? pick(types) : static_cast<std::uint16_t>(rng_());
          f[12] = static_cast<std::uint8_t>(t >> 8);
          f[13] = static_cast<std::uint8_t>(t);
        }
      }
      break;
    default:
      if (v.ip) f[v.v6 ? 20 : 23] = static_cast<std::uint8_t>(chance(50) ? below(256) : below(64));
  }
  if (chance(50)) fix_checksums(f);
}

void Generator::sent(Sent s) {
  constexpr std::size_t kPool = 48;
  if (pool_.size() < kPool) {
    pool_.push_back(std::move(s));
    return;
  }
  pool_[next_slot_] = std::move(s);
  next_slot_ = (next_slot_ + 1) % kPool;
}

Shot Generator::next() {
  const std::uint32_t k = below(100);
  Shot s = k < 12 ? random_frame() : (k < 50 || pool_.empty()) ? valid() : derived();
  if (s.desc && chance(45)) {
    Pkt p = *s.desc;
    mutate(p);
    try {
      s.in = build(p);
      s.desc = p;
      s.how += ", mutated";
    } catch (const std::invalid_argument&) {
      // A description the builder cannot write (it checks option sizes): keep the original.
    }
  }
  if (chance(s.desc ? 25 : 10)) {
    mutate_raw(s.in);
    s.desc.reset();
    s.how += ", raw mutation";
  }
  return s;
}

}  // namespace bpftest::fuzz
