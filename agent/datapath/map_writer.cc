#include "agent/datapath/map_writer.h"

#include <arpa/inet.h>
#include <sys/mman.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "agent/datapath/fd.h"
#include "agent/datapath/map_access.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

template <typename Key>
void fill_svc_key(Key& k, const frontend_key& f, uint16_t slot, uint8_t scope) {
  std::memset(&k, 0, sizeof(k));
  std::memcpy(&k.vip, f.vip.bytes.data(), sizeof(k.vip));
  k.port = htons(f.port);
  k.slot = slot;
  k.proto = f.proto;
  k.scope = scope;
}

template <typename Key>
void fill_range_key(Key& k, uint32_t svc_id, const ip_prefix& p) {
  std::memset(&k, 0, sizeof(k));
  k.prefixlen = LB_SRC_RANGE_KEY_PREFIX + p.length;
  k.svc_id = svc_id;
  std::memcpy(&k.addr, p.addr.bytes.data(), sizeof(k.addr));
}

// An owned map fd (inner Maglev maps, maps opened by id).
using map_fd = owned_fd;

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

// A NUL-padded string field of an ABI struct (never reads past the field).
template <size_t N>
std::string field_str(const char (&field)[N]) {
  return std::string(field, strnlen(field, N));
}

template <typename Key, typename Value, typename Fn>
result<void> for_each(int fd, Fn&& fn) {
  if (!for_each_entry_batched<Key, Value>(fd, std::forward<Fn>(fn))) {
    return os_error(-1, "iterate map");
  }
  return {};
}

template <typename Key>
result<void> restore_services(int fd, ip_family fam, map_state& st,
                              std::map<frontend_key, uint16_t>& counts,
                              std::map<frontend_key, uint16_t>& ext_counts,
                              std::map<frontend_key, uint32_t>& ext_svc) {
  return for_each<Key, lb_svc_value>(fd, [&](const Key& k, const lb_svc_value& v) {
    if (k.scope != LB_SCOPE_ALL && k.scope != LB_SCOPE_EXTERNAL) {
      return;  // no scope this agent writes
    }
    const frontend_key key = key_from(k, fam);
    auto& rec = st.frontends[key];
    std::vector<uint32_t>* slots = &rec.slots;
    if (k.scope == LB_SCOPE_EXTERNAL) {
      if (!rec.external) {
        rec.external.emplace();
      }
      ext_svc[key] = v.svc_id;
      if (k.slot == 0) {
        rec.external->affinity_timeout_s = v.affinity_timeout;
        rec.external->flags = v.flags;
        ext_counts[key] = v.count;
      }
      slots = &rec.external->slots;
    } else {
      rec.svc_id = v.svc_id;
      if (k.slot == 0) {
        rec.affinity_timeout_s = v.affinity_timeout;
        rec.flags = v.flags;
        counts[key] = v.count;
      }
    }
    if (k.slot == 0) {
      if (slots->size() < v.count) {
        slots->resize(v.count);
      }
    } else {
      if (slots->size() < k.slot) {
        slots->resize(k.slot);
      }
      (*slots)[k.slot - 1] = v.backend_id;
    }
  });
}

template <typename Key>
result<void> restore_ranges(int fd, ip_family fam, map_state& st) {
  // Walked key by key: LPM tries have batch lookup only in recent kernels, and there is one
  // entry per allowed prefix.
  if (!for_each_entry<Key, uint8_t>(fd, [&](const Key& k, uint8_t) {
        if (k.prefixlen < LB_SRC_RANGE_KEY_PREFIX) {
          return;
        }
        ip_prefix p;
        p.addr.family = fam;
        std::memcpy(p.addr.bytes.data(), &k.addr, sizeof(k.addr));
        p.length = static_cast<uint8_t>(k.prefixlen - LB_SRC_RANGE_KEY_PREFIX);
        st.src_ranges[k.svc_id].insert(p);
      })) {
    return os_error(-1, "iterate source ranges");
  }
  return {};
}

// An inner table's name: "mg" and 13 characters (78 bits) of a MurmurHash3 of what the table is
// built from: size, seed, and each backend's id and identity. restore() compares it instead of
// reading the table back (verified_table). Characters from the 64 a map name may hold.
std::string table_name(const maglev_options& opts, std::span<const uint32_t> ids,
                       std::span<const maglev_backend> backends) {
  std::vector<uint8_t> bytes(opts.seed.bytes.begin(), opts.seed.bytes.end());
  const auto put = [&](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
  };
  put(&opts.table_size, sizeof(opts.table_size));
  for (size_t i = 0; i < ids.size() && i < backends.size(); ++i) {
    const maglev_backend& b = backends[i];
    put(&ids[i], sizeof(ids[i]));
    put(&b.addr.family, sizeof(b.addr.family));
    put(b.addr.bytes.data(), b.addr.bytes.size());
    put(&b.port, sizeof(b.port));
    put(&b.proto, sizeof(b.proto));
  }
  const murmur3_128 h = murmur3_x64_128(bytes, 0);
  static constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.";
  std::string name = "mg";
  uint64_t lo = h.h1, hi = h.h2;
  for (int i = 0; i < 13; ++i) {
    name += alphabet[lo & 63];
    lo = (lo >> 6) | (hi << 58);
    hi >>= 6;
  }
  return name;
}

// Reads the M entries of an inner Maglev table (its one element).
bool read_table(int fd, uint32_t m, std::vector<uint32_t>& values) {
  values.assign(m, 0);
  const uint32_t zero = 0;
  return bpf_map_lookup_elem(fd, &zero, values.data()) == 0;
}

// The identities of these backend ids as the mirror knows them, if each is a backend of svc_id.
std::optional<std::vector<maglev_backend>> identities(const map_state& st, uint32_t svc_id,
                                                      std::span<const uint32_t> ids) {
  std::vector<maglev_backend> backends;
  backends.reserve(ids.size());
  for (const uint32_t id : ids) {
    const auto it = st.backends.find(id);
    if (it == st.backends.end() || it->second.svc_id != svc_id) {
      return std::nullopt;
    }
    backends.push_back(
        {.addr = it->second.addr, .port = it->second.port, .proto = it->second.proto});
  }
  return backends;
}

// The backend ids lb_maglev_v2[svc_id] (inner map `inner_id`) was built from, if its content is
// exactly what `opts` build from them; empty otherwise (rewritten by the next sync).
//
// `expected`: the ids the frontend's slots say the table should be built from. When the inner
// map's name is the one table_name() gives for them, the table is taken as is: it was filled
// before it was swapped in, so a named table is whole, and reading its M entries back costs
// about as much as writing them (4 ms per table at the default size). Otherwise the content is
// read and checked against a fresh build from the ids it holds.
std::vector<uint32_t> verified_table(uint32_t svc_id, uint32_t inner_id, const map_state& st,
                                     const maglev_options& opts,
                                     const std::vector<uint32_t>& expected) {
  const map_fd inner(bpf_map_get_fd_by_id(inner_id));
  if (inner.get() < 0) {
    return {};
  }
  bpf_map_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(inner.get(), &info, &len) != 0 || info.type != BPF_MAP_TYPE_ARRAY ||
      info.key_size != sizeof(uint32_t) ||
      info.value_size != LB_MAGLEV_TABLE_BYTES(opts.table_size) || info.max_entries != 1) {
    return {};  // another --maglev-table-size: every table is rebuilt
  }
  if (!expected.empty()) {
    const auto backends = identities(st, svc_id, expected);
    if (backends && std::string_view(info.name) == table_name(opts, expected, *backends)) {
      return expected;
    }
  }
  std::vector<uint32_t> content;
  if (!read_table(inner.get(), opts.table_size, content)) {
    return {};
  }
  std::vector<uint32_t> ids = content;
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const auto backends = identities(st, svc_id, ids);
  if (!backends) {
    return {};
  }
  const auto table = build_maglev_table(*backends, opts);
  if (!table || table->size() != content.size()) {
    return {};
  }
  for (size_t i = 0; i < content.size(); ++i) {
    if (ids[(*table)[i]] != content[i]) {
      return {};  // another seed, or not the table these backends make
    }
  }
  return ids;
}

result<void> restore_maglev(int outer_fd, const maglev_options& opts, map_state& st) {
  // At most one entry per service; walked key by key (user space reads an inner map's id).
  std::vector<std::pair<uint32_t, uint32_t>> entries;  // svc_id, inner map id
  if (!for_each_entry<uint32_t, uint32_t>(outer_fd, [&](uint32_t svc_id, uint32_t inner_id) {
        entries.emplace_back(svc_id, inner_id);
      })) {
    return os_error(-1, "iterate maglev tables");
  }
  // What each table should be built from: the EXTERNAL slots when the master says
  // LB_SVC_F_EXT_LOCAL, else the ALL slots (reconcile's choice, read back from the maps).
  std::map<uint32_t, std::vector<uint32_t>> expected;
  for (const auto& [key, rec] : st.frontends) {
    const bool local = (rec.flags & LB_SVC_F_EXT_LOCAL) != 0 && rec.external;
    std::vector<uint32_t> ids = local ? rec.external->slots : rec.slots;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    expected[rec.svc_id] = std::move(ids);
  }
  static const std::vector<uint32_t> none;
  for (const auto& [svc_id, inner_id] : entries) {
    const auto it = expected.find(svc_id);
    st.maglev[svc_id] =
        verified_table(svc_id, inner_id, st, opts, it == expected.end() ? none : it->second);
  }
  return {};
}

}  // namespace

result<void> map_writer::restore() {
  map_state st;
  auto& m = skel_->maps;
  // Slots beyond a master's count (a run interrupted mid-shrink) are not part of the frontend;
  // a frontend without master (interrupted mid-create) is dropped so its slots get rewritten.
  // The same holds for the EXTERNAL entries of a frontend.
  std::map<frontend_key, uint16_t> counts, ext_counts;
  std::map<frontend_key, uint32_t> ext_svc;
  if (auto r = restore_services<lb4_svc_key>(bpf_map__fd(m.lb4_services_v1), ip_family::v4, st,
                                             counts, ext_counts, ext_svc);
      !r) {
    return r;
  }
  if (auto r = restore_services<lb6_svc_key>(bpf_map__fd(m.lb6_services_v1), ip_family::v6, st,
                                             counts, ext_counts, ext_svc);
      !r) {
    return r;
  }
  for (auto it = st.frontends.begin(); it != st.frontends.end();) {
    const auto c = counts.find(it->first);
    if (c == counts.end()) {
      it = st.frontends.erase(it);
      continue;
    }
    it->second.slots.resize(c->second);
    if (it->second.external) {
      const auto e = ext_counts.find(it->first);
      if (e == ext_counts.end() || ext_svc[it->first] != it->second.svc_id) {
        it->second.external.reset();  // rewritten whole if still wanted
      } else {
        it->second.external->slots.resize(e->second);
      }
    }
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
  if (auto r = restore_ranges<lb4_src_range_key>(bpf_map__fd(m.lb4_src_ranges_v1),
                                                 ip_family::v4, st);
      !r) {
    return r;
  }
  if (auto r = restore_ranges<lb6_src_range_key>(bpf_map__fd(m.lb6_src_ranges_v1),
                                                 ip_family::v6, st);
      !r) {
    return r;
  }
  // After the backends: a table is checked against their addresses.
  if (auto r = restore_maglev(bpf_map__fd(m.lb_maglev_v2), opts_.maglev, st); !r) {
    return r;
  }
  if (auto r = for_each<uint32_t, lb_svc_info>(
          bpf_map__fd(m.lb_svc_info_v1),
          [&](uint32_t svc_id, const lb_svc_info& v) { st.info[svc_id].value = v; });
      !r) {
    return r;
  }
  unproxied_map unproxied;
  if (auto r = for_each<lb_unproxied_key, lb_unproxied_value>(
          bpf_map__fd(m.lb_unproxied_v1),
          [&](const lb_unproxied_key& k, const lb_unproxied_value& v) {
            unproxied[{field_str(k.ns), field_str(k.name)}] = {v.reason,
                                                                field_str(v.external_name)};
          });
      !r) {
    return r;
  }
  mirror_ = std::move(st);
  unproxied_ = std::move(unproxied);
  return {};
}

namespace {

// Where an op lands: one map and one kind of syscall. Consecutive ops with the same target go
// to the kernel as one batch; the update protocol's order is kept because runs never reorder.
// From this many ops on, the mirror is updated on a second thread during the writes (below,
// a thread costs more than it saves: an endpoint change is a handful of ops).
constexpr size_t parallel_apply_min_ops = 8192;

struct target {
  int fd = -1;
  bool put = false;
  size_t key_size = 0;
  size_t value_size = 0;
  bool maglev = false;  // lb_maglev_v2: each op builds or removes one table (put_maglev)

  bool operator==(const target&) const = default;
};

bool is_v4(const map_op& op, const map_state& mirror) {
  if (op.kind == op_kind::put_backend) {
    return op.backend.addr.family == ip_family::v4;
  }
  if (op.kind == op_kind::delete_backend) {
    const auto it = mirror.backends.find(op.backend_id);
    return it == mirror.backends.end() || it->second.addr.family == ip_family::v4;
  }
  if (op.kind == op_kind::put_src_range || op.kind == op_kind::delete_src_range) {
    return op.range().addr.family == ip_family::v4;  // orphan ops have no frontend key
  }
  return op.key.vip.family == ip_family::v4;
}

target target_of(const map_op& op, bool v4, const decltype(sluice_bpf::maps)& m) {
  switch (op.kind) {
    case op_kind::put_slot:
    case op_kind::put_master:
    case op_kind::delete_slot:
    case op_kind::delete_master:
      return {bpf_map__fd(v4 ? m.lb4_services_v1 : m.lb6_services_v1),
              op.kind == op_kind::put_slot || op.kind == op_kind::put_master,
              v4 ? sizeof(lb4_svc_key) : sizeof(lb6_svc_key), sizeof(lb_svc_value)};
    case op_kind::put_backend:
    case op_kind::delete_backend:
      return {bpf_map__fd(v4 ? m.lb4_backends_v1 : m.lb6_backends_v1),
              op.kind == op_kind::put_backend, sizeof(uint32_t),
              v4 ? sizeof(lb4_backend) : sizeof(lb6_backend)};
    case op_kind::put_src_range:
    case op_kind::delete_src_range:
      return {.fd = bpf_map__fd(v4 ? m.lb4_src_ranges_v1 : m.lb6_src_ranges_v1),
              .put = op.kind == op_kind::put_src_range,
              .key_size = v4 ? sizeof(lb4_src_range_key) : sizeof(lb6_src_range_key),
              .value_size = sizeof(uint8_t)};
    case op_kind::put_maglev:
    case op_kind::delete_maglev:
      return {.fd = bpf_map__fd(m.lb_maglev_v2),
              .put = op.kind == op_kind::put_maglev,
              .key_size = sizeof(uint32_t),
              .maglev = true};
    case op_kind::put_info:
    case op_kind::delete_info:
      return {.fd = bpf_map__fd(m.lb_svc_info_v1),
              .put = op.kind == op_kind::put_info,
              .key_size = sizeof(uint32_t),
              .value_size = sizeof(lb_svc_info)};
  }
  return {};
}

// Writes op's key (and value for puts) at the given addresses, sized as target_of says.
// put_info takes its value from `info` (the plan's reconcile_result::info).
void encode(const map_op& op, bool v4, std::span<const svc_info> info, uint8_t* key,
            uint8_t* value) {
  switch (op.kind) {
    case op_kind::put_slot:
    case op_kind::put_master:
    case op_kind::delete_slot:
    case op_kind::delete_master: {
      const uint16_t slot =
          op.kind == op_kind::put_slot || op.kind == op_kind::delete_slot ? op.slot : 0;
      if (v4) {
        lb4_svc_key k;
        fill_svc_key(k, op.key, slot, op.scope);
        std::memcpy(key, &k, sizeof(k));
      } else {
        lb6_svc_key k;
        fill_svc_key(k, op.key, slot, op.scope);
        std::memcpy(key, &k, sizeof(k));
      }
      if (value != nullptr) {
        std::memcpy(value, &op.value, sizeof(op.value));
      }
      break;
    }
    case op_kind::put_backend:
    case op_kind::delete_backend: {
      const uint32_t id = op.backend_id;
      std::memcpy(key, &id, sizeof(id));
      if (value != nullptr) {
        if (v4) {
          const auto b = to_backend<lb4_backend>(op.backend);
          std::memcpy(value, &b, sizeof(b));
        } else {
          const auto b = to_backend<lb6_backend>(op.backend);
          std::memcpy(value, &b, sizeof(b));
        }
      }
      break;
    }
    case op_kind::put_src_range:
    case op_kind::delete_src_range: {
      if (v4) {
        lb4_src_range_key k;
        fill_range_key(k, op.value.svc_id, op.range());
        std::memcpy(key, &k, sizeof(k));
      } else {
        lb6_src_range_key k;
        fill_range_key(k, op.value.svc_id, op.range());
        std::memcpy(key, &k, sizeof(k));
      }
      if (value != nullptr) {
        *value = 1;
      }
      break;
    }
    case op_kind::put_maglev:
    case op_kind::delete_maglev:
      break;  // put_maglev(), or a plain delete
    case op_kind::put_info:
    case op_kind::delete_info: {
      const uint32_t svc_id = op.value.svc_id;
      std::memcpy(key, &svc_id, sizeof(svc_id));
      if (value != nullptr) {
        const lb_svc_info v = op.backend_id < info.size() ? info[op.backend_id].value
                                                          : lb_svc_info{};
        std::memcpy(value, &v, sizeof(v));
      }
      break;
    }
  }
}

// put_maglev: builds the table, fills a new inner array with the backend ids and swaps it into
// lb_maglev_v2[svc_id] with one update, so a reader sees the whole old table or the whole new
// one; the outer map then holds the only reference. Returns 0 or an errno.
int put_maglev(int outer_fd, const maglev_build& b, const maglev_options& opts,
               size_t& syscalls) {
  const auto table = build_maglev_table(b.backends, opts);
  if (!table || table->size() != opts.table_size) {
    // The diff only asks for tables that can be built (see plan_maglev).
    spdlog::error("maglev table of service id {}: {}", b.svc_id,
                  table ? "empty" : table.error());
    return EINVAL;
  }
  const uint32_t m = opts.table_size;
  // One element holding the whole table, with the template's flags (the kernel requires them
  // equal): BPF_F_MMAPABLE, so it is filled by one pass over a mapping, not M writes.
  LIBBPF_OPTS(bpf_map_create_opts, create, .map_flags = LB_MAGLEV_TABLE_FLAGS);
  const std::string name = table_name(opts, b.ids, b.backends);
  const map_fd inner(bpf_map_create(BPF_MAP_TYPE_ARRAY, name.c_str(), sizeof(uint32_t),
                                    LB_MAGLEV_TABLE_BYTES(m), 1, &create));
  ++syscalls;
  if (inner.get() < 0) {
    return errno;
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t len = (size_t{LB_MAGLEV_TABLE_BYTES(m)} + page - 1) / page * page;
  void* mem = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, inner.get(), 0);
  ++syscalls;
  if (mem == MAP_FAILED) {
    return errno;
  }
  auto* slots = static_cast<uint32_t*>(mem);
  for (uint32_t i = 0; i < m; ++i) {
    slots[i] = b.ids[(*table)[i]];
  }
  munmap(mem, len);
  const int fd = inner.get();
  ++syscalls;
  return bpf_map_update_elem(outer_fd, &b.svc_id, &fd, BPF_ANY) == 0 ? 0 : errno;
}

// One element the batch could not do, done alone: tells an element's own error from a kernel
// without batch support for this map type (then the rest of the run goes one by one as well).
int single(const target& t, const uint8_t* key, const uint8_t* value) {
  const int rc =
      t.put ? bpf_map_update_elem(t.fd, key, value, BPF_ANY) : bpf_map_delete_elem(t.fd, key);
  return rc == 0 ? 0 : errno;
}

bool tolerated(const target& t, int err) { return !t.put && err == ENOENT; }

// Zeroes the per-CPU counters of these svc ids in one batch (per-element if that fails; a
// failure only leaves old counts behind, so it is not an op failure). Returns syscalls made.
size_t reset_svc_stats(int fd, const std::vector<uint32_t>& ids) {
  const int ncpu = libbpf_num_possible_cpus();
  const size_t per_id = static_cast<size_t>(ncpu > 0 ? ncpu : 1);
  std::vector<lb_svc_stat_value> zero(per_id * ids.size());
  auto count = static_cast<__u32>(ids.size());
  LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
  if (bpf_map_update_batch(fd, ids.data(), zero.data(), &count, &opts) == 0) {
    return 1;
  }
  for (uint32_t id : ids) {
    bpf_map_update_elem(fd, &id, zero.data(), BPF_ANY);
  }
  return 1 + ids.size();
}

}  // namespace

sync_report map_writer::run(reconcile_result plan) {
  sync_report rep;
  rep.errors = std::move(plan.errors);
  for (const auto& e : rep.errors) {
    spdlog::error("frontend {} not programmed: {}", e.name, e.what);
  }
  for (const auto& w : plan.warnings) {
    spdlog::warn("frontend {}: {}", w.name, w.what);
  }
  auto& m = skel_->maps;
  const auto& ops = plan.ops;
  std::vector<uint8_t> keys, values;
  std::vector<uint32_t> new_ids;
  // Maps whose batch operations the kernel refused (LPM tries got them only in recent kernels):
  // element by element for the rest of the run, other maps still in batches.
  std::vector<int> unbatched;

  auto fail = [&](const map_op& op, int err) {
    ++rep.failed_ops;
    spdlog::error("map operation {} failed: {}", static_cast<int>(op.kind),
                  std::error_code(err, std::generic_category()).message());
  };

  // Each op's family, from the mirror as it was before this run (a deleted backend's family
  // is known only from there), so the writes below never read the mirror.
  std::vector<uint8_t> v4(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    v4[i] = is_v4(ops[i], mirror_) ? 1 : 0;
  }
  // The mirror follows the ops on a second thread while the kernel takes them: on the first
  // sync of a large cluster each half takes a few hundred milliseconds. A failed write makes
  // the mirror be re-read from the kernel below anyway, so applying it early loses nothing.
  std::jthread mirror_thread;  // joins on every way out of this function
  if (ops.size() >= parallel_apply_min_ops) {
    mirror_thread = std::jthread([this, &plan] { apply_ops(mirror_, plan); });
  }

  for (size_t begin = 0; begin < ops.size();) {
    const target t = target_of(ops[begin], v4[begin] != 0, m);
    size_t end = begin + 1;
    while (end < ops.size() && target_of(ops[end], v4[end] != 0, m) == t) {
      ++end;
    }
    const size_t n = end - begin;
    if (t.maglev) {
      for (size_t i = begin; i < end; ++i) {
        const map_op& op = ops[i];
        int err = 0;
        if (op.kind == op_kind::put_maglev) {
          err = op.backend_id < plan.maglev.size()
                    ? put_maglev(t.fd, plan.maglev[op.backend_id], opts_.maglev, rep.syscalls)
                    : EINVAL;
          rep.maglev_tables += err == 0 ? 1 : 0;
        } else {
          ++rep.syscalls;
          const uint32_t svc_id = op.value.svc_id;
          err = bpf_map_delete_elem(t.fd, &svc_id) == 0 ? 0 : errno;
        }
        if (err != 0 && !tolerated(t, err)) {
          fail(op, err);
        }
      }
      rep.ops += n;
      begin = end;
      continue;
    }
    keys.assign(n * t.key_size, 0);
    values.assign(t.put ? n * t.value_size : 0, 0);
    new_ids.clear();
    for (size_t i = 0; i < n; ++i) {
      const map_op& op = ops[begin + i];
      encode(op, v4[begin + i] != 0, plan.info, &keys[i * t.key_size],
             t.put ? &values[i * t.value_size] : nullptr);
      if (op.kind == op_kind::put_master && op.new_svc_id) {
        new_ids.push_back(op.value.svc_id);
      }
    }
    // A reused id must not inherit the counters of the frontend that had it before: zeroed
    // before its master exists, so nothing of the new frontend is lost.
    if (!new_ids.empty()) {
      rep.syscalls += reset_svc_stats(bpf_map__fd(m.lb_svc_stats_v1), new_ids);
    }

    size_t done = 0;
    while (done < n) {
      const uint8_t* k = &keys[done * t.key_size];
      const uint8_t* v = t.put ? &values[done * t.value_size] : nullptr;
      int err = 0;
      const bool batch_ok = std::find(unbatched.begin(), unbatched.end(), t.fd) == unbatched.end();
      if (batch_ok) {
        LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
        auto count = static_cast<__u32>(n - done);
        const int rc = t.put ? bpf_map_update_batch(t.fd, k, v, &count, &opts)
                             : bpf_map_delete_batch(t.fd, k, &count, &opts);
        ++rep.syscalls;
        if (rc == 0) {
          done = n;
          break;
        }
        err = errno;
        done += std::min<size_t>(count, n - done);
        if (done == n) {
          break;
        }
        k = &keys[done * t.key_size];
        v = t.put ? &values[done * t.value_size] : nullptr;
      }
      // Element `done` failed in the batch (or batches are off): do it alone.
      const int own = single(t, k, v);
      ++rep.syscalls;
      // ENOTSUPP (524, kernel-internal): the map type has no batch operation.
      if (own == 0 && batch_ok &&
          (err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP || err == 524)) {
        unbatched.push_back(t.fd);  // the kernel refused the batch itself, not this element
      }
      if (own != 0 && !tolerated(t, own)) {
        fail(ops[begin + done], own);
      }
      ++done;
    }
    rep.ops += n;
    begin = end;
  }

  if (mirror_thread.joinable()) {
    mirror_thread.join();
  } else if (rep.failed_ops == 0) {
    apply_ops(mirror_, plan);
  }
  if (rep.failed_ops > 0) {
    if (auto r = restore(); !r) {
      spdlog::error("re-reading maps after failed writes: {}", r.error().message());
    }
  }
  rep.frontends = mirror_.frontends.size();
  rep.backends = mirror_.backends.size();
  for (const auto& [svc_id, prefixes] : mirror_.src_ranges) {
    rep.src_ranges += prefixes.size();
  }
  return rep;
}

sync_report map_writer::sync(const desired_state& desired) {
  sync_report rep = run(reconcile(mirror_, desired, opts_));
  const sync_report names = sync_unproxied(make_unproxied(desired.unproxied));
  rep.ops += names.ops;
  rep.syscalls += names.syscalls;
  rep.failed_ops += names.failed_ops;
  return rep;
}

sync_report map_writer::sync_unproxied(const unproxied_map& desired) {
  sync_report rep;
  const int fd = bpf_map__fd(skel_->maps.lb_unproxied_v1);
  for (const unproxied_op& op : reconcile_unproxied(unproxied_, desired)) {
    lb_unproxied_key k{};
    std::memcpy(k.ns, op.key.first.data(), std::min(op.key.first.size(), sizeof(k.ns) - 1));
    std::memcpy(k.name, op.key.second.data(), std::min(op.key.second.size(), sizeof(k.name) - 1));
    int rc = 0;
    if (op.value) {
      lb_unproxied_value v{};
      v.reason = op.value->reason;
      std::memcpy(v.external_name, op.value->external_name.data(),
                  std::min(op.value->external_name.size(), sizeof(v.external_name) - 1));
      rc = bpf_map_update_elem(fd, &k, &v, BPF_ANY);
    } else {
      rc = bpf_map_delete_elem(fd, &k);
    }
    ++rep.ops;
    ++rep.syscalls;
    if (rc != 0 && !(errno == ENOENT && !op.value)) {
      ++rep.failed_ops;
      spdlog::error("{} {}/{} in {}: {}", op.value ? "write" : "delete", op.key.first,
                    op.key.second, LB_UNPROXIED_MAP, strerror(errno));
      continue;
    }
    if (op.value) {
      unproxied_[op.key] = *op.value;
    } else {
      unproxied_.erase(op.key);
    }
  }
  return rep;
}

sync_report map_writer::sync(const std::map<frontend_key, desired_frontend>& desired) {
  return run(reconcile(mirror_, desired, opts_));
}

sync_report map_writer::sync_subset(const std::map<frontend_key, desired_frontend>& desired,
                                    const std::set<frontend_key>& touched) {
  return run(reconcile_subset(mirror_, desired, touched, opts_));
}

result<size_t> count_entries(int map_fd) {
  bpf_map_info info{};
  __u32 len = sizeof(info);
  if (int rc = bpf_obj_get_info_by_fd(map_fd, &info, &len); rc != 0) {
    return os_error(rc, "map info");
  }
  // Hash-map batches go bucket by bucket; a bucket larger than the chunk gives ENOSPC, so the
  // chunk grows then.
  size_t chunk = 4096;
  std::vector<uint8_t> keys, values;
  __u32 in_batch = 0, out_batch = 0;
  bool first = true;
  size_t total = 0;
  for (;;) {
    keys.resize(chunk * info.key_size);
    values.resize(chunk * info.value_size);
    auto count = static_cast<__u32>(chunk);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int rc = bpf_map_lookup_batch(map_fd, first ? nullptr : &in_batch, &out_batch,
                                        keys.data(), values.data(), &count, &opts);
    const int err = rc == 0 ? 0 : errno;
    if (rc != 0 && err == ENOSPC && count == 0) {
      chunk *= 2;
      continue;
    }
    if (rc != 0 && err != ENOENT) {
      return os_error(rc, "batch lookup");
    }
    total += count;
    if (err == ENOENT) {
      return total;
    }
    in_batch = out_batch;
    first = false;
  }
}

result<map_fill> read_map_fill(::sluice_bpf* skel) {
  const auto& m = skel->maps;
  map_fill f;
  const std::pair<bpf_map*, size_t*> all[] = {
      {m.lb4_services_v1, &f.services4},
      {m.lb6_services_v1, &f.services6},
      {m.lb4_backends_v1, &f.backends4},
      {m.lb6_backends_v1, &f.backends6},
      {m.lb4_ct_v2, &f.ct4},
      {m.lb6_ct_v2, &f.ct6},
      {m.lb4_affinity_v1, &f.affinity4},
      {m.lb6_affinity_v1, &f.affinity6},
  };
  for (const auto& [map, out] : all) {
    auto n = count_entries(bpf_map__fd(map));
    if (!n) {
      return std::unexpected(n.error());
    }
    *out = *n;
  }
  const auto walk = [](bpf_map* map, size_t key_size, size_t& out) -> result<void> {
    std::vector<uint8_t> cur(key_size), next(key_size);
    const int fd = bpf_map__fd(map);
    for (bool first = true; bpf_map_get_next_key(fd, first ? nullptr : cur.data(), next.data()) == 0;
         first = false) {
      ++out;
      cur.swap(next);
    }
    if (errno != ENOENT) {
      return os_error(-1, "key walk");
    }
    return {};
  };
  for (const auto& [map, key_size, out] :
       {std::tuple{m.lb4_src_ranges_v1, sizeof(lb4_src_range_key), &f.src_ranges4},
        std::tuple{m.lb6_src_ranges_v1, sizeof(lb6_src_range_key), &f.src_ranges6},
        std::tuple{m.lb_maglev_v2, sizeof(uint32_t), &f.maglev}}) {
    if (auto r = walk(map, key_size, *out); !r) {
      return std::unexpected(r.error());
    }
  }
  return f;
}

}  // namespace sluice
