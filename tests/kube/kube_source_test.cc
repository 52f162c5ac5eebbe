// kube_source: the four reflectors (Services, EndpointSlices, our Node, our Pods) decoding into a
// cluster_store, against the fake API server over a Unix socket. Convergence is checked by
// polling the store's kind/namespace/name -> resourceVersion view against what the test created
// on the server; /requests shows the selectors that went over the wire. A few cases drive the
// reflector_sink interface directly, for exact sequences.
#include "agent/sources/kube/kube_source.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <map>
#include <optional>
#include <set>
#include <string>

#include "tests/kube/harness.h"

using namespace sluice;
using namespace sluice::kube;
using namespace sluice::kube::test;
using nlohmann::json;

namespace {

constexpr const char* self = "node-a";

json make_slice(const std::string& ns, const std::string& name, const std::string& service,
                const std::string& ip = "10.0.0.1", json labels = json::object()) {
  if (!service.empty()) {
    labels["kubernetes.io/service-name"] = service;
  }
  return {{"apiVersion", "discovery.k8s.io/v1"},
          {"kind", "EndpointSlice"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
          {"addressType", "IPv4"},
          {"endpoints", {{{"addresses", {ip}}, {"conditions", {{"ready", true}}}}}},
          {"ports", {{{"name", "http"}, {"port", 8080}, {"protocol", "TCP"}}}}};
}

json make_node(const std::string& name, const std::string& ip = "192.168.0.10") {
  return {{"apiVersion", "v1"},
          {"kind", "Node"},
          {"metadata", {{"name", name}, {"labels", {{"topology.kubernetes.io/zone", "z1"}}}}},
          {"spec", {{"podCIDR", "10.244.0.0/24"}}},
          {"status", {{"addresses", {{{"type", "InternalIP"}, {"address", ip}}}}}}};
}

json make_pod(const std::string& ns, const std::string& name, const std::string& node_name) {
  return {{"apiVersion", "v1"},
          {"kind", "Pod"},
          {"metadata", {{"name", name}, {"namespace", ns}}},
          {"spec",
           {{"nodeName", node_name},
            {"containers",
             {{{"name", "c"},
               {"ports", {{{"containerPort", 80}, {"hostPort", 8080}, {"protocol", "TCP"}}}}}}}}},
          {"status", {{"phase", "Running"}, {"podIP", "10.244.0.5"}}}};
}

// kind/namespace/name -> resourceVersion of what the store holds.
std::map<std::string, std::string> store_view(const cluster_store& store) {
  std::map<std::string, std::string> v;
  store.with_state([&](const cluster& c) {
    for (const auto& [k, o] : c.services) {
      v["services/" + k.str()] = o.resource_version;
    }
    for (const auto& [k, o] : c.endpoint_slices) {
      v["endpointslices/" + k.str()] = o.resource_version;
    }
    for (const auto& [k, o] : c.pods) {
      v["pods/" + k.str()] = o.resource_version;
    }
    if (c.self_node) {
      v["nodes//" + c.self_node->name] = c.self_node->resource_version;
    }
  });
  return v;
}

std::optional<plan_changes> take(cluster_store& store) {
  std::optional<plan_changes> out;
  store.take([&](const cluster&, const plan_changes& c) { out = c; });
  return out;
}

// The server plus what the store should converge to.
struct env {
  temp_dir dir;
  fake_apiserver server{dir, {.tls = false}};
  cluster_store store{self};
  std::map<std::string, std::string> expect;

  static std::string key(const std::string& resource, const json& obj) {
    const json& md = obj["metadata"];
    const std::string ns = resource == "nodes" ? "" : md.value("namespace", std::string("default"));
    return resource + "/" + ns + "/" + md["name"].get<std::string>();
  }
  // Creates or updates `obj`; `stored` says whether the store should end up holding it.
  std::string put(const std::string& resource, const json& obj, bool stored = true) {
    const std::string rv = server.put(resource, obj);
    if (stored) {
      expect[key(resource, obj)] = rv;
    } else {
      expect.erase(key(resource, obj));
    }
    return rv;
  }
  void del(const std::string& resource, const std::string& ns, const std::string& name) {
    server.del(resource, ns, name);
    expect.erase(resource + "/" + (resource == "nodes" ? "" : ns) + "/" + name);
  }
  bool converged(const kube_source& source) const {
    const bool ok =
        wait_until([&] { return source.synced() && store_view(store) == expect; });
    if (!ok) {
      MESSAGE("synced=" << source.synced() << " store has " << store_view(store).size()
                        << " objects, expected " << expect.size());
      for (const auto& [k, rv] : store_view(store)) {
        MESSAGE("  store " << k << " @" << rv);
      }
      for (const auto& [k, rv] : expect) {
        MESSAGE("  expect " << k << " @" << rv);
      }
    }
    return ok;
  }
  kube_source_options options(std::string proxy_name = "") const {
    return {.node_name = self, .service_proxy_name = std::move(proxy_name)};
  }
};

const reflector& reflector_of(const kube_source& source, const std::string& resource) {
  for (const auto& r : source.reflectors()) {
    if (r->options().resource == resource) {
      return *r;
    }
  }
  throw std::runtime_error("no reflector for " + resource);
}

const char* const all_resources[] = {"services", "endpointslices", "nodes", "pods"};

const char* path_of(const std::string& resource) {
  if (resource == "services") {
    return "/api/v1/services";
  }
  if (resource == "endpointslices") {
    return "/apis/discovery.k8s.io/v1/endpointslices";
  }
  if (resource == "nodes") {
    return "/api/v1/nodes";
  }
  return "/api/v1/pods";
}

// All requests (lists and watches) to one collection path.
std::vector<json> requests_to(const fake_apiserver& s, const std::string& path) {
  std::vector<json> out;
  for (const json& r : s.requests()) {
    if (r["path"] == path) {
      out.push_back(r);
    }
  }
  return out;
}

size_t list_requests(const fake_apiserver& s, const std::string& path) {
  size_t n = 0;
  for (const json& r : requests_to(s, path)) {
    n += r["query"].value("watch", std::string()) == "1" ? 0 : 1;
  }
  return n;
}

json service_with_port(const std::string& ns, const std::string& name, int port) {
  json s = make_service(ns, name);
  s["spec"]["ports"][0]["port"] = port;
  return s;
}

}  // namespace

TEST_CASE("kube_source: proxy_label_selector") {
  CHECK(proxy_label_selector("") == kube_proxy_label_selector);
  CHECK(proxy_label_selector("") ==
        "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name");
  CHECK(proxy_label_selector("sluice") ==
        "!service.kubernetes.io/headless,service.kubernetes.io/service-proxy-name=sluice");
}

TEST_CASE("kube_source: lists and watches Services, EndpointSlices, our Node and our Pods") {
  env e;
  e.put("services", make_service("default", "a"));
  e.put("services", make_service("shop", "b"));
  e.put("endpointslices", make_slice("default", "a-1", "a"));
  e.put("endpointslices", make_slice("shop", "b-1", "b", "10.0.0.2"));
  e.put("nodes", make_node(self));
  e.put("nodes", make_node("node-b", "192.168.0.11"), false);  // not ours: not listed
  e.put("pods", make_pod("default", "p1", self));
  e.put("pods", make_pod("default", "p2", "node-b"), false);  // not on our node
  kube_source source(e.server.config(), e.store, e.options());
  CHECK_FALSE(source.synced());
  source.start();
  REQUIRE(e.converged(source));

  for (const auto kind : {object_kind::service, object_kind::endpoint_slice, object_kind::node,
                          object_kind::pod}) {
    CAPTURE(kind_name(kind));
    CHECK(source.decode_stats(kind).rejected.load() == 0);
    CHECK(source.decode_stats(kind).ignored.load() == 0);
  }
  // Decoded, not just stored.
  e.store.with_state([](const cluster& c) {
    const service& a = c.services.at({"default", "a"});
    REQUIRE(a.cluster_ips.size() == 1);
    CHECK(format_ip(a.cluster_ips[0]) == "10.96.0.10");
    REQUIRE(a.ports.size() == 1);
    CHECK(a.ports[0].port == 80);
    const endpoint_slice& b1 = c.endpoint_slices.at({"shop", "b-1"});
    CHECK(b1.service_name == "b");
    REQUIRE(b1.endpoints.size() == 1);
    CHECK(format_ip(b1.endpoints[0].addresses.at(0)) == "10.0.0.2");
    REQUIRE(c.self_node);
    CHECK(c.self_node->zone() == "z1");
    REQUIRE(c.self_node->internal_ips.size() == 1);
    CHECK(format_ip(c.self_node->internal_ips[0]) == "192.168.0.10");
    const pod& p1 = c.pods.at({"default", "p1"});
    REQUIRE(p1.ports.size() == 1);
    CHECK(p1.ports[0].host_port == 8080);
  });
  auto c = take(e.store);
  REQUIRE(c);
  CHECK(c->services == std::set<object_key>{{"default", "a"}, {"shop", "b"}});
  CHECK(c->slices == std::set<object_key>{{"default", "a-1"}, {"shop", "b-1"}});
  CHECK(c->node);
  CHECK(c->pods);
  CHECK_FALSE(c->all);

  for (const char* r : all_resources) {
    REQUIRE(e.server.wait_watches(r, 1));
  }
  // Watch: add, modify, delete of every kind.
  e.put("services", make_service("default", "c"));
  e.del("services", "shop", "b");
  e.put("endpointslices", make_slice("default", "a-1", "a", "10.0.0.9"));
  json node = make_node(self, "192.168.0.20");
  e.put("nodes", node);
  e.put("nodes", make_node("node-b", "192.168.0.21"), false);  // filtered by the server
  e.del("pods", "default", "p1");
  e.put("pods", make_pod("default", "p3", self));
  REQUIRE(e.converged(source));
  c = take(e.store);
  REQUIRE(c);
  CHECK(c->services == std::set<object_key>{{"default", "c"}, {"shop", "b"}});
  CHECK(c->slices == std::set<object_key>{{"default", "a-1"}});
  CHECK(c->node);
  CHECK(c->pods);
  CHECK_FALSE(c->all);
  e.store.with_state([](const cluster& c) {
    CHECK(format_ip(c.endpoint_slices.at({"default", "a-1"}).endpoints[0].addresses.at(0)) ==
          "10.0.0.9");
    CHECK(format_ip(c.self_node->internal_ips.at(0)) == "192.168.0.20");
  });
  // Our node deleted: the store forgets it.
  e.del("nodes", "", self);
  REQUIRE(e.converged(source));
  c = take(e.store);
  REQUIRE(c);
  CHECK(c->node);
  CHECK(c->services.empty());

  // What went over the wire: kube-proxy's selector on Services and EndpointSlices, our node's
  // name on Nodes and Pods, on every list and watch.
  for (const char* r : all_resources) {
    CAPTURE(r);
    const auto reqs = requests_to(e.server, path_of(r));
    CHECK(reqs.size() >= 2);  // at least one list and one watch
    for (const json& q : reqs) {
      const json& query = q["query"];
      if (std::string(r) == "services" || std::string(r) == "endpointslices") {
        CHECK(query.value("labelSelector", std::string()) ==
              "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name");
        CHECK_FALSE(query.contains("fieldSelector"));
      } else if (std::string(r) == "nodes") {
        CHECK(query.value("fieldSelector", std::string()) == "metadata.name=node-a");
        CHECK_FALSE(query.contains("labelSelector"));
      } else {
        CHECK(query.value("fieldSelector", std::string()) == "spec.nodeName=node-a");
        CHECK_FALSE(query.contains("labelSelector"));
      }
    }
  }
  source.stop();
}

TEST_CASE("kube_source: a malformed object is rejected and counted; the good version stays") {
  env e;
  e.put("services", make_service("default", "good-1"));
  e.put("services", service_with_port("default", "bad", 70000), false);
  e.put("services", make_service("default", "good-2"));
  e.put("endpointslices", make_slice("default", "good-1-x", "good-1"));
  kube_source source(e.server.config(), e.store, e.options());
  source.start();
  REQUIRE(e.converged(source));
  CHECK(source.decode_stats(object_kind::service).rejected.load() == 1);
  CHECK(source.decode_stats(object_kind::service).ignored.load() == 0);
  CHECK(source.decode_stats(object_kind::endpoint_slice).rejected.load() == 0);
  REQUIRE(take(e.store).has_value());
  for (const char* r : all_resources) {
    REQUIRE(e.server.wait_watches(r, 1));
  }

  // A bad update of good-1 over the watch: counted, the previous version stays, nothing to plan.
  const std::string good_rv = e.expect.at("services/default/good-1");
  e.server.put("services", service_with_port("default", "good-1", 70000));
  REQUIRE(wait_until(
      [&] { return source.decode_stats(object_kind::service).rejected.load() == 2; }));
  CHECK(store_view(e.store) == e.expect);
  CHECK(store_view(e.store).at("services/default/good-1") == good_rv);
  CHECK_FALSE(take(e.store).has_value());

  // Fixed again: the new version replaces the old.
  e.put("services", service_with_port("default", "good-1", 81));
  e.put("services", service_with_port("default", "bad", 82));  // and the bad one fixed
  REQUIRE(e.converged(source));
  e.store.with_state(
      [](const cluster& c) { CHECK(c.services.at({"default", "bad"}).ports.at(0).port == 82); });
  const auto c = take(e.store);
  REQUIRE(c);
  CHECK(c->services == std::set<object_key>{{"default", "good-1"}, {"default", "bad"}});
  CHECK(source.decode_stats(object_kind::service).rejected.load() == 2);
  source.stop();
}

TEST_CASE("kube_source: a rejected update survives a relist (410) like it survives the watch") {
  // kube_source::put() on a rejected list item calls store_.holds_version(kind, key, {}) to
  // "keep the key out of the deletion set", but holds_version() returns false at once for an
  // empty version and records nothing, so list_end() deletes the previous good version: after
  // any relist a service with a bad update goes down, although the watch path keeps it up.
  env e;
  e.put("services", make_service("default", "web"));
  e.put("services", make_service("default", "other"));
  kube_source source(e.server.config(), e.store, e.options());
  source.start();
  REQUIRE(e.converged(source));
  for (const char* r : all_resources) {
    REQUIRE(e.server.wait_watches(r, 1));
  }
  e.server.put("services", service_with_port("default", "web", 70000));
  REQUIRE(wait_until(
      [&] { return source.decode_stats(object_kind::service).rejected.load() == 1; }));
  REQUIRE(store_view(e.store) == e.expect);

  const reflector& svc = reflector_of(source, "services");
  e.server.faults({{"error_410_on_watches", true}});
  REQUIRE(wait_until([&] { return svc.stats().lists.load() >= 2; }));
  REQUIRE(wait_until(
      [&] { return source.decode_stats(object_kind::service).rejected.load() == 2; }));
  CHECK(store_view(e.store).contains("services/default/web"));  // fails: it was deleted
  CHECK(store_view(e.store) == e.expect);
  source.stop();
}

TEST_CASE("kube_source: objects that are not ours are counted as ignored") {
  env e;
  e.put("endpointslices", make_slice("default", "orphan", ""), false);  // no service-name label
  e.put("endpointslices", make_slice("default", "web-1", "web"));
  kube_source source(e.server.config(), e.store, e.options());
  source.start();
  REQUIRE(e.converged(source));
  CHECK(source.decode_stats(object_kind::endpoint_slice).ignored.load() == 1);
  CHECK(source.decode_stats(object_kind::endpoint_slice).rejected.load() == 0);
  for (const char* r : all_resources) {
    REQUIRE(e.server.wait_watches(r, 1));
  }
  e.put("endpointslices", make_slice("default", "orphan-2", ""), false);
  REQUIRE(wait_until(
      [&] { return source.decode_stats(object_kind::endpoint_slice).ignored.load() == 2; }));
  CHECK(store_view(e.store) == e.expect);
  CHECK(source.decode_stats(object_kind::endpoint_slice).rejected.load() == 0);
  source.stop();
}

TEST_CASE("kube_source: a relist after 410 with unchanged objects changes nothing") {
  env e;
  for (int i = 0; i < 5; ++i) {
    e.put("services", make_service("default", fmt::format("svc-{}", i)));
    e.put("endpointslices", make_slice("default", fmt::format("svc-{}-x", i), fmt::format("svc-{}", i)));
  }
  e.put("nodes", make_node(self));
  e.put("pods", make_pod("default", "p1", self));
  kube_source source(e.server.config(), e.store, e.options());
  source.start();
  REQUIRE(e.converged(source));
  for (const char* r : all_resources) {
    REQUIRE(e.server.wait_watches(r, 1));
  }
  REQUIRE(take(e.store).has_value());
  const store_counters before = e.store.counters();
  CHECK(before.upserts == 12);
  CHECK(before.unchanged == 0);

  e.server.faults({{"error_410_on_watches", true}});
  for (const char* r : all_resources) {
    CAPTURE(r);
    const reflector& refl = reflector_of(source, r);
    REQUIRE(wait_until(
        [&] { return refl.stats().lists.load() == 2 && refl.stats().relists.load() == 1; }));
    REQUIRE(e.server.wait_watches(r, 1));
    CHECK(list_requests(e.server, path_of(r)) == 2);
  }
  CHECK(store_view(e.store) == e.expect);
  const store_counters after = e.store.counters();
  CHECK(after.upserts == before.upserts);  // nothing decoded again
  CHECK(after.deletes == 0);
  CHECK(after.unchanged == 12);  // every listed object matched by resourceVersion
  const auto c = take(e.store);
  if (c) {
    CHECK(c->services.empty());
    CHECK(c->slices.empty());
    CHECK_FALSE(c->node);
    CHECK_FALSE(c->pods);
    CHECK_FALSE(c->all);
  }
  CHECK_FALSE(c.has_value());
  source.stop();
}

TEST_CASE("kube_source: synced() only once all four kinds are listed (server)") {
  env e;
  e.put("services", make_service("default", "a"));
  // Every request fails until the fault is cleared.
  e.server.faults({{"fail_next", {{"count", 100000}, {"status", 500}}}});
  kube_source source(e.server.config(), e.store, e.options());
  source.start();
  for (const char* r : all_resources) {
    const reflector& refl = reflector_of(source, r);
    REQUIRE(wait_until([&] { return refl.stats().errors_5xx.load() >= 1; }));
  }
  CHECK_FALSE(source.synced());
  CHECK_FALSE(e.store.synced({object_kind::service}));
  CHECK(store_view(e.store).empty());
  e.server.faults({{"fail_next", nullptr}});
  REQUIRE(e.converged(source));
  CHECK(source.synced());
  source.stop();
}

TEST_CASE("kube_source: synced() gate and decode outcomes through the sink interface") {
  // The source is not started: the test is the reflector thread.
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  cluster_store store(self);
  kube_source source(server.config(), store, {.node_name = self});

  int listed = 0;
  for (const char* r : all_resources) {
    CAPTURE(r);
    CHECK_FALSE(source.synced());
    source.list_begin(r);
    CHECK_FALSE(source.synced());
    source.list_end(r, "1");
    ++listed;
    CHECK(source.synced() == (listed == 4));
  }
  REQUIRE(take(store).has_value());

  SUBCASE("watch events") {
    json svc = make_service("default", "web");
    svc["metadata"]["resourceVersion"] = "5";
    source.event("services", watch_event_type::added, ondemand_object(svc));
    CHECK(store_view(store) == std::map<std::string, std::string>{{"services/default/web", "5"}});
    // DELETED needs only metadata; without a name it is counted as rejected.
    source.event("services", watch_event_type::deleted, ondemand_object(json{{"metadata", json::object()}}));
    CHECK(source.decode_stats(object_kind::service).rejected.load() == 1);
    CHECK(store_view(store).size() == 1);
    source.event("services", watch_event_type::deleted,
                 ondemand_object(json{{"metadata", {{"name", "web"}, {"namespace", "default"}}}}));
    CHECK(store_view(store).empty());
    // A namespace-less DELETED means "default", as the decoder reads it.
    source.event("services", watch_event_type::added, ondemand_object(svc));
    source.event("services", watch_event_type::deleted, ondemand_object(json{{"metadata", {{"name", "web"}}}}));
    CHECK(store_view(store).empty());
    // Another node's Node event is not ours.
    source.event("nodes", watch_event_type::added, ondemand_object(make_node("node-b")));
    CHECK(store_view(store).empty());
    source.event("nodes", watch_event_type::added, ondemand_object(make_node(self)));
    CHECK(store_view(store) == std::map<std::string, std::string>{{"nodes//node-a", ""}});
    CHECK(source.decode_stats(object_kind::node).rejected.load() == 0);
  }
  SUBCASE("list items: unchanged versions are not decoded again") {
    json svc = make_service("default", "web");
    svc["metadata"]["resourceVersion"] = "5";
    source.list_begin("services");
    source.list_item("services", ondemand_object(svc));
    source.list_end("services", "5");
    REQUIRE(take(store).has_value());
    CHECK(store.counters().upserts == 1);
    source.list_begin("services");
    source.list_item("services", ondemand_object(svc));
    source.list_end("services", "6");
    CHECK(store.counters().upserts == 1);
    CHECK(store.counters().unchanged == 1);
    CHECK_FALSE(take(store).has_value());
    CHECK(store_view(store).size() == 1);
  }
}

namespace {

// A kube_source driven through its sink interface (not started: the test is the reflector
// thread), with default/web listed at resourceVersion 5.
struct listed_web {
  temp_dir dir;
  fake_apiserver server{dir, {.tls = false}};
  cluster_store store{self};
  kube_source source{server.config(), store, {.node_name = self}};
  json good = make_service("default", "web");

  listed_web() {
    good["metadata"]["resourceVersion"] = "5";
    source.list_begin("services");
    source.list_item("services", ondemand_object(good));
    source.list_end("services", "5");
  }
};

}  // namespace

TEST_CASE("kube_source: a rejected relist item keeps the previous good version (sink)") {
  // Same bug as the 410 case above, replayed exactly: kube_source.cc put(), the
  // `store_.holds_version(kind, m->key, {})` "no-op" keeps nothing.
  listed_web w;
  kube_source& source = w.source;
  cluster_store& store = w.store;
  json bad = service_with_port("default", "web", 70000);
  bad["metadata"]["resourceVersion"] = "6";
  source.list_begin("services");
  source.list_item("services", ondemand_object(bad));
  source.list_end("services", "6");
  CHECK(source.decode_stats(object_kind::service).rejected.load() == 1);
  CHECK(store.counters().deletes == 0);  // fails: list_end() deleted default/web
  CHECK(store_view(store) == std::map<std::string, std::string>{{"services/default/web", "5"}});
}

TEST_CASE("kube_source: --service-proxy-name selects the services labelled for it") {
  env e;
  const json mine_labels = {{"service.kubernetes.io/service-proxy-name", "sluice"}};
  e.put("services", make_service("default", "mine", mine_labels));
  e.put("services", make_service("default", "plain"), false);
  e.put("services",
        make_service("default", "other", {{"service.kubernetes.io/service-proxy-name", "other"}}),
        false);
  e.put("services",
        make_service("default", "headless",
                     {{"service.kubernetes.io/service-proxy-name", "sluice"},
                      {"service.kubernetes.io/headless", ""}}),
        false);
  e.put("endpointslices", make_slice("default", "mine-1", "mine", "10.0.0.1", mine_labels));
  e.put("endpointslices", make_slice("default", "plain-1", "plain"), false);
  kube_source source(e.server.config(), e.store, e.options("sluice"));
  source.start();
  REQUIRE(e.converged(source));
  const std::string want =
      "!service.kubernetes.io/headless,service.kubernetes.io/service-proxy-name=sluice";
  for (const char* r : {"services", "endpointslices"}) {
    CAPTURE(r);
    const auto reqs = requests_to(e.server, path_of(r));
    REQUIRE_FALSE(reqs.empty());
    for (const json& q : reqs) {
      CHECK(q["query"].value("labelSelector", std::string()) == want);
    }
  }
  // Relabelled away from us over the watch: the server sends DELETED, the store drops it.
  REQUIRE(e.server.wait_watches("services", 1));
  e.put("services", make_service("default", "mine"), false);
  REQUIRE(e.converged(source));
  source.stop();
}

TEST_CASE("kube_source: a slice modified to lose its service-name label leaves the store (sink)") {
  // A relist drops such a slice (an ignored item is not listed, so list_end() deletes it), but a
  // MODIFIED event only counts it as ignored and keeps the previous version with its endpoints:
  // what gets programmed depends on whether a relist happened since.
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  cluster_store store(self);
  kube_source source(server.config(), store, {.node_name = self});
  json labelled = make_slice("default", "web-1", "web");
  labelled["metadata"]["resourceVersion"] = "5";
  source.event("endpointslices", watch_event_type::added, ondemand_object(labelled));
  REQUIRE(store_view(store).contains("endpointslices/default/web-1"));
  json unlabelled = make_slice("default", "web-1", "");
  unlabelled["metadata"]["resourceVersion"] = "6";
  source.event("endpointslices", watch_event_type::modified, ondemand_object(unlabelled));
  CHECK(source.decode_stats(object_kind::endpoint_slice).ignored.load() == 1);
  CHECK_FALSE(store_view(store).contains("endpointslices/default/web-1"));  // fails

  // The relist path, for comparison (passes today).
  source.event("endpointslices", watch_event_type::added, ondemand_object(labelled));
  source.list_begin("endpointslices");
  source.list_item("endpointslices", ondemand_object(unlabelled));
  source.list_end("endpointslices", "6");
  CHECK_FALSE(store_view(store).contains("endpointslices/default/web-1"));
}

TEST_CASE("kube_source: an object larger than max_object_bytes is rejected; the good one stays") {
  listed_web w;
  kube_source& source = w.source;
  cluster_store& store = w.store;
  json big = w.good;
  big["metadata"]["resourceVersion"] = "6";
  big["metadata"]["annotations"]["pad"] = std::string(max_object_bytes, 'x');
  source.list_begin("services");
  source.list_item("services", ondemand_object(big));
  source.list_end("services", "6");
  CHECK(source.decode_stats(object_kind::service).rejected.load() == 1);
  CHECK(store.counters().deletes == 0);
  CHECK(store_view(store) == std::map<std::string, std::string>{{"services/default/web", "5"}});
  // The same over the watch (the reflector bounds the whole line first).
  source.event("services", watch_event_type::modified, ondemand_object(big));
  CHECK(source.decode_stats(object_kind::service).rejected.load() == 2);
  CHECK(store_view(store) == std::map<std::string, std::string>{{"services/default/web", "5"}});
}
