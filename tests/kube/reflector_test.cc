// Reflector against the fake API server: every case must converge, i.e. the recording sink's
// namespace/name -> resourceVersion view equals the objects the test created on the server,
// checked by polling with a deadline. Request logs (/requests) show what went over the wire.
#include "agent/sources/kube/reflector.h"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <memory>
#include <string>
#include <thread>

#include "tests/kube/harness.h"

using namespace sluice::kube;
using namespace sluice::kube::test;
using nlohmann::json;

namespace {

// What the server holds, as the test made it (namespace/name -> resourceVersion).
struct model {
  std::map<std::string, std::string> objects;
  const fake_apiserver* server;

  void put(const json& svc) {
    const std::string key = svc["metadata"].value("namespace", std::string()) + "/" +
                            svc["metadata"]["name"].get<std::string>();
    objects[key] = server->put("services", svc);
  }
  void add(const std::string& ns, const std::string& name) { put(make_service(ns, name)); }
  void del(const std::string& ns, const std::string& name) {
    server->del("services", ns, name);
    objects.erase(ns + "/" + name);
  }
};

bool converged(const recording_sink& sink, const model& m) {
  const bool ok = wait_until([&] { return sink.view() == m.objects; });
  if (!ok) {
    MESSAGE("sink has " << sink.view().size() << " objects, server " << m.objects.size());
  }
  return ok;
}

// Requests of one kind from the server's log.
std::vector<json> requests_where(const fake_apiserver& s, bool watch,
                                 const std::string& path = "/api/v1/services") {
  std::vector<json> out;
  for (const json& r : s.requests()) {
    if (r["path"] != path) {
      continue;
    }
    const bool is_watch = r["query"].value("watch", std::string()) == "1";
    if (is_watch == watch) {
      out.push_back(r);
    }
  }
  return out;
}

// A server with token auth (accepting "good-token") and a client configured with a token file.
struct token_env {
  temp_dir dir;
  std::string server_tokens = dir.write("server-tokens", "good-token,admin,1\n");
  std::string client_token = dir.write("client-token", "good-token\n");
  fake_apiserver server{dir, {.tls = true, .token_file = server_tokens}};
  model m{{}, &server};

  api_config config() const {
    api_config c = server.config();
    c.token_file = client_token;
    return c;
  }
};

}  // namespace

TEST_CASE("reflector: TLS + bearer token, list then watch adds/modifies/deletes") {
  token_env env;
  for (int i = 0; i < 5; ++i) {
    env.m.add("default", fmt::format("svc-{}", i));
  }
  recording_sink sink;
  const std::string list_rv = env.m.objects["default/svc-4"];
  reflector r(env.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, env.m));
  REQUIRE(env.server.wait_watches("services", 1));
  for (int i = 5; i < 10; ++i) {
    env.m.add("kube-system", fmt::format("svc-{}", i));
  }
  json changed = make_service("default", "svc-1");
  changed["spec"]["clusterIP"] = "10.96.0.99";
  env.m.put(changed);
  env.m.del("default", "svc-2");
  REQUIRE(converged(sink, env.m));
  CHECK(sink.object("default/svc-1")["spec"]["clusterIP"] == "10.96.0.99");
  CHECK(sink.object("default/svc-0")["kind"] == "Service");  // the resource's, as the sink fills in
  CHECK(sink.object("default/svc-0")["apiVersion"] == "v1");

  const auto& st = r.stats();
  CHECK(st.lists.load() == 1);
  CHECK(st.relists.load() == 0);
  CHECK(st.events.load() == 7);
  CHECK(st.errors_4xx.load() == 0);
  CHECK(st.errors_5xx.load() == 0);
  CHECK(st.errors_transport.load() == 0);
  CHECK(st.decode_errors.load() == 0);
  CHECK(st.last_sync_unix_ms.load() > 0);

  for (const json& req : env.server.requests()) {
    CHECK(req["authorization"] == "Bearer good-token");
    CHECK(req["status"] == 200);
  }
  const auto lists = requests_where(env.server, false);
  REQUIRE(lists.size() == 1);
  CHECK(lists[0]["query"]["limit"] == "500");
  CHECK_FALSE(lists[0]["query"].contains("continue"));
  CHECK_FALSE(lists[0]["query"].contains("resourceVersion"));
  const auto watches = requests_where(env.server, true);
  REQUIRE(watches.size() == 1);
  const json& q = watches[0]["query"];
  CHECK(q["allowWatchBookmarks"] == "true");
  CHECK(q["resourceVersion"] == list_rv);  // the watch starts where the list ended
  const int timeout = std::stoi(q["timeoutSeconds"].get<std::string>());
  CHECK(timeout >= 300);
  CHECK(timeout < 600);
}

// Every log line while it lives, at every level (the agent's default logger is replaced).
class log_capture {
 public:
  log_capture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~log_capture() { spdlog::set_default_logger(previous_); }
  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;
  std::string text() {
    spdlog::default_logger()->flush();
    return out_.str();
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream out_;
};

TEST_CASE("reflector: wrong token gets 401, then the rotated token file is picked up") {
  log_capture log;
  token_env env;
  env.dir.write("client-token", "stale-token\n");
  for (int i = 0; i < 3; ++i) {
    env.m.add("default", fmt::format("svc-{}", i));
  }
  recording_sink sink;
  reflector r(env.config(), service_options(), sink);
  r.start();
  REQUIRE(wait_until([&] { return r.stats().errors_4xx.load() >= 2; }));
  CHECK(sink.view().empty());
  bool saw_401 = false;
  for (const json& req : env.server.requests()) {
    saw_401 = saw_401 || (req["status"] == 401 && req["authorization"] == "Bearer stale-token");
  }
  CHECK(saw_401);
  env.dir.write("client-token", "good-token\n");  // the kubelet rotates the projected token
  REQUIRE(converged(sink, env.m));
  // The view is complete after the last item; list_end (and the stats) follow it.
  REQUIRE(wait_until([&] { return r.stats().lists.load() >= 1; }));
  CHECK(r.stats().lists.load() == 1);
  r.stop();
  // The failed requests were logged, without the token or the Authorization header.
  const std::string logged = log.text();
  CHECK_MESSAGE(logged.find("401") != std::string::npos, logged);
  CHECK_MESSAGE(logged.find("stale-token") == std::string::npos, logged);
  CHECK_MESSAGE(logged.find("good-token") == std::string::npos, logged);
  CHECK_MESSAGE(logged.find("Bearer") == std::string::npos, logged);
}

TEST_CASE("reflector: mutual TLS with a client certificate (files)") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true, .client_ca = true});
  model m{{}, &server};
  m.add("default", "a");
  api_config cfg = server.config();
  cfg.client_cert_file = tls_material::get().client_crt;
  cfg.client_key_file = tls_material::get().client_key;
  recording_sink sink;
  reflector r(cfg, service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  m.add("default", "b");
  REQUIRE(converged(sink, m));
  const json reqs = server.requests();
  REQUIRE(reqs.size() >= 2);
  for (const json& req : reqs) {
    CHECK(req["client_cert_cn"] == "sluice-test-client");
    CHECK(req["status"] == 200);
  }
}

TEST_CASE("reflector: TLS verification fails against a server with a certificate from another CA") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true});
  api_config cfg = server.config();
  // The client certificate is no CA: nothing the server presents chains to it.
  cfg.ca_file = tls_material::get().client_crt;
  recording_sink sink;
  reflector r(cfg, service_options(), sink);
  r.start();
  REQUIRE(wait_until([&] { return r.stats().errors_transport.load() >= 1; }));
  CHECK(r.stats().lists.load() == 0);
  CHECK(server.requests().empty());
}

TEST_CASE("reflector: kubeconfig with -data fields, and with file paths and tokenFile") {
  temp_dir dir;
  const std::string tokens = dir.write("server-tokens", "kc-token\n");
  fake_apiserver server(dir, {.tls = true, .client_ca = true, .token_file = tokens});
  model m{{}, &server};
  m.add("default", "one");
  const auto& t = tls_material::get();

  SUBCASE("-data fields with a client certificate") {
    const auto b64 = [](const std::string& path) {
      // The openssl CLI does the encoding so the decoder is checked against another codec.
      temp_dir tmp;
      const std::string out = (tmp.path() / "b64").string();
      REQUIRE(std::system(fmt::format("openssl base64 -A -in {} -out {}", path, out).c_str()) == 0);
      return read_file(out);
    };
    const std::string kc =
        dir.write("kubeconfig", fmt::format(R"(apiVersion: v1
kind: Config
current-context: test
clusters:
- name: fake
  cluster:
    server: https://kubernetes.test
    certificate-authority-data: {}
contexts:
- name: test
  context: {{cluster: fake, user: admin}}
users:
- name: admin
  user:
    client-certificate-data: {}
    client-key-data: {}
)",
                                            b64(t.ca_crt), b64(t.client_crt), b64(t.client_key)));
    api_config cfg = load_kubeconfig(kc);
    CHECK(cfg.ca_data == read_file(t.ca_crt));
    cfg.unix_socket = server.api_socket();
    recording_sink sink;
    reflector r(cfg, service_options(), sink);
    r.start();
    REQUIRE(converged(sink, m));
    for (const json& req : server.requests()) {
      CHECK(req["client_cert_cn"] == "sluice-test-client");
    }
  }
  SUBCASE("relative file paths and tokenFile") {
    std::filesystem::create_directories(dir.path() / "kc/pki");
    std::filesystem::copy_file(t.ca_crt, dir.path() / "kc/pki/ca.crt");
    dir.write("kc/token", "kc-token\n");
    const std::string kc = dir.write("kc/config", R"(current-context: test
clusters: [{name: fake, cluster: {server: "https://kubernetes.test:443", certificate-authority: pki/ca.crt}}]
contexts: [{name: test, context: {cluster: fake, user: bot}}]
users: [{name: bot, user: {tokenFile: token}}]
)");
    api_config cfg = load_kubeconfig(kc);
    CHECK(cfg.ca_file == (dir.path() / "kc/pki/ca.crt").string());
    CHECK(cfg.token_file == (dir.path() / "kc/token").string());
    cfg.unix_socket = server.api_socket();
    recording_sink sink;
    reflector r(cfg, service_options(), sink);
    r.start();
    REQUIRE(converged(sink, m));
    for (const json& req : server.requests()) {
      CHECK(req["authorization"] == "Bearer kc-token");
      CHECK(req["client_cert_cn"] == "");
    }
  }
}

TEST_CASE("reflector: in-cluster configuration from a service-account directory") {
  temp_dir dir;
  const std::string tokens = dir.write("server-tokens", "sa-token\n");
  fake_apiserver server(dir, {.tls = true, .token_file = tokens});
  model m{{}, &server};
  m.add("default", "kubernetes");
  std::filesystem::create_directories(dir.path() / "sa");
  dir.write("sa/token", "sa-token");
  std::filesystem::copy_file(tls_material::get().ca_crt, dir.path() / "sa/ca.crt");
  config_env env;
  env.service_host = fake_host;
  env.service_port = "443";
  env.service_account_dir = dir.path() / "sa";
  api_config cfg = resolve_api_config({}, env);
  CHECK(cfg.server == "https://kubernetes.test:443");
  cfg.unix_socket = server.api_socket();
  recording_sink sink;
  reflector r(cfg, service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
}

TEST_CASE("reflector: paging with max_page 3 over 50 objects") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  model m{{}, &server};
  for (int i = 0; i < 50; ++i) {
    m.add(i % 2 == 0 ? "a" : "b", fmt::format("svc-{:02}", i));
  }
  server.faults({{"max_page", 3}});
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  // The view is complete after the last item; list_end (and the stats) follow it.
  REQUIRE(wait_until([&] { return r.stats().lists.load() >= 1; }));
  CHECK(r.stats().list_pages.load() == 17);
  CHECK(r.stats().lists.load() == 1);
  const auto lists = requests_where(server, false);
  REQUIRE(lists.size() == 17);
  CHECK_FALSE(lists[0]["query"].contains("continue"));
  for (std::size_t i = 1; i < lists.size(); ++i) {
    CHECK(lists[i]["query"].contains("continue"));
    CHECK(lists[i]["status"] == 200);
  }
  CHECK(sink.list_begins() == 1);
  CHECK(sink.list_ends() == 1);
}

TEST_CASE("reflector: expired continue token mid-list restarts the list and converges") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  model m{{}, &server};
  for (int i = 0; i < 50; ++i) {
    m.add("default", fmt::format("svc-{:02}", i));
  }
  server.faults({{"max_page", 3}});
  recording_sink sink;
  bool compacted = false;
  sink.on_list_item = [&](int n) {
    // Page 2 is fetched while page 1 is delivered: once the server has answered it, compact,
    // so the continue token for page 3 (taken from page 2) is now too old.
    if (n == 3 && !compacted) {
      compacted = wait_until([&] { return requests_where(server, false).size() >= 2; },
                             std::chrono::seconds(10));
      server.faults({{"compact", true}});
    }
  };
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  // The view is complete after the last item; list_end (and the stats) follow it.
  REQUIRE(wait_until([&] { return r.stats().lists.load() >= 1; }));
  CHECK(compacted);
  CHECK(sink.list_aborts() == 1);
  CHECK(sink.list_ends() == 1);
  CHECK(r.stats().relists.load() == 1);
  CHECK(r.stats().lists.load() == 1);
  const auto lists = requests_where(server, false);
  REQUIRE(lists.size() == 3 + 17);
  CHECK(lists[1]["status"] == 200);
  CHECK(lists[2]["status"] == 410);
  CHECK(lists[2]["query"].contains("continue"));
  CHECK_FALSE(lists[3]["query"].contains("continue"));  // from scratch
  CHECK(lists[3]["status"] == 200);
}

TEST_CASE("reflector: the next list page is requested while the current page is delivered") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true});
  model m{{}, &server};
  for (int i = 0; i < 10; ++i) {
    m.add("default", fmt::format("svc-{:02}", i));
  }
  server.faults({{"max_page", 3}});
  recording_sink sink;
  int first_item_calls = 0;
  bool page2_seen_during_page1 = false;
  sink.on_list_item = [&](int n) {
    // The first item of page 1 is held until the server has received the page-2 request,
    // which only happens if that request does not wait for page 1's delivery.
    if (n == 1 && first_item_calls++ == 0) {
      page2_seen_during_page1 =
          wait_until([&] { return requests_where(server, false).size() >= 2; },
                     std::chrono::seconds(10));
    }
  };
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  // The view is complete after the last item; list_end (and the stats) follow it.
  REQUIRE(wait_until([&] { return r.stats().lists.load() >= 1; }));
  CHECK(page2_seen_during_page1);
  CHECK(r.stats().list_pages.load() == 4);
  CHECK(r.stats().lists.load() == 1);
  CHECK(sink.list_begins() == 1);
  CHECK(sink.list_ends() == 1);
  CHECK(sink.list_aborts() == 0);
  const auto lists = requests_where(server, false);
  REQUIRE(lists.size() == 4);
  for (std::size_t i = 1; i < lists.size(); ++i) {
    CHECK(lists[i]["query"].contains("continue"));
    CHECK(lists[i]["status"] == 200);
  }
}

TEST_CASE("reflector: stop() during a paged list ends promptly") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  model m{{}, &server};
  for (int i = 0; i < 10; ++i) {
    m.add("default", fmt::format("svc-{:02}", i));
  }
  server.faults({{"max_page", 3}});
  recording_sink sink;
  std::atomic<bool> in_list{false};
  std::atomic<bool> release{false};
  sink.on_list_item = [&](int n) {
    if (n == 1) {
      in_list = true;
      wait_until([&] { return release.load(); }, std::chrono::seconds(10));
    }
  };
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(wait_until([&] { return in_list.load(); }));
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    release = true;
  });
  const auto t0 = std::chrono::steady_clock::now();
  r.stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  releaser.join();
  CHECK(took < std::chrono::milliseconds(1000));
  CHECK(sink.list_ends() == 0);
  CHECK(sink.list_aborts() == 1);
}

TEST_CASE("reflector: watch streams split at random, byte by byte and mid-line") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true});
  model m{{}, &server};
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  REQUIRE(server.wait_watches("services", 1));
  std::uint64_t expected_events = 0;
  for (const char* mode : {"random", "bytewise", "midline"}) {
    CAPTURE(mode);
    server.faults({{"split", mode}});
    for (int i = 0; i < 60; ++i) {
      m.add("default", fmt::format("{}-{}", mode, i % 40));  // 40 adds, 20 modifies
    }
    for (int i = 0; i < 10; ++i) {
      m.del("default", fmt::format("{}-{}", mode, i));
    }
    expected_events += 70;
    REQUIRE(converged(sink, m));
    CHECK(r.stats().events.load() == expected_events);
  }
  CHECK(r.stats().decode_errors.load() == 0);
  CHECK(r.stats().lists.load() == 1);
  CHECK(r.stats().watches.load() == 1);
}

TEST_CASE("reflector: a >512 KB object arrives intact through a randomly split stream") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true});
  model m{{}, &server};
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(server.wait_watches("services", 1));
  server.faults({{"split", "random"}, {"large_every", 0}});
  std::string blob;
  blob.reserve(600 * 1024);
  for (int i = 0; blob.size() < 600 * 1024; ++i) {
    blob += fmt::format("{:08x}", static_cast<unsigned>(i) * 2654435761u);
  }
  json big = make_service("default", "big");
  big["metadata"]["annotations"] = {{"example.com/blob", blob}};
  m.put(big);
  m.add("default", "after-big");
  REQUIRE(converged(sink, m));
  CHECK(sink.object("default/big")["metadata"]["annotations"]["example.com/blob"] == blob);
  CHECK(r.stats().decode_errors.load() == 0);
}

TEST_CASE("reflector: BOOKMARK advances the resourceVersion used by the next watch") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false, .bookmark_interval_ms = 50});
  model m{{}, &server};
  m.add("default", "a");
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  REQUIRE(server.wait_watches("services", 1));
  // Writes to another resource move the global RV; only bookmarks can tell the services
  // watch about it.
  for (int i = 0; i < 3; ++i) {
    server.put("nodes", {{"metadata", {{"name", fmt::format("node-{}", i)}}}});
  }
  const std::string rv = server.state()["resourceVersion"];
  REQUIRE(wait_until([&] { return r.last_resource_version() == rv; }));
  CHECK(r.stats().bookmarks.load() >= 1);
  CHECK(r.stats().events.load() == 0);
  server.control("POST", "/reset_requests", json::object());
  server.faults({{"drop_watches", true}});
  REQUIRE(wait_until([&] { return !requests_where(server, true).empty(); }));
  const auto watches = requests_where(server, true);
  CHECK(watches[0]["query"]["resourceVersion"] == rv);
  CHECK(requests_where(server, false).empty());  // no relist
  CHECK(r.stats().lists.load() == 1);
}

TEST_CASE("reflector: dropped watches resume from the last RV without a relist") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true});
  model m{{}, &server};
  for (int i = 0; i < 5; ++i) {
    m.add("default", fmt::format("svc-{}", i));
  }
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  for (int round = 0; round < 3; ++round) {
    REQUIRE(server.wait_watches("services", 1));
    const std::string last = r.last_resource_version();
    server.control("POST", "/reset_requests", json::object());
    server.faults({{"drop_watches", true}});
    m.add("default", fmt::format("during-drop-{}", round));  // missed while disconnected
    m.del("default", fmt::format("svc-{}", round));
    REQUIRE(converged(sink, m));
    const auto watches = requests_where(server, true);
    REQUIRE(!watches.empty());
    CHECK(watches[0]["query"]["resourceVersion"] == last);
    CHECK(requests_where(server, false).empty());
    for (const json& w : watches) {
      const int timeout = std::stoi(w["query"]["timeoutSeconds"].get<std::string>());
      CHECK(timeout >= 300);
      CHECK(timeout < 600);
    }
  }
  CHECK(r.stats().lists.load() == 1);
  CHECK(r.stats().relists.load() == 0);
  CHECK(sink.list_begins() == 1);
}

TEST_CASE("reflector: watch ERROR 410 relists; deletions while disconnected are synthesised") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  model m{{}, &server};
  for (int i = 0; i < 8; ++i) {
    m.add("default", fmt::format("svc-{}", i));
  }
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  REQUIRE(server.wait_watches("services", 1));

  // An ERROR event with code 410 on the open watch.
  server.faults({{"error_410_on_watches", true}});
  REQUIRE(wait_until([&] { return r.stats().lists.load() == 2; }));
  CHECK(r.stats().relists.load() == 1);
  REQUIRE(converged(sink, m));

  // Keep the reflector out (every request fails), change things, compact so its RV is too
  // old, let it back in: the re-watch gets ERROR 410 and the relist must drop the deleted ones.
  REQUIRE(server.wait_watches("services", 1));
  server.faults({{"fail_next", {{"count", 100000}, {"status", 500}}}, {"drop_watches", true}});
  REQUIRE(wait_until([&] { return r.stats().errors_5xx.load() >= 2; }));
  m.del("default", "svc-1");
  m.del("default", "svc-4");
  m.del("default", "svc-7");
  m.add("default", "new-1");
  server.faults({{"compact", true}});
  server.faults({{"fail_next", nullptr}});
  REQUIRE(converged(sink, m));
  CHECK(sink.synthesized_deletes() == 3);
  CHECK(r.stats().lists.load() == 3);
  CHECK(r.stats().relists.load() == 2);
}

TEST_CASE("reflector: 500s and 503 with Retry-After back off, then converge") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  model m{{}, &server};
  m.add("default", "a");
  server.faults({{"fail_next", {{"count", 3}, {"status", 500}}}});
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(converged(sink, m));
  CHECK(r.stats().errors_5xx.load() == 3);
  REQUIRE(server.wait_watches("services", 1));

  server.control("POST", "/reset_requests", json::object());
  server.faults(
      {{"fail_next", {{"count", 1}, {"status", 503}, {"retry_after", 1}}}, {"drop_watches", true}});
  m.add("default", "b");
  REQUIRE(converged(sink, m));
  CHECK(r.stats().errors_5xx.load() == 4);
  const json reqs = server.requests();
  REQUIRE(reqs.size() >= 2);
  CHECK(reqs[0]["status"] == 503);
  // The server asked for one second; the reflector's own backoff is at most 200 ms here.
  CHECK(reqs[1]["time"].get<double>() - reqs[0]["time"].get<double>() >= 0.95);
  CHECK(r.stats().lists.load() == 1);

  server.faults(
      {{"fail_next", {{"count", 2}, {"status", 429}, {"retry_after", 0}}}, {"drop_watches", true}});
  m.add("default", "c");
  REQUIRE(converged(sink, m));
  CHECK(r.stats().errors_4xx.load() == 2);
}

TEST_CASE("reflector: a server that is gone is unreachable until it answers; wake() ends a backoff") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  model m{{}, &server};
  m.add("default", "a");
  recording_sink sink;
  reflector_options o = service_options();
  // One long backoff: after the first refused connection the reflector sleeps up to 30 s,
  // unless woken.
  o.backoff_initial = std::chrono::seconds(30);
  o.backoff_max = std::chrono::seconds(30);
  std::atomic<int> recovered{0};
  reflector r(server.config(), o, sink);
  r.set_on_recovered([&] { ++recovered; });
  r.start();
  REQUIRE(converged(sink, m));
  REQUIRE(server.wait_watches("services", 1));
  CHECK(r.stats().failing_since_unix_ms.load() == 0);
  CHECK(recovered.load() == 0);  // never failed: nothing to recover from

  const auto before_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  server.faults({{"down", true}});
  REQUIRE(wait_until([&] { return r.stats().failing_since_unix_ms.load() != 0; }));
  CHECK(r.stats().failing_since_unix_ms.load() >= before_ms);
  CHECK(r.stats().errors_transport.load() >= 1);
  m.add("default", "b");  // written while the server is gone
  server.faults({{"down", false}});
  r.wake();
  // Within two seconds of the wake-up, not after the 30 s backoff.
  CHECK(wait_until([&] { return sink.view() == m.objects; }, std::chrono::seconds(2)));
  CHECK(wait_until([&] { return r.stats().failing_since_unix_ms.load() == 0; }));
  CHECK(recovered.load() == 1);
  CHECK(r.stats().relists.load() == 0);  // resumed from the last resourceVersion
}

TEST_CASE("reflector: label and field selectors are sent as configured") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false});
  model m{{}, &server};
  m.put(make_service("default", "plain"));
  m.put(make_service("default", "labelled", {{"app", "web"}}));
  // Ignored by kube-proxy's selector: the server filters them out.
  server.put("services", make_service("default", "other-proxy",
                                      {{"service.kubernetes.io/service-proxy-name", "x"}}));
  server.put("services",
             make_service("default", "headless", {{"service.kubernetes.io/headless", ""}}));
  const std::string selector =
      "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";
  reflector_options o = service_options();
  o.label_selector = selector;
  o.field_selector = "metadata.namespace=default";
  recording_sink sink;
  reflector r(server.config(), o, sink);
  r.start();
  REQUIRE(converged(sink, m));
  REQUIRE(server.wait_watches("services", 1));
  m.put(make_service("default", "later"));
  server.put("services", make_service("default", "later-other",
                                      {{"service.kubernetes.io/service-proxy-name", "y"}}));
  m.add("default", "last");
  REQUIRE(converged(sink, m));
  for (const json& req : server.requests()) {
    CHECK(req["query"]["labelSelector"] == selector);
    CHECK(req["query"]["fieldSelector"] == "metadata.namespace=default");
  }
}

TEST_CASE("reflector: watches ending at timeoutSeconds are renewed from the last RV") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = false, .bookmark_interval_ms = 60000});
  model m{{}, &server};
  m.add("default", "a");
  reflector_options o = service_options();
  o.watch_timeout_min = std::chrono::seconds(1);
  o.watch_timeout_max = std::chrono::seconds(2);
  recording_sink sink;
  reflector r(server.config(), o, sink);
  r.start();
  REQUIRE(converged(sink, m));
  m.add("default", "b");
  REQUIRE(wait_until([&] { return r.stats().watches.load() >= 3; }));
  REQUIRE(converged(sink, m));
  CHECK(r.stats().lists.load() == 1);
  // stats().watches counts a watch just before its request is sent.
  REQUIRE(wait_until([&] { return requests_where(server, true).size() >= 3; }));
  const auto watches = requests_where(server, true);
  REQUIRE(watches.size() >= 3);
  for (const json& w : watches) {
    CHECK(w["query"]["timeoutSeconds"] == "1");
    CHECK(!w["query"]["resourceVersion"].get<std::string>().empty());
  }
  CHECK(watches[2]["query"]["resourceVersion"] == m.objects["default/b"]);
}

TEST_CASE("reflector: stop() ends an open watch quickly") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true});
  recording_sink sink;
  reflector r(server.config(), service_options(), sink);
  r.start();
  REQUIRE(server.wait_watches("services", 1));
  const auto t0 = std::chrono::steady_clock::now();
  r.stop();
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took < std::chrono::milliseconds(500));
  CHECK(wait_until([&] { return server.state()["open_watches"]["services"] == 0; }));
}

TEST_CASE("reflector: services, endpointslices and own-node reflectors share one token source") {
  token_env env;
  env.m.add("default", "web");
  const std::string slice_rv = env.server.put(
      "endpointslices", {{"metadata",
                          {{"name", "web-abc"},
                           {"namespace", "default"},
                           {"labels", {{"kubernetes.io/service-name", "web"}}}}},
                         {"addressType", "IPv4"},
                         {"endpoints", json::array({{{"addresses", {"10.0.0.5"}}}})},
                         {"ports", json::array({{{"port", 8080}, {"protocol", "TCP"}}})}});
  const auto tokens = std::make_shared<token_source>("", env.client_token);
  recording_sink services_sink, slices_sink;
  reflector services(env.config(), services_reflector(), services_sink, tokens);
  reflector slices(env.config(), endpointslices_reflector(), slices_sink, tokens);
  recording_sink node_sink;
  reflector node(env.config(), node_reflector("node-b"), node_sink, tokens);
  std::string node_b_rv;
  for (const char* name : {"node-a", "node-b", "node-c"}) {
    const std::string rv = env.server.put("nodes", {{"metadata", {{"name", name}}}});
    if (std::string_view(name) == "node-b") {
      node_b_rv = rv;
    }
  }
  // A slice of a headless service: the kube-proxy selector filters it out.
  env.server.put(
      "endpointslices",
      {{"metadata",
        {{"name", "headless-xyz"},
         {"namespace", "default"},
         {"labels",
          {{"kubernetes.io/service-name", "headless"}, {"service.kubernetes.io/headless", ""}}}}},
       {"addressType", "IPv4"},
       {"endpoints", json::array()},
       {"ports", json::array()}});
  services.start();
  slices.start();
  node.start();
  REQUIRE(converged(services_sink, env.m));
  const std::map<std::string, std::string> want_slices = {{"default/web-abc", slice_rv}};
  REQUIRE(wait_until([&] { return slices_sink.view() == want_slices; }));
  CHECK(slices_sink.object("default/web-abc")["kind"] == "EndpointSlice");
  CHECK(slices_sink.object("default/web-abc")["apiVersion"] == "discovery.k8s.io/v1");
  // Both reflectors' list and watch requests used the token read once (within a minute).
  REQUIRE(env.server.wait_watches("services", 1));
  REQUIRE(env.server.wait_watches("endpointslices", 1));
  const std::map<std::string, std::string> want_node = {{"/node-b", node_b_rv}};
  REQUIRE(wait_until([&] { return node_sink.view() == want_node; }));
  CHECK(node_sink.object("/node-b")["kind"] == "Node");
  REQUIRE(env.server.wait_watches("nodes", 1));
  for (const json& req : env.server.requests()) {
    if (req["path"] == "/api/v1/nodes") {
      CHECK(req["query"]["fieldSelector"] == "metadata.name=node-b");
    } else {
      CHECK(req["query"]["labelSelector"] == std::string(kube_proxy_label_selector));
    }
  }
  CHECK(tokens->reads() == 1);
}

TEST_CASE("reflector: tls-server-name decides the certificate name, not the URL host") {
  temp_dir dir;
  fake_apiserver server(dir, {.tls = true});
  model m{{}, &server};
  m.add("default", "a");
  api_config cfg = server.config();
  cfg.server = "https://10.0.0.1:6443";  // the certificate names kubernetes.test, 127.0.0.1
  SUBCASE("without it the name check fails") {
    recording_sink sink;
    reflector r(cfg, service_options(), sink);
    r.start();
    REQUIRE(wait_until([&] { return r.stats().errors_transport.load() >= 1; }));
    CHECK(r.stats().lists.load() == 0);
  }
  SUBCASE("with it the list succeeds") {
    cfg.tls_server_name = fake_host;
    recording_sink sink;
    reflector r(cfg, service_options(), sink);
    r.start();
    REQUIRE(converged(sink, m));
  }
}
