#include "agent/datapath/map_writer.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <optional>
#include <vector>

#include "agent/datapath/map_access.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

template <typename Key>
void fill_svc_key(Key& k, const frontend_key& f, uint16_t slot) {
  std::memset(&k, 0, sizeof(k));
  std::memcpy(&k.vip, f.vip.bytes.data(), sizeof(k.vip));
  k.port = htons(f.port);
  k.slot = slot;
  k.proto = f.proto;
  k.scope = LB_SCOPE_ALL;
}

template <typename Key>
frontend_key key_from(const Key& k, ip_family fam) {
  frontend_key f;
  f.vip.family = fam;
  std::memcpy(f.vip.bytes.data(), &k.vip, sizeof(k.vip));
  f.port = ntohs(k.port);
  f.proto = k.proto;
  return f;
}

template <typename Backend>
Backend to_backend(const backend_record& r) {
  Backend b{};
  std::memcpy(&b.addr, r.addr.bytes.data(), sizeof(b.addr));
  b.port = htons(r.port);
  b.proto = r.proto;
  b.state = r.state;
  b.svc_id = r.svc_id;
  return b;
}

template <typename Backend>
backend_record from_backend(const Backend& b, ip_family fam) {
  backend_record r;
  r.addr.family = fam;
  std::memcpy(r.addr.bytes.data(), &b.addr, sizeof(b.addr));
  r.port = ntohs(b.port);
  r.proto = b.proto;
  r.state = b.state;
  r.svc_id = b.svc_id;
  return r;
}

template <typename Key, typename Value, typename Fn>
result<void> for_each(int fd, Fn&& fn) {
  if (!for_each_entry<Key, Value>(fd, std::forward<Fn>(fn))) {
    return os_error(-1, "iterate map");
  }
  return {};
}

template <typename Key>
result<void> restore_services(int fd, ip_family fam, map_state& st) {
  return for_each<Key, lb_svc_value>(fd, [&](const Key& k, const lb_svc_value& v) {
    auto& rec = st.frontends[key_from(k, fam)];
    rec.svc_id = v.svc_id;
    if (k.slot == 0) {
      rec.affinity_timeout_s = v.affinity_timeout;
      rec.flags = v.flags;
      if (rec.slots.size() < v.count) {
        rec.slots.resize(v.count);
      }
    } else {
      if (rec.slots.size() < k.slot) {
        rec.slots.resize(k.slot);
      }
      rec.slots[k.slot - 1] = v.backend_id;
    }
  });
}

}  // namespace

result<void> map_writer::restore() {
  map_state st;
  auto& m = skel_->maps;
  if (auto r = restore_services<lb4_svc_key>(bpf_map__fd(m.lb4_services_v1), ip_family::v4, st);
      !r) {
    return r;
  }
  if (auto r = restore_services<lb6_svc_key>(bpf_map__fd(m.lb6_services_v1), ip_family::v6, st);
      !r) {
    return r;
  }
  // Slots beyond a master's count (a run interrupted mid-shrink) are not part of the frontend;
  // a frontend without master (interrupted mid-create) is dropped so its slots get rewritten.
  std::map<frontend_key, uint16_t> counts;
  auto count_of = [&](int fd, auto key) -> std::optional<uint16_t> {
    lb_svc_value v{};
    if (bpf_map_lookup_elem(fd, &key, &v) != 0) {
      return std::nullopt;
    }
    return v.count;
  };
  for (auto it = st.frontends.begin(); it != st.frontends.end();) {
    std::optional<uint16_t> count;
    if (it->first.vip.family == ip_family::v4) {
      lb4_svc_key k;
      fill_svc_key(k, it->first, 0);
      count = count_of(bpf_map__fd(m.lb4_services_v1), k);
    } else {
      lb6_svc_key k;
      fill_svc_key(k, it->first, 0);
      count = count_of(bpf_map__fd(m.lb6_services_v1), k);
    }
    if (!count) {
      it = st.frontends.erase(it);
      continue;
    }
    it->second.slots.resize(*count);
    ++it;
  }
  auto r4 = for_each<uint32_t, lb4_backend>(
      bpf_map__fd(m.lb4_backends_v1), [&](uint32_t id, const lb4_backend& b) {
        st.backends[id] = from_backend(b, ip_family::v4);
      });
  if (!r4) {
    return r4;
  }
  auto r6 = for_each<uint32_t, lb6_backend>(
      bpf_map__fd(m.lb6_backends_v1), [&](uint32_t id, const lb6_backend& b) {
        st.backends[id] = from_backend(b, ip_family::v6);
      });
  if (!r6) {
    return r6;
  }
  mirror_ = std::move(st);
  return {};
}

result<void> map_writer::execute(const map_op& op) {
  auto& m = skel_->maps;
  int rc = 0;
  switch (op.kind) {
    case op_kind::put_slot:
    case op_kind::put_master:
    case op_kind::delete_slot:
    case op_kind::delete_master: {
      const uint16_t slot = op.kind == op_kind::put_master || op.kind == op_kind::delete_master
                                ? 0
                                : op.slot;
      const bool put = op.kind == op_kind::put_slot || op.kind == op_kind::put_master;
      if (op.key.vip.family == ip_family::v4) {
        lb4_svc_key k;
        fill_svc_key(k, op.key, slot);
        rc = put ? bpf_map_update_elem(bpf_map__fd(m.lb4_services_v1), &k, &op.value, BPF_ANY)
                 : bpf_map_delete_elem(bpf_map__fd(m.lb4_services_v1), &k);
      } else {
        lb6_svc_key k;
        fill_svc_key(k, op.key, slot);
        rc = put ? bpf_map_update_elem(bpf_map__fd(m.lb6_services_v1), &k, &op.value, BPF_ANY)
                 : bpf_map_delete_elem(bpf_map__fd(m.lb6_services_v1), &k);
      }
      if (rc == 0 && op.kind == op_kind::put_master && op.new_svc_id) {
        // A reused id must not inherit the counters of the frontend that had it before.
        const int ncpu = libbpf_num_possible_cpus();
        std::vector<lb_svc_stat_value> zero(ncpu > 0 ? ncpu : 1);
        uint32_t id = op.value.svc_id;
        bpf_map_update_elem(bpf_map__fd(m.lb_svc_stats_v1), &id, zero.data(), BPF_ANY);
      }
      break;
    }
    case op_kind::put_backend: {
      uint32_t id = op.backend_id;
      if (op.backend.addr.family == ip_family::v4) {
        auto b = to_backend<lb4_backend>(op.backend);
        rc = bpf_map_update_elem(bpf_map__fd(m.lb4_backends_v1), &id, &b, BPF_ANY);
      } else {
        auto b = to_backend<lb6_backend>(op.backend);
        rc = bpf_map_update_elem(bpf_map__fd(m.lb6_backends_v1), &id, &b, BPF_ANY);
      }
      break;
    }
    case op_kind::delete_backend: {
      uint32_t id = op.backend_id;
      const auto it = mirror_.backends.find(id);
      const bool is_v4 = it == mirror_.backends.end() || it->second.addr.family == ip_family::v4;
      rc = bpf_map_delete_elem(
          bpf_map__fd(is_v4 ? m.lb4_backends_v1 : m.lb6_backends_v1), &id);
      break;
    }
  }
  // Deleting what is already gone is the state we want.
  if (rc != 0 && !(errno == ENOENT && (op.kind == op_kind::delete_backend ||
                                      op.kind == op_kind::delete_slot ||
                                      op.kind == op_kind::delete_master))) {
    return os_error(rc, "map write");
  }
  return {};
}

sync_report map_writer::sync(const desired_state& desired) {
  sync_report rep;
  auto plan = reconcile(mirror_, desired);
  rep.errors = std::move(plan.errors);
  for (const auto& e : rep.errors) {
    spdlog::error("frontend {} not programmed: {}", e.name, e.what);
  }
  for (const auto& op : plan.ops) {
    auto r = execute(op);
    ++rep.ops;
    if (!r) {
      ++rep.failed_ops;
      spdlog::error("map operation {} failed: {}", static_cast<int>(op.kind),
                    r.error().message());
    }
  }
  if (rep.failed_ops == 0) {
    apply_ops(mirror_, plan.ops);
  } else if (auto r = restore(); !r) {
    spdlog::error("re-reading maps after failed writes: {}", r.error().message());
  }
  rep.frontends = mirror_.frontends.size();
  rep.backends = mirror_.backends.size();
  return rep;
}

}  // namespace sluice
