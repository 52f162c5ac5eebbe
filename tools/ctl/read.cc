#include "tools/ctl/read.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>
#include <vector>

#include "agent/datapath/map_access.h"

namespace sluice::ctl {

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::expected<pinned_map, std::string> pinned_map::open(const std::string& root,
                                                        const char* name) {
  const std::string path = root + "/" + name;
  const int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    return std::unexpected(fmt::format("open {}: {} (is sluice-agent running with --bpffs-root {}?)",
                                       path, strerror(errno), root));
  }
  return pinned_map(fd);
}

pinned_map& pinned_map::operator=(pinned_map&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) {
      close(fd_);
    }
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

pinned_map::~pinned_map() {
  if (fd_ >= 0) {
    close(fd_);
  }
}

namespace {

using opened = std::expected<pinned_map, std::string>;

template <typename Key>
void read_svc_map(int fd, bool v6, std::map<std::tuple<ip_addr, uint16_t, uint8_t>, frontend_entry>& out) {
  for_each_entry_batched<Key, lb_svc_value>(fd, [&](const Key& k, const lb_svc_value& v) {
    const ip_addr vip = addr_of(&k.vip, v6);
    const uint16_t port = ntohs(k.port);
    frontend_entry& f = out[{vip, port, k.proto}];
    f.vip = vip;
    f.port = port;
    f.proto = k.proto;
    const bool ext = k.scope == LB_SCOPE_EXTERNAL;
    if (k.slot == 0) {
      (ext ? f.external_master : f.master) = v;
    } else {
      (ext ? f.external_slots : f.slots)[k.slot] = v.backend_id;
    }
  });
}

template <typename Backend>
void read_backends(int fd, bool v6, std::map<uint32_t, backend_entry>& out) {
  for_each_entry_batched<uint32_t, Backend>(fd, [&](uint32_t id, const Backend& b) {
    out[id] = {id, addr_of(&b.addr, v6), ntohs(b.port), b.proto, b.state, b.svc_id};
  });
}

template <typename Key>
void read_ranges(int fd, bool v6, std::map<uint32_t, std::vector<ip_prefix>>& out) {
  // LPM tries: walked key by key (batch lookup of tries is recent).
  for_each_entry<Key, uint8_t>(fd, [&](const Key& k, uint8_t) {
    if (k.prefixlen < LB_SRC_RANGE_KEY_PREFIX) {
      return;
    }
    out[k.svc_id].push_back({addr_of(&k.addr, v6),
                             static_cast<uint8_t>(k.prefixlen - LB_SRC_RANGE_KEY_PREFIX)});
  });
}

template <typename Key, typename Value>
ct_entry decode_ct(const Key& k, const Value& v, bool v6) {
  ct_entry e;
  e.saddr = addr_of(&k.saddr, v6);
  e.daddr = addr_of(&k.daddr, v6);
  e.sport = ntohs(k.sport);
  e.dport = ntohs(k.dport);
  e.proto = k.proto;
  e.state = v.state;
  e.nat_addr = addr_of(&v.nat_addr, v6);
  e.snat_addr = addr_of(&v.snat_addr, v6);
  return e;
}

template <typename Key, typename Value>
void read_ct_map(int fd, bool v6, std::vector<ct_entry>& out) {
  for_each_entry_batched<Key, Value>(
      fd, [&](const Key& k, const Value& v) { out.push_back(decode_ct(k, v, v6)); });
}

std::expected<void, std::string> read_service_maps(const std::string& root, snapshot& s) {
  opened svc4 = pinned_map::open(root, LB4_SERVICES_MAP);
  opened svc6 = pinned_map::open(root, LB6_SERVICES_MAP);
  opened be4 = pinned_map::open(root, LB4_BACKENDS_MAP);
  opened be6 = pinned_map::open(root, LB6_BACKENDS_MAP);
  opened svc_stats = pinned_map::open(root, LB_SVC_STATS_MAP);
  for (const opened* m : {&svc4, &svc6, &be4, &be6, &svc_stats}) {
    if (!*m) {
      return std::unexpected(m->error());
    }
  }
  std::map<std::tuple<ip_addr, uint16_t, uint8_t>, frontend_entry> fes;
  read_svc_map<lb4_svc_key>(svc4->fd(), false, fes);
  read_svc_map<lb6_svc_key>(svc6->fd(), true, fes);
  for (auto& [key, f] : fes) {
    s.frontends.push_back(std::move(f));
  }
  read_backends<lb4_backend>(be4->fd(), false, s.backends);
  read_backends<lb6_backend>(be6->fd(), true, s.backends);
  for (const frontend_entry& f : s.frontends) {
    if (f.master && f.master->svc_id != 0) {
      percpu_sum(svc_stats->fd(), f.master->svc_id, s.svc_stats[f.master->svc_id]);
    }
  }
  // Optional: source ranges and names exist since their features; an older agent lacks them.
  if (opened r4 = pinned_map::open(root, LB4_SRC_RANGES_MAP)) {
    read_ranges<lb4_src_range_key>(r4->fd(), false, s.src_ranges);
  }
  if (opened r6 = pinned_map::open(root, LB6_SRC_RANGES_MAP)) {
    read_ranges<lb6_src_range_key>(r6->fd(), true, s.src_ranges);
  }
  for (auto& [id, prefixes] : s.src_ranges) {
    std::sort(prefixes.begin(), prefixes.end());
  }
  if (opened info = pinned_map::open(root, LB_SVC_INFO_MAP)) {
    for_each_entry_batched<uint32_t, lb_svc_info>(
        info->fd(), [&](uint32_t id, const lb_svc_info& v) { s.info[id] = v; });
  }
  if (opened unproxied = pinned_map::open(root, LB_UNPROXIED_MAP)) {
    for_each_entry_batched<lb_unproxied_key, lb_unproxied_value>(
        unproxied->fd(), [&](const lb_unproxied_key& k, const lb_unproxied_value& v) {
          s.unproxied.push_back(
              {field_str(k.ns), field_str(k.name), v.reason, field_str(v.external_name)});
        });
    std::sort(s.unproxied.begin(), s.unproxied.end(), [](const auto& a, const auto& b) {
      return std::tie(a.namespace_, a.name) < std::tie(b.namespace_, b.name);
    });
  }
  return {};
}

}  // namespace

std::expected<snapshot, std::string> read_snapshot(const std::string& root, unsigned parts) {
  snapshot s;
  s.now_ns = monotonic_ns();
  if (parts & read_services) {
    if (auto r = read_service_maps(root, s); !r) {
      return std::unexpected(r.error());
    }
  }
  if (parts & read_stats) {
    opened stats = pinned_map::open(root, LB_STATS_MAP);
    if (!stats) {
      return std::unexpected(stats.error());
    }
    for (uint32_t i = 0; i < LB_STAT_MAX; ++i) {
      percpu_sum(stats->fd(), i, s.stats[i]);
    }
  }
  if (parts & read_ct) {
    opened ct4 = pinned_map::open(root, LB4_CT_MAP);
    opened ct6 = pinned_map::open(root, LB6_CT_MAP);
    for (const opened* m : {&ct4, &ct6}) {
      if (!*m) {
        return std::unexpected(m->error());
      }
    }
    read_ct_map<lb4_ct_key, lb4_ct_value>(ct4->fd(), false, s.ct);
    read_ct_map<lb6_ct_key, lb6_ct_value>(ct6->fd(), true, s.ct);
  }
  return s;
}

namespace {

template <typename Key, typename Value>
size_t flush_map(int fd, bool v6, const std::function<bool(const ct_entry&)>& match) {
  std::vector<Key> victims;
  for_each_entry_batched<Key, Value>(fd, [&](const Key& k, const Value& v) {
    if (match(decode_ct(k, v, v6))) {
      victims.push_back(k);
    }
  });
  size_t deleted = 0;
  for (const Key& k : victims) {
    deleted += bpf_map_delete_elem(fd, &k) == 0 ? 1 : 0;
  }
  return deleted;
}

}  // namespace

std::expected<size_t, std::string> flush_ct(const std::string& root,
                                            const std::function<bool(const ct_entry&)>& match) {
  opened ct4 = pinned_map::open(root, LB4_CT_MAP);
  opened ct6 = pinned_map::open(root, LB6_CT_MAP);
  for (const opened* m : {&ct4, &ct6}) {
    if (!*m) {
      return std::unexpected(m->error());
    }
  }
  return flush_map<lb4_ct_key, lb4_ct_value>(ct4->fd(), false, match) +
         flush_map<lb6_ct_key, lb6_ct_value>(ct6->fd(), true, match);
}

}  // namespace sluice::ctl
