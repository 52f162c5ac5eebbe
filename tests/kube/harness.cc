// Test harness implementation (see harness.h).
#include "tests/kube/harness.h"

#include <curl/curl.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace sluice::kube::test {
namespace fs = std::filesystem;

temp_dir::temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = fmt::format("{}/sluice-kube-XXXXXX", base != nullptr ? base : "/tmp");
  if (mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  path_ = tmpl;
}

temp_dir::~temp_dir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string temp_dir::write(const std::string& name, const std::string& content) const {
  const fs::path p = path_ / name;
  // Write then rename, as the kubelet does for projected tokens, so a reader never sees a
  // half-written file.
  const fs::path tmp = path_ / (name + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) {
      throw std::runtime_error("cannot write " + tmp.string());
    }
  }
  fs::rename(tmp, p);
  return p.string();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + p.string());
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

void run_or_throw(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) {
    throw std::runtime_error("command failed: " + cmd);
  }
}

}  // namespace

const tls_material& tls_material::get() {
  // Made once; the directory lives as long as the test binary.
  static temp_dir dir;
  static const tls_material m = [] {
    const std::string d = dir.path().string();
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    dir.write("server.ext",
              "subjectAltName=DNS:kubernetes.test,IP:127.0.0.1\n"
              "extendedKeyUsage=serverAuth\n");
    dir.write("client.ext", "extendedKeyUsage=clientAuth\n");
    run_or_throw(
        fmt::format("cd {} && openssl req -x509 {} -keyout ca.key -out ca.crt -days 2 -subj "
                    "/CN=sluice-test-ca 2>/dev/null",
                    d, ec));
    for (const char* who : {"server", "client"}) {
      const std::string cn =
          std::string(who) == "server" ? "kubernetes.test" : "sluice-test-client";
      run_or_throw(fmt::format(
          "cd {0} && openssl req {1} -keyout {2}.key -out {2}.csr -subj /CN={3} 2>/dev/null && "
          "openssl x509 -req -in {2}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {2}.crt "
          "-days 2 -extfile {2}.ext 2>/dev/null",
          d, ec, who, cn));
    }
    tls_material t;
    t.ca_crt = d + "/ca.crt";
    t.server_crt = d + "/server.crt";
    t.server_key = d + "/server.key";
    t.client_crt = d + "/client.crt";
    t.client_key = d + "/client.key";
    return t;
  }();
  return m;
}

namespace {

// $SLUICE_PYTHON, else the distribution's interpreter (the fake server needs only the standard
// library, and version-manager shims on PATH cost seconds per start), else python3 on PATH.
std::string python() {
  if (const char* p = std::getenv("SLUICE_PYTHON"); p != nullptr && *p != '\0') {
    return p;
  }
  if (access("/usr/bin/python3", X_OK) == 0) {
    return "/usr/bin/python3";
  }
  return "python3";
}

}  // namespace

fake_apiserver::fake_apiserver(const temp_dir& dir, const options& opts) : tls_(opts.tls) {
  api_socket_ = (dir.path() / "api.sock").string();
  control_socket_ = (dir.path() / "control.sock").string();
  std::vector<std::string> args = {python(),
                                   SLUICE_FAKE_APISERVER,
                                   "--unix",
                                   api_socket_,
                                   "--control",
                                   control_socket_,
                                   "--bookmark-interval-ms",
                                   std::to_string(opts.bookmark_interval_ms)};
  if (opts.tls) {
    const auto& t = tls_material::get();
    args.insert(args.end(), {"--tls-cert", t.server_crt, "--tls-key", t.server_key});
    if (opts.client_ca) {
      args.insert(args.end(), {"--client-ca", t.ca_crt});
    }
  }
  if (!opts.token_file.empty()) {
    args.insert(args.end(), {"--token-file", opts.token_file});
  }
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe2 failed");
  }
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) {
    close(out[0]);
    close(out[1]);
    throw std::runtime_error("fork failed");
  }
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  // Wait for "ready" with a deadline; on failure kill the child before throwing.
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (got.find("ready\n") == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{out[0], POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      break;
    }
    char buf[256];
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) {
      break;
    }
    got.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  if (got.find("ready\n") == std::string::npos) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    throw std::runtime_error("fake_apiserver did not become ready: " + got);
  }
}

fake_apiserver::~fake_apiserver() {
  if (pid_ <= 0) {
    return;
  }
  kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

api_config fake_apiserver::config() const {
  api_config cfg;
  cfg.server = fmt::format("{}://{}", tls_ ? "https" : "http", fake_host);
  cfg.unix_socket = api_socket_;
  if (tls_) {
    cfg.ca_file = tls_material::get().ca_crt;
  }
  cfg.user_agent = "sluice-kube-tests";
  return cfg;
}

namespace {
size_t append_body(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

std::pair<long, nlohmann::json> fake_apiserver::control(const std::string& method,
                                                        const std::string& path,
                                                        const nlohmann::json& body) const {
  CURL* e = curl_easy_init();
  if (e == nullptr) {
    throw std::runtime_error("curl_easy_init failed");
  }
  std::string out;
  const std::string url = "http://localhost" + path;
  const std::string payload = body.is_null() ? std::string() : body.dump();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, control_socket_.c_str());
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 60L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &append_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
  if (method == "POST") {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, payload.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  }
  const CURLcode rc = curl_easy_perform(e);
  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(e);
  if (rc != CURLE_OK) {
    throw std::runtime_error(
        fmt::format("control {} {}: {}", method, path, curl_easy_strerror(rc)));
  }
  return {status, nlohmann::json::parse(out, nullptr, false)};
}

std::string fake_apiserver::put(const std::string& resource, const nlohmann::json& object) const {
  auto [status, body] = control("POST", "/objects", {{"resource", resource}, {"object", object}});
  if (status != 200) {
    throw std::runtime_error(fmt::format("POST /objects: {} {}", status, body.dump()));
  }
  return body.at("resourceVersion").get<std::string>();
}

std::string fake_apiserver::del(const std::string& resource, const std::string& ns,
                                const std::string& name) const {
  auto [status, body] =
      control("POST", "/delete", {{"resource", resource}, {"namespace", ns}, {"name", name}});
  if (status != 200) {
    throw std::runtime_error(fmt::format("POST /delete: {} {}", status, body.dump()));
  }
  return body.at("resourceVersion").get<std::string>();
}

void fake_apiserver::faults(const nlohmann::json& body) const {
  auto [status, reply] = control("POST", "/faults", body);
  if (status != 200) {
    throw std::runtime_error(fmt::format("POST /faults: {} {}", status, reply.dump()));
  }
}

nlohmann::json fake_apiserver::requests() const { return control("GET", "/requests").second; }

nlohmann::json fake_apiserver::state() const { return control("GET", "/state").second; }

bool fake_apiserver::wait_watches(const std::string& resource, int n, int timeout_ms) const {
  return control("POST", "/wait", {{"open_watches", {{resource, n}}}, {"timeout_ms", timeout_ms}})
             .first == 200;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return cond();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

ondemand_object::ondemand_object(const nlohmann::json& j) : text_(j.dump()) {
  REQUIRE(parser_.iterate(text_).get(doc_) == simdjson::SUCCESS);
  REQUIRE(doc_.get_object().get(obj_) == simdjson::SUCCESS);
}

namespace {

nlohmann::json to_json(simdjson::ondemand::value v) {
  simdjson::ondemand::json_type type{};
  REQUIRE(v.type().get(type) == simdjson::SUCCESS);
  switch (type) {
    case simdjson::ondemand::json_type::object: {
      simdjson::ondemand::object o;
      REQUIRE(v.get_object().get(o) == simdjson::SUCCESS);
      return test::to_json(o);
    }
    case simdjson::ondemand::json_type::array: {
      nlohmann::json out = nlohmann::json::array();
      simdjson::ondemand::array a;
      REQUIRE(v.get_array().get(a) == simdjson::SUCCESS);
      for (auto item : a) {
        simdjson::ondemand::value x;
        REQUIRE(item.get(x) == simdjson::SUCCESS);
        out.push_back(to_json(x));
      }
      return out;
    }
    case simdjson::ondemand::json_type::string: {
      std::string_view s;
      REQUIRE(v.get_string().get(s) == simdjson::SUCCESS);
      return std::string(s);
    }
    case simdjson::ondemand::json_type::number:
      return nlohmann::json::parse(v.raw_json_token());
    case simdjson::ondemand::json_type::boolean: {
      bool b = false;
      REQUIRE(v.get_bool().get(b) == simdjson::SUCCESS);
      return b;
    }
    default:
      return nullptr;
  }
}

}  // namespace

nlohmann::json to_json(simdjson::ondemand::object& object) {
  nlohmann::json out = nlohmann::json::object();
  for (auto field : object) {
    std::string_view key;
    REQUIRE(field.unescaped_key().get(key) == simdjson::SUCCESS);
    std::string k(key);
    out[k] = to_json(field.value());
  }
  return out;
}

namespace {
std::string key_of(const nlohmann::json& obj) {
  const auto& md = obj.at("metadata");
  return md.value("namespace", std::string()) + "/" + md.value("name", std::string());
}
}  // namespace

void recording_sink::list_begin(std::string_view) {
  std::lock_guard lock(mu_);
  ++list_begins_;
  seen_.clear();
  items_in_list_ = 0;
}

void recording_sink::list_item(std::string_view resource, simdjson::ondemand::object& item) {
  // Items of a typed list carry no kind/apiVersion; record them as an informer would see them.
  nlohmann::json object = to_json(item);
  for (const reflector_options& o : {services_reflector(), endpointslices_reflector(),
                                     node_reflector("n"), pods_reflector("n")}) {
    if (o.resource == resource) {
      if (!object.contains("kind")) {
        object["kind"] = o.item_kind;
      }
      if (!object.contains("apiVersion")) {
        object["apiVersion"] = o.item_api_version;
      }
    }
  }
  int n;
  {
    std::lock_guard lock(mu_);
    const std::string k = key_of(object);
    objects_[k] = object;
    seen_.insert(k);
    n = ++items_in_list_;
  }
  if (on_list_item) {
    on_list_item(n);
  }
}

void recording_sink::list_end(std::string_view, std::string_view) {
  std::lock_guard lock(mu_);
  ++list_ends_;
  for (auto it = objects_.begin(); it != objects_.end();) {
    if (!seen_.contains(it->first)) {
      it = objects_.erase(it);
      ++synth_deletes_;
    } else {
      ++it;
    }
  }
}

void recording_sink::list_abort(std::string_view) {
  std::lock_guard lock(mu_);
  ++list_aborts_;
  seen_.clear();
}

void recording_sink::event(std::string_view, watch_event_type type,
                           simdjson::ondemand::object& item) {
  const nlohmann::json object = to_json(item);
  std::lock_guard lock(mu_);
  ++events_;
  const std::string k = key_of(object);
  if (type == watch_event_type::deleted) {
    objects_.erase(k);
  } else {
    objects_[k] = object;
  }
}

void recording_sink::synced(std::string_view, bool) {}

std::map<std::string, std::string> recording_sink::view() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::string> v;
  for (const auto& [k, obj] : objects_) {
    v[k] = obj["metadata"].value("resourceVersion", std::string());
  }
  return v;
}

nlohmann::json recording_sink::object(const std::string& key) const {
  std::lock_guard lock(mu_);
  const auto it = objects_.find(key);
  return it == objects_.end() ? nlohmann::json() : it->second;
}

int recording_sink::list_begins() const {
  std::lock_guard lock(mu_);
  return list_begins_;
}
int recording_sink::list_ends() const {
  std::lock_guard lock(mu_);
  return list_ends_;
}
int recording_sink::list_aborts() const {
  std::lock_guard lock(mu_);
  return list_aborts_;
}
int recording_sink::events() const {
  std::lock_guard lock(mu_);
  return events_;
}
int recording_sink::synthesized_deletes() const {
  std::lock_guard lock(mu_);
  return synth_deletes_;
}

nlohmann::json make_service(const std::string& ns, const std::string& name,
                            const nlohmann::json& labels) {
  return {{"apiVersion", "v1"},
          {"kind", "Service"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", labels}}},
          {"spec",
           {{"type", "ClusterIP"},
            {"clusterIP", "10.96.0.10"},
            {"ports", {{{"name", "http"}, {"port", 80}, {"protocol", "TCP"}}}}}}};
}

reflector_options service_options() {
  reflector_options o;
  o.resource = "services";
  o.path = "/api/v1/services";
  o.item_kind = "Service";
  o.item_api_version = "v1";
  o.backoff_initial = std::chrono::milliseconds(20);
  o.backoff_max = std::chrono::milliseconds(200);
  return o;
}

}  // namespace sluice::kube::test
