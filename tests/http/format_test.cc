// kube-proxy's exact formats (Go time strings, %q quoting, health bodies) and listen address
// parsing: pure functions, no sockets.
#include <doctest/doctest.h>

#include "agent/http/kube_format.h"
#include "agent/http/listen.h"
#include "agent/http/proxy_health.h"
#include "tests/http/http_client.h"

using namespace sluice;
using namespace sluice::http;
using sluice::test::utc;

TEST_CASE("go_time_string prints what Go's time.Time String() prints for UTC") {
  CHECK(go_time_string(utc(2025, 3, 4, 10, 25, 41, 500'000'000)) ==
        "2025-03-04 10:25:41.5 +0000 UTC");
  CHECK(go_time_string(utc(2025, 3, 4, 10, 25, 42, 100'000'000)) ==
        "2025-03-04 10:25:42.1 +0000 UTC");
  // No fraction at all when it is zero.
  CHECK(go_time_string(utc(2020, 6, 3, 23, 59, 53)) == "2020-06-03 23:59:53 +0000 UTC");
  // All nine digits when needed, trailing zeros trimmed otherwise.
  CHECK(go_time_string(utc(2020, 6, 3, 23, 59, 53, 688'063'083)) ==
        "2020-06-03 23:59:53.688063083 +0000 UTC");
  CHECK(go_time_string(utc(2020, 6, 3, 23, 59, 53, 120'000)) ==
        "2020-06-03 23:59:53.00012 +0000 UTC");
  CHECK(go_time_string(utc(1999, 12, 31, 0, 0, 0, 1)) == "1999-12-31 00:00:00.000000001 +0000 UTC");
  // Go's zero time.Time: what kube-proxy prints as lastUpdated before the first sync.
  CHECK(go_time_string(std::nullopt) == "0001-01-01 00:00:00 +0000 UTC");
}

TEST_CASE("go_quote escapes as Go's %q") {
  CHECK(go_quote("default") == "\"default\"");
  CHECK(go_quote("") == "\"\"");
  CHECK(go_quote("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(go_quote("t\tn\nr\r") == "\"t\\tn\\nr\\r\"");
  CHECK(go_quote(std::string_view("\x01\x7f", 2)) == "\"\\x01\\x7f\"");
}

TEST_CASE("service health body is kube-proxy's tab-indented JSON without a trailing newline") {
  CHECK(service_health_body("default", "web", 2, true) ==
        "{\n"
        "\t\"service\": {\n"
        "\t\t\"namespace\": \"default\",\n"
        "\t\t\"name\": \"web\"\n"
        "\t},\n"
        "\t\"localEndpoints\": 2,\n"
        "\t\"serviceProxyHealthy\": true\n"
        "}");
  CHECK(service_health_body("kube-system", "dns", 0, false) ==
        "{\n"
        "\t\"service\": {\n"
        "\t\t\"namespace\": \"kube-system\",\n"
        "\t\t\"name\": \"dns\"\n"
        "\t},\n"
        "\t\"localEndpoints\": 0,\n"
        "\t\"serviceProxyHealthy\": false\n"
        "}");
}

TEST_CASE("proxier /healthz and /livez bodies") {
  const auto last = utc(2025, 3, 4, 10, 25, 41, 500'000'000);
  const auto now = utc(2025, 3, 4, 10, 25, 42, 100'000'000);
  CHECK(proxier_healthz_body(last, now, true) ==
        "{\"lastUpdated\": \"2025-03-04 10:25:41.5 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:25:42.1 +0000 UTC\", \"nodeEligible\": true}");
  CHECK(proxier_healthz_body(std::nullopt, now, false) ==
        "{\"lastUpdated\": \"0001-01-01 00:00:00 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:25:42.1 +0000 UTC\", \"nodeEligible\": false}");
  CHECK(proxier_livez_body(last, now) ==
        "{\"lastUpdated\": \"2025-03-04 10:25:41.5 +0000 UTC\",\"currentTime\": \"2025-03-04 "
        "10:25:42.1 +0000 UTC\"}");
}

TEST_CASE("proxy_health follows kube-proxy's QueuedUpdate / Updated / healthTimeout") {
  test::fake_clock clock(utc(2025, 1, 1, 0, 0, 0));
  proxy_health h(std::chrono::seconds(60), [&clock] { return clock.now(); });

  SUBCASE("healthy while starting up, never updated") {
    const auto s = h.check();
    CHECK(s.healthy);
    CHECK_FALSE(s.last_updated.has_value());
    CHECK(s.current_time == utc(2025, 1, 1, 0, 0, 0));
    CHECK(s.node_eligible);
  }
  SUBCASE("a pending update turns unhealthy exactly at the timeout") {
    h.queued_update();
    clock.advance(std::chrono::seconds(59));
    CHECK(h.healthy());
    // A later queued update must not push the deadline out.
    h.queued_update();
    clock.advance(std::chrono::seconds(1) - std::chrono::nanoseconds(1));
    CHECK(h.healthy());
    clock.advance(std::chrono::nanoseconds(1));
    CHECK_FALSE(h.healthy());
    h.updated();
    const auto s = h.check();
    CHECK(s.healthy);
    CHECK(s.last_updated == utc(2025, 1, 1, 0, 1, 0));
  }
  SUBCASE("node eligibility is separate from proxy health") {
    h.set_node_eligible(false);
    const auto s = h.check();
    CHECK(s.healthy);
    CHECK_FALSE(s.node_eligible);
  }
}

TEST_CASE("parse_listen_address") {
  auto v4 = parse_listen_address("0.0.0.0:10256");
  REQUIRE(v4);
  CHECK(v4->type == listen_address::kind::inet);
  CHECK(v4->host == "0.0.0.0");
  CHECK(v4->port == 10256);
  CHECK(v4->to_string() == "0.0.0.0:10256");

  auto v6 = parse_listen_address("[::1]:10249");
  REQUIRE(v6);
  CHECK(v6->host == "::1");
  CHECK(v6->port == 10249);
  CHECK(v6->to_string() == "[::1]:10249");

  auto un = parse_listen_address("unix:/run/sluice/health.sock");
  REQUIRE(un);
  CHECK(un->type == listen_address::kind::unix_socket);
  CHECK(un->path == "/run/sluice/health.sock");
  CHECK(un->to_string() == "unix:/run/sluice/health.sock");

  for (const char* bad : {"localhost:10256", "10.0.0.1", "10.0.0.1:", "10.0.0.1:65536",
                          "10.0.0.1:12ab", "::1:80", "[10.0.0.1]:80", "[::1]80", "unix:", ""}) {
    CAPTURE(bad);
    auto r = parse_listen_address(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == std::errc::invalid_argument);
  }
  CHECK_FALSE(parse_listen_address("unix:/" + std::string(120, 'x')));
}

TEST_CASE("open_listener reports bind errors with errno and leaves foreign paths alone") {
  test::temp_dir dir;
  const std::string path = dir.file("busy.sock");
  auto first = open_listener({listen_address::kind::unix_socket, {}, 0, path});
  REQUIRE(first);
  auto second = open_listener({listen_address::kind::unix_socket, {}, 0, path});
  REQUIRE_FALSE(second);
  CHECK(second.error().code == std::errc::address_in_use);
  CHECK(second.error().message().starts_with("bind unix:" + path + ": "));
  CHECK(std::filesystem::exists(path));

  auto missing_dir = open_listener({listen_address::kind::unix_socket, {}, 0, dir.file("no/x")});
  REQUIRE_FALSE(missing_dir);
  CHECK(missing_dir.error().code == std::errc::no_such_file_or_directory);
}

TEST_CASE("node_eligible: not deleting and no ToBeDeletedByClusterAutoscaler taint") {
  node n;
  n.name = "node-a";
  CHECK(node_eligible(n));
  n.deleting = true;
  CHECK_FALSE(node_eligible(n));
  n.deleting = false;
  n.to_be_deleted_taint = true;
  CHECK_FALSE(node_eligible(n));
}
