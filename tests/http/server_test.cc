// http_endpoints over Unix sockets: the health server, the metrics server and the
// healthCheckNodePort listeners, all on one loop thread.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/http/http_endpoints.h"
#include "agent/metrics/agent_metrics.h"
#include "tests/http/http_client.h"

using namespace sluice;
using namespace sluice::http;
using sluice::test::http_get;
using sluice::test::http_request;
using sluice::test::utc;

namespace {

constexpr std::chrono::seconds wait_timeout{10};

// Bind failures are logged at error on purpose; the info lines would drown the test output.
const bool quiet_logs = [] {
  spdlog::set_level(spdlog::level::warn);
  return true;
}();

// A server on Unix sockets in a fresh directory, with a settable clock and a record of the
// threads that ran request handlers.
struct fixture {
  test::temp_dir dir;
  metrics::registry reg;
  metrics::agent_metrics m{reg};
  test::fake_clock clock{utc(2025, 3, 4, 10, 25, 41, 500'000'000)};
  std::mutex threads_mu;
  std::set<std::thread::id> handler_threads;
  int requests = 0;
  std::unique_ptr<http_endpoints> srv;

  explicit fixture(std::chrono::seconds health_timeout = std::chrono::seconds(60),
                   proxy_health::unreachable_fn source = {}) {
    http_options o;
    o.source_unreachable_since = std::move(source);
    o.health_address = "unix:" + health_sock();
    o.metrics_address = "unix:" + metrics_sock();
    o.health_checks = health_check_bind::unix_directory(dir.path());
    o.health_timeout = health_timeout;
    o.clock = [this] { return clock.now(); };
    o.on_request = [this] {
      const std::lock_guard lock(threads_mu);
      handler_threads.insert(std::this_thread::get_id());
      ++requests;
    };
    auto s = http_endpoints::start(std::move(o), m);
    if (!s) {
      throw std::runtime_error(s.error().message());
    }
    srv = std::move(*s);
  }

  std::string health_sock() const { return dir.file("health.sock"); }
  std::string metrics_sock() const { return dir.file("metrics.sock"); }
  std::string hc_sock(uint16_t port) const { return dir.file(fmt::format("hc-{}.sock", port)); }

  void apply(std::vector<desired_health_check> checks) {
    const uint64_t gen = srv->set_health_checks(std::move(checks));
    REQUIRE(srv->wait_applied(gen, wait_timeout));
  }
};

std::string expected_hc_body(std::string_view ns, std::string_view name, uint32_t n,
                             bool healthy) {
  return fmt::format(
      "{{\n\t\"service\": {{\n\t\t\"namespace\": \"{}\",\n\t\t\"name\": \"{}\"\n\t}},\n"
      "\t\"localEndpoints\": {},\n\t\"serviceProxyHealthy\": {}\n}}",
      ns, name, n, healthy);
}

// The exact answer of a healthCheckNodePort.
void check_hc(const fixture& f, uint16_t port, std::string_view ns, std::string_view name,
              uint32_t n, bool healthy, std::string_view method = "GET",
              std::string_view target = "/") {
  CAPTURE(port);
  CAPTURE(method);
  CAPTURE(target);
  auto r = http_request(f.hc_sock(port), method, target);
  REQUIRE(r);
  const int code = n > 0 && healthy ? 200 : 503;
  CHECK(r->status == code);
  CHECK(r->reason == (code == 200 ? "OK" : "Service Unavailable"));
  CHECK(r->header("Content-Type") == "application/json");
  CHECK(r->header("X-Content-Type-Options") == "nosniff");
  CHECK(r->header("X-Load-Balancing-Endpoint-Weight") == std::to_string(n));
  CHECK(r->body == expected_hc_body(ns, name, n, healthy));
}

}  // namespace

TEST_CASE("metrics server: bound to localhost by default, health server on every address") {
  // Security: /metrics is for the node's own scraper unless --metrics-bind-address widens it.
  const http_options o;
  CHECK(o.metrics_address == "127.0.0.1:10249");
  CHECK(o.health_address == "0.0.0.0:10256");
}

TEST_CASE("health server /healthz: 200 with lastUpdated = currentTime while healthy") {
  fixture f;
  auto r = http_get(f.health_sock(), "/healthz");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->reason == "OK");
  CHECK(r->header("Content-Type") == "application/json");
  CHECK(r->header("X-Content-Type-Options") == "nosniff");
  CHECK(r->body ==
        "{\"lastUpdated\": \"2025-03-04 10:25:41.5 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:25:41.5 +0000 UTC\", \"nodeEligible\": true}");
  // Any method, query strings ignored (kube-proxy's handler looks at neither).
  auto post = http_request(f.health_sock(), "POST", "/healthz?x=1");
  REQUIRE(post);
  CHECK(post->status == 200);
  CHECK(f.reg.render().find("kubeproxy_proxy_healthz_total{code=\"200\"} 2\n") !=
        std::string::npos);
}

TEST_CASE("health server: 503 once an update is pending longer than healthTimeout") {
  fixture f(std::chrono::seconds(60));
  f.srv->updated();  // last sync at 10:25:41.5
  f.clock.advance(std::chrono::seconds(10));
  f.srv->queued_update();  // pending since 10:25:51.5
  f.clock.advance(std::chrono::seconds(59));

  auto ok = http_get(f.health_sock(), "/healthz");
  REQUIRE(ok);
  CHECK(ok->status == 200);

  f.clock.advance(std::chrono::milliseconds(1600));  // 60.6 s pending: late
  auto late = http_get(f.health_sock(), "/healthz");
  REQUIRE(late);
  CHECK(late->status == 503);
  CHECK(late->reason == "Service Unavailable");
  CHECK(late->header("Content-Type") == "application/json");
  CHECK(late->header("X-Content-Type-Options") == "nosniff");
  // Unhealthy: lastUpdated is the real last sync.
  CHECK(late->body ==
        "{\"lastUpdated\": \"2025-03-04 10:25:41.5 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:26:52.1 +0000 UTC\", \"nodeEligible\": true}");
  auto livez = http_get(f.health_sock(), "/livez");
  REQUIRE(livez);
  CHECK(livez->status == 503);
  CHECK(livez->body ==
        "{\"lastUpdated\": \"2025-03-04 10:25:41.5 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:26:52.1 +0000 UTC\"}");

  f.srv->updated();
  auto again = http_get(f.health_sock(), "/healthz");
  REQUIRE(again);
  CHECK(again->status == 200);
  const std::string metrics = f.reg.render();
  CHECK(metrics.find("kubeproxy_proxy_healthz_total{code=\"200\"} 2\n") != std::string::npos);
  CHECK(metrics.find("kubeproxy_proxy_healthz_total{code=\"503\"} 1\n") != std::string::npos);
  CHECK(metrics.find("kubeproxy_proxy_livez_total{code=\"503\"} 1\n") != std::string::npos);
}

TEST_CASE("health server: never synced and late shows Go's zero time") {
  fixture f(std::chrono::seconds(60));
  f.srv->queued_update();
  f.clock.advance(std::chrono::seconds(60));
  auto r = http_get(f.health_sock(), "/healthz");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body ==
        "{\"lastUpdated\": \"0001-01-01 00:00:00 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:26:41.5 +0000 UTC\", \"nodeEligible\": true}");
}

TEST_CASE("health server: an ineligible node fails /healthz but not /livez") {
  fixture f;
  f.srv->set_node_eligible(false);
  auto healthz = http_get(f.health_sock(), "/healthz");
  REQUIRE(healthz);
  CHECK(healthz->status == 503);
  CHECK(healthz->body ==
        "{\"lastUpdated\": \"0001-01-01 00:00:00 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:25:41.5 +0000 UTC\", \"nodeEligible\": false}");
  auto livez = http_get(f.health_sock(), "/livez");
  REQUIRE(livez);
  CHECK(livez->status == 200);
  CHECK(livez->header("Content-Type") == "application/json");
  CHECK(livez->header("X-Content-Type-Options") == "nosniff");
  CHECK(livez->body ==
        "{\"lastUpdated\": \"2025-03-04 10:25:41.5 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:25:41.5 +0000 UTC\"}");
  // The node's health-check answers are not affected: serviceProxyHealthy ignores the node.
  f.apply({{"default", "web", 30001, 1}});
  check_hc(f, 30001, "default", "web", 1, true);
  f.srv->set_node_eligible(true);
  auto back = http_get(f.health_sock(), "/healthz");
  REQUIRE(back);
  CHECK(back->status == 200);
}

TEST_CASE("health server: an unreachable API server fails /healthz after healthTimeout only") {
  std::mutex mu;
  std::optional<time_point> since;
  fixture f(std::chrono::seconds(20), [&]() -> std::optional<time_point> {
    const std::lock_guard lock(mu);
    return since;
  });
  const auto set = [&](std::optional<time_point> t) {
    const std::lock_guard lock(mu);
    since = t;
  };
  f.srv->updated();
  f.apply({{"default", "web", 30002, 1}});
  set(f.clock.now());  // the API server stops answering
  f.clock.advance(std::chrono::seconds(19));
  auto early = http_get(f.health_sock(), "/healthz");
  REQUIRE(early);
  CHECK(early->status == 200);
  f.clock.advance(std::chrono::seconds(1));  // 20 s: stale
  auto stale = http_get(f.health_sock(), "/healthz");
  REQUIRE(stale);
  CHECK(stale->status == 503);
  CHECK(stale->body ==
        "{\"lastUpdated\": \"2025-03-04 10:25:41.5 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:26:01.5 +0000 UTC\", \"nodeEligible\": true}");
  // /livez and the health-check ports stay kube-proxy's: a restart cannot bring the API server
  // back, and every node is as stale as this one.
  auto livez = http_get(f.health_sock(), "/livez");
  REQUIRE(livez);
  CHECK(livez->status == 200);
  check_hc(f, 30002, "default", "web", 1, true);
  set(std::nullopt);  // it answers again
  auto back = http_get(f.health_sock(), "/healthz");
  REQUIRE(back);
  CHECK(back->status == 200);
}

TEST_CASE("health server: other paths are Go's 404") {
  fixture f;
  for (const char* target : {"/", "/metrics", "/healthz/", "/livez/x", "/proxyMode"}) {
    CAPTURE(target);
    auto r = http_get(f.health_sock(), target);
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->reason == "Not Found");
    CHECK(r->header("Content-Type") == "text/plain; charset=utf-8");
    CHECK(r->header("X-Content-Type-Options") == "nosniff");
    CHECK(r->body == "404 page not found\n");
  }
}

TEST_CASE("metrics server: /metrics, /proxyMode, /healthz, 404") {
  fixture f;
  f.m.services.set(3);
  f.m.datapath_packets_total.with({"no_backend"}).inc(5);
  // Written on the loop thread, read here: the socket round trip orders them, but sanitizers
  // do not see sockets as synchronisation, so the values are atomic.
  std::atomic<int> hook_calls{0};
  std::atomic<std::thread::id> hook_thread;
  f.reg.add_collect_hook([&] {
    ++hook_calls;
    hook_thread = std::this_thread::get_id();
    f.m.map_entries.with({"lb4_services_v1"}).set(17);
  });

  auto m = http_get(f.metrics_sock(), "/metrics");
  REQUIRE(m);
  CHECK(m->status == 200);
  CHECK(m->header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(m->body.find("# TYPE sluice_services gauge\nsluice_services 3\n") != std::string::npos);
  CHECK(m->body.find("sluice_datapath_packets_total{reason=\"no_backend\"} 5\n") !=
        std::string::npos);
  CHECK(m->body.find("sluice_map_entries{map=\"lb4_services_v1\"} 17\n") != std::string::npos);
  CHECK(hook_calls == 1);
  CHECK(hook_thread.load() == f.srv->loop_thread_id());

  auto mode = http_get(f.metrics_sock(), "/proxyMode");
  REQUIRE(mode);
  CHECK(mode->status == 200);
  CHECK(mode->header("Content-Type") == "text/plain; charset=utf-8");
  CHECK(mode->header("X-Content-Type-Options") == "nosniff");
  CHECK(mode->body == "ebpf");

  auto hz = http_get(f.metrics_sock(), "/healthz");
  REQUIRE(hz);
  CHECK(hz->status == 200);
  CHECK(hz->header("Content-Type") == "text/plain; charset=utf-8");
  CHECK(hz->body == "ok");
  auto verbose = http_get(f.metrics_sock(), "/healthz?verbose");
  REQUIRE(verbose);
  CHECK(verbose->body == "[+]ping ok\nhealthz check passed\n");
  auto not_verbose = http_get(f.metrics_sock(), "/healthz?notverbose=1");
  REQUIRE(not_verbose);
  CHECK(not_verbose->body == "ok");
  auto ping = http_get(f.metrics_sock(), "/healthz/ping");
  REQUIRE(ping);
  CHECK(ping->status == 200);
  CHECK(ping->body == "ok");

  for (const char* target : {"/", "/livez", "/metrics/x", "/proxymode"}) {
    CAPTURE(target);
    auto r = http_get(f.metrics_sock(), target);
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->body == "404 page not found\n");
  }
}

TEST_CASE("health check ports: exact answers, in-place updates, removal, proxy health") {
  fixture f;
  f.apply({{"default", "web", 30001, 2}, {"default", "empty", 30002, 0}, {"ns2", "api", 30003, 1}});
  CHECK(f.srv->health_check_status() ==
        std::vector<health_check_port_status>{{30001, "default", "web", 2, true, {}},
                                              {30002, "default", "empty", 0, true, {}},
                                              {30003, "ns2", "api", 1, true, {}}});
  CHECK(f.m.health_check_ports.value() == 3);

  check_hc(f, 30001, "default", "web", 2, true);
  check_hc(f, 30002, "default", "empty", 0, true);
  check_hc(f, 30003, "ns2", "api", 1, true);
  // Any path, any method.
  check_hc(f, 30001, "default", "web", 2, true, "POST", "/anything/at/all?x=y");
  check_hc(f, 30001, "default", "web", 2, true, "DELETE", "/healthz");
  // HEAD: the same status and headers, no body.
  auto head = http_request(f.hc_sock(30001), "HEAD", "/");
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->header("X-Load-Balancing-Endpoint-Weight") == "2");
  CHECK(head->header("Content-Length") == std::to_string(expected_hc_body("default", "web", 2, true).size()));
  CHECK(head->body == "");

  // A keep-alive connection opened before the update is answered with the new counts on the
  // same connection, and the listening socket (same inode) was kept.
  auto kept = test::http_connection::open(f.hc_sock(30001));
  REQUIRE(kept);
  constexpr std::string_view keep_alive = "GET / HTTP/1.1\r\nHost: lb\r\n\r\n";
  auto first = kept->exchange(keep_alive);
  REQUIRE(first);
  CHECK(first->header("X-Load-Balancing-Endpoint-Weight") == "2");
  struct stat before {};
  REQUIRE(::stat(f.hc_sock(30001).c_str(), &before) == 0);
  f.apply({{"default", "web", 30001, 0}, {"default", "empty", 30002, 4}, {"ns2", "api", 30003, 1}});
  struct stat after {};
  REQUIRE(::stat(f.hc_sock(30001).c_str(), &after) == 0);
  CHECK(before.st_ino == after.st_ino);
  auto second = kept->exchange(keep_alive);
  REQUIRE(second);
  CHECK(second->status == 503);
  CHECK(second->header("X-Load-Balancing-Endpoint-Weight") == "0");
  CHECK(second->body == expected_hc_body("default", "web", 0, true));
  check_hc(f, 30001, "default", "web", 0, true);
  check_hc(f, 30002, "default", "empty", 4, true);

  // Removing a port closes it (and removes its socket file); the others keep serving.
  f.apply({{"default", "empty", 30002, 4}, {"ns2", "api", 30003, 1}});
  auto gone = http_get(f.hc_sock(30001), "/");
  REQUIRE_FALSE(gone);
  CHECK(gone.error() == std::errc::no_such_file_or_directory);
  check_hc(f, 30002, "default", "empty", 4, true);
  CHECK(f.m.health_check_ports.value() == 2);

  // Proxy unhealthy: every port answers 503 with serviceProxyHealthy false.
  f.srv->queued_update();
  f.clock.advance(std::chrono::seconds(61));
  check_hc(f, 30002, "default", "empty", 4, false);
  check_hc(f, 30003, "ns2", "api", 1, false);
  f.srv->updated();
  check_hc(f, 30003, "ns2", "api", 1, true);

  // A removed port can come back.
  f.apply({{"default", "web", 30001, 1}});
  check_hc(f, 30001, "default", "web", 1, true);
  CHECK_FALSE(http_get(f.hc_sock(30002), "/"));
}

TEST_CASE("health check ports: a port that cannot bind is reported, the others serve, retried") {
  fixture f;
  {
    std::ofstream occupy(f.hc_sock(30002));  // someone else's file at the port's path
  }
  f.apply({{"default", "a", 30001, 1}, {"default", "b", 30002, 1}, {"default", "c", 30003, 1}});
  const auto st = f.srv->health_check_status();
  REQUIRE(st.size() == 3);
  CHECK(st[0].serving);
  CHECK_FALSE(st[1].serving);
  CHECK(st[1].port == 30002);
  CHECK(st[1].error == "bind unix:" + f.hc_sock(30002) + ": Address already in use");
  CHECK(st[2].serving);
  CHECK(f.m.health_check_bind_errors_total.value() == 1);
  CHECK(f.m.health_check_ports.value() == 2);
  check_hc(f, 30001, "default", "a", 1, true);
  check_hc(f, 30003, "default", "c", 1, true);
  // The foreign file is left alone.
  CHECK(std::filesystem::is_regular_file(f.hc_sock(30002)));

  // The next update retries; once the path is free the port serves.
  std::filesystem::remove(f.hc_sock(30002));
  f.apply({{"default", "a", 30001, 1}, {"default", "b", 30002, 3}, {"default", "c", 30003, 1}});
  CHECK(f.srv->health_check_status()[1] ==
        health_check_port_status{30002, "default", "b", 3, true, {}});
  check_hc(f, 30002, "default", "b", 3, true);
  CHECK(f.m.health_check_ports.value() == 3);
}

TEST_CASE("200 health check ports and both servers are served by one thread") {
  fixture f;
  std::vector<desired_health_check> checks;
  for (uint16_t i = 0; i < 200; ++i) {
    checks.push_back({"ns", fmt::format("svc-{}", i), static_cast<uint16_t>(31000 + i), i % 3u});
  }
  f.apply(checks);
  for (uint16_t i = 0; i < 200; ++i) {
    check_hc(f, static_cast<uint16_t>(31000 + i), "ns", fmt::format("svc-{}", i), i % 3u, true);
  }
  REQUIRE(http_get(f.health_sock(), "/healthz"));
  REQUIRE(http_get(f.metrics_sock(), "/metrics"));
  const std::lock_guard lock(f.threads_mu);
  CHECK(f.requests == 202);
  CHECK(f.handler_threads == std::set<std::thread::id>{f.srv->loop_thread_id()});
  CHECK(f.srv->loop_thread_id() != std::this_thread::get_id());
}

TEST_CASE("set_health_checks from several threads while clients query; metrics written meanwhile") {
  fixture f;
  f.apply({{"default", "web", 30001, 1}});
  std::atomic<bool> stop_writers{false};
  std::thread updater([&] {
    // Flip the count between 1 and 2 a bounded number of times.
    for (uint32_t i = 0; i < 200 && !stop_writers; ++i) {
      f.srv->set_health_checks({{"default", "web", 30001, 1 + i % 2}});
      f.m.sync_proxy_rules_duration_seconds.observe(0.001 * i);
      f.m.datapath_packets_total.with({"pass"}).inc();
      f.srv->queued_update();
      f.srv->updated();
    }
  });
  std::thread scraper([&] {
    for (int i = 0; i < 50; ++i) {
      auto r = http_get(f.metrics_sock(), "/metrics");
      CHECK(r.has_value());  // no REQUIRE off the main thread: it would throw there
      CHECK((r && r->status == 200));
    }
  });
  for (int i = 0; i < 100; ++i) {
    auto r = http_get(f.hc_sock(30001), "/");
    REQUIRE(r);
    CHECK(r->status == 200);
    const auto weight = r->header("X-Load-Balancing-Endpoint-Weight");
    CHECK((weight == "1" || weight == "2"));
  }
  scraper.join();
  stop_writers = true;
  updater.join();
  f.apply({{"default", "web", 30001, 5}});
  check_hc(f, 30001, "default", "web", 5, true);
}

TEST_CASE("start-up errors: an occupied health address fails cleanly, nothing is left behind") {
  test::temp_dir dir;
  metrics::registry reg;
  metrics::agent_metrics m(reg);
  {
    std::ofstream occupy(dir.file("metrics.sock"));
  }
  http_options o;
  o.health_address = "unix:" + dir.file("health.sock");
  o.metrics_address = "unix:" + dir.file("metrics.sock");
  o.health_checks = health_check_bind::unix_directory(dir.path());
  auto s = http_endpoints::start(o, m);
  REQUIRE_FALSE(s);
  CHECK(s.error().code == std::errc::address_in_use);
  CHECK(s.error().message() ==
        "metrics server: bind unix:" + dir.file("metrics.sock") + ": Address already in use");
  // The health server's socket, bound before the failure, was removed again.
  CHECK_FALSE(std::filesystem::exists(dir.file("health.sock")));

  o.metrics_address = "localhost:10249";
  auto bad = http_endpoints::start(o, m);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == std::errc::invalid_argument);

  o.metrics_address = "";
  o.health_checks = health_check_bind::node_addresses({"10.0.0.1", "not-an-ip"});
  auto bad_bind = http_endpoints::start(o, m);
  REQUIRE_FALSE(bad_bind);
  CHECK(bad_bind.error().context == "health check bind address not-an-ip");
}

TEST_CASE("stop() closes everything and is idempotent; the destructor stops too") {
  fixture f;
  f.apply({{"default", "web", 30001, 1}});
  REQUIRE(http_get(f.health_sock(), "/livez"));
  f.srv->stop();
  CHECK_FALSE(http_get(f.health_sock(), "/livez"));
  CHECK_FALSE(http_get(f.metrics_sock(), "/metrics"));
  CHECK_FALSE(http_get(f.hc_sock(30001), "/"));
  CHECK_FALSE(std::filesystem::exists(f.health_sock()));
  CHECK_FALSE(std::filesystem::exists(f.hc_sock(30001)));
  f.srv->stop();
  const uint64_t gen = f.srv->set_health_checks({{"default", "web", 30001, 1}});
  CHECK_FALSE(f.srv->wait_applied(gen, std::chrono::milliseconds(100)));
}

TEST_CASE("servers can be disabled; the loop still applies health checks") {
  test::temp_dir dir;
  metrics::registry reg;
  metrics::agent_metrics m(reg);
  http_options o;
  o.health_address = "";
  o.metrics_address = "";
  o.health_checks = health_check_bind::unix_directory(dir.path());
  auto s = http_endpoints::start(o, m);
  REQUIRE(s);
  const uint64_t gen = (*s)->set_health_checks({{"default", "web", 30001, 2}});
  REQUIRE((*s)->wait_applied(gen, wait_timeout));
  auto r = http_get(dir.file("hc-30001.sock"), "/");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("health check ports: a port listed twice serves the first Service; port 0 is ignored") {
  fixture f;
  f.apply({{"a", "first", 30001, 1}, {"b", "zero", 0, 1}, {"b", "second", 30001, 0}});
  CHECK(f.srv->health_check_status() ==
        std::vector<health_check_port_status>{{30001, "a", "first", 1, true, {}}});
  check_hc(f, 30001, "a", "first", 1, true);
  f.apply({});
  CHECK(f.srv->health_check_status().empty());
  CHECK(f.m.health_check_ports.value() == 0);
  CHECK_FALSE(std::filesystem::exists(f.hc_sock(30001)));
}
