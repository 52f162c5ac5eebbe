#include "fixture.h"

#include "agent/datapath/map_access.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

namespace bpftest {

namespace {

[[noreturn]] void fail(const std::string& what, int err) {
  throw std::runtime_error(what + ": " + std::strerror(err < 0 ? -err : err));
}

void copy_addr(__be32* dst, const IpAddr& a) { std::memcpy(dst, a.b.data(), a.size()); }

IpAddr addr_from(const __be32* src, bool v6) {
  IpAddr a;
  a.v6 = v6;
  std::memcpy(a.b.data(), src, a.size());
  return a;
}

// libbpf's messages go to stderr, except that after one failed load the (identical, very long)
// verifier log of every later fixture is dropped.
bool g_quiet = false;

int print_fn(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG || g_quiet) return 0;
  return std::vfprintf(stderr, fmt, args);
}

void update(const bpf_map* m, const void* k, const void* v, const char* what) {
  if (bpf_map_update_elem(bpf_map__fd(m), k, v, BPF_ANY) != 0) fail(what, errno);
}

}  // namespace

std::uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

Fixture::Fixture(const FixtureOptions& opts) {
  libbpf_set_print(print_fn);
  ncpus_ = libbpf_num_possible_cpus();
  if (ncpus_ <= 0) fail("libbpf_num_possible_cpus", ncpus_);
  skel_ = Skel::open();
  if (skel_ == nullptr) fail("skeleton open", errno);
  // Fresh, private maps for every fixture: never reuse or create pins.
  bpf_map* m = nullptr;
  bpf_object__for_each_map(m, skel_->obj) {
    const int err = bpf_map__set_pin_path(m, nullptr);
    if (err != 0) {
      Skel::destroy(skel_);
      fail(std::string("bpf_map__set_pin_path(") + bpf_map__name(m) + ", NULL)", err);
    }
  }
  if (opts.lb_mode) skel_->rodata->cfg_lb_mode = *opts.lb_mode;
  if (opts.snat_port_min) skel_->rodata->cfg_snat_port_min = *opts.snat_port_min;
  if (opts.snat_port_max) skel_->rodata->cfg_snat_port_max = *opts.snat_port_max;
  if (opts.maglev_size) {
    skel_->rodata->cfg_maglev_size = *opts.maglev_size;
    // as the agent's loader: a table is one value of all entries
    const int e = bpf_map__set_value_size(bpf_map__inner_map(skel_->maps.lb_maglev_v2),
                                          LB_MAGLEV_TABLE_BYTES(*opts.maglev_size));
    if (e != 0) {
      Skel::destroy(skel_);
      fail("size the Maglev table template", e);
    }
  }
  if (opts.host_netns_cookie) skel_->rodata->cfg_host_netns_cookie = *opts.host_netns_cookie;
  if (opts.sock_host_only) skel_->rodata->cfg_sock_host_only = *opts.sock_host_only ? 1 : 0;
  const int err = Skel::load(skel_);
  if (err != 0) {
    Skel::destroy(skel_);
    skel_ = nullptr;
    const bool first = !g_quiet;
    g_quiet = true;
    fail(first ? "skeleton load (libbpf log above)" : "skeleton load (log printed for the first failure only)", err);
  }
}

Fixture::~Fixture() {
  if (skel_ != nullptr) Skel::destroy(skel_);
}

void Fixture::put_master(const Service& s) {
  const std::uint16_t count = s.count.value_or(static_cast<std::uint16_t>(s.backends.size()));
  lb_svc_value v{};
  v.backend_id = 0;
  v.svc_id = s.svc_id;
  v.affinity_timeout = s.affinity_timeout;
  v.count = count;
  v.flags = s.flags;
  if (s.vip.v6) {
    lb6_svc_key k{};
    copy_addr(k.vip, s.vip);
    k.port = htons(s.port);
    k.slot = 0;
    k.proto = s.proto;
    k.scope = s.scope;
    update(skel_->maps.lb6_services_v1, &k, &v, "update lb6_services master");
  } else {
    lb4_svc_key k{};
    copy_addr(&k.vip, s.vip);
    k.port = htons(s.port);
    k.slot = 0;
    k.proto = s.proto;
    k.scope = s.scope;
    update(skel_->maps.lb4_services_v1, &k, &v, "update lb4_services master");
  }
}

void Fixture::put_slot(const Service& s, std::uint16_t slot, std::uint32_t backend_id) {
  lb_svc_value v{};
  v.backend_id = backend_id;
  v.svc_id = s.svc_id;
  if (s.vip.v6) {
    lb6_svc_key k{};
    copy_addr(k.vip, s.vip);
    k.port = htons(s.port);
    k.slot = slot;
    k.proto = s.proto;
    k.scope = s.scope;
    update(skel_->maps.lb6_services_v1, &k, &v, "update lb6_services slot");
  } else {
    lb4_svc_key k{};
    copy_addr(&k.vip, s.vip);
    k.port = htons(s.port);
    k.slot = slot;
    k.proto = s.proto;
    k.scope = s.scope;
    update(skel_->maps.lb4_services_v1, &k, &v, "update lb4_services slot");
  }
}

void Fixture::put_backend(const Backend& b, std::uint8_t proto, std::uint32_t svc_id) {
  const std::uint32_t id = b.id;
  if (b.addr.v6) {
    lb6_backend v{};
    copy_addr(v.addr, b.addr);
    v.port = htons(b.port);
    v.proto = b.proto.value_or(proto);
    v.state = b.state;
    v.svc_id = b.svc_id.value_or(svc_id);
    update(skel_->maps.lb6_backends_v1, &id, &v, "update lb6_backends");
  } else {
    lb4_backend v{};
    copy_addr(&v.addr, b.addr);
    v.port = htons(b.port);
    v.proto = b.proto.value_or(proto);
    v.state = b.state;
    v.svc_id = b.svc_id.value_or(svc_id);
    update(skel_->maps.lb4_backends_v1, &id, &v, "update lb4_backends");
  }
}

void Fixture::delete_backend(bool v6, std::uint32_t id) {
  const bpf_map* m = v6 ? skel_->maps.lb6_backends_v1 : skel_->maps.lb4_backends_v1;
  if (bpf_map_delete_elem(bpf_map__fd(m), &id) != 0) fail("delete backend", errno);
}

void Fixture::add_service(const Service& s) {
  for (const Backend& b : s.backends) put_backend(b, s.proto, s.svc_id);
  for (std::size_t i = 0; i < s.backends.size(); ++i)
    put_slot(s, static_cast<std::uint16_t>(i + 1), s.backends[i].id);
  put_master(s);
}

RunResult Fixture::run(const Bytes& in) {
  RunResult r;
  r.out.assign(4096, 0);
  LIBBPF_OPTS(bpf_test_run_opts, opts,
              .data_in = in.data(),
              .data_out = r.out.data(),
              .data_size_in = static_cast<__u32>(in.size()),
              .data_size_out = static_cast<__u32>(r.out.size()),
              .repeat = 1);
  const int err = bpf_prog_test_run_opts(bpf_program__fd(skel_->progs.lb_pod_ingress), &opts);
  r.err = err;
  r.retval = opts.retval;
  r.out.resize(err == 0 ? opts.data_size_out : 0);
  return r;
}

RunResult Fixture::run(Prog prog, const Bytes& in, std::uint32_t ifindex) {
  if (prog == Prog::PodIngress && ifindex == 0) return run(in);
  const bpf_program* p = prog == Prog::PodIngress    ? skel_->progs.lb_pod_ingress
                         : prog == Prog::NodeXdp     ? skel_->progs.lb_node_xdp
                         : prog == Prog::NodeIngress ? skel_->progs.lb_node_ingress
                                                     : skel_->progs.lb_node_egress;
  RunResult r;
  r.out.assign(4096, 0);
  xdp_md xctx{};
  __sk_buff sctx{};
  LIBBPF_OPTS(bpf_test_run_opts, opts,
              .data_in = in.data(),
              .data_out = r.out.data(),
              .data_size_in = static_cast<__u32>(in.size()),
              .data_size_out = static_cast<__u32>(r.out.size()),
              .repeat = 1);
  xdp_md xout{};
  if (ifindex != 0 && prog == Prog::NodeXdp) {
    xctx.data_end = static_cast<__u32>(in.size());
    xctx.ingress_ifindex = ifindex;
    opts.ctx_in = &xctx;
    opts.ctx_size_in = sizeof(xctx);
    // The output starts at data_meta; ctx_out.data says how much of it is metadata.
    opts.ctx_out = &xout;
    opts.ctx_size_out = sizeof(xout);
  } else if (ifindex != 0) {
    sctx.ifindex = ifindex;
    if (prog != Prog::NodeEgress) sctx.ingress_ifindex = ifindex;
    opts.ctx_in = &sctx;
    opts.ctx_size_in = sizeof(sctx);
  }
  const int err = bpf_prog_test_run_opts(bpf_program__fd(p), &opts);
  r.err = err;
  r.retval = opts.retval;
  r.out.resize(err == 0 ? opts.data_size_out : 0);
  if (err == 0 && opts.ctx_out == &xout && xout.data > 0 && xout.data <= r.out.size()) {
    r.meta.assign(r.out.begin(), r.out.begin() + xout.data);
    r.out.erase(r.out.begin(), r.out.begin() + xout.data);
  }
  return r;
}

void Fixture::put_device(std::uint32_t ifindex, const IpAddr& addr4, const IpAddr& addr6, std::uint32_t flags) {
  lb_device d{};
  std::memcpy(&d.addr4, addr4.b.data(), 4);
  std::memcpy(d.addr6, addr6.b.data(), 16);
  d.flags = flags;
  update(skel_->maps.lb_devices_v1, &ifindex, &d, "update lb_devices_v1");
}

void Fixture::put_src_range(std::uint32_t svc_id, const IpAddr& prefix, std::uint32_t len) {
  const std::uint8_t one = 1;
  if (prefix.v6) {
    lb6_src_range_key k{};
    k.prefixlen = LB_SRC_RANGE_KEY_PREFIX + len;
    k.svc_id = svc_id;
    copy_addr(k.addr, prefix);
    update(skel_->maps.lb6_src_ranges_v1, &k, &one, "update lb6_src_ranges_v1");
  } else {
    lb4_src_range_key k{};
    k.prefixlen = LB_SRC_RANGE_KEY_PREFIX + len;
    k.svc_id = svc_id;
    copy_addr(&k.addr, prefix);
    update(skel_->maps.lb4_src_ranges_v1, &k, &one, "update lb4_src_ranges_v1");
  }
}

void Fixture::put_maglev(std::uint32_t svc_id, const std::vector<std::uint32_t>& table) {
  LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = LB_MAGLEV_TABLE_FLAGS);
  const int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "lb_maglev_in", sizeof(std::uint32_t),
                                LB_MAGLEV_TABLE_BYTES(static_cast<__u32>(table.size())), 1, &mo);
  if (fd < 0) fail("create Maglev inner map", errno);
  const std::uint32_t zero = 0;
  if (bpf_map_update_elem(fd, &zero, table.data(), BPF_ANY) != 0) {
    const int e = errno;
    close(fd);
    fail("fill Maglev inner map", e);
  }
  const int rc = bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_maglev_v2), &svc_id, &fd, BPF_ANY);
  const int e = errno;
  close(fd);  // the outer map holds its own reference
  if (rc != 0) fail("update lb_maglev_v2", e);
}

StatArray Fixture::stats() const {
  StatArray out{};
  const int fd = bpf_map__fd(skel_->maps.lb_stats_v3);
  for (std::uint32_t i = 0; i < LB_STAT_MAX; ++i) {
    lb_stat_value v{};
    if (!sluice::percpu_sum(fd, i, v)) fail("lookup lb_stats_v3", errno);
    out[i] = v.packets;
  }
  return out;
}

lb_svc_stat_value Fixture::svc_stats(std::uint32_t svc_id) const {
  lb_svc_stat_value sum{};
  if (!sluice::percpu_sum(bpf_map__fd(skel_->maps.lb_svc_stats_v1), svc_id, sum)) {
    fail("lookup lb_svc_stats_v1", errno);
  }
  return sum;
}

// One conntrack lookup for either family: the v4 and v6 structs differ only in address widths.
template <typename Key, typename Value>
std::optional<CtValue> read_ct(bpf_map* map, const CtKey& k) {
  const bool v6 = k.saddr.v6;
  Key key{};
  copy_addr(reinterpret_cast<__be32*>(&key.saddr), k.saddr);
  copy_addr(reinterpret_cast<__be32*>(&key.daddr), k.daddr);
  key.sport = htons(k.sport);
  key.dport = htons(k.dport);
  key.proto = k.proto;
  Value v{};
  if (bpf_map_lookup_elem(bpf_map__fd(map), &key, &v) != 0) return std::nullopt;
  CtValue out;
  out.nat_addr = addr_from(reinterpret_cast<const __be32*>(&v.nat_addr), v6);
  out.snat_addr = addr_from(reinterpret_cast<const __be32*>(&v.snat_addr), v6);
  out.nat_port = ntohs(v.state.nat_port);
  out.snat_port = ntohs(v.state.snat_port);
  out.dir = v.state.dir;
  out.flags = v.state.flags;
  out.backend_id = v.state.backend_id;
  out.svc_id = v.state.svc_id;
  out.created_ns = v.state.created_ns;
  out.last_seen_ns = v.state.last_seen_ns;
  return out;
}

std::optional<CtValue> Fixture::ct(const CtKey& k) const {
  return k.saddr.v6 ? read_ct<lb6_ct_key, lb6_ct_value>(skel_->maps.lb6_ct_v2, k)
                    : read_ct<lb4_ct_key, lb4_ct_value>(skel_->maps.lb4_ct_v2, k);
}

template <typename Key, typename Value>
void age_ct(bpf_map* map, const CtKey& k, std::uint64_t last_seen_ns) {
  Key key{};
  copy_addr(reinterpret_cast<__be32*>(&key.saddr), k.saddr);
  copy_addr(reinterpret_cast<__be32*>(&key.daddr), k.daddr);
  key.sport = htons(k.sport);
  key.dport = htons(k.dport);
  key.proto = k.proto;
  Value v{};
  if (bpf_map_lookup_elem(bpf_map__fd(map), &key, &v) != 0) fail("lookup conntrack entry to age", errno);
  v.state.last_seen_ns = last_seen_ns;
  if (bpf_map_update_elem(bpf_map__fd(map), &key, &v, BPF_EXIST) != 0) fail("age conntrack entry", errno);
}

void Fixture::set_ct_last_seen(const CtKey& k, std::uint64_t last_seen_ns) {
  if (k.saddr.v6) {
    age_ct<lb6_ct_key, lb6_ct_value>(skel_->maps.lb6_ct_v2, k, last_seen_ns);
  } else {
    age_ct<lb4_ct_key, lb4_ct_value>(skel_->maps.lb4_ct_v2, k, last_seen_ns);
  }
}

std::size_t Fixture::ct_entries(bool v6) const {
  return map_entries(v6 ? skel_->maps.lb6_ct_v2 : skel_->maps.lb4_ct_v2);
}

std::optional<lb_affinity_value> Fixture::affinity(const IpAddr& client, std::uint32_t svc_id) const {
  lb_affinity_value v{};
  int rc = 0;
  if (client.v6) {
    lb6_affinity_key k{};
    copy_addr(k.client, client);
    k.svc_id = svc_id;
    rc = bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb6_affinity_v1), &k, &v);
  } else {
    lb4_affinity_key k{};
    copy_addr(&k.client, client);
    k.svc_id = svc_id;
    rc = bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb4_affinity_v1), &k, &v);
  }
  if (rc != 0) return std::nullopt;
  return v;
}

void Fixture::put_affinity(const IpAddr& client, std::uint32_t svc_id, const lb_affinity_value& v) {
  if (client.v6) {
    lb6_affinity_key k{};
    copy_addr(k.client, client);
    k.svc_id = svc_id;
    update(skel_->maps.lb6_affinity_v1, &k, &v, "update lb6_affinity");
  } else {
    lb4_affinity_key k{};
    copy_addr(&k.client, client);
    k.svc_id = svc_id;
    update(skel_->maps.lb4_affinity_v1, &k, &v, "update lb4_affinity");
  }
}

std::size_t Fixture::affinity_entries(bool v6) const {
  return map_entries(v6 ? skel_->maps.lb6_affinity_v1 : skel_->maps.lb4_affinity_v1);
}

std::optional<lb_frag_value> Fixture::frag(const IpAddr& saddr, const IpAddr& daddr, std::uint32_t id,
                                           std::uint8_t proto) const {
  lb_frag_value v{};
  int rc = 0;
  if (saddr.v6) {
    lb6_frag_key k{};
    copy_addr(k.saddr, saddr);
    copy_addr(k.daddr, daddr);
    k.id = htonl(id);
    k.proto = proto;
    rc = bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb6_frags_v1), &k, &v);
  } else {
    lb4_frag_key k{};
    copy_addr(&k.saddr, saddr);
    copy_addr(&k.daddr, daddr);
    k.id = htons(static_cast<std::uint16_t>(id));
    k.proto = proto;
    rc = bpf_map_lookup_elem(bpf_map__fd(skel_->maps.lb4_frags_v1), &k, &v);
  }
  if (rc != 0) return std::nullopt;
  return v;
}

void Fixture::clear_flows() {
  for (const bpf_map* m : {skel_->maps.lb4_ct_v2, skel_->maps.lb6_ct_v2, skel_->maps.lb4_affinity_v1,
                           skel_->maps.lb6_affinity_v1, skel_->maps.lb4_frags_v1,
                           skel_->maps.lb6_frags_v1})
    clear_map(m);
}

std::size_t map_entries(const bpf_map* m) {
  const int fd = bpf_map__fd(m);
  std::vector<std::uint8_t> key(bpf_map__key_size(m)), next(bpf_map__key_size(m));
  std::size_t n = 0;
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    ++n;
    key = next;
    prev = key.data();
  }
  return n;
}

void clear_map(const bpf_map* m) {
  const int fd = bpf_map__fd(m);
  std::vector<std::uint8_t> key(bpf_map__key_size(m));
  // Always restart from the first key: deleting the current key breaks get_next_key chains.
  while (bpf_map_get_next_key(fd, nullptr, key.data()) == 0) {
    if (bpf_map_delete_elem(fd, key.data()) != 0) fail(std::string("clear ") + bpf_map__name(m), errno);
  }
}

}  // namespace bpftest
