#include "agent/reconcile/reconcile.h"

#include <fmt/format.h>

#include <algorithm>

namespace sluice {
namespace {

// Lowest free id in [1, limit), skipping the ones in use.
class id_pool {
 public:
  id_pool(std::set<uint32_t> used, uint32_t limit) : used_(std::move(used)), limit_(limit) {}

  uint32_t take() {
    while (next_ < limit_ && used_.contains(next_)) {
      ++next_;
    }
    if (next_ >= limit_) {
      return 0;
    }
    used_.insert(next_);
    return next_++;
  }

 private:
  std::set<uint32_t> used_;
  uint32_t limit_;
  uint32_t next_ = 1;
};

frontend_key key_of(const desired_frontend& f) { return {f.vip, f.port, f.proto}; }

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

}  // namespace

reconcile_result reconcile(const map_state& current, const desired_state& desired) {
  reconcile_result out;
  std::vector<map_op> backends, slots, masters, shrink, gone_masters, gone_slots, gone_backends;

  std::set<uint32_t> used_svc, used_be;
  for (const auto& [k, f] : current.frontends) {
    used_svc.insert(f.svc_id);
  }
  for (const auto& [id, b] : current.backends) {
    used_be.insert(id);
  }
  id_pool svc_ids(std::move(used_svc), LB_MAX_SERVICES);
  id_pool be_ids(std::move(used_be), UINT32_MAX);

  // Backend ids currently owned by each svc_id, by (addr, port).
  std::map<uint32_t, std::map<std::pair<ip_addr, uint16_t>, uint32_t>> owned;
  for (const auto& [id, b] : current.backends) {
    owned[b.svc_id][{b.addr, b.port}] = id;
  }

  std::set<frontend_key> wanted;
  std::set<uint32_t> live_svc;
  for (const auto& f : desired.frontends) {
    const frontend_key key = key_of(f);
    wanted.insert(key);
    if (f.backends.size() > LB_MAX_BACKENDS_PER_SVC) {
      if (auto it = current.frontends.find(key); it != current.frontends.end()) {
        live_svc.insert(it->second.svc_id);
      }
      out.errors.push_back({key, f.name,
                            fmt::format("{} backends, more than the {} slots a frontend has",
                                        f.backends.size(), LB_MAX_BACKENDS_PER_SVC)});
      continue;
    }

    const auto cur_it = current.frontends.find(key);
    if (cur_it != current.frontends.end()) {
      live_svc.insert(cur_it->second.svc_id);  // kept even if planning it fails below
    }
    const frontend_record* cur = cur_it == current.frontends.end() ? nullptr : &cur_it->second;
    frontend_record next;
    next.svc_id = cur ? cur->svc_id : svc_ids.take();
    if (next.svc_id == 0) {
      out.errors.push_back({key, f.name, "no free service id (LB_MAX_SERVICES reached)"});
      continue;
    }
    live_svc.insert(next.svc_id);
    next.affinity_timeout_s = f.affinity_timeout_s;
    next.flags = f.affinity_timeout_s ? LB_SVC_F_AFFINITY : 0;

    auto& mine = owned[next.svc_id];
    std::set<uint32_t> keep;
    for (const auto& b : f.backends) {
      backend_record rec{b.addr, b.port, f.proto,
                         static_cast<uint8_t>(b.terminating ? LB_BACKEND_TERMINATING
                                                            : LB_BACKEND_ACTIVE),
                         next.svc_id};
      uint32_t id = 0;
      if (auto it = mine.find({b.addr, b.port}); it != mine.end()) {
        id = it->second;
      } else {
        id = be_ids.take();
        mine[{b.addr, b.port}] = id;
      }
      keep.insert(id);
      next.slots.push_back(id);
      const auto have = current.backends.find(id);
      if (have == current.backends.end() || !(have->second == rec)) {
        map_op op{.kind = op_kind::put_backend, .backend_id = id, .backend = rec};
        backends.push_back(op);
      }
    }

    const size_t old_count = cur ? cur->slots.size() : 0;
    for (size_t i = 0; i < next.slots.size(); ++i) {
      if (i < old_count && cur->slots[i] == next.slots[i]) {
        continue;
      }
      slots.push_back({.kind = op_kind::put_slot,
                       .key = key,
                       .slot = static_cast<uint16_t>(i + 1),
                       .value = slot_value(next.svc_id, next.slots[i])});
    }
    const bool master_changed = !cur || cur->svc_id != next.svc_id ||
                                cur->affinity_timeout_s != next.affinity_timeout_s ||
                                cur->flags != next.flags || old_count != next.slots.size();
    if (master_changed) {
      masters.push_back({.kind = op_kind::put_master,
                         .key = key,
                         .value = master_value(next),
                         .new_svc_id = cur == nullptr});
    }
    for (size_t i = next.slots.size(); i < old_count; ++i) {
      shrink.push_back(
          {.kind = op_kind::delete_slot, .key = key, .slot = static_cast<uint16_t>(i + 1)});
    }
    for (const auto& [addr_port, id] : mine) {
      if (!keep.contains(id) && current.backends.contains(id)) {
        gone_backends.push_back({.kind = op_kind::delete_backend, .backend_id = id});
      }
    }
  }

  for (const auto& [key, rec] : current.frontends) {
    if (wanted.contains(key)) {
      continue;
    }
    gone_masters.push_back({.kind = op_kind::delete_master, .key = key});
    for (size_t i = 0; i < rec.slots.size(); ++i) {
      gone_slots.push_back(
          {.kind = op_kind::delete_slot, .key = key, .slot = static_cast<uint16_t>(i + 1)});
    }
  }
  // Backends of frontends that are gone, or orphans left by an interrupted earlier run.
  for (const auto& [svc_id, by_addr] : owned) {
    if (live_svc.contains(svc_id)) {
      continue;
    }
    for (const auto& [addr_port, id] : by_addr) {
      if (current.backends.contains(id)) {
        gone_backends.push_back({.kind = op_kind::delete_backend, .backend_id = id});
      }
    }
  }

  for (auto* part : {&backends, &slots, &masters, &shrink, &gone_masters, &gone_slots,
                     &gone_backends}) {
    out.ops.insert(out.ops.end(), part->begin(), part->end());
  }
  return out;
}

void apply_ops(map_state& state, const std::vector<map_op>& ops) {
  for (const auto& op : ops) {
    switch (op.kind) {
      case op_kind::put_backend:
        state.backends[op.backend_id] = op.backend;
        break;
      case op_kind::delete_backend:
        state.backends.erase(op.backend_id);
        break;
      case op_kind::put_slot: {
        auto& rec = state.frontends[op.key];
        if (rec.slots.size() < op.slot) {
          rec.slots.resize(op.slot);
        }
        rec.slots[op.slot - 1] = op.value.backend_id;
        rec.svc_id = op.value.svc_id;
        break;
      }
      case op_kind::put_master: {
        auto& rec = state.frontends[op.key];
        rec.svc_id = op.value.svc_id;
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
        state.frontends.erase(op.key);
        break;
    }
  }
}

}  // namespace sluice
