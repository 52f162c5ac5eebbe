#include "agent/datapath/ct_gc.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "maps/sluice_abi.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

constexpr uint64_t k_nsec_per_sec = 1'000'000'000ull;
constexpr size_t k_chunk = 4096;

uint64_t monotonic_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * k_nsec_per_sec + static_cast<uint64_t>(ts.tv_nsec);
}

struct timeouts {
  uint64_t tcp = 0, tcp_close = 0, tcp_fin = 0, udp = 0;
};

// bpf/lib/common.h lb_older_than(): signed, so a stamp written after `now` was read is fresh.
bool older_than(uint64_t now, uint64_t then, uint64_t span) {
  return static_cast<int64_t>(now - then) > static_cast<int64_t>(span);
}

// bpf/lib/conntrack.h lb_ct_expired(): the ABI's rule, the same arithmetic.
bool expired(const lb_ct_state& st, uint8_t proto, uint64_t now, const timeouts& t) {
  return older_than(now, st.last_seen_ns,
                    lb_ct_timeout_ns(st.flags, proto, t.tcp, t.tcp_close, t.tcp_fin, t.udp));
}

// What the sweep needs to know about the services, from the writer's mirror.
struct service_view {
  const map_state& mirror;
  explicit service_view(const map_state& m) : mirror(m) {}

  // svc_id -> ClientIP timeout (0 = none). Built on first use: only the affinity maps need it,
  // and a sweep step that never reaches them (most steps) should not walk every frontend.
  const std::unordered_map<uint32_t, uint32_t>& affinity_s() const {
    if (!affinity_built_) {
      for (const auto& [key, f] : mirror.frontends) {
        affinity_[f.svc_id] = (f.flags & LB_SVC_F_AFFINITY) ? f.affinity_timeout_s : 0;
      }
      affinity_built_ = true;
    }
    return affinity_;
  }

 private:
  mutable std::unordered_map<uint32_t, uint32_t> affinity_;
  mutable bool affinity_built_ = false;

 public:

  // The backend id is still a backend of svc_id, at this address and port (ids are reused
  // after deletion, so the id alone could name a different endpoint by now).
  template <size_t N>
  bool serves(uint32_t backend_id, uint32_t svc_id, const void* addr, __be16 port) const {
    const auto it = mirror.backends.find(backend_id);
    if (it == mirror.backends.end() || it->second.svc_id != svc_id) {
      return false;
    }
    const backend_record& b = it->second;
    return (b.addr.family == ip_family::v4) == (N == 4) &&
           std::memcmp(b.addr.bytes.data(), addr, N) == 0 && htons(b.port) == port;
  }

  bool serves_any(uint32_t backend_id, uint32_t svc_id) const {
    const auto it = mirror.backends.find(backend_id);
    return it != mirror.backends.end() && it->second.svc_id == svc_id;
  }
};

template <typename T>
std::string bytes_of(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof(v));
}

// The key of the other entry of the flow `k` belongs to (bpf/lib/conntrack.h lb_ct_peer()).
template <typename Key, typename Value>
Key peer_of(const Key& k, const Value& v) {
  const bool snat = v.state.flags & LB_CT_F_SNAT;
  Key p{};
  p.proto = k.proto;
  if (v.state.dir == LB_CT_FORWARD) {
    std::memcpy(&p.saddr, &v.nat_addr, sizeof(p.saddr));
    std::memcpy(&p.daddr, snat ? static_cast<const void*>(&v.snat_addr) : &k.saddr,
                sizeof(p.daddr));
    p.sport = v.state.nat_port;
    p.dport = snat ? v.state.snat_port : k.sport;
  } else {
    std::memcpy(&p.saddr, snat ? static_cast<const void*>(&v.snat_addr) : &k.daddr,
                sizeof(p.saddr));
    std::memcpy(&p.daddr, &v.nat_addr, sizeof(p.daddr));
    p.sport = snat ? v.state.snat_port : k.dport;
    p.dport = v.state.nat_port;
  }
  return p;
}

// Both entries of one flow carry the same creation time, backend and service.
bool same_flow(const lb_ct_state& a, const lb_ct_state& b) {
  return a.dir != b.dir && a.created_ns == b.created_ns && a.backend_id == b.backend_id &&
         a.svc_id == b.svc_id;
}

bool unchanged(const lb_ct_state& a, const lb_ct_state& b) {
  return a.dir == b.dir && a.flags == b.flags && a.created_ns == b.created_ns &&
         a.last_seen_ns == b.last_seen_ns && a.backend_id == b.backend_id;
}

// One chunk of a map through BPF_MAP_LOOKUP_BATCH. Returns false at the end of the map.
template <typename Key, typename Value>
result<bool> next_chunk(int fd, bool started, uint32_t& batch, size_t want, std::vector<Key>& keys,
                        std::vector<Value>& values) {
  for (;;) {
    keys.resize(want);
    values.resize(want);
    uint32_t out = 0;
    auto count = static_cast<__u32>(want);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int rc = bpf_map_lookup_batch(fd, started ? &batch : nullptr, &out, keys.data(),
                                        values.data(), &count, &opts);
    const int err = rc == 0 ? 0 : errno;
    if (err == ENOSPC && count == 0) {
      want *= 2;  // one hash bucket holds more entries than asked for
      continue;
    }
    if (rc != 0 && err != ENOENT) {
      return os_error(rc, "conntrack batch lookup");
    }
    keys.resize(count);
    values.resize(count);
    batch = out;
    return err != ENOENT;
  }
}

template <typename Key, typename Value, size_t N>
class ct_pass {
 public:
  ct_pass(int fd, const service_view& svc, const timeouts& t, uint64_t now, ct_sweep_counts& c)
      : fd_(fd), svc_(svc), t_(t), now_(now), c_(c) {}

  void entry(const Key& k, const Value& v) {
    ++c_.scanned;
    if (deleted_.contains(bytes_of(k))) {
      return;  // the peer of a flow deleted earlier in this chunk
    }
    const lb_ct_state& st = v.state;
    if (k.proto == IPPROTO_UDP && !backend_serves(k, v)) {
      c_.udp_stale += remove_flow(k, v);
      return;
    }
    if (!expired(st, k.proto, now_, t_)) {
      return;
    }
    Value pv{};
    const Key pk = peer_of(k, v);
    const bool have_peer = bpf_map_lookup_elem(fd_, &pk, &pv) == 0 && same_flow(st, pv.state);
    if (have_peer && !expired(pv.state, k.proto, now_, t_)) {
      return;  // the other direction keeps the flow alive (lb_ct_alive)
    }
    c_.expired += remove_flow(k, v);
  }

  void next_chunk() { deleted_.clear(); }

 private:
  bool backend_serves(const Key& k, const Value& v) const {
    if (v.state.dir == LB_CT_FORWARD) {
      return svc_.serves<N>(v.state.backend_id, v.state.svc_id, &v.nat_addr, v.state.nat_port);
    }
    return svc_.serves<N>(v.state.backend_id, v.state.svc_id, &k.saddr, k.sport);
  }

  // Deletes the entry (if the datapath has not touched it since it was read) and its peer of
  // the same flow. Returns the number of entries deleted.
  uint64_t remove_flow(const Key& k, const Value& v) {
    Value now{};
    if (bpf_map_lookup_elem(fd_, &k, &now) != 0 || !unchanged(now.state, v.state)) {
      return 0;
    }
    uint64_t n = 0;
    if (bpf_map_delete_elem(fd_, &k) == 0) {
      ++n;
      deleted_.insert(bytes_of(k));
    }
    const Key pk = peer_of(k, v);
    Value pv{};
    if (bpf_map_lookup_elem(fd_, &pk, &pv) == 0 && same_flow(v.state, pv.state) &&
        bpf_map_delete_elem(fd_, &pk) == 0) {
      ++n;
      deleted_.insert(bytes_of(pk));
    }
    return n;
  }

  int fd_;
  const service_view& svc_;
  const timeouts& t_;
  uint64_t now_;
  ct_sweep_counts& c_;
  std::set<std::string> deleted_;
};

template <typename Key>
class affinity_pass {
 public:
  affinity_pass(int fd, const service_view& svc, uint64_t now, ct_sweep_counts& c)
      : fd_(fd), svc_(svc), now_(now), c_(c) {}

  void entry(const Key& k, const lb_affinity_value& v) {
    ++c_.scanned;
    uint64_t* counter = nullptr;
    if (!svc_.serves_any(v.backend_id, k.svc_id)) {
      counter = &c_.affinity_stale;
    } else {
      const auto& affinity = svc_.affinity_s();
      const auto it = affinity.find(k.svc_id);
      const uint64_t timeout = it == affinity.end() ? 0 : it->second * k_nsec_per_sec;
      // lb_select_backend(): an entry is used while now - last_used <= timeout.
      if (older_than(now_, v.last_used_ns, timeout)) {
        counter = &c_.affinity_expired;
      }
    }
    if (counter == nullptr) {
      return;
    }
    lb_affinity_value cur{};
    if (bpf_map_lookup_elem(fd_, &k, &cur) != 0 || cur.last_used_ns != v.last_used_ns ||
        cur.backend_id != v.backend_id) {
      return;  // a new connection refreshed it meanwhile
    }
    if (bpf_map_delete_elem(fd_, &k) == 0) {
      ++*counter;
    }
  }

  void next_chunk() {}

 private:
  int fd_;
  const service_view& svc_;
  uint64_t now_;
  ct_sweep_counts& c_;
};

// Walks one map from the cursor, at most `budget` entries (0 = to the end). Returns whether the
// map's end was reached.
template <typename Key, typename Value, typename Pass>
result<bool> walk(int fd, bool& started, uint32_t& batch, size_t budget, Pass& pass) {
  // Chunk buffers live as long as the thread (the agent's main loop sweeps in steps after
  // syncs): allocating a few hundred KB per step meant fresh pages to fault in every time.
  static thread_local std::vector<Key> keys;
  static thread_local std::vector<Value> values;
  size_t seen = 0;
  for (;;) {
    const size_t want = budget == 0 ? k_chunk : std::min(k_chunk, budget - seen);
    auto more = next_chunk(fd, started, batch, want, keys, values);
    if (!more) {
      return std::unexpected(more.error());
    }
    started = true;
    pass.next_chunk();
    for (size_t i = 0; i < keys.size(); ++i) {
      pass.entry(keys[i], values[i]);
    }
    seen += keys.size();
    if (!*more) {
      started = false;
      batch = 0;
      return true;
    }
    if (budget != 0 && seen >= budget) {
      return false;
    }
  }
}

}  // namespace

result<ct_sweep_counts> ct_sweeper::sweep(const map_state& mirror, const ct_sweep_options& opts) {
  ct_sweep_counts c;
  const uint64_t now = opts.now_ns != 0 ? opts.now_ns : monotonic_now();
  const timeouts t{skel_->rodata->cfg_ct_tcp_timeout_ns, skel_->rodata->cfg_ct_tcp_close_ns,
                   skel_->rodata->cfg_ct_tcp_fin_ns, skel_->rodata->cfg_ct_udp_timeout_ns};
  const service_view svc(mirror);
  const auto& m = skel_->maps;
  if (opts.budget == 0) {
    map_ = 0;
    started_ = false;
    batch_ = 0;
  }
  while (map_ < 4) {
    const size_t left =
        opts.budget == 0 ? 0 : opts.budget - std::min<size_t>(opts.budget, c.scanned);
    if (opts.budget != 0 && left == 0) {
      return c;
    }
    result<bool> done;
    switch (map_) {
      case 0: {
        ct_pass<lb4_ct_key, lb4_ct_value, 4> pass(bpf_map__fd(m.lb4_ct_v2), svc, t, now, c);
        done =
            walk<lb4_ct_key, lb4_ct_value>(bpf_map__fd(m.lb4_ct_v2), started_, batch_, left, pass);
        break;
      }
      case 1: {
        ct_pass<lb6_ct_key, lb6_ct_value, 16> pass(bpf_map__fd(m.lb6_ct_v2), svc, t, now, c);
        done =
            walk<lb6_ct_key, lb6_ct_value>(bpf_map__fd(m.lb6_ct_v2), started_, batch_, left, pass);
        break;
      }
      case 2: {
        affinity_pass<lb4_affinity_key> pass(bpf_map__fd(m.lb4_affinity_v1), svc, now, c);
        done = walk<lb4_affinity_key, lb_affinity_value>(bpf_map__fd(m.lb4_affinity_v1), started_,
                                                         batch_, left, pass);
        break;
      }
      default: {
        affinity_pass<lb6_affinity_key> pass(bpf_map__fd(m.lb6_affinity_v1), svc, now, c);
        done = walk<lb6_affinity_key, lb_affinity_value>(bpf_map__fd(m.lb6_affinity_v1), started_,
                                                         batch_, left, pass);
        break;
      }
    }
    if (!done) {
      started_ = false;
      batch_ = 0;
      return std::unexpected(done.error());
    }
    if (!*done) {
      return c;
    }
    ++map_;
  }
  map_ = 0;
  c.complete = true;
  return c;
}

result<ct_sweep_counts> ct_sweep(::sluice_bpf* skel, const map_state& mirror, uint64_t now_ns) {
  ct_sweeper s(skel);
  return s.sweep(mirror, ct_sweep_options{.now_ns = now_ns});
}

}  // namespace sluice
