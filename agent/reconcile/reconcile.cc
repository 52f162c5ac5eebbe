#include "agent/reconcile/reconcile.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

namespace sluice {

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
  }
  for (const auto& [id, b] : backends) {
    index_backend(idx, id, b);
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

lb_svc_value master_value(const frontend_record& r) {
  lb_svc_value v{};
  v.svc_id = r.svc_id;
  v.affinity_timeout = r.affinity_timeout_s;
  v.count = static_cast<uint16_t>(r.slots.size());
  v.flags = r.flags;
  return v;
}

lb_svc_value slot_value(uint32_t svc_id, uint32_t backend_id) {
  lb_svc_value v{};
  v.backend_id = backend_id;
  v.svc_id = svc_id;
  return v;
}

uint16_t master_flags(const desired_frontend& f) {
  uint16_t flags = 0;
  if (f.affinity_timeout_s != 0) {
    flags |= LB_SVC_F_AFFINITY;
  }
  if (f.when_empty == empty_verdict::drop) {
    flags |= LB_SVC_F_DROP_EMPTY;
  }
  return flags;
}

// One diff in progress: frontends are planned one key at a time, in key order, into the phases
// of the update protocol (reconcile.h), which are concatenated at the end.
class differ {
 public:
  explicit differ(const map_state& current)
      : cur_(current), idx_(current.index()), svc_ids_(idx_.svc_ids), be_ids_(idx_.backend_ids) {}

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

  void error(const frontend_key& key, const std::string& name, std::string what) {
    out_.errors.push_back({key, name, std::move(what)});
  }

  // Backends whose svc_id no frontend uses, neither before nor after this plan.
  void remove_orphans() {
    for (const auto& [svc_id, ids] : idx_.backends_by_svc) {
      if (idx_.svc_users.contains(svc_id) || claimed_svc_.contains(svc_id)) {
        continue;
      }
      for (const auto& [id, b] : ids) {
        gone_backends_.push_back({.kind = op_kind::delete_backend, .backend_id = id});
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
    const auto parts = {&backends_,     &slots_,      &masters_,      &shrink_,
                        &gone_masters_, &gone_slots_, &gone_backends_};
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

  void remove(const frontend_key& key, const frontend_record& rec) {
    gone_masters_.push_back({.kind = op_kind::delete_master, .key = key});
    for (size_t i = 0; i < rec.slots.size(); ++i) {
      gone_slots_.push_back(
          {.kind = op_kind::delete_slot, .key = key, .slot = static_cast<uint16_t>(i + 1)});
    }
    for (const auto& [id, b] : owned_by(rec.svc_id)) {
      gone_backends_.push_back({.kind = op_kind::delete_backend, .backend_id = id});
    }
  }

  void update(const frontend_key& key, const desired_frontend& f, const frontend_record* cur) {
    if (f.backends.size() > LB_MAX_BACKENDS_PER_SVC) {
      error(key, f.name,
            fmt::format("{} backends, more than the {} slots a frontend has", f.backends.size(),
                        LB_MAX_BACKENDS_PER_SVC));
      return;
    }
    frontend_record next;
    next.svc_id = cur ? cur->svc_id : svc_ids_.take();
    if (next.svc_id == 0) {
      error(key, f.name, "no free service id (LB_MAX_SERVICES reached)");
      return;
    }
    if (cur == nullptr) {
      claimed_svc_.insert(next.svc_id);
    }
    next.affinity_timeout_s = f.affinity_timeout_s;
    next.flags = master_flags(f);

    // This frontend's backend ids by (address, port); the lowest id wins if an interrupted run
    // left two, the other is deleted below. Both sides are matched as sorted vectors held by
    // the differ: a map per frontend cost an allocation per backend on every full sync.
    const owned_map& owned = owned_by(next.svc_id);
    const size_t n = f.backends.size();
    mine_.clear();
    for (const auto& [id, b] : owned) {
      mine_.push_back(have{b->addr, b->port, id, b});
    }
    // `owned` ascends by id, so a stable sort keeps the lowest id first among equal addresses.
    std::stable_sort(mine_.begin(), mine_.end(), [](const have& a, const have& b) {
      return std::tie(a.addr, a.port) < std::tie(b.addr, b.port);
    });
    order_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      order_[i] = static_cast<uint32_t>(i);
    }
    const auto by_address = [&](uint32_t a, uint32_t b) {
      return std::tie(f.backends[a].addr, f.backends[a].port) <
             std::tie(f.backends[b].addr, f.backends[b].port);
    };
    std::stable_sort(order_.begin(), order_.end(), by_address);
    // first_[i]: the earliest backend with i's address and port (stable: in list order);
    // match_[i]: its entry in mine_, or none.
    constexpr uint32_t none = UINT32_MAX;
    first_.assign(n, none);
    match_.assign(n, none);
    size_t m = 0;
    for (size_t k = 0; k < n; ++k) {
      const uint32_t i = order_[k];
      if (k > 0 && !by_address(order_[k - 1], i)) {
        first_[i] = first_[order_[k - 1]];
        match_[i] = match_[order_[k - 1]];
        continue;
      }
      first_[i] = i;
      const desired_backend& b = f.backends[i];
      while (m < mine_.size() && std::tie(mine_[m].addr, mine_[m].port) < std::tie(b.addr, b.port)) {
        ++m;
      }
      if (m < mine_.size() && mine_[m].addr == b.addr && mine_[m].port == b.port) {
        match_[i] = static_cast<uint32_t>(m);
      }
    }
    keep_.clear();
    next.slots.swap(slots_buf_);
    next.slots.clear();
    for (size_t i = 0; i < n; ++i) {
      const desired_backend& b = f.backends[i];
      backend_record rec{
          b.addr, b.port, key.proto,
          static_cast<uint8_t>(b.terminating ? LB_BACKEND_TERMINATING : LB_BACKEND_ACTIVE),
          next.svc_id};
      const backend_record* had = match_[i] == none ? nullptr : mine_[match_[i]].rec;
      uint32_t id = 0;
      if (first_[i] != i) {
        id = next.slots[first_[i]];
      } else if (had != nullptr) {
        id = mine_[match_[i]].id;
      } else {
        id = be_ids_.take();
      }
      keep_.push_back(id);
      next.slots.push_back(id);
      if (had == nullptr || !(*had == rec)) {
        backends_.push_back({.kind = op_kind::put_backend, .backend_id = id, .backend = rec});
      }
    }
    std::sort(keep_.begin(), keep_.end());

    const size_t old_count = cur ? cur->slots.size() : 0;
    for (size_t i = 0; i < next.slots.size(); ++i) {
      if (i < old_count && cur->slots[i] == next.slots[i]) {
        continue;
      }
      slots_.push_back({.kind = op_kind::put_slot,
                        .key = key,
                        .slot = static_cast<uint16_t>(i + 1),
                        .value = slot_value(next.svc_id, next.slots[i])});
    }
    const bool master_changed = !cur || cur->affinity_timeout_s != next.affinity_timeout_s ||
                                cur->flags != next.flags || old_count != next.slots.size();
    if (master_changed) {
      masters_.push_back({.kind = op_kind::put_master,
                          .key = key,
                          .value = master_value(next),
                          .new_svc_id = cur == nullptr});
    }
    for (size_t i = next.slots.size(); i < old_count; ++i) {
      shrink_.push_back(
          {.kind = op_kind::delete_slot, .key = key, .slot = static_cast<uint16_t>(i + 1)});
    }
    for (const auto& [id, b] : owned) {
      if (!std::binary_search(keep_.begin(), keep_.end(), id)) {
        gone_backends_.push_back({.kind = op_kind::delete_backend, .backend_id = id});
      }
    }
    next.slots.swap(slots_buf_);
  }

  const map_state& cur_;
  const map_index& idx_;
  id_cursor svc_ids_;
  id_cursor be_ids_;
  std::set<uint32_t> claimed_svc_;
  // Scratch space of update(), kept across frontends so a full sync does not allocate per one.
  struct have {
    ip_addr addr;
    uint16_t port;
    uint32_t id;
    const backend_record* rec;
  };
  std::vector<have> mine_;
  std::vector<uint32_t> order_, first_, match_, keep_, slots_buf_;
  reconcile_result out_;
  std::vector<map_op> backends_, slots_, masters_, shrink_, gone_masters_, gone_slots_,
      gone_backends_;
};

}  // namespace

reconcile_result reconcile_subset(const map_state& current,
                                  const std::map<frontend_key, desired_frontend>& desired,
                                  const std::set<frontend_key>& touched) {
  differ d(current);
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
    backends += deref(f).backends.size();
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

reconcile_result reconcile(const map_state& current, const desired_state& desired) {
  differ d(current);
  std::map<frontend_key, const desired_frontend*> want;
  for (const auto& f : desired.frontends) {
    if (!want.emplace(f.key(), &f).second) {
      d.error(f.key(), f.name, "duplicate frontend (same address, port and protocol)");
    }
  }
  return plan_all(d, current, want, [](const desired_frontend* f) -> const desired_frontend& {
    return *f;
  });
}

reconcile_result reconcile(const map_state& current,
                           const std::map<frontend_key, desired_frontend>& desired) {
  differ d(current);
  return plan_all(d, current, desired, [](const desired_frontend& f) -> const desired_frontend& {
    return f;
  });
}

void apply_ops(map_state& state, const std::vector<map_op>& ops) {
  state.index();  // rebuilt first if hand edits made it stale
  map_index& idx = state.index_;
  auto frontend_for = [&](const map_op& op) -> frontend_record& {
    auto [it, inserted] = state.frontends.try_emplace(op.key);
    if (inserted) {
      use_svc(idx, op.value.svc_id);
    } else if (it->second.svc_id != op.value.svc_id) {
      unuse_svc(idx, it->second.svc_id);
      use_svc(idx, op.value.svc_id);
    }
    it->second.svc_id = op.value.svc_id;
    return it->second;
  };
  for (const auto& op : ops) {
    switch (op.kind) {
      case op_kind::put_backend: {
        auto [it, inserted] = state.backends.try_emplace(op.backend_id, op.backend);
        if (!inserted) {
          if (it->second.svc_id != op.backend.svc_id) {
            unindex_backend(idx, op.backend_id, it->second.svc_id);
          }
          it->second = op.backend;
        }
        index_backend(idx, op.backend_id, it->second);
        break;
      }
      case op_kind::delete_backend:
        if (auto it = state.backends.find(op.backend_id); it != state.backends.end()) {
          unindex_backend(idx, op.backend_id, it->second.svc_id);
          state.backends.erase(it);
        }
        break;
      case op_kind::put_slot: {
        auto& rec = frontend_for(op);
        if (rec.slots.size() < op.slot) {
          rec.slots.resize(op.slot);
        }
        rec.slots[op.slot - 1] = op.value.backend_id;
        break;
      }
      case op_kind::put_master: {
        auto& rec = frontend_for(op);
        rec.affinity_timeout_s = op.value.affinity_timeout;
        rec.flags = op.value.flags;
        rec.slots.resize(op.value.count);
        break;
      }
      case op_kind::delete_slot: {
        // Slots beyond the master's count are invisible; the mirror already trimmed them
        // when the master was written, or the whole frontend is going away.
        break;
      }
      case op_kind::delete_master:
        if (auto it = state.frontends.find(op.key); it != state.frontends.end()) {
          unuse_svc(idx, it->second.svc_id);
          state.frontends.erase(it);
        }
        break;
    }
  }
  idx.frontends = state.frontends.size();
  idx.backends = state.backends.size();
}

}  // namespace sluice
