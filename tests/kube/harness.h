// Test harness of the kube client tests: a temporary directory, throwaway TLS material made
// with the openssl CLI, the fake API server (tests/kube/fake_apiserver.py) as a child process
// on Unix sockets, a client for its control socket, a recording reflector sink, and polling
// with deadlines.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "agent/sources/kube/reflector.h"

namespace sluice::kube::test {

/// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  /// Writes `content` to path()/name and returns the full path.
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

/// Reads a whole file (throws std::runtime_error when it cannot).
std::string read_file(const std::filesystem::path& p);

/// CA, server certificate (SAN DNS:kubernetes.test, IP:127.0.0.1) and client certificate
/// (CN sluice-test-client), made once per test binary.
struct tls_material {
  std::string ca_crt, server_crt, server_key, client_crt, client_key;  ///< file paths
  static const tls_material& get();
};

/// Host name in URLs to the fake server; the Unix socket carries the connection.
inline constexpr const char* fake_host = "kubernetes.test";

/// The fake API server as a child process. The destructor terminates and reaps it.
class fake_apiserver {
 public:
  struct options {
    bool tls = true;
    bool client_ca = false;
    std::string token_file;  ///< accepted tokens (server side); empty = no token auth
    int bookmark_interval_ms = 1000;
  };
  fake_apiserver(const temp_dir& dir, const options& opts);
  ~fake_apiserver();
  fake_apiserver(const fake_apiserver&) = delete;
  fake_apiserver& operator=(const fake_apiserver&) = delete;

  /// An api_config reaching this server (TLS verified against the test CA when tls is on).
  api_config config() const;

  /// One control request; returns {status, parsed body}. Throws on transport failure.
  std::pair<long, nlohmann::json> control(const std::string& method, const std::string& path,
                                          const nlohmann::json& body = nullptr) const;
  /// POST /objects; returns the new resourceVersion.
  std::string put(const std::string& resource, const nlohmann::json& object) const;
  /// POST /delete; returns the new resourceVersion.
  std::string del(const std::string& resource, const std::string& ns,
                  const std::string& name) const;
  void faults(const nlohmann::json& body) const;
  nlohmann::json requests() const;
  nlohmann::json state() const;
  /// POST /wait for open watches; true when reached within timeout.
  bool wait_watches(const std::string& resource, int n, int timeout_ms = 10000) const;

  const std::string& api_socket() const { return api_socket_; }

 private:
  bool tls_;
  std::string api_socket_, control_socket_;
  int pid_ = -1;
};

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns the last result.
bool wait_until(const std::function<bool()>& cond,
                std::chrono::milliseconds timeout = std::chrono::seconds(20));

/// A sink that keeps namespace/name -> resourceVersion like an informer's store, applying the
/// list semantics (objects not delivered between list_begin and list_end are deleted).
class recording_sink : public reflector_sink {
 public:
  void list_begin(std::string_view resource) override;
  void list_item(std::string_view resource, simdjson::ondemand::object& object) override;
  void list_end(std::string_view resource, std::string_view resource_version) override;
  void list_abort(std::string_view resource) override;
  void event(std::string_view resource, watch_event_type type,
             simdjson::ondemand::object& object) override;
  void synced(std::string_view resource, bool ok) override;

  std::map<std::string, std::string> view() const;
  nlohmann::json object(const std::string& key) const;
  int list_begins() const;
  int list_ends() const;
  int list_aborts() const;
  int events() const;
  /// Number of keys deleted at list_end (synthesised deletes).
  int synthesized_deletes() const;
  /// Called (without the sink lock) after each list item with the count of items of the
  /// current list so far.
  std::function<void(int)> on_list_item;

 private:
  mutable std::mutex mu_;
  std::map<std::string, nlohmann::json> objects_;
  std::set<std::string> seen_;
  int list_begins_ = 0, list_ends_ = 0, list_aborts_ = 0, events_ = 0, synth_deletes_ = 0;
  int items_in_list_ = 0;
};

/// `j` as the simdjson On-Demand object a reflector hands its sink (for calling a sink directly).
class ondemand_object {
 public:
  explicit ondemand_object(const nlohmann::json& j);
  ondemand_object(const ondemand_object&) = delete;
  ondemand_object& operator=(const ondemand_object&) = delete;
  operator simdjson::ondemand::object&() { return obj_; }

 private:
  simdjson::padded_string text_;
  simdjson::ondemand::parser parser_;
  simdjson::ondemand::document doc_;
  simdjson::ondemand::object obj_;
};

/// An On-Demand object read back into nlohmann::json (what the recording sink keeps).
nlohmann::json to_json(simdjson::ondemand::object& object);

/// A Service object with the given namespace/name and labels.
nlohmann::json make_service(const std::string& ns, const std::string& name,
                            const nlohmann::json& labels = nlohmann::json::object());

/// Test reflector options for services: fast backoff, otherwise defaults.
reflector_options service_options();

}  // namespace sluice::kube::test
