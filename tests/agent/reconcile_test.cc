// The map diff: ordering (the update protocol), id stability, no-op on unchanged state, and that
// applying the ops always yields exactly the desired frontends.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <algorithm>
#include <set>

#include "agent/reconcile/reconcile.h"

namespace sluice {
namespace {

ip_addr v4(const char* s) {
  ip_addr a;
  a.family = ip_family::v4;
  REQUIRE(inet_pton(AF_INET, s, a.bytes.data()) == 1);
  return a;
}

ip_addr v6(const char* s) {
  ip_addr a;
  a.family = ip_family::v6;
  REQUIRE(inet_pton(AF_INET6, s, a.bytes.data()) == 1);
  return a;
}

desired_frontend fe(ip_addr vip, uint16_t port, std::vector<const char*> backends,
                    uint8_t proto = IPPROTO_TCP) {
  desired_frontend f;
  f.vip = vip;
  f.port = port;
  f.proto = proto;
  f.name = "default/web:http";
  for (const char* b : backends) {
    f.backends.push_back({vip.family == ip_family::v4 ? v4(b) : v6(b), 8080, false});
  }
  return f;
}

// Index of the first op of a kind for a key (or any key), -1 if none.
int first(const std::vector<map_op>& ops, op_kind k) {
  auto it = std::find_if(ops.begin(), ops.end(), [&](const map_op& o) { return o.kind == k; });
  return it == ops.end() ? -1 : static_cast<int>(it - ops.begin());
}

int last(const std::vector<map_op>& ops, op_kind k) {
  for (int i = static_cast<int>(ops.size()) - 1; i >= 0; --i) {
    if (ops[i].kind == k) {
      return i;
    }
  }
  return -1;
}

// Every slot of every frontend names a backend of the same svc_id with the desired address.
void check_matches(const map_state& st, const desired_state& want) {
  REQUIRE(st.frontends.size() == want.frontends.size());
  for (const auto& f : want.frontends) {
    auto it = st.frontends.find({f.vip, f.port, f.proto});
    REQUIRE(it != st.frontends.end());
    REQUIRE(it->second.slots.size() == f.backends.size());
    CHECK(it->second.affinity_timeout_s == f.affinity_timeout_s);
    for (size_t i = 0; i < f.backends.size(); ++i) {
      auto be = st.backends.find(it->second.slots[i]);
      REQUIRE(be != st.backends.end());
      CHECK(be->second.svc_id == it->second.svc_id);
      CHECK(be->second.addr == f.backends[i].addr);
      CHECK(be->second.port == f.backends[i].port);
    }
  }
  // No backend left behind that no slot uses.
  size_t used = 0;
  for (const auto& [k, f] : st.frontends) {
    used += f.slots.size();
  }
  CHECK(st.backends.size() == used);
}

TEST_CASE("reconcile: a new frontend writes backends, then slots, then the master") {
  map_state st;
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12", "10.244.0.13"})}};
  auto r = reconcile(st, want);
  CHECK(r.errors.empty());
  REQUIRE(r.ops.size() == 6);
  CHECK(last(r.ops, op_kind::put_backend) < first(r.ops, op_kind::put_slot));
  CHECK(last(r.ops, op_kind::put_slot) < first(r.ops, op_kind::put_info));
  CHECK(first(r.ops, op_kind::put_info) < first(r.ops, op_kind::put_master));
  REQUIRE(r.info.size() == 1);
  CHECK(r.info[0].value.kind == LB_KIND_CLUSTER_IP);
  CHECK(std::string(r.info[0].value.ns) == "default");
  CHECK(std::string(r.info[0].value.name) == "web");
  CHECK(std::string(r.info[0].value.port_name) == "http");
  const auto& m = r.ops[static_cast<size_t>(first(r.ops, op_kind::put_master))];
  CHECK(m.value.count == 2);
  CHECK(m.value.svc_id == 1);
  CHECK(m.new_svc_id);
  apply_ops(st, r);
  check_matches(st, want);
}

TEST_CASE("reconcile: unchanged desired state produces no operation") {
  map_state st;
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12", "10.244.0.13"}),
                      fe(v6("fd00:96::10"), 80, {"fd00:244::12"})}};
  apply_ops(st, reconcile(st, want));
  CHECK(reconcile(st, want).ops.empty());
}

TEST_CASE("reconcile: removing a backend shrinks after the master, keeps the others' ids") {
  map_state st;
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12", "10.244.0.13", "10.244.0.14"})}};
  apply_ops(st, reconcile(st, want));
  const auto before = st;
  const frontend_key key{v4("10.96.0.10"), 80, IPPROTO_TCP};

  desired_state less{{fe(v4("10.96.0.10"), 80, {"10.244.0.12", "10.244.0.13"})}};
  auto r = reconcile(st, less);
  const int master = first(r.ops, op_kind::put_master);
  REQUIRE(master >= 0);
  CHECK(r.ops[static_cast<size_t>(master)].value.count == 2);
  CHECK_FALSE(r.ops[static_cast<size_t>(master)].new_svc_id);
  CHECK(first(r.ops, op_kind::delete_slot) > master);
  CHECK(first(r.ops, op_kind::delete_backend) > master);
  CHECK(first(r.ops, op_kind::put_backend) == -1);
  apply_ops(st, r);
  check_matches(st, less);
  CHECK(st.frontends.at(key).svc_id == before.frontends.at(key).svc_id);
  CHECK(st.frontends.at(key).slots[0] == before.frontends.at(key).slots[0]);
  CHECK(st.frontends.at(key).slots[1] == before.frontends.at(key).slots[1]);
}

TEST_CASE("reconcile: a removed frontend loses its master first, its backends last") {
  map_state st;
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"}),
                      fe(v4("10.96.0.20"), 53, {"10.244.0.15"}, IPPROTO_UDP)}};
  apply_ops(st, reconcile(st, want));
  desired_state less{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"})}};
  auto r = reconcile(st, less);
  REQUIRE(r.ops.size() == 4);
  CHECK(r.ops[0].kind == op_kind::delete_master);
  CHECK(r.ops[1].kind == op_kind::delete_slot);
  CHECK(r.ops[2].kind == op_kind::delete_info);
  CHECK(r.ops[3].kind == op_kind::delete_backend);
  apply_ops(st, r);
  check_matches(st, less);
}

TEST_CASE("reconcile: freed service ids are reused and flagged for a counter reset") {
  map_state st;
  desired_state a{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"})}};
  apply_ops(st, reconcile(st, a));
  apply_ops(st, reconcile(st, desired_state{}));
  CHECK(st.frontends.empty());
  CHECK(st.backends.empty());
  desired_state b{{fe(v4("10.96.0.30"), 80, {"10.244.0.13"})}};
  auto r = reconcile(st, b);
  const auto& m = r.ops[static_cast<size_t>(first(r.ops, op_kind::put_master))];
  CHECK(m.value.svc_id == 1);
  CHECK(m.new_svc_id);
}

TEST_CASE("reconcile: no endpoints gives a master with count 0 (the datapath rejects)") {
  map_state st;
  desired_state want{{fe(v4("10.96.0.20"), 80, {})}};
  auto r = reconcile(st, want);
  REQUIRE(r.ops.size() == 2);
  CHECK(r.ops[0].kind == op_kind::put_info);
  CHECK(r.ops[1].kind == op_kind::put_master);
  CHECK(r.ops[1].value.count == 0);
}

TEST_CASE("reconcile: affinity and terminating state are written, and changes rewrite them") {
  map_state st;
  auto f = fe(v4("10.96.0.10"), 80, {"10.244.0.12"});
  f.affinity_timeout_s = 10800;
  f.backends[0].terminating = true;
  desired_state want{{f}};
  auto r = reconcile(st, want);
  const auto& m = r.ops[static_cast<size_t>(first(r.ops, op_kind::put_master))];
  CHECK(m.value.flags == LB_SVC_F_AFFINITY);
  CHECK(m.value.affinity_timeout == 10800);
  const auto& b = r.ops[static_cast<size_t>(first(r.ops, op_kind::put_backend))];
  CHECK(b.backend.state == LB_BACKEND_TERMINATING);
  apply_ops(st, r);

  want.frontends[0].backends[0].terminating = false;
  want.frontends[0].affinity_timeout_s = 0;
  auto r2 = reconcile(st, want);
  REQUIRE(r2.ops.size() == 2);
  CHECK(r2.ops[0].kind == op_kind::put_backend);
  CHECK(r2.ops[0].backend.state == LB_BACKEND_ACTIVE);
  CHECK(r2.ops[1].kind == op_kind::put_master);
  CHECK(r2.ops[1].value.flags == 0);
}

TEST_CASE("reconcile: the same endpoint behind two frontends gets two backend ids") {
  map_state st;
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"}),
                      fe(v4("10.96.0.10"), 81, {"10.244.0.12"})}};
  auto r = reconcile(st, want);
  apply_ops(st, r);
  check_matches(st, want);
  CHECK(st.backends.size() == 2);
}

TEST_CASE("reconcile: orphan backends of an interrupted run are deleted") {
  map_state st;
  st.backends[77] = {v4("10.244.0.99"), 8080, IPPROTO_TCP, LB_BACKEND_ACTIVE, 42};
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"})}};
  auto r = reconcile(st, want);
  CHECK(r.ops.back().kind == op_kind::delete_backend);
  CHECK(r.ops.back().backend_id == 77);
  apply_ops(st, r);
  check_matches(st, want);
}

TEST_CASE("reconcile: too many backends for the slot range is an error, others still apply") {
  map_state st;
  desired_frontend big = fe(v4("10.96.0.40"), 80, {});
  for (uint32_t i = 0; i <= LB_MAX_BACKENDS_PER_SVC; ++i) {
    ip_addr a = v4("10.0.0.0");
    a.bytes[1] = static_cast<uint8_t>(i >> 16);
    a.bytes[2] = static_cast<uint8_t>(i >> 8);
    a.bytes[3] = static_cast<uint8_t>(i);
    big.backends.push_back({a, 80, false});
  }
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"}), big}};
  auto r = reconcile(st, want);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].key.port == 80);
  apply_ops(st, r);
  CHECK(st.frontends.size() == 1);
}

TEST_CASE("reconcile: randomised edits always converge to the desired state") {
  // Deterministic pseudo-random sequence of desired states over a small address space.
  uint32_t seed = 12345;
  auto next = [&] {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) & 0x7fff;
  };
  map_state st;
  for (int round = 0; round < 200; ++round) {
    desired_state want;
    const int nfe = static_cast<int>(next() % 6);
    for (int i = 0; i < nfe; ++i) {
      ip_addr vip = v4("10.96.0.0");
      vip.bytes[3] = static_cast<uint8_t>(1 + next() % 4);
      auto f = fe(vip, static_cast<uint16_t>(80 + next() % 2), {});
      const int nbe = static_cast<int>(next() % 5);
      for (int j = 0; j < nbe; ++j) {
        ip_addr b = v4("10.244.0.0");
        b.bytes[3] = static_cast<uint8_t>(1 + next() % 8);
        f.backends.push_back({b, 8080, next() % 4 == 0});
      }
      std::sort(f.backends.begin(), f.backends.end());
      f.backends.erase(std::unique(f.backends.begin(), f.backends.end(),
                                   [](const auto& x, const auto& y) {
                                     return x.addr == y.addr && x.port == y.port;
                                   }),
                       f.backends.end());
      want.frontends.push_back(f);
    }
    std::sort(want.frontends.begin(), want.frontends.end(), [](const auto& a, const auto& b) {
      return std::tie(a.vip, a.port, a.proto) < std::tie(b.vip, b.port, b.proto);
    });
    want.frontends.erase(std::unique(want.frontends.begin(), want.frontends.end(),
                                     [](const auto& a, const auto& b) {
                                       return a.vip == b.vip && a.port == b.port &&
                                              a.proto == b.proto;
                                     }),
                         want.frontends.end());
    auto r = reconcile(st, want);
    REQUIRE(r.errors.empty());
    apply_ops(st, r);
    check_matches(st, want);
    CHECK(reconcile(st, want).ops.empty());
  }
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// ---- when_empty, incremental reconcile, the mirror's index ----------------------------------

bool same_op(const map_op& a, const map_op& b) {
  return a.kind == b.kind && a.scope == b.scope && a.key == b.key && a.slot == b.slot &&
         a.prefix_len == b.prefix_len &&
         a.value.backend_id == b.value.backend_id && a.value.svc_id == b.value.svc_id &&
         a.value.affinity_timeout == b.value.affinity_timeout && a.value.count == b.value.count &&
         a.value.flags == b.value.flags && a.backend_id == b.backend_id && a.backend == b.backend &&
         a.new_svc_id == b.new_svc_id;
}

void check_same_ops(const std::vector<map_op>& got, const std::vector<map_op>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("op " << i << " kind " << static_cast<int>(want[i].kind));
    CHECK(same_op(got[i], want[i]));
  }
}

void check_index(const map_state& st) {
  map_state fresh = st;
  fresh.reindex();
  const map_index& a = st.index();
  const map_index& b = fresh.index();
  // Same svc ids, same backend ids, each pointing at its own state's entry.
  REQUIRE(a.backends_by_svc.size() == b.backends_by_svc.size());
  for (const auto& [svc, ids] : a.backends_by_svc) {
    REQUIRE(b.backends_by_svc.contains(svc));
    const auto& other = b.backends_by_svc.at(svc);
    REQUIRE(ids.size() == other.size());
    for (const auto& [id, rec] : ids) {
      REQUIRE(other.contains(id));
      CHECK(rec == &st.backends.at(id));
      CHECK(*rec == *other.at(id));
    }
  }
  CHECK(a.svc_users == b.svc_users);
  CHECK(a.svc_ids.free_intervals() == b.svc_ids.free_intervals());
  CHECK(a.backend_ids.free_intervals() == b.backend_ids.free_intervals());
}

std::map<frontend_key, desired_frontend> by_key(const desired_state& d) {
  std::map<frontend_key, desired_frontend> m;
  for (const auto& f : d.frontends) {
    m.emplace(f.key(), f);
  }
  return m;
}

TEST_CASE(
    "reconcile: when_empty drop sets LB_SVC_F_DROP_EMPTY; switching it rewrites the master only") {
  map_state st;
  auto f = fe(v4("10.96.0.10"), 80, {});
  f.when_empty = empty_verdict::drop;
  f.affinity_timeout_s = 30;
  desired_state want{{f}};
  auto r = reconcile(st, want);
  REQUIRE(r.ops.size() == 2);
  CHECK(r.ops[1].kind == op_kind::put_master);
  CHECK(r.ops[1].value.count == 0);
  CHECK(r.ops[1].value.flags == (LB_SVC_F_DROP_EMPTY | LB_SVC_F_AFFINITY));
  apply_ops(st, r);
  CHECK(st.frontends.begin()->second.flags == (LB_SVC_F_DROP_EMPTY | LB_SVC_F_AFFINITY));

  want.frontends[0].when_empty = empty_verdict::reject;
  auto r2 = reconcile(st, want);
  REQUIRE(r2.ops.size() == 1);
  CHECK(r2.ops[0].kind == op_kind::put_master);
  CHECK(r2.ops[0].value.flags == LB_SVC_F_AFFINITY);
  CHECK_FALSE(r2.ops[0].new_svc_id);
}

TEST_CASE("reconcile_subset: only touched keys are planned; absent from desired means removed") {
  map_state st;
  desired_state all{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"}),
                     fe(v4("10.96.0.20"), 80, {"10.244.0.13"}),
                     fe(v4("10.96.0.30"), 80, {"10.244.0.14"})}};
  apply_ops(st, reconcile(st, all));
  auto desired = by_key(all);
  const frontend_key a{v4("10.96.0.10"), 80, IPPROTO_TCP};
  const frontend_key b{v4("10.96.0.20"), 80, IPPROTO_TCP};
  const frontend_key c{v4("10.96.0.30"), 80, IPPROTO_TCP};
  desired.at(a).backends.push_back({v4("10.244.0.15"), 8080, false});
  desired.at(c).backends.clear();  // changed, but not touched: left alone
  desired.erase(b);

  auto r = reconcile_subset(st, desired, {a, b});
  CHECK(r.errors.empty());
  // a: new backend, slot 2, master; b: master, slot, name, backend deleted.
  REQUIRE(r.ops.size() == 7);
  CHECK(r.ops[0].kind == op_kind::put_backend);
  CHECK(r.ops[1].kind == op_kind::put_slot);
  CHECK(r.ops[1].slot == 2);
  CHECK(r.ops[2].kind == op_kind::put_master);
  CHECK(r.ops[2].key == a);
  CHECK(r.ops[3].kind == op_kind::delete_master);
  CHECK(r.ops[3].key == b);
  CHECK(r.ops[4].kind == op_kind::delete_slot);
  CHECK(r.ops[5].kind == op_kind::delete_info);
  CHECK(r.ops[6].kind == op_kind::delete_backend);
  for (const auto& op : r.ops) {
    CHECK(op.key != c);
  }
  apply_ops(st, r);
  CHECK(st.frontends.size() == 2);
  CHECK(st.frontends.at(a).slots.size() == 2);
  CHECK(st.frontends.at(c).slots.size() == 1);
  check_index(st);

  // A touched key that is in neither side is nothing to do.
  CHECK(reconcile_subset(st, desired, {b}).ops.empty());
}

TEST_CASE("reconcile_subset over the changed keys == reconcile; apply_ops mirrors desired") {
  uint32_t seed = 777;
  auto next = [&] {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) & 0x7fff;
  };
  auto random_frontend = [&](ip_addr vip, uint16_t port, uint8_t proto) {
    desired_frontend f;
    f.vip = vip;
    f.port = port;
    f.proto = proto;
    f.name = "ns/svc";
    f.affinity_timeout_s = next() % 4 == 0 ? 60 : 0;
    f.when_empty = next() % 3 == 0 ? empty_verdict::drop : empty_verdict::reject;
    const int nbe = static_cast<int>(next() % 6);
    for (int j = 0; j < nbe; ++j) {
      ip_addr b = vip.family == ip_family::v4 ? v4("10.244.0.0") : v6("fd00:244::");
      b.bytes[vip.family == ip_family::v4 ? 3 : 15] = static_cast<uint8_t>(1 + next() % 10);
      f.backends.push_back({b, static_cast<uint16_t>(8080 + next() % 2), next() % 5 == 0});
    }
    std::sort(f.backends.begin(), f.backends.end());
    f.backends.erase(std::unique(f.backends.begin(), f.backends.end(),
                                 [](const auto& x, const auto& y) {
                                   return x.addr == y.addr && x.port == y.port;
                                 }),
                     f.backends.end());
    return f;
  };

  map_state st;
  std::map<frontend_key, desired_frontend> prev;
  for (int round = 0; round < 300; ++round) {
    // Edit a few frontends of the previous state: add, change, remove.
    auto want = prev;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits; ++e) {
      const bool six = next() % 3 == 0;
      ip_addr vip = six ? v6("fd00:96::") : v4("10.96.0.0");
      vip.bytes[six ? 15 : 3] = static_cast<uint8_t>(1 + next() % 6);
      const uint16_t port = static_cast<uint16_t>(80 + next() % 2);
      const uint8_t proto = next() % 2 ? IPPROTO_TCP : IPPROTO_UDP;
      const frontend_key key{vip, port, proto};
      if (next() % 4 == 0) {
        want.erase(key);
      } else {
        want[key] = random_frontend(vip, port, proto);
      }
    }
    std::set<frontend_key> changed;
    for (const auto& [k, f] : want) {
      auto it = prev.find(k);
      if (it == prev.end() || !(it->second == f)) {
        changed.insert(k);
      }
    }
    for (const auto& [k, f] : prev) {
      if (!want.contains(k)) {
        changed.insert(k);
      }
    }
    desired_state full;
    for (const auto& [k, f] : want) {
      full.frontends.push_back(f);
    }
    INFO("round " << round);
    const auto a = reconcile_subset(st, want, changed);
    const auto b = reconcile(st, full);
    REQUIRE(a.errors.empty());
    REQUIRE(b.errors.empty());
    check_same_ops(a.ops, b.ops);
    apply_ops(st, a);
    check_matches(st, full);
    for (const auto& f : full.frontends) {
      CHECK(st.frontends.at(f.key()).flags ==
            ((f.affinity_timeout_s ? LB_SVC_F_AFFINITY : 0) |
             (f.when_empty == empty_verdict::drop ? LB_SVC_F_DROP_EMPTY : 0)));
    }
    check_index(st);
    CHECK(reconcile(st, full).ops.empty());
    prev = std::move(want);
  }
}

TEST_CASE("map_state: hand edits are re-indexed; the index finds a frontend's backends") {
  map_state st;
  st.backends[77] = {v4("10.244.0.99"), 8080, IPPROTO_TCP, LB_BACKEND_ACTIVE, 42};
  st.backends[78] = {v4("10.244.0.98"), 8080, IPPROTO_TCP, LB_BACKEND_ACTIVE, 42};
  const auto& idx = st.index();
  REQUIRE(idx.backends_by_svc.contains(42));
  const auto& mine = idx.backends_by_svc.at(42);
  REQUIRE(mine.size() == 2);
  CHECK(mine.at(77) == &st.backends.at(77));
  CHECK(mine.at(78) == &st.backends.at(78));
  CHECK(idx.backend_ids.is_free(1));
  CHECK_FALSE(idx.backend_ids.is_free(77));
}

TEST_CASE("id_space: lowest free id, release merges intervals") {
  id_space s(10);
  CHECK(s.free_intervals() == std::map<uint32_t, uint32_t>{{1, 10}});
  s.take(1);
  s.take(2);
  s.take(5);
  s.take(0);   // out of range: ignored
  s.take(12);  // out of range: ignored
  CHECK(s.free_intervals() == std::map<uint32_t, uint32_t>{{3, 5}, {6, 10}});
  s.release(2);
  CHECK(s.free_intervals() == std::map<uint32_t, uint32_t>{{2, 5}, {6, 10}});
  s.release(5);
  CHECK(s.free_intervals() == std::map<uint32_t, uint32_t>{{2, 10}});
  s.release(7);  // already free
  CHECK(s.free_intervals() == std::map<uint32_t, uint32_t>{{2, 10}});
  s.release(1);
  CHECK(s.free_intervals() == std::map<uint32_t, uint32_t>{{1, 10}});
  for (uint32_t i = 1; i < 10; ++i) {
    s.take(i);
  }
  CHECK(s.free_intervals().empty());
  CHECK_FALSE(s.is_free(9));
}

TEST_CASE("reconcile: ids freed by a plan are not reused within it") {
  map_state st;
  desired_state one{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"})}};
  apply_ops(st, reconcile(st, one));
  const uint32_t old_svc = st.frontends.begin()->second.svc_id;
  const uint32_t old_be = st.frontends.begin()->second.slots[0];
  desired_state other{{fe(v4("10.96.0.20"), 80, {"10.244.0.13"})}};
  auto r = reconcile(st, other);
  apply_ops(st, r);
  check_matches(st, other);
  CHECK(st.frontends.begin()->second.svc_id != old_svc);
  CHECK(st.frontends.begin()->second.slots[0] != old_be);
  check_index(st);
}

TEST_CASE("reconcile: a duplicate frontend key is an error, the first one is planned") {
  map_state st;
  auto a = fe(v4("10.96.0.10"), 80, {"10.244.0.12"});
  auto b = fe(v4("10.96.0.10"), 80, {"10.244.0.13", "10.244.0.14"});
  b.name = "default/other:http";
  auto r = reconcile(st, desired_state{{a, b}});
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].name == "default/other:http");
  apply_ops(st, r);
  check_matches(st, desired_state{{a}});
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// ---- north-south: master flags, EXTERNAL scope, source ranges, Maglev ---------------------

desired_backend be4(const char* addr, bool terminating = false) {
  return {v4(addr), 8080, terminating};
}

// A LoadBalancer frontend with externalTrafficPolicy Local.
desired_frontend lb_local(std::vector<desired_backend> all, std::vector<desired_backend> local) {
  desired_frontend f = fe(v4("192.0.2.10"), 80, {});
  f.kind = frontend_kind::load_balancer;
  f.backends = std::move(all);
  f.external_local = true;
  f.external_backends = std::move(local);
  return f;
}

const map_op& op_at(const std::vector<map_op>& ops, int i) {
  REQUIRE(i >= 0);
  return ops[static_cast<size_t>(i)];
}

// Index of the first op matching pred, -1 if none.
template <typename Pred>
int find_op(const std::vector<map_op>& ops, Pred pred) {
  auto it = std::find_if(ops.begin(), ops.end(), pred);
  return it == ops.end() ? -1 : static_cast<int>(it - ops.begin());
}

int master_of(const std::vector<map_op>& ops, op_kind k, uint8_t scope) {
  return find_op(ops, [&](const map_op& o) { return o.kind == k && o.scope == scope; });
}

reconcile_options with_maglev(uint32_t m = 251) {
  return {.algorithm = lb_algorithm::maglev, .maglev = {.table_size = m}};
}

// Every id in an EXTERNAL slot has a record of the frontend's svc_id with the desired address,
// and no backend record is left that no slot of either scope uses.
void check_external(const map_state& st, const desired_frontend& f) {
  const auto& rec = st.frontends.at(f.key());
  REQUIRE(rec.external.has_value());
  REQUIRE(rec.external->slots.size() == f.external_backends.size());
  for (size_t i = 0; i < f.external_backends.size(); ++i) {
    const auto& b = st.backends.at(rec.external->slots[i]);
    CHECK(b.svc_id == rec.svc_id);
    CHECK(b.addr == f.external_backends[i].addr);
    CHECK(b.port == f.external_backends[i].port);
  }
  std::set<uint32_t> used(rec.slots.begin(), rec.slots.end());
  used.insert(rec.external->slots.begin(), rec.external->slots.end());
  size_t owned = 0;
  for (const auto& [id, b] : st.backends) {
    owned += b.svc_id == rec.svc_id ? 1 : 0;
  }
  CHECK(owned == used.size());
}

TEST_CASE("reconcile: north-south master flags") {
  map_state st;
  auto cluster = fe(v4("10.96.0.10"), 80, {"10.244.0.12"});
  cluster.source_ranges = {};  // a ClusterIP: no north-south flag, even with Maglev on
  auto node_port = fe(v4("172.18.0.2"), 30080, {"10.244.0.12"});
  node_port.kind = frontend_kind::node_port;
  auto lb = fe(v4("192.0.2.10"), 80, {"10.244.0.12"});
  lb.kind = frontend_kind::load_balancer;
  lb.source_ranges = {{v4("198.51.100.0"), 24}};
  lb.external_local = true;
  lb.external_backends = {be4("10.244.0.12")};
  auto empty = fe(v4("192.0.2.11"), 80, {});
  empty.kind = frontend_kind::external_ip;
  desired_state want{{cluster, node_port, lb, empty}};

  auto flags_of = [](const reconcile_result& r, const desired_frontend& f) {
    const int i = find_op(r.ops, [&](const map_op& o) {
      return o.kind == op_kind::put_master && o.scope == LB_SCOPE_ALL && o.key == f.key();
    });
    return op_at(r.ops, i).value.flags;
  };
  SUBCASE("random") {
    const auto r = reconcile(st, want);
    CHECK(flags_of(r, cluster) == 0);
    CHECK(flags_of(r, node_port) == LB_SVC_F_EXTERNAL);
    CHECK(flags_of(r, lb) == (LB_SVC_F_EXTERNAL | LB_SVC_F_SOURCE_RANGES | LB_SVC_F_EXT_LOCAL));
    CHECK(flags_of(r, empty) == LB_SVC_F_EXTERNAL);
    CHECK(r.maglev.empty());
    CHECK(first(r.ops, op_kind::put_maglev) == -1);
  }
  SUBCASE("maglev: external kinds with backends only") {
    const auto r = reconcile(st, want, with_maglev());
    CHECK(flags_of(r, cluster) == 0);
    CHECK(flags_of(r, node_port) == (LB_SVC_F_EXTERNAL | LB_SVC_F_MAGLEV));
    CHECK(flags_of(r, lb) == (LB_SVC_F_EXTERNAL | LB_SVC_F_SOURCE_RANGES | LB_SVC_F_EXT_LOCAL |
                              LB_SVC_F_MAGLEV));
    CHECK(flags_of(r, empty) == LB_SVC_F_EXTERNAL);  // no table for no backends
    CHECK(r.maglev.size() == 2);
  }
}

TEST_CASE("reconcile: socket-LB flags: loopback frontends are not external, outside-only ones are") {
  map_state st;
  auto loopback = fe(v4("127.0.0.1"), 30080, {"10.244.0.12"});
  loopback.kind = frontend_kind::node_port;
  loopback.loopback = true;
  auto host_port = fe(v4("127.0.0.1"), 8080, {"10.244.0.13"});
  host_port.kind = frontend_kind::host_port;
  host_port.loopback = true;
  auto foreign = fe(v4("203.0.113.7"), 80, {"10.244.0.12"});
  foreign.kind = frontend_kind::external_ip;
  foreign.outside_only = true;
  desired_state want{{loopback, host_port, foreign}};
  const auto r = reconcile(st, want, with_maglev());
  const auto flags_of = [&](const desired_frontend& f) {
    const int i = find_op(r.ops, [&](const map_op& o) {
      return o.kind == op_kind::put_master && o.scope == LB_SCOPE_ALL && o.key == f.key();
    });
    return op_at(r.ops, i).value.flags;
  };
  // No LB_SVC_F_EXTERNAL: no packet from outside may reach the node's loopback; no Maglev table
  // either (only external traffic reads one).
  CHECK(flags_of(loopback) == LB_SVC_F_LOOPBACK);
  CHECK(flags_of(host_port) == LB_SVC_F_LOOPBACK);
  CHECK(flags_of(foreign) == (LB_SVC_F_EXTERNAL | LB_SVC_F_OUTSIDE_ONLY | LB_SVC_F_MAGLEV));
  CHECK(r.maglev.size() == 1);
  apply_ops(st, r);
  CHECK(st.frontends.at(loopback.key()).flags == LB_SVC_F_LOOPBACK);
  CHECK(reconcile(st, want, with_maglev()).ops.empty());
  SUBCASE("the mitigation turned off rewrites the master only") {
    want.frontends[2].outside_only = false;
    const auto r2 = reconcile(st, want, with_maglev());
    REQUIRE(r2.ops.size() == 1);
    CHECK(r2.ops[0].kind == op_kind::put_master);
    CHECK(r2.ops[0].value.flags == (LB_SVC_F_EXTERNAL | LB_SVC_F_MAGLEV));
  }
}

TEST_CASE("reconcile: eTP=Local writes EXTERNAL entries before the master that points at them") {
  map_state st;
  // .12 in both sets, .13 remote (ALL only), .14 a local terminating endpoint (EXTERNAL only).
  auto f = lb_local({be4("10.244.0.12"), be4("10.244.0.13")},
                    {be4("10.244.0.12"), be4("10.244.0.14", true)});
  f.affinity_timeout_s = 600;
  desired_state want{{f}};
  auto r = reconcile(st, want);
  REQUIRE(r.errors.empty());
  // One record per endpoint: .12 is shared.
  CHECK(std::count_if(r.ops.begin(), r.ops.end(),
                      [](const map_op& o) { return o.kind == op_kind::put_backend; }) == 3);
  const int ext_master = master_of(r.ops, op_kind::put_master, LB_SCOPE_EXTERNAL);
  const int all_master = master_of(r.ops, op_kind::put_master, LB_SCOPE_ALL);
  CHECK(last(r.ops, op_kind::put_backend) < first(r.ops, op_kind::put_slot));
  CHECK(last(r.ops, op_kind::put_slot) < ext_master);
  CHECK(ext_master < all_master);
  const auto& em = op_at(r.ops, ext_master);
  const auto& am = op_at(r.ops, all_master);
  CHECK(em.value.count == 2);
  CHECK(em.value.svc_id == am.value.svc_id);
  CHECK(em.value.flags == LB_SVC_F_AFFINITY);
  CHECK(em.value.affinity_timeout == 600);
  CHECK(am.value.flags == (LB_SVC_F_AFFINITY | LB_SVC_F_EXTERNAL | LB_SVC_F_EXT_LOCAL));
  CHECK(am.new_svc_id);
  CHECK_FALSE(em.new_svc_id);
  apply_ops(st, r);
  check_external(st, f);
  const auto& rec = st.frontends.at(f.key());
  CHECK(rec.external->slots[0] == rec.slots[0]);  // the shared endpoint, one id
  CHECK(st.backends.at(rec.external->slots[1]).state == LB_BACKEND_TERMINATING);
  CHECK(reconcile(st, want).ops.empty());

  SUBCASE("no local endpoint left: EXTERNAL count 0 with DROP_EMPTY, surplus slots after") {
    want.frontends[0].external_backends.clear();
    auto r2 = reconcile(st, want);
    const int m2 = master_of(r2.ops, op_kind::put_master, LB_SCOPE_EXTERNAL);
    CHECK(op_at(r2.ops, m2).value.count == 0);
    CHECK(op_at(r2.ops, m2).value.flags == (LB_SVC_F_DROP_EMPTY | LB_SVC_F_AFFINITY));
    CHECK(master_of(r2.ops, op_kind::put_master, LB_SCOPE_ALL) == -1);  // unchanged
    const int shrink = master_of(r2.ops, op_kind::delete_slot, LB_SCOPE_EXTERNAL);
    CHECK(shrink > m2);
    CHECK(last(r2.ops, op_kind::delete_backend) > shrink);
    CHECK(std::count_if(r2.ops.begin(), r2.ops.end(), [](const map_op& o) {
            return o.kind == op_kind::delete_backend;
          }) == 1);  // .14; .12 still serves the ALL set
    apply_ops(st, r2);
    check_external(st, want.frontends[0]);
    CHECK(reconcile(st, want).ops.empty());
  }
  SUBCASE("back to Cluster: the ALL master drops EXT_LOCAL before EXTERNAL entries go") {
    want.frontends[0].external_local = false;
    want.frontends[0].external_backends.clear();
    auto r2 = reconcile(st, want);
    const int all2 = master_of(r2.ops, op_kind::put_master, LB_SCOPE_ALL);
    const int gone = master_of(r2.ops, op_kind::delete_master, LB_SCOPE_EXTERNAL);
    CHECK(op_at(r2.ops, all2).value.flags == (LB_SVC_F_AFFINITY | LB_SVC_F_EXTERNAL));
    CHECK(all2 < gone);
    CHECK(gone < master_of(r2.ops, op_kind::delete_slot, LB_SCOPE_EXTERNAL));
    CHECK(last(r2.ops, op_kind::delete_backend) == static_cast<int>(r2.ops.size()) - 1);
    apply_ops(st, r2);
    CHECK_FALSE(st.frontends.at(f.key()).external.has_value());
    CHECK(st.backends.size() == 2);
    CHECK(reconcile(st, want).ops.empty());
  }
  SUBCASE("removed: ALL master, EXTERNAL master, slots, backends") {
    auto r2 = reconcile(st, desired_state{});
    REQUIRE(r2.ops.size() >= 2);
    CHECK(r2.ops[0].kind == op_kind::delete_master);
    CHECK(r2.ops[0].scope == LB_SCOPE_ALL);
    CHECK(r2.ops[1].kind == op_kind::delete_master);
    CHECK(r2.ops[1].scope == LB_SCOPE_EXTERNAL);
    CHECK(std::count_if(r2.ops.begin(), r2.ops.end(), [](const map_op& o) {
            return o.kind == op_kind::delete_slot;
          }) == 4);
    CHECK(first(r2.ops, op_kind::delete_backend) > last(r2.ops, op_kind::delete_slot));
    apply_ops(st, r2);
    CHECK(st == map_state{});
  }
}

TEST_CASE("reconcile: source ranges are added before the master and removed after it") {
  map_state st;
  auto f = fe(v4("192.0.2.10"), 80, {"10.244.0.12"});
  f.kind = frontend_kind::load_balancer;
  // Host bits are cleared; the other family's prefix is not this frontend's.
  f.source_ranges = {{v4("198.51.100.7"), 24}, {v4("203.0.113.0"), 25}, {v6("2001:db8::"), 32}};
  desired_state want{{f}};
  auto r = reconcile(st, want);
  std::vector<ip_prefix> added;
  for (const auto& op : r.ops) {
    if (op.kind == op_kind::put_src_range) {
      added.push_back(op.range());
      CHECK(op.value.svc_id == 1);
    }
  }
  CHECK(added == std::vector<ip_prefix>{{v4("198.51.100.0"), 24}, {v4("203.0.113.0"), 25}});
  CHECK(last(r.ops, op_kind::put_src_range) < first(r.ops, op_kind::put_master));
  CHECK(first(r.ops, op_kind::put_src_range) > last(r.ops, op_kind::put_slot));
  apply_ops(st, r);
  CHECK(st.src_ranges.at(1) == std::set<ip_prefix>{{v4("198.51.100.0"), 24},
                                                   {v4("203.0.113.0"), 25}});
  CHECK(reconcile(st, want).ops.empty());

  // One prefix replaced: the master is unchanged, the new prefix goes in, the old one out.
  want.frontends[0].source_ranges[1] = {v4("203.0.113.128"), 25};
  auto r2 = reconcile(st, want);
  REQUIRE(r2.ops.size() == 2);
  CHECK(r2.ops[0].kind == op_kind::put_src_range);
  CHECK(r2.ops[0].range() == ip_prefix{v4("203.0.113.128"), 25});
  CHECK(r2.ops[1].kind == op_kind::delete_src_range);
  CHECK(r2.ops[1].range() == ip_prefix{v4("203.0.113.0"), 25});
  apply_ops(st, r2);

  // No ranges any more: the master loses the flag first, the prefixes go after.
  want.frontends[0].source_ranges.clear();
  auto r3 = reconcile(st, want);
  const int m = first(r3.ops, op_kind::put_master);
  CHECK(op_at(r3.ops, m).value.flags == LB_SVC_F_EXTERNAL);
  CHECK(first(r3.ops, op_kind::delete_src_range) > m);
  apply_ops(st, r3);
  CHECK(st.src_ranges.empty());

  // A removed frontend's prefixes go after its master and slots, before its backends.
  want.frontends[0].source_ranges = {{v4("198.51.100.0"), 24}};
  apply_ops(st, reconcile(st, want));
  auto r4 = reconcile(st, desired_state{});
  CHECK(first(r4.ops, op_kind::delete_src_range) > last(r4.ops, op_kind::delete_slot));
  CHECK(first(r4.ops, op_kind::delete_src_range) < first(r4.ops, op_kind::delete_backend));
  apply_ops(st, r4);
  CHECK(st == map_state{});
}

TEST_CASE("reconcile: orphan source ranges and Maglev tables are deleted by the full diff") {
  map_state st;
  st.src_ranges[9] = {{v4("198.51.100.0"), 24}};
  st.maglev[9] = {4, 5};
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"})}};
  auto r = reconcile(st, want);
  CHECK(first(r.ops, op_kind::delete_src_range) >= 0);
  CHECK(first(r.ops, op_kind::delete_maglev) >= 0);
  CHECK(op_at(r.ops, first(r.ops, op_kind::delete_maglev)).value.svc_id == 9);
  apply_ops(st, r);
  CHECK(st.src_ranges.empty());
  CHECK(st.maglev.empty());
  // The subset diff leaves orphans to the full one.
  map_state st2;
  st2.src_ranges[9] = {{v4("198.51.100.0"), 24}};
  CHECK(reconcile_subset(st2, {}, {fe(v4("10.96.0.10"), 80, {}).key()}).ops.empty());
}

TEST_CASE("reconcile: a Maglev table is built over the backends external traffic uses") {
  map_state st;
  auto f = lb_local({be4("10.244.0.12"), be4("10.244.0.13")},
                    {be4("10.244.0.12"), be4("10.244.0.14")});
  desired_state want{{f}};
  const auto opts = with_maglev();
  auto r = reconcile(st, want, opts);
  const int put = first(r.ops, op_kind::put_maglev);
  REQUIRE(put >= 0);
  CHECK(put > last(r.ops, op_kind::put_slot));
  CHECK(put < master_of(r.ops, op_kind::put_master, LB_SCOPE_EXTERNAL));
  REQUIRE(r.maglev.size() == 1);
  const maglev_build& b = r.maglev[op_at(r.ops, put).backend_id];
  CHECK(b.svc_id == op_at(r.ops, put).value.svc_id);
  apply_ops(st, r);
  const auto& rec = st.frontends.at(f.key());
  // The EXTERNAL set (.12 shared, .14), not the ALL set.
  std::vector<uint32_t> ext_ids = rec.external->slots;
  std::sort(ext_ids.begin(), ext_ids.end());
  CHECK(b.ids == ext_ids);
  REQUIRE(b.backends.size() == 2);
  for (size_t i = 0; i < b.ids.size(); ++i) {
    CHECK(b.backends[i].addr == st.backends.at(b.ids[i]).addr);
    CHECK(b.backends[i].port == 8080);
    CHECK(b.backends[i].proto == IPPROTO_TCP);
  }
  CHECK(st.maglev.at(rec.svc_id) == ext_ids);
  CHECK(reconcile(st, want, opts).ops.empty());

  SUBCASE("a backend leaves the set: a new table, then the backend goes") {
    want.frontends[0].external_backends.pop_back();
    auto r2 = reconcile(st, want, opts);
    const int put2 = first(r2.ops, op_kind::put_maglev);
    REQUIRE(put2 >= 0);
    CHECK(put2 < master_of(r2.ops, op_kind::put_master, LB_SCOPE_EXTERNAL));
    CHECK(last(r2.ops, op_kind::delete_backend) > put2);
    CHECK(r2.maglev[0].ids == std::vector<uint32_t>{rec.slots[0]});
    apply_ops(st, r2);
    CHECK(reconcile(st, want, opts).ops.empty());
  }
  SUBCASE("a change outside the external set keeps the table") {
    want.frontends[0].backends.push_back(be4("10.244.0.15"));
    auto r2 = reconcile(st, want, opts);
    CHECK(first(r2.ops, op_kind::put_maglev) == -1);
    CHECK(first(r2.ops, op_kind::delete_maglev) == -1);
  }
  SUBCASE("Maglev off: the master loses the flag first, the table goes after") {
    auto r2 = reconcile(st, want);
    const int m = master_of(r2.ops, op_kind::put_master, LB_SCOPE_ALL);
    CHECK((op_at(r2.ops, m).value.flags & LB_SVC_F_MAGLEV) == 0);
    CHECK(first(r2.ops, op_kind::delete_maglev) > m);
    apply_ops(st, r2);
    CHECK(st.maglev.empty());
  }
  SUBCASE("no local endpoint: no table, no flag") {
    want.frontends[0].external_backends.clear();
    auto r2 = reconcile(st, want, opts);
    const int m = master_of(r2.ops, op_kind::put_master, LB_SCOPE_ALL);
    CHECK((op_at(r2.ops, m).value.flags & LB_SVC_F_MAGLEV) == 0);
    CHECK(first(r2.ops, op_kind::delete_maglev) > m);
  }
  SUBCASE("removed: the table goes after the masters, before the backends") {
    auto r2 = reconcile(st, desired_state{}, opts);
    const int del = first(r2.ops, op_kind::delete_maglev);
    CHECK(del > last(r2.ops, op_kind::delete_master));
    CHECK(del < first(r2.ops, op_kind::delete_backend));
    apply_ops(st, r2);
    CHECK(st == map_state{});
  }
  SUBCASE("an unverified table (restore could not vouch for it) is rewritten, nothing else") {
    map_state restored = st;
    restored.maglev.at(rec.svc_id).clear();
    auto r2 = reconcile(restored, want, opts);
    REQUIRE(r2.ops.size() == 1);
    CHECK(r2.ops[0].kind == op_kind::put_maglev);
    apply_ops(restored, r2);
    CHECK(restored == st);
    // Applied without the plan's tables, the content is unknown again.
    map_state blind = st;
    apply_ops(blind, r2.ops);
    CHECK(blind.maglev.at(rec.svc_id).empty());
  }
}

TEST_CASE("reconcile: a Maglev table too small for the backends is a warning, random instead") {
  map_state st;
  desired_frontend big = fe(v4("192.0.2.10"), 80, {});
  big.kind = frontend_kind::node_port;
  for (uint32_t i = 0; i < 252; ++i) {
    ip_addr a = v4("10.1.0.0");
    a.bytes[2] = static_cast<uint8_t>(i >> 8);
    a.bytes[3] = static_cast<uint8_t>(i);
    big.backends.push_back({a, 80, false});
  }
  auto r = reconcile(st, desired_state{{big}}, with_maglev(251));
  CHECK(r.errors.empty());
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].what.find("251") != std::string::npos);
  CHECK(first(r.ops, op_kind::put_maglev) == -1);
  CHECK(op_at(r.ops, first(r.ops, op_kind::put_master)).value.flags == LB_SVC_F_EXTERNAL);
  CHECK(reconcile(st, desired_state{{big}}, with_maglev(509)).warnings.empty());
}

TEST_CASE("reconcile_subset == reconcile with EXTERNAL entries, ranges and Maglev") {
  uint32_t seed = 4242;
  auto next = [&] {
    seed = seed * 1103515245u + 12345u;
    return (seed >> 16) & 0x7fff;
  };
  auto random_set = [&](ip_family fam, int max) {
    std::vector<desired_backend> out;
    const int n = static_cast<int>(next() % static_cast<uint32_t>(max + 1));
    for (int j = 0; j < n; ++j) {
      ip_addr b = fam == ip_family::v4 ? v4("10.244.0.0") : v6("fd00:244::");
      b.bytes[fam == ip_family::v4 ? 3 : 15] = static_cast<uint8_t>(1 + next() % 8);
      out.push_back({b, 8080, next() % 6 == 0});
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end(),
                          [](const auto& x, const auto& y) {
                            return x.addr == y.addr && x.port == y.port;
                          }),
              out.end());
    return out;
  };
  auto random_frontend = [&](ip_addr vip, uint16_t port, uint8_t proto) {
    desired_frontend f;
    f.vip = vip;
    f.port = port;
    f.proto = proto;
    f.name = "ns/svc";
    f.kind = static_cast<frontend_kind>(next() % 5);
    f.affinity_timeout_s = next() % 4 == 0 ? 60 : 0;
    f.when_empty = next() % 3 == 0 ? empty_verdict::drop : empty_verdict::reject;
    f.backends = random_set(vip.family, 5);
    if (f.kind != frontend_kind::cluster_ip && next() % 2 == 0) {
      f.external_local = true;
      // Mostly a subset of the ALL set, sometimes with an endpoint of its own.
      for (const auto& b : f.backends) {
        if (next() % 2 == 0) {
          f.external_backends.push_back(b);
        }
      }
      if (next() % 4 == 0) {
        ip_addr own = vip.family == ip_family::v4 ? v4("10.244.1.1") : v6("fd00:244::1:1");
        f.external_backends.push_back({own, 8080, true});
      }
    }
    const int nranges = f.kind == frontend_kind::load_balancer ? static_cast<int>(next() % 3) : 0;
    for (int i = 0; i < nranges; ++i) {
      const bool same = next() % 4 != 0;
      const bool six = (vip.family == ip_family::v6) == same;
      ip_addr a = six ? v6("2001:db8::") : v4("198.51.100.0");
      a.bytes[six ? 5 : 2] = static_cast<uint8_t>(next() % 3);
      f.source_ranges.push_back({a, static_cast<uint8_t>(six ? 48 : 24)});
    }
    return f;
  };
  for (const lb_algorithm algo : {lb_algorithm::random, lb_algorithm::maglev}) {
    const reconcile_options opts{.algorithm = algo, .maglev = {.table_size = 251}};
    map_state st;
    std::map<frontend_key, desired_frontend> prev;
    for (int round = 0; round < 300; ++round) {
      auto want = prev;
      const int edits = 1 + static_cast<int>(next() % 4);
      for (int e = 0; e < edits; ++e) {
        const bool six = next() % 3 == 0;
        ip_addr vip = six ? v6("fd00:96::") : v4("10.96.0.0");
        vip.bytes[six ? 15 : 3] = static_cast<uint8_t>(1 + next() % 6);
        const uint16_t port = static_cast<uint16_t>(80 + next() % 2);
        const uint8_t proto = next() % 2 ? IPPROTO_TCP : IPPROTO_UDP;
        const frontend_key key{vip, port, proto};
        if (next() % 4 == 0) {
          want.erase(key);
        } else {
          want[key] = random_frontend(vip, port, proto);
        }
      }
      std::set<frontend_key> changed;
      for (const auto& [k, f] : want) {
        auto it = prev.find(k);
        if (it == prev.end() || !(it->second == f)) {
          changed.insert(k);
        }
      }
      for (const auto& [k, f] : prev) {
        if (!want.contains(k)) {
          changed.insert(k);
        }
      }
      INFO("algorithm " << static_cast<int>(algo) << " round " << round);
      const map_state before = st;
      const auto a = reconcile_subset(st, want, changed, opts);
      const auto b = reconcile(st, want, opts);
      REQUIRE(a.errors.empty());
      REQUIRE(b.errors.empty());
      check_same_ops(a.ops, b.ops);
      REQUIRE(a.maglev.size() == b.maglev.size());
      for (size_t i = 0; i < a.maglev.size(); ++i) {
        CHECK(a.maglev[i].ids == b.maglev[i].ids);
        CHECK(a.maglev[i].backends == b.maglev[i].backends);
      }
      apply_ops(st, a);
      // What the maps hold is what was asked for.
      for (const auto& [k, f] : want) {
        const auto& rec = st.frontends.at(k);
        REQUIRE(rec.slots.size() == f.backends.size());
        for (size_t i = 0; i < f.backends.size(); ++i) {
          CHECK(st.backends.at(rec.slots[i]).addr == f.backends[i].addr);
        }
        CHECK(rec.external.has_value() == f.external_local);
        if (f.external_local) {
          check_external(st, f);
        }
        std::set<ip_prefix> ranges;
        for (const auto& p : f.source_ranges) {
          if (p.addr.family == k.vip.family) {
            ranges.insert(p);
          }
        }
        const auto it = st.src_ranges.find(rec.svc_id);
        CHECK((it == st.src_ranges.end() ? std::set<ip_prefix>{} : it->second) == ranges);
        CHECK(((rec.flags & LB_SVC_F_SOURCE_RANGES) != 0) == !f.source_ranges.empty());
        const auto& lb_set = f.external_local ? f.external_backends : f.backends;
        const bool maglev = algo == lb_algorithm::maglev &&
                            f.kind != frontend_kind::cluster_ip && !lb_set.empty();
        CHECK(((rec.flags & LB_SVC_F_MAGLEV) != 0) == maglev);
        CHECK(st.maglev.contains(rec.svc_id) == maglev);
        // Stable ids: a frontend that stays keeps its svc_id.
        if (const auto old = before.frontends.find(k); old != before.frontends.end()) {
          CHECK(rec.svc_id == old->second.svc_id);
        }
      }
      CHECK(st.frontends.size() == want.size());
      check_index(st);
      CHECK(reconcile(st, want, opts).ops.empty());
      prev = std::move(want);
    }
  }
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

TEST_CASE("names: kind and name split into lb_svc_info_v1's fields, cut to fit") {
  desired_frontend f;
  f.kind = frontend_kind::node_port;
  f.name = "kube-system/dns:dns-tcp";
  svc_info i = make_svc_info(f);
  CHECK(i.value.kind == LB_KIND_NODE_PORT);
  CHECK(std::string(i.value.ns) == "kube-system");
  CHECK(std::string(i.value.name) == "dns");
  CHECK(std::string(i.value.port_name) == "dns-tcp");
  f.kind = frontend_kind::host_port;
  f.name = "default/" + std::string(200, 'p') + ":8443";  // a long Pod name
  i = make_svc_info(f);
  CHECK(i.value.kind == LB_KIND_HOST_PORT);
  CHECK(std::string(i.value.name) == std::string(LB_NAME_LEN - 1, 'p'));
  CHECK(std::string(i.value.port_name) == "8443");
  f.name = "default/web:";
  i = make_svc_info(f);
  CHECK(std::string(i.value.name) == "web");
  CHECK(std::string(i.value.port_name).empty());
  f.name = "scale/svc-1";  // no port part at all
  CHECK(std::string(make_svc_info(f).value.name) == "svc-1");
}

TEST_CASE("names: a renamed frontend rewrites its name only; orphans are removed") {
  map_state st;
  desired_state want{{fe(v4("10.96.0.10"), 80, {"10.244.0.12"})}};
  apply_ops(st, reconcile(st, want));
  REQUIRE(st.info.size() == 1);
  want.frontends[0].name = "default/web2:http";
  auto r = reconcile(st, want);
  REQUIRE(r.ops.size() == 1);
  CHECK(r.ops[0].kind == op_kind::put_info);
  apply_ops(st, r);
  CHECK(std::string(st.info.begin()->second.value.name) == "web2");
  CHECK(reconcile(st, want).ops.empty());
  // An entry of no frontend (an interrupted run) goes with the full diff.
  st.info[77] = svc_info{};
  r = reconcile(st, want);
  REQUIRE(r.ops.size() == 1);
  CHECK(r.ops[0].kind == op_kind::delete_info);
  CHECK(r.ops[0].value.svc_id == 77);
}

TEST_CASE("Services not proxied: the diff writes what changed, deletes what went") {
  const std::vector<unproxied_service> a = {
      {"default", "db", unproxied_reason::headless, ""},
      {"default", "ext", unproxied_reason::external_name, "db.example.com"}};
  const unproxied_map have = make_unproxied(a);
  CHECK(reconcile_unproxied(have, have).empty());
  std::vector<unproxied_service> b = a;
  b[1].external_name = "db2.example.com";
  b.erase(b.begin());
  b.push_back({"prod", "other", unproxied_reason::other_proxy, ""});
  const auto ops = reconcile_unproxied(have, make_unproxied(b));
  REQUIRE(ops.size() == 3);
  CHECK(ops[0].key == std::pair<std::string, std::string>{"default", "db"});
  CHECK_FALSE(ops[0].value);
  CHECK(ops[1].value->external_name == "db2.example.com");
  CHECK(ops[2].value->reason == LB_UNPROXIED_OTHER_PROXY);
  // Strings are cut as the kernel holds them, so a long one compares equal after a restart.
  const unproxied_map long_name =
      make_unproxied(std::vector<unproxied_service>{{"n", "x", unproxied_reason::external_name,
                                                     std::string(300, 'e')}});
  CHECK(long_name.begin()->second.external_name.size() == LB_EXTERNAL_NAME_LEN - 1);
}

}  // namespace
}  // namespace sluice
