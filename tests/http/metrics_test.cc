// The Prometheus registry: exposition format, escaping, histograms, registration errors, collect
// hooks, the agent's declared metrics, and writers racing a scraper.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

#include "agent/metrics/agent_metrics.h"
#include "agent/metrics/registry.h"

using namespace sluice::metrics;

TEST_CASE("counters and gauges render with HELP, TYPE and sorted families and label sets") {
  registry r;
  counter& plain = r.add_counter("b_total", "A plain counter").get();
  gauge_family& g = r.add_gauge("a_entries", "Entries per map", {"map", "family"});
  plain.inc();
  plain.inc(2.5);
  plain.inc(-4);  // ignored: counters never go down
  g.with({"services", "v4"}).set(12);
  g.with({"backends", "v6"}).set(-3.25);
  g.with({"services", "v4"}).add(1);

  CHECK(r.render() ==
        "# HELP a_entries Entries per map\n"
        "# TYPE a_entries gauge\n"
        "a_entries{map=\"backends\",family=\"v6\"} -3.25\n"
        "a_entries{map=\"services\",family=\"v4\"} 13\n"
        "# HELP b_total A plain counter\n"
        "# TYPE b_total counter\n"
        "b_total 3.5\n");
}

TEST_CASE("an unlabelled metric is exposed at zero from registration; a labelled one once used") {
  registry r;
  r.add_counter("c_total", "c");
  r.add_counter("d_total", "d", {"reason"});
  CHECK(r.render() ==
        "# HELP c_total c\n"
        "# TYPE c_total counter\n"
        "c_total 0\n"
        "# HELP d_total d\n"
        "# TYPE d_total counter\n");
}

TEST_CASE("label values and HELP text are escaped") {
  registry r;
  r.add_counter("esc_total", "Help with \\ and\nnewline \"quotes kept\"", {"v"})
      .with({"a\"b\\c\nd"})
      .inc();
  CHECK(r.render() ==
        "# HELP esc_total Help with \\\\ and\\nnewline \"quotes kept\"\n"
        "# TYPE esc_total counter\n"
        "esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
  CHECK(escape_label_value("plain") == "plain");
}

TEST_CASE("values use the shortest round-trip form and Prometheus spellings of infinities") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(42) == "42");
  CHECK(format_value(0.005) == "0.005");
  CHECK(format_value(1.5e20) == "1.5e+20");
  CHECK(format_value(1741083941.5) == "1741083941.5");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
}

TEST_CASE("histograms: cumulative buckets with inclusive upper bounds, +Inf, sum and count") {
  registry r;
  histogram_family& f = r.add_histogram("lat_seconds", "Latency", {0.25, 0.5, 1}, {"op"});
  histogram& h = f.with({"sync"});
  for (const double v : {0.125, 0.25, 0.375, 0.5, 0.75, 2.0}) {
    h.observe(v);
  }
  CHECK(r.render() ==
        "# HELP lat_seconds Latency\n"
        "# TYPE lat_seconds histogram\n"
        "lat_seconds_bucket{op=\"sync\",le=\"0.25\"} 2\n"
        "lat_seconds_bucket{op=\"sync\",le=\"0.5\"} 4\n"
        "lat_seconds_bucket{op=\"sync\",le=\"1\"} 5\n"
        "lat_seconds_bucket{op=\"sync\",le=\"+Inf\"} 6\n"
        "lat_seconds_sum{op=\"sync\"} 4\n"
        "lat_seconds_count{op=\"sync\"} 6\n");

  registry r2;
  r2.add_histogram("u_seconds", "Unlabelled", {1, 2}).get().observe(1.5);
  CHECK(r2.render() ==
        "# HELP u_seconds Unlabelled\n"
        "# TYPE u_seconds histogram\n"
        "u_seconds_bucket{le=\"1\"} 0\n"
        "u_seconds_bucket{le=\"2\"} 1\n"
        "u_seconds_bucket{le=\"+Inf\"} 1\n"
        "u_seconds_sum 1.5\n"
        "u_seconds_count 1\n");
}

TEST_CASE("bucket helpers match prometheus.ExponentialBuckets / LinearBuckets") {
  CHECK(exponential_buckets(0.001, 2, 4) == std::vector<double>{0.001, 0.002, 0.004, 0.008});
  CHECK(linear_buckets(60, 5, 3) == std::vector<double>{60, 65, 70});
}

TEST_CASE("registration errors are start-up exceptions") {
  registry r;
  r.add_counter("x_total", "x");
  CHECK_THROWS_AS(r.add_gauge("x_total", "again"), std::invalid_argument);
  CHECK_THROWS_AS(r.add_counter("1bad", "name"), std::invalid_argument);
  CHECK_THROWS_AS(r.add_counter("bad-name", "name"), std::invalid_argument);
  CHECK_THROWS_AS(r.add_counter("ok_total", "label", {"le"}), std::invalid_argument);
  CHECK_THROWS_AS(r.add_counter("ok2_total", "label", {"__x"}), std::invalid_argument);
  CHECK_THROWS_AS(r.add_counter("ok3_total", "label", {"a-b"}), std::invalid_argument);
  CHECK_THROWS_AS(r.add_histogram("h1", "unsorted", {1, 0.5}), std::invalid_argument);
  CHECK_THROWS_AS(r.add_histogram("h2", "empty", {}), std::invalid_argument);
}

TEST_CASE("collect hooks run at scrape time, before rendering, not on render()") {
  registry r;
  gauge_family& entries = r.add_gauge("m_entries", "entries", {"map"});
  int calls = 0;
  r.add_collect_hook([&] {
    ++calls;
    entries.with({"lb4_services_v1"}).set(calls * 10);
  });
  CHECK(r.render() ==
        "# HELP m_entries entries\n"
        "# TYPE m_entries gauge\n");
  CHECK(r.scrape() ==
        "# HELP m_entries entries\n"
        "# TYPE m_entries gauge\n"
        "m_entries{map=\"lb4_services_v1\"} 10\n");
  CHECK(r.scrape().ends_with("m_entries{map=\"lb4_services_v1\"} 20\n"));
  CHECK(calls == 2);
}

TEST_CASE("agent_metrics declares kube-proxy and sluice names once") {
  registry r;
  agent_metrics m(r);
  m.sync_proxy_rules_duration_seconds.observe(0.003);
  m.sync_proxy_rules_no_local_endpoints_total.with({"external"}).set(2);
  m.datapath_packets_total.with({"no_backend"}).inc(7);
  m.map_capacity.with({"lb4_services_v1"}).set(65536);
  const std::string text = r.render();
  for (const char* line :
       {"# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram\n",
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 0\n",
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1\n",
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"16.384\"} 1\n",
        "kubeproxy_sync_proxy_rules_duration_seconds_count 1\n",
        "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\n",
        "# TYPE kubeproxy_network_programming_duration_seconds histogram\n",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"0\"} 0\n",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.25\"} 0\n",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"59\"} 0\n",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"115\"} 0\n",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"300\"} 0\n",
        "# TYPE kubeproxy_sync_proxy_rules_no_local_endpoints_total gauge\n",
        "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} 2\n",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total 0\n",
        "kubeproxy_sync_proxy_rules_service_changes_total 0\n",
        "sluice_datapath_packets_total{reason=\"no_backend\"} 7\n",
        "sluice_map_capacity{map=\"lb4_services_v1\"} 65536\n", "sluice_services 0\n",
        "sluice_agent_restarts_total 0\n", "# TYPE sluice_api_errors_total counter\n",
        "# TYPE sluice_conntrack_gc_deleted_total counter\n"}) {
    CAPTURE(line);
    CHECK(text.find(line) != std::string::npos);
  }
  // 2 + 59 + 12 + 7 explicit buckets after the leading 0, plus +Inf.
  size_t buckets = 0;
  for (size_t pos = 0;
       (pos = text.find("kubeproxy_network_programming_duration_seconds_bucket", pos)) !=
       std::string::npos;
       ++pos) {
    ++buckets;
  }
  CHECK(buckets == 1 + 2 + 59 + 12 + 7 + 1);
  CHECK_THROWS_AS(agent_metrics{r}, std::invalid_argument);
}

TEST_CASE("writers on other threads while scraping: exact totals, consistent histograms") {
  registry r;
  counter_family& drops = r.add_counter("drops_total", "drops", {"reason"});
  gauge& level = r.add_gauge("level", "level").get();
  histogram& h = r.add_histogram("obs", "obs", {1, 2, 3}).get();
  constexpr int iterations = 20000;
  constexpr int scrapes = 200;
  // The writers start once the scraper has begun, so the two overlap.
  std::atomic<bool> scraping{false};
  const auto wait_for_scraper = [&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!scraping.load() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
  };
  std::thread writer([&] {
    wait_for_scraper();
    for (int i = 0; i < iterations; ++i) {
      drops.with({i % 2 == 0 ? "even" : "odd"}).inc();
      level.set(i);
      h.observe(i % 4);
    }
  });
  std::thread writer2([&] {
    wait_for_scraper();
    for (int i = 0; i < iterations; ++i) {
      drops.with({"third"}).inc();
    }
  });
  scraping = true;
  for (int i = 0; i < scrapes; ++i) {
    const std::string text = r.scrape();
    // _count always equals the +Inf bucket, whatever the writer is doing.
    const size_t inf = text.find("obs_bucket{le=\"+Inf\"} ");
    const size_t cnt = text.find("obs_count ");
    REQUIRE(inf != std::string::npos);
    REQUIRE(cnt != std::string::npos);
    const auto value_at = [&](size_t pos) {
      const size_t sp = text.find(' ', pos);
      return text.substr(sp + 1, text.find('\n', sp) - sp - 1);
    };
    REQUIRE(value_at(inf) == value_at(cnt));
  }
  writer.join();
  writer2.join();
  CHECK(drops.with({"even"}).value() == iterations / 2);
  CHECK(drops.with({"odd"}).value() == iterations / 2);
  CHECK(drops.with({"third"}).value() == iterations);
  CHECK(level.value() == iterations - 1);
  const histogram::snapshot s = h.snap();
  CHECK(s.count == iterations);
  CHECK(s.cumulative == std::vector<uint64_t>{iterations / 2, iterations * 3 / 4, iterations,
                                              iterations});
  CHECK(s.sum == (0 + 1 + 2 + 3) * (iterations / 4));
}
