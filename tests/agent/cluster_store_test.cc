// cluster_store: change tracking into plan_changes, LIST semantics (list_begin / put /
// holds_version / list_end deletes what the list did not contain), the sync gate, the eventfd
// wake-ups as the agent's main loop consumes them, and concurrent writers against one taker.
#include "agent/store/cluster_store.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/agent/test_helpers.h"

using namespace sluice;

namespace {

constexpr const char* self = "node-a";

service svc(const std::string& ns, const std::string& name, const std::string& rv = "") {
  service s = test::make_service(ns, name, {"10.96.0.10"}, {test::svc_port("http", 80)});
  s.resource_version = rv;
  return s;
}

endpoint_slice slice(const std::string& ns, const std::string& name, const std::string& rv = "") {
  endpoint_slice s;
  s.namespace_ = ns;
  s.name = name;
  s.service_name = "web";
  s.endpoints.push_back(test::make_endpoint("10.0.0.1"));
  s.ports.push_back(test::slice_port("http", 8080));
  s.resource_version = rv;
  return s;
}

node make_node(const std::string& name, const std::string& rv = "") {
  node n;
  n.name = name;
  n.resource_version = rv;
  return n;
}

pod make_pod(const std::string& ns, const std::string& name, const std::string& rv = "") {
  pod p;
  p.namespace_ = ns;
  p.name = name;
  p.node_name = self;
  p.resource_version = rv;
  return p;
}

endpoints make_endpoints(const std::string& ns, const std::string& name) {
  endpoints e;
  e.namespace_ = ns;
  e.name = name;
  return e;
}

object_key key(const std::string& ns, const std::string& name) { return {ns, name}; }

// Readable right now (poll with a zero timeout).
bool readable(const cluster_store& store) {
  pollfd p{store.notify_fd(), POLLIN, 0};
  const int n = poll(&p, 1, 0);
  REQUIRE(n >= 0);
  return n == 1 && (p.revents & POLLIN) != 0;
}

// take() that copies the changes out; nullopt when nothing was pending.
std::optional<plan_changes> take(cluster_store& store) {
  std::optional<plan_changes> out;
  store.take([&](const cluster&, const plan_changes& c) { out = c; });
  return out;
}

bool empty(const plan_changes& c) {
  return c.services.empty() && c.slices.empty() && !c.node && !c.pods && !c.all;
}

template <typename Fn>
auto snapshot(const cluster_store& store, Fn&& fn) {
  decltype(fn(std::declval<const cluster&>())) out{};
  store.with_state([&](const cluster& c) { out = fn(c); });
  return out;
}

std::set<object_key> service_keys(const cluster_store& store) {
  return snapshot(store, [](const cluster& c) {
    std::set<object_key> keys;
    for (const auto& [k, v] : c.services) {
      keys.insert(k);
    }
    return keys;
  });
}

std::set<object_key> slice_keys(const cluster_store& store) {
  return snapshot(store, [](const cluster& c) {
    std::set<object_key> keys;
    for (const auto& [k, v] : c.endpoint_slices) {
      keys.insert(k);
    }
    return keys;
  });
}

constexpr std::initializer_list<object_kind> kube_kinds = {
    object_kind::service, object_kind::endpoint_slice, object_kind::node, object_kind::pod};

}  // namespace

TEST_CASE("cluster_store: kind names and kind_of follow kube_object's alternatives") {
  CHECK(kind_name(object_kind::service) == "Service");
  CHECK(kind_name(object_kind::endpoint_slice) == "EndpointSlice");
  CHECK(kind_name(object_kind::node) == "Node");
  CHECK(kind_name(object_kind::pod) == "Pod");
  CHECK(kind_name(object_kind::endpoints) == "Endpoints");
  CHECK(kind_of(kube_object{svc("a", "b")}) == object_kind::service);
  CHECK(kind_of(kube_object{slice("a", "b")}) == object_kind::endpoint_slice);
  CHECK(kind_of(kube_object{make_node("n")}) == object_kind::node);
  CHECK(kind_of(kube_object{make_pod("a", "b")}) == object_kind::pod);
  CHECK(kind_of(kube_object{make_endpoints("a", "b")}) == object_kind::endpoints);
}

TEST_CASE("cluster_store: put and erase mark exactly the changed keys and flags") {
  cluster_store store(self);
  CHECK_FALSE(take(store).has_value());
  CHECK_FALSE(readable(store));

  SUBCASE("services") {
    store.put(svc("default", "web", "1"));
    store.put(svc("kube-system", "dns", "2"));
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->services == std::set{key("default", "web"), key("kube-system", "dns")});
    CHECK(c->slices.empty());
    CHECK_FALSE(c->node);
    CHECK_FALSE(c->pods);
    CHECK_FALSE(c->all);
    CHECK(service_keys(store) == std::set{key("default", "web"), key("kube-system", "dns")});

    store.erase(object_kind::service, key("default", "web"));
    c = take(store);
    REQUIRE(c);
    CHECK(c->services == std::set{key("default", "web")});
    CHECK(service_keys(store) == std::set{key("kube-system", "dns")});

    // Erasing what is not there (or another kind's key) changes nothing.
    store.erase(object_kind::service, key("default", "web"));
    store.erase(object_kind::endpoint_slice, key("kube-system", "dns"));
    CHECK_FALSE(take(store).has_value());
    CHECK(store.counters().upserts == 2);
    CHECK(store.counters().deletes == 1);
  }
  SUBCASE("slices") {
    store.put(slice("default", "web-abc", "3"));
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->slices == std::set{key("default", "web-abc")});
    CHECK(c->services.empty());
    CHECK_FALSE(c->node);
    CHECK_FALSE(c->pods);
    CHECK_FALSE(c->all);
    store.erase(object_kind::endpoint_slice, key("default", "web-abc"));
    c = take(store);
    REQUIRE(c);
    CHECK(c->slices == std::set{key("default", "web-abc")});
    CHECK(slice_keys(store).empty());
  }
  SUBCASE("our node sets the node flag; other nodes are ignored") {
    store.put(make_node("node-b", "4"));
    CHECK_FALSE(take(store).has_value());
    CHECK_FALSE(readable(store));
    CHECK_FALSE(snapshot(store, [](const cluster& c) { return c.self_node.has_value(); }));
    CHECK(store.counters().upserts == 0);

    store.put(make_node(self, "5"));
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->node);
    CHECK(c->services.empty());
    CHECK(c->slices.empty());
    CHECK_FALSE(c->pods);
    CHECK_FALSE(c->all);
    CHECK(snapshot(store, [](const cluster& c) { return c.self_node->resource_version; }) == "5");

    // Erasing another node's name leaves ours alone.
    store.erase(object_kind::node, key("", "node-b"));
    CHECK_FALSE(take(store).has_value());
    store.erase(object_kind::node, key("", self));
    c = take(store);
    REQUIRE(c);
    CHECK(c->node);
    CHECK_FALSE(snapshot(store, [](const cluster& c) { return c.self_node.has_value(); }));
    CHECK(store.counters().upserts == 1);
    CHECK(store.counters().deletes == 1);
  }
  SUBCASE("pods set the pods flag") {
    store.put(make_pod("default", "p1", "6"));
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->pods);
    CHECK(c->services.empty());
    CHECK(c->slices.empty());
    CHECK_FALSE(c->node);
    CHECK_FALSE(c->all);
    store.erase(object_kind::pod, key("default", "p1"));
    c = take(store);
    REQUIRE(c);
    CHECK(c->pods);
    CHECK(snapshot(store, [](const cluster& c) { return c.pods.size(); }) == 0);
  }
  SUBCASE("legacy Endpoints re-plan everything") {
    store.put(make_endpoints("default", "ext"));
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->all);
    CHECK(c->services.empty());
    CHECK(c->slices.empty());
    store.erase(object_kind::endpoints, key("default", "ext"));
    c = take(store);
    REQUIRE(c);
    CHECK(c->all);
    CHECK(snapshot(store, [](const cluster& c) { return c.legacy_endpoints.size(); }) == 0);
  }
  SUBCASE("changes accumulate across kinds until take()") {
    store.put(svc("default", "web", "1"));
    store.put(slice("default", "web-abc", "2"));
    store.put(make_pod("default", "p1", "3"));
    store.put(make_node(self, "4"));
    store.put(svc("default", "web", "5"));
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->services == std::set{key("default", "web")});
    CHECK(c->slices == std::set{key("default", "web-abc")});
    CHECK(c->node);
    CHECK(c->pods);
    CHECK_FALSE(c->all);
    CHECK(snapshot(store, [](const cluster& c) {
            return c.services.at(key("default", "web")).resource_version;
          }) == "5");
    CHECK_FALSE(take(store).has_value());  // cleared
  }
}

TEST_CASE("cluster_store: the same resourceVersion put twice is not re-planned") {
  cluster_store store(self);
  store.put(svc("default", "web", "7"));
  REQUIRE(take(store).has_value());
  store.put(svc("default", "web", "7"));
  CHECK_FALSE(take(store).has_value());
}

TEST_CASE("cluster_store: holds_version") {
  cluster_store store(self);
  store.put(svc("default", "web", "7"));
  store.put(make_node(self, "8"));
  store.put(make_pod("default", "p1", "9"));
  store.put(slice("default", "web-abc", "10"));
  store.put(make_endpoints("default", "ext"));
  store.put(svc("default", "files", ""));  // from a file: no version
  REQUIRE(take(store).has_value());

  CHECK(store.holds_version(object_kind::service, key("default", "web"), "7"));
  CHECK_FALSE(store.holds_version(object_kind::service, key("default", "web"), "8"));
  CHECK_FALSE(store.holds_version(object_kind::service, key("default", "web"), ""));
  CHECK_FALSE(store.holds_version(object_kind::service, key("default", "files"), ""));
  CHECK_FALSE(store.holds_version(object_kind::service, key("default", "nope"), "7"));
  CHECK_FALSE(store.holds_version(object_kind::endpoint_slice, key("default", "web"), "7"));
  CHECK(store.holds_version(object_kind::endpoint_slice, key("default", "web-abc"), "10"));
  CHECK(store.holds_version(object_kind::pod, key("default", "p1"), "9"));
  CHECK(store.holds_version(object_kind::node, key("", self), "8"));
  CHECK_FALSE(store.holds_version(object_kind::node, key("", "node-b"), "8"));
  CHECK_FALSE(store.holds_version(object_kind::endpoints, key("default", "ext"), ""));
  CHECK(store.counters().unchanged == 4);
  // Matching is read-only: nothing to plan.
  CHECK_FALSE(take(store).has_value());
  CHECK_FALSE(readable(store));
}

TEST_CASE("cluster_store: a LIST deletes exactly what it did not contain") {
  cluster_store store(self);
  for (const char* name : {"a", "b", "c", "d"}) {
    store.put(svc("default", name, "1"));
  }
  store.put(slice("default", "s1", "1"));
  store.put(slice("default", "s2", "1"));
  REQUIRE(take(store).has_value());

  store.list_begin(object_kind::service);
  store.put(svc("default", "a", "2"));                                            // modified
  CHECK(store.holds_version(object_kind::service, key("default", "b"), "1"));     // unchanged
  store.put(svc("default", "e", "3"));                                            // new
  // c and d are not in the list.
  CHECK(service_keys(store) ==
        std::set{key("default", "a"), key("default", "b"), key("default", "c"),
                 key("default", "d"), key("default", "e")});  // no transient deletions
  store.list_end(object_kind::service);

  CHECK(service_keys(store) ==
        std::set{key("default", "a"), key("default", "b"), key("default", "e")});
  const auto c = take(store);
  REQUIRE(c);
  CHECK(c->services == std::set{key("default", "a"), key("default", "c"), key("default", "d"),
                                key("default", "e")});
  CHECK(c->slices.empty());  // another kind's objects are not touched
  CHECK(slice_keys(store) == std::set{key("default", "s1"), key("default", "s2")});
  CHECK(store.synced({object_kind::service}));
  CHECK_FALSE(store.synced({object_kind::endpoint_slice}));
  CHECK(store.counters().deletes == 2);
  CHECK(store.counters().unchanged == 1);

  SUBCASE("a relist of unchanged objects changes nothing") {
    store.list_begin(object_kind::service);
    CHECK(store.holds_version(object_kind::service, key("default", "a"), "2"));
    CHECK(store.holds_version(object_kind::service, key("default", "b"), "1"));
    CHECK(store.holds_version(object_kind::service, key("default", "e"), "3"));
    store.list_end(object_kind::service);
    CHECK_FALSE(take(store).has_value());
    CHECK_FALSE(readable(store));
    CHECK(service_keys(store).size() == 3);
  }
  SUBCASE("an empty list deletes everything of its kind") {
    store.list_begin(object_kind::endpoint_slice);
    store.list_end(object_kind::endpoint_slice);
    CHECK(slice_keys(store).empty());
    const auto c2 = take(store);
    REQUIRE(c2);
    CHECK(c2->slices == std::set{key("default", "s1"), key("default", "s2")});
    CHECK(c2->services.empty());
  }
  SUBCASE("list_abort keeps everything; a later complete list converges") {
    store.list_begin(object_kind::endpoint_slice);
    store.put(slice("default", "s1", "5"));
    store.list_abort(object_kind::endpoint_slice);
    CHECK(slice_keys(store) == std::set{key("default", "s1"), key("default", "s2")});
    // list_end without a running list (after an abort) is a no-op and does not sync the kind.
    store.list_end(object_kind::endpoint_slice);
    CHECK(slice_keys(store) == std::set{key("default", "s1"), key("default", "s2")});
    CHECK_FALSE(store.synced({object_kind::endpoint_slice}));
    const auto c2 = take(store);
    REQUIRE(c2);
    CHECK(c2->slices == std::set{key("default", "s1")});  // the item put before the abort

    store.list_begin(object_kind::endpoint_slice);
    store.put(slice("default", "s2", "6"));
    store.list_end(object_kind::endpoint_slice);
    CHECK(slice_keys(store) == std::set{key("default", "s2")});
    const auto c3 = take(store);
    REQUIRE(c3);
    CHECK(c3->slices == std::set{key("default", "s1"), key("default", "s2")});
    CHECK(store.synced({object_kind::endpoint_slice}));
  }
  SUBCASE("list_begin starts over: keys of an earlier unfinished list do not count") {
    store.list_begin(object_kind::service);
    store.put(svc("default", "a", "2"));
    store.list_begin(object_kind::service);  // restarted (e.g. expired continue token)
    store.put(svc("default", "b", "1"));
    store.list_end(object_kind::service);
    CHECK(service_keys(store) == std::set{key("default", "b")});
  }
}

TEST_CASE("cluster_store: LIST of Nodes and Pods") {
  cluster_store store(self);
  SUBCASE("our node missing from the list is deleted; others' are ignored") {
    store.list_begin(object_kind::node);
    store.put(make_node(self, "1"));
    store.put(make_node("node-b", "2"));
    store.list_end(object_kind::node);
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->node);
    CHECK(snapshot(store, [](const cluster& c) { return c.self_node->name; }) == self);

    store.list_begin(object_kind::node);
    CHECK(store.holds_version(object_kind::node, key("", self), "1"));
    store.list_end(object_kind::node);
    CHECK_FALSE(take(store).has_value());

    store.list_begin(object_kind::node);
    store.put(make_node("node-b", "3"));
    store.list_end(object_kind::node);
    c = take(store);
    REQUIRE(c);
    CHECK(c->node);
    CHECK_FALSE(snapshot(store, [](const cluster& c) { return c.self_node.has_value(); }));
  }
  SUBCASE("pods") {
    store.list_begin(object_kind::pod);
    store.put(make_pod("default", "p1", "1"));
    store.put(make_pod("default", "p2", "2"));
    store.list_end(object_kind::pod);
    auto c = take(store);
    REQUIRE(c);
    CHECK(c->pods);
    store.list_begin(object_kind::pod);
    CHECK(store.holds_version(object_kind::pod, key("default", "p1"), "1"));
    store.list_end(object_kind::pod);
    c = take(store);
    REQUIRE(c);
    CHECK(c->pods);
    CHECK(c->services.empty());
    CHECK(snapshot(store, [](const cluster& c) { return c.pods.size(); }) == 1);
  }
}

TEST_CASE("cluster_store: synced per kind; the first complete list wakes even without changes") {
  cluster_store store(self);
  CHECK_FALSE(store.synced(kube_kinds));
  CHECK(store.synced({}));
  int step = 0;
  for (const object_kind k : kube_kinds) {
    CAPTURE(kind_name(k));
    store.list_begin(k);
    CHECK_FALSE(store.synced({k}));  // begun is not listed
    store.list_end(k);
    CHECK(store.synced({k}));
    ++step;
    CHECK(store.synced(kube_kinds) == (step == 4));
    // An empty first list still wakes the loop and take() runs (with nothing to plan).
    CHECK(readable(store));
    const auto c = take(store);
    REQUIRE(c);
    CHECK(empty(*c));
    CHECK_FALSE(readable(store));
  }
  CHECK_FALSE(store.synced({object_kind::endpoints}));
  // Later (empty) lists of a synced kind change nothing.
  store.list_begin(object_kind::service);
  store.list_end(object_kind::service);
  CHECK_FALSE(readable(store));
  CHECK_FALSE(take(store).has_value());
}

TEST_CASE("cluster_store: replace_all marks everything and syncs every kind") {
  cluster_store store(self);
  store.put(svc("default", "old", "1"));
  store.list_begin(object_kind::service);  // a running list is forgotten
  REQUIRE(take(store).has_value());

  cluster next;
  next.services.emplace(key("default", "web"), svc("default", "web"));
  next.endpoint_slices.emplace(key("default", "web-1"), slice("default", "web-1"));
  next.self_node = make_node(self);
  store.replace_all(std::move(next));
  CHECK(readable(store));
  CHECK(store.synced(kube_kinds));
  CHECK(store.synced({object_kind::endpoints}));
  const auto c = take(store);
  REQUIRE(c);
  CHECK(c->all);
  CHECK(service_keys(store) == std::set{key("default", "web")});
  CHECK(slice_keys(store) == std::set{key("default", "web-1")});
  store.list_end(object_kind::service);  // no list is running any more: nothing deleted
  CHECK(service_keys(store) == std::set{key("default", "web")});
  CHECK_FALSE(take(store).has_value());

  store.touch_all();
  const auto t = take(store);
  REQUIRE(t);
  CHECK(t->all);
  CHECK(t->services.empty());
}

TEST_CASE("cluster_store: the eventfd is readable exactly while changes are pending") {
  cluster_store store(self);
  CHECK_FALSE(readable(store));
  store.put(svc("default", "a", "1"));
  CHECK(readable(store));
  store.put(svc("default", "b", "1"));  // still one wake-up pending
  CHECK(readable(store));
  bool called = false;
  CHECK(store.take([&](const cluster&, const plan_changes&) {
    called = true;
    // A put from inside fn would deadlock (fn runs under the lock); readability is cleared
    // before fn runs.
    CHECK_FALSE(readable(store));
  }));
  CHECK(called);
  CHECK_FALSE(readable(store));
  called = false;
  CHECK_FALSE(store.take([&](const cluster&, const plan_changes&) { called = true; }));
  CHECK_FALSE(called);
  store.erase(object_kind::service, key("default", "a"));
  CHECK(readable(store));
  store.touch_all();
  CHECK(readable(store));
  REQUIRE(take(store).has_value());
  CHECK_FALSE(readable(store));
  // with_state leaves pending changes and the wake-up alone.
  store.put(svc("default", "c", "1"));
  store.with_state([](const cluster& c) { CHECK(c.services.size() == 2); });
  CHECK(readable(store));
  CHECK(take(store).has_value());
}

TEST_CASE("cluster_store: a change after drain_wakeups wakes again") {
  cluster_store store(self);
  store.put(svc("default", "a", "1"));
  store.drain_wakeups();
  CHECK_FALSE(readable(store));
  store.put(svc("default", "b", "1"));
  CHECK(readable(store));
}

// The sync gate as agent::run() drives it: on a readable notify fd, if the source is not
// synced, drain_wakeups(); else take(). The gate must open once the last kind is listed.
TEST_CASE("cluster_store: sync gate, drain_wakeups then the last list_end wakes again") {
  cluster_store store(self);
  // Changes arrive while the sources list; the loop drains them.
  store.list_begin(object_kind::service);
  store.put(svc("default", "a", "1"));
  store.list_end(object_kind::service);
  store.list_begin(object_kind::endpoint_slice);
  store.put(slice("default", "s", "2"));
  store.list_end(object_kind::endpoint_slice);
  store.list_begin(object_kind::node);
  store.put(make_node(self, "3"));
  store.list_end(object_kind::node);
  CHECK(readable(store));
  CHECK_FALSE(store.synced(kube_kinds));
  store.drain_wakeups();
  CHECK_FALSE(readable(store));

  store.list_begin(object_kind::pod);
  store.put(make_pod("default", "p", "4"));
  CHECK_FALSE(store.synced(kube_kinds));
  store.list_end(object_kind::pod);
  CHECK(readable(store));  // the last kind's first list wakes, although changes were pending
  CHECK(store.synced(kube_kinds));
  const auto c = take(store);
  REQUIRE(c);
  // Nothing drained is lost: every change since start-up is in the first take().
  CHECK(c->services == std::set{key("default", "a")});
  CHECK(c->slices == std::set{key("default", "s")});
  CHECK(c->node);
  CHECK(c->pods);
  CHECK_FALSE(readable(store));
}

TEST_CASE("cluster_store: sync gate, drain-then-check order never stalls (threads)") {
  // The order that is safe: drain_wakeups() first, then check synced(); take() when synced.
  // A reflector thread per kind lists while the main loop polls; bounded by a deadline.
  for (int round = 0; round < 50; ++round) {
    CAPTURE(round);
    cluster_store store(self);
    std::vector<std::thread> reflectors;
    for (const object_kind k : kube_kinds) {
      reflectors.emplace_back([&store, k, round] {
        store.list_begin(k);
        for (int i = 0; i < 20; ++i) {
          const std::string name = fmt::format("o{}-{}", round, i);
          switch (k) {
            case object_kind::service:
              store.put(svc("default", name, "1"));
              break;
            case object_kind::endpoint_slice:
              store.put(slice("default", name, "1"));
              break;
            case object_kind::node:
              store.put(make_node(i == 19 ? self : name, "1"));
              break;
            default:
              store.put(make_pod("default", name, "1"));
              break;
          }
        }
        store.list_end(k);
      });
    }
    bool taken = false;
    bool poll_failed = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!taken && !poll_failed && std::chrono::steady_clock::now() < deadline) {
      pollfd p{store.notify_fd(), POLLIN, 0};
      poll_failed = poll(&p, 1, 2000) < 0;
      if ((p.revents & POLLIN) == 0) {
        continue;  // a timeout would mean a lost wake-up; the deadline catches it
      }
      store.drain_wakeups();
      if (store.synced(kube_kinds)) {
        taken = take(store).has_value();
      }
    }
    for (auto& t : reflectors) {
      t.join();
    }
    REQUIRE_FALSE(poll_failed);
    REQUIRE(taken);
    CHECK(service_keys(store).size() == 20);
  }
}

TEST_CASE("cluster_store: concurrent writers and one taker lose no change") {
  constexpr int writers = 4;
  constexpr int per_writer = 2000;
  cluster_store store(self);
  std::atomic<int> done{0};
  std::set<object_key> seen_services, seen_slices;
  int pods_flags = 0, takes = 0;
  bool lost_wakeup = false;

  std::thread taker([&] {
    // Waits on the eventfd like the main loop; a poll timeout while changes are pending is a
    // lost wake-up. Bounded: stops once the writers are done and nothing is pending.
    for (int i = 0; i < 1'000'000; ++i) {
      pollfd p{store.notify_fd(), POLLIN, 0};
      const int n = poll(&p, 1, 2000);
      const bool finished = done.load() == writers;
      const bool took = store.take([&](const cluster&, const plan_changes& c) {
        seen_services.insert(c.services.begin(), c.services.end());
        seen_slices.insert(c.slices.begin(), c.slices.end());
        pods_flags += c.pods ? 1 : 0;
      });
      takes += took ? 1 : 0;
      if (n == 0 && took) {
        lost_wakeup = true;
      }
      if (finished && !took) {
        return;
      }
    }
  });
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < per_writer; ++i) {
        const std::string name = fmt::format("w{}-{}", w, i);
        store.put(svc("default", name, "1"));
        store.put(slice("default", name, "1"));
        if (i % 3 == 0) {
          store.erase(object_kind::endpoint_slice, key("default", name));
        }
        if (i % 100 == 0) {
          store.put(make_pod("default", name, "1"));
        }
      }
      done.fetch_add(1);
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  taker.join();

  CHECK_FALSE(lost_wakeup);
  CHECK(takes > 0);
  CHECK(seen_services.size() == static_cast<size_t>(writers * per_writer));
  CHECK(seen_slices.size() == static_cast<size_t>(writers * per_writer));
  CHECK(pods_flags > 0);
  CHECK(service_keys(store).size() == static_cast<size_t>(writers * per_writer));
  std::set<object_key> expect_slices;
  for (int w = 0; w < writers; ++w) {
    for (int i = 0; i < per_writer; ++i) {
      if (i % 3 != 0) {
        expect_slices.insert(key("default", fmt::format("w{}-{}", w, i)));
      }
    }
  }
  CHECK(slice_keys(store) == expect_slices);
  const store_counters counters = store.counters();
  CHECK(counters.upserts == static_cast<uint64_t>(writers * (2 * per_writer + per_writer / 100)));
  CHECK(counters.deletes == static_cast<uint64_t>(writers * ((per_writer + 2) / 3)));
  CHECK_FALSE(take(store).has_value());
  CHECK_FALSE(readable(store));
}
