#include "agent/reconcile/reconcile.h"

#include <fmt/format.h>

#include <algorithm>
#include <span>
#include <string_view>
#include <tuple>
#include <utility>

namespace sluice {

// A first sync makes one op per backend and per slot: keep them small (see map_op).
static_assert(sizeof(map_op) <= 80, "map_op grew: a first sync holds hundreds of thousands");
static_assert(maglev_default_table_size == LB_MAGLEV_DEFAULT_SIZE);

// ---- id_space ------------------------------------------------------------------------------

void id_space::take(uint32_t id) {
  auto it = free_.upper_bound(id);
  if (it == free_.begin()) {
    return;
  }
  --it;
  const uint32_t start = it->first;
  const uint32_t end = it->second;
  if (id >= end) {
    return;  // already used
  }
  // Ids are mostly taken from the front of an interval (fresh ids ascend): re-key that node
  // in place instead of freeing one node and allocating another.
  if (start == id) {
    if (id + 1 < end) {
      auto node = free_.extract(it);
      node.key() = id + 1;
      free_.insert(std::move(node));
    } else {
      free_.erase(it);
    }
    return;
  }
  it->second = id;
  if (id + 1 < end) {
    free_.emplace(id + 1, end);
  }
}

void id_space::release(uint32_t id) {
  if (id == 0 || id >= limit_ || is_free(id)) {
    return;
  }
  uint32_t start = id;
  uint32_t end = id + 1;
  auto next = free_.find(end);
  if (next != free_.end()) {
    end = next->second;
    free_.erase(next);
  }
  auto prev = free_.lower_bound(start);
  if (prev != free_.begin()) {
    --prev;
    if (prev->second == start) {
      start = prev->first;
      free_.erase(prev);
    }
  }
  free_.emplace(start, end);
}

bool id_space::is_free(uint32_t id) const {
  auto it = free_.upper_bound(id);
  if (it == free_.begin()) {
    return false;
  }
  --it;
  return id < it->second;
}

// ---- names ---------------------------------------------------------------------------------

std::string_view to_string(not_programmed_reason r) {
  switch (r) {
    case not_programmed_reason::duplicate:
      return "duplicate";
    case not_programmed_reason::too_many_backends:
      return "too_many_backends";
    case not_programmed_reason::no_service_id:
      return "no_service_id";
    case not_programmed_reason::map_full:
      return "map_full";
  }
  return "unknown";
}

namespace {

// Copies s into a NUL-padded field of N bytes, cut to N - 1 bytes.
template <size_t N>
void put_name(char (&field)[N], std::string_view s) {
  std::memset(field, 0, N);
  // s.copy, not memcpy: an empty view may have a null data(), which memcpy must not get (UBSan).
  s.copy(field, std::min(s.size(), N - 1));
}

uint8_t kind_of(frontend_kind k) {
  switch (k) {
    case frontend_kind::cluster_ip:
      return LB_KIND_CLUSTER_IP;
    case frontend_kind::node_port:
      return LB_KIND_NODE_PORT;
    case frontend_kind::load_balancer:
      return LB_KIND_LOAD_BALANCER;
    case frontend_kind::external_ip:
      return LB_KIND_EXTERNAL_IP;
    case frontend_kind::host_port:
      return LB_KIND_HOST_PORT;
  }
  return LB_KIND_UNKNOWN;
}

}  // namespace

svc_info make_svc_info(const desired_frontend& f) {
  svc_info out;
  out.value.kind = kind_of(f.kind);
  // "namespace/name:port": a namespace has no '/', a port name no ':' (both DNS labels).
  const std::string_view all = f.name;
  const size_t slash = all.find('/');
  const size_t colon = all.rfind(':');
  std::string_view ns, name = all, port;
  if (slash != std::string_view::npos) {
    ns = all.substr(0, slash);
    name = all.substr(slash + 1);
  }
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    port = all.substr(colon + 1);
    name = name.substr(0, name.size() - port.size() - 1);
  }
  put_name(out.value.ns, ns);
  put_name(out.value.name, name);
  put_name(out.value.port_name, port);
  return out;
}

unproxied_map make_unproxied(std::span<const unproxied_service> services) {
  unproxied_map out;
  for (const unproxied_service& s : services) {
    lb_unproxied_key k{};
    lb_unproxied_value v{};
    put_name(k.ns, s.namespace_);
    put_name(k.name, s.name);
    put_name(v.external_name, s.external_name);
    out[{k.ns, k.name}] = {static_cast<uint8_t>(s.reason), v.external_name};
  }
  return out;
}

std::vector<unproxied_op> reconcile_unproxied(const unproxied_map& current,
                                              const unproxied_map& desired) {
  std::vector<unproxied_op> ops;
  auto c = current.begin();
  auto d = desired.begin();
  while (c != current.end() || d != desired.end()) {
    if (c == current.end() || (d != desired.end() && d->first < c->first)) {
      ops.push_back({d->first, d->second});
      ++d;
    } else if (d == desired.end() || c->first < d->first) {
      ops.push_back({c->first, std::nullopt});
      ++c;
    } else {
      if (!(c->second == d->second)) {
        ops.push_back({d->first, d->second});
      }
      ++c;
      ++d;
    }
  }
  return ops;
}

// ---- map_state's index ---------------------------------------------------------------------

namespace {

void use_svc(map_index& idx, uint32_t svc_id) {
  if (++idx.svc_users[svc_id] == 1) {
    idx.svc_ids.take(svc_id);
  }
}

void unuse_svc(map_index& idx, uint32_t svc_id) {
  auto it = idx.svc_users.find(svc_id);
  if (it == idx.svc_users.end()) {
    return;
  }
  if (--it->second == 0) {
    idx.svc_users.erase(it);
    idx.svc_ids.release(svc_id);
  }
}

size_t family_index(ip_family f) { return f == ip_family::v4 ? 0 : 1; }

// Entries a frontend takes in its family's services map: a master and its slots per scope.
size_t service_entries(const frontend_record& r) {
  return 1 + r.slots.size() + (r.external ? 1 + r.external->slots.size() : 0);
}

void index_backend(map_index& idx, uint32_t id, const backend_record& b) {
  idx.backends_by_svc[b.svc_id][id] = &b;
  idx.backend_ids.take(id);
}

void unindex_backend(map_index& idx, uint32_t id, uint32_t svc_id) {
  if (auto it = idx.backends_by_svc.find(svc_id); it != idx.backends_by_svc.end()) {
    it->second.erase(id);
    if (it->second.empty()) {
      idx.backends_by_svc.erase(it);
    }
  }
  idx.backend_ids.release(id);
}

}  // namespace

void map_state::reindex() const {
  map_index idx;
  for (const auto& [key, f] : frontends) {
    use_svc(idx, f.svc_id);
    idx.service_entries[family_index(key.vip.family)] += service_entries(f);
  }
  for (const auto& [id, b] : backends) {
    index_backend(idx, id, b);
    ++idx.backend_entries[family_index(b.addr.family)];
  }
  idx.frontends = frontends.size();
  idx.backends = backends.size();
  index_ = std::move(idx);
}

const map_index& map_state::index() const {
  if (index_.frontends != frontends.size() || index_.backends != backends.size()) {
    reindex();
  }
  return index_;
}

// ---- the diff ------------------------------------------------------------------------------

namespace {

// Hands out the free ids of an id_space in ascending order without changing it: ids that this
// plan frees are not reused before the plan has been applied.
class id_cursor {
 public:
  explicit id_cursor(const id_space& space)
      : free_(space.free_intervals()),
        it_(free_.begin()),
        next_(it_ == free_.end() ? 0 : it_->first) {}

  uint32_t take() {
    while (it_ != free_.end() && next_ >= it_->second) {
      if (++it_ != free_.end()) {
        next_ = it_->first;
      }
    }
    return it_ == free_.end() ? 0 : next_++;
  }

 private:
  const std::map<uint32_t, uint32_t>& free_;
  std::map<uint32_t, uint32_t>::const_iterator it_;
  uint32_t next_;
};

lb_svc_value master_value(uint32_t svc_id, uint32_t affinity_timeout_s, uint16_t flags,
                          size_t count) {
  lb_svc_value v{};
  v.svc_id = svc_id;
  v.affinity_timeout = affinity_timeout_s;
  v.count = static_cast<uint16_t>(count);
  v.flags = flags;
  return v;
}

lb_svc_value slot_value(uint32_t svc_id, uint32_t backend_id) {
  lb_svc_value v{};
  v.backend_id = backend_id;
  v.svc_id = svc_id;
  return v;
}

// The ALL master's flags, except LB_SVC_F_MAGLEV (that one depends on the table, see update()).
uint16_t master_flags(const desired_frontend& f) {
  uint16_t flags = 0;
  if (f.affinity_timeout_s != 0) {
    flags |= LB_SVC_F_AFFINITY;
  }
  if (f.when_empty == empty_verdict::drop) {
    flags |= LB_SVC_F_DROP_EMPTY;
  }
  // A loopback frontend is never for traffic from outside (nor a pod's): socket only.
  if (f.kind != frontend_kind::cluster_ip && !f.loopback) {
    flags |= LB_SVC_F_EXTERNAL;
  }
  if (f.loopback) {
    flags |= LB_SVC_F_LOOPBACK;
  }
  if (f.outside_only) {
    flags |= LB_SVC_F_OUTSIDE_ONLY;
  }
  if (!f.source_ranges.empty()) {
    flags |= LB_SVC_F_SOURCE_RANGES;
  }
  if (f.external_local) {
    flags |= LB_SVC_F_EXT_LOCAL;
  }
  return flags;
}

// The LB_SCOPE_EXTERNAL master's flags: only what its own count needs; the north-south flags
// are read from the ALL master.
uint16_t external_flags(const desired_frontend& f) {
  uint16_t flags = 0;
  if (f.affinity_timeout_s != 0) {
    flags |= LB_SVC_F_AFFINITY;
  }
  if (f.external_backends.empty()) {
    flags |= LB_SVC_F_DROP_EMPTY;
  }
  return flags;
}

// The prefix with its host bits cleared: LPM keys are compared as given, and a restored key must
// equal the one the diff wants.
ip_prefix masked(ip_prefix p) {
  const size_t bytes = p.addr.family == ip_family::v4 ? 4 : 16;
  const size_t bits = std::min<size_t>(p.length, bytes * 8);
  p.length = static_cast<uint8_t>(bits);
  for (size_t i = 0; i < p.addr.bytes.size(); ++i) {
    const size_t lo = i * 8;
    if (i >= bytes || lo >= bits) {
      p.addr.bytes[i] = 0;
    } else if (bits - lo < 8) {
      p.addr.bytes[i] &= static_cast<uint8_t>(0xff00u >> (bits - lo));
    }
  }
  return p;
}

// One diff in progress: frontends are planned one key at a time, in key order, into the phases
// of the update protocol (reconcile.h), which are concatenated at the end.
class differ {
 public:
  differ(const map_state& current, const reconcile_options& options)
      : cur_(current),
        idx_(current.index()),
        opts_(options),
        svc_ids_(idx_.svc_ids),
        be_ids_(idx_.backend_ids),
        svc_used_(idx_.service_entries),
        be_used_(idx_.backend_entries) {}

  void plan(const frontend_key& key, const desired_frontend* want) {
    const auto cur_it = cur_.frontends.find(key);
    const frontend_record* cur = cur_it == cur_.frontends.end() ? nullptr : &cur_it->second;
    if (want == nullptr) {
      if (cur != nullptr) {
        remove(key, *cur);
      }
      return;
    }
    update(key, *want, cur);
  }

  void error(const frontend_key& key, const std::string& name, std::string what,
             not_programmed_reason reason) {
    out_.errors.push_back({key, name, std::move(what), reason});
  }

  // Backends, prefixes and tables whose svc_id no frontend uses, neither before nor after this
  // plan.
  void remove_orphans() {
    const auto orphan = [&](uint32_t svc_id) {
      return !idx_.svc_users.contains(svc_id) && !claimed_svc_.contains(svc_id);
    };
    for (const auto& [svc_id, ids] : idx_.backends_by_svc) {
      if (!orphan(svc_id)) {
        continue;
      }
      for (const auto& [id, b] : ids) {
        gone_backends_.push_back({.kind = op_kind::delete_backend, .backend_id = id});
      }
    }
    for (const auto& [svc_id, prefixes] : cur_.src_ranges) {
      if (orphan(svc_id)) {
        for (const ip_prefix& p : prefixes) {
          gone_extras_.push_back(range_op(op_kind::delete_src_range, {}, svc_id, p));
        }
      }
    }
    for (const auto& [svc_id, ids] : cur_.maglev) {
      if (orphan(svc_id)) {
        gone_extras_.push_back(maglev_delete({}, svc_id));
      }
    }
    for (const auto& [svc_id, value] : cur_.info) {
      if (orphan(svc_id)) {
        gone_extras_.push_back(info_delete({}, svc_id));
      }
    }
  }

  // Expected sizes of the two big phases (a full plan from empty maps writes one backend and
  // one slot per desired backend): growing 80-byte ops by doubling costs more than the diff.
  void reserve(size_t backends, size_t frontends) {
    backends_.reserve(2 * backends + frontends);  // finish() appends the rest in place
    slots_.reserve(backends);
  }

  reconcile_result finish() {
    const auto parts = {&backends_,     &slots_,      &ranges_,      &maglev_,
                        &info_,         &masters_,    &shrink_,      &gone_masters_,
                        &gone_slots_,   &gone_extras_, &gone_backends_};
    size_t total = 0;
    for (const auto* part : parts) {
      total += part->size();
    }
    out_.ops = std::move(backends_);
    out_.ops.reserve(total);
    for (auto* part : parts) {
      if (part != &backends_) {
        out_.ops.insert(out_.ops.end(), part->begin(), part->end());
      }
    }
    return std::move(out_);
  }

 private:
  using owned_map = std::map<uint32_t, const backend_record*>;

  const owned_map& owned_by(uint32_t svc_id) const {
    static const owned_map none;
    const auto it = idx_.backends_by_svc.find(svc_id);
    return it == idx_.backends_by_svc.end() ? none : it->second;
  }

  static map_op range_op(op_kind kind, const frontend_key& key, uint32_t svc_id,
                         const ip_prefix& p) {
    map_op op{.kind = kind, .key = key};
    op.value.svc_id = svc_id;
    op.backend.addr = p.addr;
    op.prefix_len = p.length;
    return op;
  }

  static map_op maglev_delete(const frontend_key& key, uint32_t svc_id) {
    map_op op{.kind = op_kind::delete_maglev, .key = key};
    op.value.svc_id = svc_id;
    return op;
  }

  static map_op info_delete(const frontend_key& key, uint32_t svc_id) {
    map_op op{.kind = op_kind::delete_info, .key = key};
    op.value.svc_id = svc_id;
    return op;
  }

  // lb_svc_info_v1[svc_id]: written before the master when it differs.
  void plan_info(const frontend_key& key, const desired_frontend& f, uint32_t svc_id) {
    svc_info want = make_svc_info(f);
    const auto have = cur_.info.find(svc_id);
    if (have != cur_.info.end() && have->second == want) {
      return;
    }
    map_op op{.kind = op_kind::put_info, .key = key};
    op.value.svc_id = svc_id;
    op.backend_id = static_cast<uint32_t>(out_.info.size());
    out_.info.push_back(want);
    info_.push_back(op);
  }

  // Deletes of the master and slots of one scope, into the given phases.
  static void delete_scope(const frontend_key& key, uint8_t scope, size_t count,
                           std::vector<map_op>& masters, std::vector<map_op>& slots) {
    masters.push_back({.kind = op_kind::delete_master, .scope = scope, .key = key});
    for (size_t i = 0; i < count; ++i) {
      slots.push_back({.kind = op_kind::delete_slot,
                       .scope = scope,
                       .key = key,
                       .slot = static_cast<uint16_t>(i + 1)});
    }
  }

  void remove(const frontend_key& key, const frontend_record& rec) {
    delete_scope(key, LB_SCOPE_ALL, rec.slots.size(), gone_masters_, gone_slots_);
    if (rec.external) {
      delete_scope(key, LB_SCOPE_EXTERNAL, rec.external->slots.size(), gone_masters_,
                   gone_slots_);
    }
    if (const auto it = cur_.src_ranges.find(rec.svc_id); it != cur_.src_ranges.end()) {
      for (const ip_prefix& p : it->second) {
        gone_extras_.push_back(range_op(op_kind::delete_src_range, key, rec.svc_id, p));
      }
    }
    if (cur_.maglev.contains(rec.svc_id)) {
      gone_extras_.push_back(maglev_delete(key, rec.svc_id));
    }
    if (cur_.info.contains(rec.svc_id)) {
      gone_extras_.push_back(info_delete(key, rec.svc_id));
    }
    for (const auto& [id, b] : owned_by(rec.svc_id)) {
      gone_backends_.push_back({.kind = op_kind::delete_backend, .backend_id = id});
    }
  }

  // Slot writes of one scope (phase 2) and the surplus slots beyond the new count (phase 6).
  void plan_slots(const frontend_key& key, uint8_t scope, uint32_t svc_id,
                  const std::vector<uint32_t>& want, const std::vector<uint32_t>* have) {
    const size_t old_count = have ? have->size() : 0;
    for (size_t i = 0; i < want.size(); ++i) {
      if (i < old_count && (*have)[i] == want[i]) {
        continue;
      }
      slots_.push_back({.kind = op_kind::put_slot,
                        .scope = scope,
                        .key = key,
                        .slot = static_cast<uint16_t>(i + 1),
                        .value = slot_value(svc_id, want[i])});
    }
    for (size_t i = want.size(); i < old_count; ++i) {
      shrink_.push_back({.kind = op_kind::delete_slot,
                         .scope = scope,
                         .key = key,
                         .slot = static_cast<uint16_t>(i + 1)});
    }
  }

  // Source-range prefixes of the VIP's family: new ones before the master, stale ones after.
  void plan_ranges(const frontend_key& key, const desired_frontend& f, uint32_t svc_id) {
    want_ranges_.clear();
    for (const ip_prefix& p : f.source_ranges) {
      if (p.addr.family == f.vip.family) {
        want_ranges_.push_back(masked(p));
      }
    }
    std::sort(want_ranges_.begin(), want_ranges_.end());
    want_ranges_.erase(std::unique(want_ranges_.begin(), want_ranges_.end()), want_ranges_.end());
    static const std::set<ip_prefix> none;
    const auto it = cur_.src_ranges.find(svc_id);
    const std::set<ip_prefix>& have = it == cur_.src_ranges.end() ? none : it->second;
    auto w = want_ranges_.begin();
    auto h = have.begin();
    while (w != want_ranges_.end() || h != have.end()) {
      if (h == have.end() || (w != want_ranges_.end() && *w < *h)) {
        ranges_.push_back(range_op(op_kind::put_src_range, key, svc_id, *w++));
      } else if (w == want_ranges_.end() || *h < *w) {
        gone_extras_.push_back(range_op(op_kind::delete_src_range, key, svc_id, *h++));
      } else {
        ++w;
        ++h;
      }
    }
  }

  // The Maglev table over the backends external traffic uses (`list`, with ids `ids` in the same
  // order). Returns whether the frontend has one, i.e. gets LB_SVC_F_MAGLEV.
  bool plan_maglev(const frontend_key& key, const desired_frontend& f, uint32_t svc_id,
                   std::span<const desired_backend> list, std::span<const uint32_t> ids) {
    bool want = opts_.algorithm == lb_algorithm::maglev && f.kind != frontend_kind::cluster_ip &&
                !f.loopback;
    maglev_build build;
    if (want) {
      // Unique by id (a backend listed twice has one id), ascending: the mirror's form.
      by_id_.clear();
      for (size_t i = 0; i < list.size(); ++i) {
        by_id_.emplace_back(ids[i], static_cast<uint32_t>(i));
      }
      std::sort(by_id_.begin(), by_id_.end());
      by_id_.erase(std::unique(by_id_.begin(), by_id_.end(),
                               [](const auto& a, const auto& b) { return a.first == b.first; }),
                   by_id_.end());
      if (by_id_.empty()) {
        want = false;  // no table and no flag: the master's count 0 decides
      } else if (by_id_.size() > opts_.maglev.table_size) {
        out_.warnings.push_back(
            {key, f.name,
             fmt::format("{} backends do not fit a Maglev table of {} slots; random choice "
                         "instead (use a larger --maglev-table-size)",
                         by_id_.size(), opts_.maglev.table_size)});
        want = false;
      } else {
        build.svc_id = svc_id;
        build.ids.reserve(by_id_.size());
        build.backends.reserve(by_id_.size());
        for (const auto& [id, i] : by_id_) {
          build.ids.push_back(id);
          build.backends.push_back({.addr = list[i].addr, .port = list[i].port, .proto = key.proto});
        }
      }
    }
    const auto have = cur_.maglev.find(svc_id);
    if (!want) {
      if (have != cur_.maglev.end()) {
        gone_extras_.push_back(maglev_delete(key, svc_id));
      }
      return false;
    }
    if (have == cur_.maglev.end() || have->second != build.ids) {
      map_op op{.kind = op_kind::put_maglev, .key = key};
      op.value.svc_id = svc_id;
      op.backend_id = static_cast<uint32_t>(out_.maglev.size());
      out_.maglev.push_back(std::move(build));
      maglev_.push_back(op);
    }
    return true;
  }

  void update(const frontend_key& key, const desired_frontend& f, const frontend_record* cur) {
    const bool ext = f.external_local;
    const size_t n = f.backends.size();
    const size_t n_ext = ext ? f.external_backends.size() : 0;
    if (n > LB_MAX_BACKENDS_PER_SVC || n_ext > LB_MAX_BACKENDS_PER_SVC) {
      error(key, f.name,
            fmt::format("{} backends, more than the {} slots a frontend has",
                        std::max(n, n_ext), LB_MAX_BACKENDS_PER_SVC),
            not_programmed_reason::too_many_backends);
      return;
    }
    frontend_record next;
    next.svc_id = cur ? cur->svc_id : svc_ids_.take();
    if (next.svc_id == 0) {
      error(key, f.name, "no free service id (LB_MAX_SERVICES reached)",
            not_programmed_reason::no_service_id);
      return;
    }
    next.affinity_timeout_s = f.affinity_timeout_s;
    next.flags = master_flags(f);

    // Both sets are matched as one list: f.backends then (eTP=Local) f.external_backends, so a
    // backend in both gets one id and one record.
    const auto at = [&](size_t i) -> const desired_backend& {
      return i < n ? f.backends[i] : f.external_backends[i - n];
    };
    const size_t total = n + n_ext;

    // This frontend's backend ids by (address, port); the lowest id wins if an interrupted run
    // left two, the other is deleted below. Both sides are matched as sorted vectors held by
    // the differ: a map per frontend cost an allocation per backend on every full sync.
    const owned_map& owned = owned_by(next.svc_id);
    mine_.clear();
    for (const auto& [id, b] : owned) {
      mine_.push_back(have{b->addr, b->port, id, b});
    }
    // `owned` ascends by id, so a stable sort keeps the lowest id first among equal addresses.
    std::stable_sort(mine_.begin(), mine_.end(), [](const have& a, const have& b) {
      return std::tie(a.addr, a.port) < std::tie(b.addr, b.port);
    });
    order_.resize(total);
    for (size_t i = 0; i < total; ++i) {
      order_[i] = static_cast<uint32_t>(i);
    }
    const auto by_address = [&](uint32_t a, uint32_t b) {
      return std::tie(at(a).addr, at(a).port) < std::tie(at(b).addr, at(b).port);
    };
    std::stable_sort(order_.begin(), order_.end(), by_address);
    // first_[i]: the earliest backend with i's address and port (stable: in list order, so the
    // ALL set's entry when both sets have it); match_[i]: its entry in mine_, or none.
    constexpr uint32_t none = UINT32_MAX;
    first_.assign(total, none);
    match_.assign(total, none);
    size_t m = 0;
    for (size_t k = 0; k < total; ++k) {
      const uint32_t i = order_[k];
      if (k > 0 && !by_address(order_[k - 1], i)) {
        first_[i] = first_[order_[k - 1]];
        match_[i] = match_[order_[k - 1]];
        continue;
      }
      first_[i] = i;
      const desired_backend& b = at(i);
      while (m < mine_.size() && std::tie(mine_[m].addr, mine_[m].port) < std::tie(b.addr, b.port)) {
        ++m;
      }
      if (m < mine_.size() && mine_[m].addr == b.addr && mine_[m].port == b.port) {
        match_[i] = static_cast<uint32_t>(m);
      }
    }
    keep_.clear();
    ids_.resize(total);
    const size_t backends_mark = backends_.size();
    size_t fresh = 0;  // backend records this frontend adds to the map
    for (size_t i = 0; i < total; ++i) {
      uint32_t id = 0;
      if (first_[i] != i) {
        id = ids_[first_[i]];  // first_[i] < i: list order
        ids_[i] = id;
        continue;  // one record per id, written for its first entry
      }
      const desired_backend& b = at(i);
      backend_record rec{
          b.addr, b.port, key.proto,
          static_cast<uint8_t>(b.terminating ? LB_BACKEND_TERMINATING : LB_BACKEND_ACTIVE),
          next.svc_id};
      const backend_record* had = match_[i] == none ? nullptr : mine_[match_[i]].rec;
      id = had != nullptr ? mine_[match_[i]].id : be_ids_.take();
      fresh += had == nullptr ? 1 : 0;
      ids_[i] = id;
      keep_.push_back(id);
      if (had == nullptr || !(*had == rec)) {
        backends_.push_back({.kind = op_kind::put_backend, .backend_id = id, .backend = rec});
      }
    }
    // Entries this frontend adds to the maps: they must fit beside everything there now and
    // everything this plan adds before it deletes. Otherwise the frontend stays as it is.
    const size_t fam = family_index(key.vip.family);
    const size_t had = cur ? cur->slots.size() : 0;
    const size_t new_svc = (cur ? 0 : 1) + (n > had ? n - had : 0);
    size_t new_ext = 0;
    if (ext) {
      const scope_record* ce = cur && cur->external ? &*cur->external : nullptr;
      const size_t had_ext = ce ? ce->slots.size() : 0;
      new_ext = (ce ? 0 : 1) + (n_ext > had_ext ? n_ext - had_ext : 0);
    }
    if (const char* full = over_capacity(fam, new_svc + new_ext, fresh)) {
      backends_.resize(backends_mark);
      const bool svc_map = std::string_view(full) == "services";
      error(key, f.name,
            fmt::format("lb{}_{}_v1 is full: {} new entries needed, {} of {} in use or being "
                        "written; not programmed (the other frontends are)",
                        fam == 0 ? 4 : 6, full, svc_map ? new_svc + new_ext : fresh,
                        svc_map ? svc_used_[fam] : be_used_[fam],
                        svc_map ? capacity(fam, true) : capacity(fam, false)),
            not_programmed_reason::map_full);
      return;
    }
    svc_used_[fam] += new_svc + new_ext;
    be_used_[fam] += fresh;
    if (cur == nullptr) {
      claimed_svc_.insert(next.svc_id);
    }
    std::sort(keep_.begin(), keep_.end());
    next.slots.swap(slots_buf_);
    next.slots.assign(ids_.begin(), ids_.begin() + static_cast<ptrdiff_t>(n));

    plan_slots(key, LB_SCOPE_ALL, next.svc_id, next.slots, cur ? &cur->slots : nullptr);
    const scope_record* cur_ext = cur && cur->external ? &*cur->external : nullptr;
    if (ext) {
      next.external.emplace();
      next.external->affinity_timeout_s = f.affinity_timeout_s;
      next.external->flags = external_flags(f);
      next.external->slots.assign(ids_.begin() + static_cast<ptrdiff_t>(n), ids_.end());
      plan_slots(key, LB_SCOPE_EXTERNAL, next.svc_id, next.external->slots,
                 cur_ext ? &cur_ext->slots : nullptr);
    }
    plan_ranges(key, f, next.svc_id);
    const std::span<const desired_backend> lb_list =
        ext ? std::span<const desired_backend>(f.external_backends)
            : std::span<const desired_backend>(f.backends);
    const std::span<const uint32_t> lb_ids =
        ext ? std::span<const uint32_t>(ids_).subspan(n) : std::span<const uint32_t>(ids_).first(n);
    if (plan_maglev(key, f, next.svc_id, lb_list, lb_ids)) {
      next.flags |= LB_SVC_F_MAGLEV;
    }
    plan_info(key, f, next.svc_id);

    // Masters: the EXTERNAL one first, so the ALL master's LB_SVC_F_EXT_LOCAL never points at
    // entries that are not there yet.
    if (ext && (!cur_ext || cur_ext->affinity_timeout_s != next.external->affinity_timeout_s ||
                cur_ext->flags != next.external->flags ||
                cur_ext->slots.size() != next.external->slots.size())) {
      masters_.push_back({.kind = op_kind::put_master,
                          .scope = LB_SCOPE_EXTERNAL,
                          .key = key,
                          .value = master_value(next.svc_id, next.external->affinity_timeout_s,
                                                next.external->flags,
                                                next.external->slots.size())});
    }
    const size_t old_count = cur ? cur->slots.size() : 0;
    const bool master_changed = !cur || cur->affinity_timeout_s != next.affinity_timeout_s ||
                                cur->flags != next.flags || old_count != next.slots.size();
    if (master_changed) {
      masters_.push_back({.kind = op_kind::put_master,
                          .key = key,
                          .value = master_value(next.svc_id, next.affinity_timeout_s, next.flags,
                                                next.slots.size()),
                          .new_svc_id = cur == nullptr});
    }
    if (!ext && cur_ext != nullptr) {
      // No longer Local: the ALL master above dropped LB_SVC_F_EXT_LOCAL, nothing reads these.
      delete_scope(key, LB_SCOPE_EXTERNAL, cur_ext->slots.size(), shrink_, shrink_);
    }
    for (const auto& [id, b] : owned) {
      if (!std::binary_search(keep_.begin(), keep_.end(), id)) {
        gone_backends_.push_back({.kind = op_kind::delete_backend, .backend_id = id});
      }
    }
    next.slots.swap(slots_buf_);
  }

  size_t capacity(size_t fam, bool services) const {
    const map_capacity& c = opts_.capacity;
    return services ? (fam == 0 ? c.services4 : c.services6)
                    : (fam == 0 ? c.backends4 : c.backends6);
  }

  // "services" or "backends" when adding these entries would pass a map's capacity.
  const char* over_capacity(size_t fam, size_t svc, size_t be) const {
    const size_t sc = capacity(fam, true);
    const size_t bc = capacity(fam, false);
    if (sc != 0 && svc_used_[fam] + svc > sc) {
      return "services";
    }
    if (bc != 0 && be_used_[fam] + be > bc) {
      return "backends";
    }
    return nullptr;
  }

  const map_state& cur_;
  const map_index& idx_;
  const reconcile_options& opts_;
  id_cursor svc_ids_;
  id_cursor be_ids_;
  std::array<size_t, 2> svc_used_;  // entries in the maps at this plan's peak so far
  std::array<size_t, 2> be_used_;
  std::set<uint32_t> claimed_svc_;
  // Scratch space of update(), kept across frontends so a full sync does not allocate per one.
  struct have {
    ip_addr addr;
    uint16_t port;
    uint32_t id;
    const backend_record* rec;
  };
  std::vector<have> mine_;
  std::vector<uint32_t> order_, first_, match_, keep_, slots_buf_, ids_;
  std::vector<ip_prefix> want_ranges_;
  std::vector<std::pair<uint32_t, uint32_t>> by_id_;  // (backend id, index in the list)
  reconcile_result out_;
  std::vector<map_op> backends_, slots_, ranges_, maglev_, info_, masters_, shrink_,
      gone_masters_, gone_slots_, gone_extras_, gone_backends_;
};

}  // namespace

reconcile_result reconcile_subset(const map_state& current,
                                  const std::map<frontend_key, desired_frontend>& desired,
                                  const std::set<frontend_key>& touched,
                                  const reconcile_options& options) {
  differ d(current, options);
  for (const auto& key : touched) {
    const auto it = desired.find(key);
    d.plan(key, it == desired.end() ? nullptr : &it->second);
  }
  return d.finish();
}

namespace {

// Plans every key of either side, in key order (the order reconcile_subset uses). `want` maps
// a key to what `deref` turns into the desired frontend.
template <typename Want, typename Deref>
reconcile_result plan_all(differ& d, const map_state& current, const Want& want, Deref deref) {
  size_t backends = 0;
  for (const auto& [key, f] : want) {
    backends += deref(f).backends.size() + deref(f).external_backends.size();
  }
  if (current.backends.empty()) {
    d.reserve(backends, want.size());
  }
  auto w = want.begin();
  auto c = current.frontends.begin();
  while (w != want.end() || c != current.frontends.end()) {
    if (c == current.frontends.end() || (w != want.end() && w->first < c->first)) {
      d.plan(w->first, &deref(w->second));
      ++w;
    } else if (w == want.end() || c->first < w->first) {
      d.plan(c->first, nullptr);
      ++c;
    } else {
      d.plan(w->first, &deref(w->second));
      ++w;
      ++c;
    }
  }
  d.remove_orphans();
  return d.finish();
}

}  // namespace

reconcile_result reconcile(const map_state& current, const desired_state& desired,
                           const reconcile_options& options) {
  differ d(current, options);
  std::map<frontend_key, const desired_frontend*> want;
  for (const auto& f : desired.frontends) {
    if (!want.emplace(f.key(), &f).second) {
      d.error(f.key(), f.name, "duplicate frontend (same address, port and protocol)",
              not_programmed_reason::duplicate);
    }
  }
  return plan_all(d, current, want, [](const desired_frontend* f) -> const desired_frontend& {
    return *f;
  });
}

reconcile_result reconcile(const map_state& current,
                           const std::map<frontend_key, desired_frontend>& desired,
                           const reconcile_options& options) {
  differ d(current, options);
  return plan_all(d, current, desired, [](const desired_frontend& f) -> const desired_frontend& {
    return f;
  });
}

void apply_ops(map_state& state, const std::vector<map_op>& ops,
               std::span<const maglev_build> maglev, std::span<const svc_info> info) {
  state.index();  // rebuilt first if hand edits made it stale
  map_index& idx = state.index_;
  // The record the last frontend_for() returned and the service-map entries it took before.
  const frontend_record* touched = nullptr;
  size_t before = 0;
  auto frontend_for = [&](const map_op& op) -> frontend_record& {
    auto [it, inserted] = state.frontends.try_emplace(op.key);
    touched = &it->second;
    before = inserted ? 0 : service_entries(it->second);
    if (inserted) {
      use_svc(idx, op.value.svc_id);
    } else if (it->second.svc_id != op.value.svc_id) {
      unuse_svc(idx, it->second.svc_id);
      use_svc(idx, op.value.svc_id);
    }
    it->second.svc_id = op.value.svc_id;
    return it->second;
  };
  // The entries of op's scope: the ALL fields of the record, or its EXTERNAL part.
  struct scope_ref {
    uint32_t& affinity_timeout_s;
    uint16_t& flags;
    std::vector<uint32_t>& slots;
  };
  auto scope_for = [&](const map_op& op) -> scope_ref {
    auto& rec = frontend_for(op);
    if (op.scope == LB_SCOPE_EXTERNAL) {
      if (!rec.external) {
        rec.external.emplace();
      }
      return {rec.external->affinity_timeout_s, rec.external->flags, rec.external->slots};
    }
    return {rec.affinity_timeout_s, rec.flags, rec.slots};
  };
  // Entry counts per family change by the difference a slot or master op makes to its record
  // (unsigned arithmetic: a shrink wraps and the sum comes out right).
  const auto account = [&](const map_op& op) {
    idx.service_entries[family_index(op.key.vip.family)] += service_entries(*touched) - before;
  };
  for (const auto& op : ops) {
    switch (op.kind) {
      case op_kind::put_backend: {
        auto [it, inserted] = state.backends.try_emplace(op.backend_id, op.backend);
        if (!inserted) {
          if (it->second.svc_id != op.backend.svc_id) {
            unindex_backend(idx, op.backend_id, it->second.svc_id);
          }
          --idx.backend_entries[family_index(it->second.addr.family)];
          it->second = op.backend;
        }
        ++idx.backend_entries[family_index(op.backend.addr.family)];
        index_backend(idx, op.backend_id, it->second);
        break;
      }
      case op_kind::delete_backend:
        if (auto it = state.backends.find(op.backend_id); it != state.backends.end()) {
          unindex_backend(idx, op.backend_id, it->second.svc_id);
          --idx.backend_entries[family_index(it->second.addr.family)];
          state.backends.erase(it);
        }
        break;
      case op_kind::put_slot: {
        auto rec = scope_for(op);
        if (rec.slots.size() < op.slot) {
          rec.slots.resize(op.slot);
        }
        rec.slots[op.slot - 1] = op.value.backend_id;
        account(op);
        break;
      }
      case op_kind::put_master: {
        auto rec = scope_for(op);
        rec.affinity_timeout_s = op.value.affinity_timeout;
        rec.flags = op.value.flags;
        rec.slots.resize(op.value.count);
        account(op);
        break;
      }
      case op_kind::delete_slot: {
        // Slots beyond the master's count are invisible; the mirror already trimmed them
        // when the master was written, or the whole frontend is going away.
        break;
      }
      case op_kind::delete_master:
        if (auto it = state.frontends.find(op.key); it != state.frontends.end()) {
          size_t& used = idx.service_entries[family_index(op.key.vip.family)];
          if (op.scope == LB_SCOPE_EXTERNAL) {
            if (it->second.external) {
              used -= 1 + it->second.external->slots.size();
            }
            it->second.external.reset();
          } else {
            used -= service_entries(it->second);
            unuse_svc(idx, it->second.svc_id);
            state.frontends.erase(it);
          }
        }
        break;
      case op_kind::put_src_range:
        state.src_ranges[op.value.svc_id].insert(op.range());
        break;
      case op_kind::delete_src_range:
        if (auto it = state.src_ranges.find(op.value.svc_id); it != state.src_ranges.end()) {
          it->second.erase(op.range());
          if (it->second.empty()) {
            state.src_ranges.erase(it);
          }
        }
        break;
      case op_kind::put_maglev:
        // Without the plan's tables the content is unknown: recorded as unverified (empty).
        state.maglev[op.value.svc_id] =
            op.backend_id < maglev.size() ? maglev[op.backend_id].ids : std::vector<uint32_t>{};
        break;
      case op_kind::delete_maglev:
        state.maglev.erase(op.value.svc_id);
        break;
      case op_kind::put_info:
        state.info[op.value.svc_id] = op.backend_id < info.size() ? info[op.backend_id] : svc_info{};
        break;
      case op_kind::delete_info:
        state.info.erase(op.value.svc_id);
        break;
    }
  }
  idx.frontends = state.frontends.size();
  idx.backends = state.backends.size();
}

}  // namespace sluice
