// List/watch reflector for one API resource, on its own thread, with client-go's reflector
// semantics: paged LIST (consistent snapshot, expired continue -> list again from scratch),
// then WATCH from the list's resourceVersion with bookmarks, re-watch from the last seen RV
// when a stream ends, relist on 410, and backoff with full jitter on every other failure.
// Objects go to a reflector_sink one by one as pages and events arrive.
#pragma once

#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "agent/sources/kube/api_config.h"
#include "agent/sources/kube/http_client.h"
#include "agent/sources/kube/wire_format.h"

namespace sluice::kube {

/// Receiver of a reflector's objects. Every call comes from the reflector's thread; the sink
/// does its own locking. `object` is a simdjson On-Demand object, not yet iterated, reading the
/// page or event buffer in place: valid only during the call; the sink may reset() it to read
/// it more than once (e.g. metadata first, then the whole object).
class reflector_sink {
 public:
  virtual ~reflector_sink() = default;
  /// A (re)list starts. The items that follow are the complete state at one RV.
  virtual void list_begin(std::string_view resource) = 0;
  /// One object of the list. Items of a typed list carry no kind/apiVersion: they are the
  /// resource's (reflector_options::item_kind, item_api_version).
  virtual void list_item(std::string_view resource, simdjson::ondemand::object& object) = 0;
  /// The list is complete: objects not delivered since list_begin are gone (the sink
  /// synthesises their deletion).
  virtual void list_end(std::string_view resource, std::string_view resource_version) = 0;
  /// The list failed midway; keep the previous state. A new list_begin follows later.
  virtual void list_abort(std::string_view resource) = 0;
  /// An ADDED / MODIFIED / DELETED watch event.
  virtual void event(std::string_view resource, watch_event_type type,
                     simdjson::ondemand::object& object) = 0;
  /// Health signal: true after each completed list, false when a list attempt failed.
  virtual void synced(std::string_view resource, bool ok) = 0;
};

/// What to list and watch, and the timing knobs (defaults are client-go's).
struct reflector_options {
  std::string resource;  ///< name used for the sink and logs, e.g. "services"
  std::string path;      ///< collection path, e.g. "/api/v1/services"
  std::string label_selector;
  std::string field_selector;
  std::string item_kind;         ///< kind of list items (lists omit it), e.g. "Service"
  std::string item_api_version;  ///< apiVersion of list items, e.g. "v1"
  unsigned page_size = 500;      ///< LIMIT of each list page; 0 = unpaged
  /// Each watch asks for timeoutSeconds uniformly in [min, max).
  std::chrono::seconds watch_timeout_min{300}, watch_timeout_max{600};
  std::chrono::milliseconds backoff_initial{500}, backoff_max{30000};
  /// The backoff starts over after this long without a failure.
  std::chrono::seconds backoff_reset_after{60};
  std::size_t max_line_bytes = std::size_t{64} << 20;  ///< largest watch event accepted
  unsigned decode_error_log_every = 100;               ///< log the 1st, (N+1)th, ... malformed line
};

/// kube-proxy's label selector for Services and EndpointSlices: skip headless services and
/// services that name another proxy (service.kubernetes.io/service-proxy-name).
inline constexpr std::string_view kube_proxy_label_selector =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";

/// Cluster-wide Services (/api/v1/services), items completed with kind Service, apiVersion v1.
reflector_options services_reflector(
    std::string label_selector = std::string(kube_proxy_label_selector));

/// Cluster-wide EndpointSlices (/apis/discovery.k8s.io/v1/endpointslices).
reflector_options endpointslices_reflector(
    std::string label_selector = std::string(kube_proxy_label_selector));

/// The agent's own Node only (fieldSelector metadata.name=<node_name>).
reflector_options node_reflector(std::string_view node_name);

/// The Pods scheduled on our node (fieldSelector spec.nodeName=<node_name>), for hostPorts.
reflector_options pods_reflector(std::string_view node_name);

/// Counters, readable from any thread while the reflector runs.
struct reflector_stats {
  std::atomic<std::uint64_t> lists{0};             ///< completed lists
  std::atomic<std::uint64_t> list_pages{0};        ///< list pages received
  std::atomic<std::uint64_t> relists{0};           ///< lists forced by 410 (watch or continue)
  std::atomic<std::uint64_t> watches{0};           ///< watch requests started
  std::atomic<std::uint64_t> events{0};            ///< ADDED/MODIFIED/DELETED delivered
  std::atomic<std::uint64_t> bookmarks{0};         ///< BOOKMARK events
  std::atomic<std::uint64_t> errors_4xx{0};        ///< HTTP 4xx answers, and ERROR events 4xx
  std::atomic<std::uint64_t> errors_5xx{0};        ///< HTTP 5xx answers, and ERROR events 5xx
  std::atomic<std::uint64_t> errors_transport{0};  ///< no/incomplete response
  std::atomic<std::uint64_t> decode_errors{0};     ///< malformed JSON lines or pages
  /// Last time (ms since the Unix epoch) the view was known current: list end, event,
  /// bookmark or clean end of a watch. 0 = never.
  std::atomic<std::int64_t> last_sync_unix_ms{0};
  /// Since when (ms since the Unix epoch) requests have failed without one getting through
  /// (refused, timed out, 5xx, 401, ...); 0 while the API server answers. A 410 is an answer.
  std::atomic<std::int64_t> failing_since_unix_ms{0};
};

/// One resource's list/watch loop. start() spawns the thread; stop() (or the destructor)
/// aborts the transfer in flight and joins within about 100 ms.
class reflector {
 public:
  /// Throws std::runtime_error if libcurl cannot be initialised. `tokens` may be shared by the
  /// reflectors of one API server (null: built from cfg).
  reflector(const api_config& cfg, reflector_options opts, reflector_sink& sink,
            std::shared_ptr<token_source> tokens = nullptr);
  ~reflector();
  reflector(const reflector&) = delete;
  reflector& operator=(const reflector&) = delete;

  void start();
  void stop();

  /// Called on the reflector's thread when a request gets through after failures (before
  /// start()). kube_source wakes the other reflectors then: the server is back.
  void set_on_recovered(std::function<void()> fn) { on_recovered_ = std::move(fn); }
  /// Ends a backoff sleep now (any thread): the next attempt starts at once.
  void wake();

  const reflector_stats& stats() const { return stats_; }
  const reflector_options& options() const { return opts_; }

  /// The last resourceVersion seen (list, event or bookmark); "" before the first list.
  std::string last_resource_version() const;

 private:
  enum class outcome { ok, relist, retry, stopped };
  struct failure {
    outcome what = outcome::retry;
    std::optional<std::chrono::seconds> retry_after;
  };

  void run();
  failure list();
  failure watch();
  failure classify(const http_error& err, const char* what);
  void backoff(std::optional<std::chrono::seconds> retry_after);
  bool sleep_for(std::chrono::milliseconds d);  // false when stopping
  void set_rv(std::string rv);
  void mark_synced();
  void mark_failing();
  void mark_reachable();
  std::string query(bool for_watch, std::string_view continue_token,
                    unsigned timeout_seconds) const;
  using get_result = std::expected<http_response, http_error>;
  // Starts fetching the list page for `continue_token` on pager_ (created on first use) in
  // another thread; the future's destructor joins it.
  std::future<get_result> fetch_page_async(std::string continue_token);

  const api_config cfg_;
  const reflector_options opts_;
  reflector_sink& sink_;
  http_client client_;
  // Second client for list pages 2.., fetched while the previous page is delivered. Created
  // lazily under mu_; stop() aborts it too.
  std::unique_ptr<http_client> pager_;
  reflector_stats stats_;

  mutable std::mutex mu_;  // guards rv_, stopping_ (with cv_), pager_ creation
  std::condition_variable cv_;
  std::string rv_;
  bool stopping_ = false;
  bool woken_ = false;  // wake(): cut the current or next backoff sleep short
  std::function<void()> on_recovered_;

  std::mt19937_64 rng_;
  unsigned backoff_step_ = 0;
  std::chrono::steady_clock::time_point last_failure_{};
  std::chrono::steady_clock::time_point watch_started_{};
  // Used by the reflector's thread only: list pages and watch lines are read in place, with
  // buffers that grow to the largest page or line and are reused (wire_format.h).
  list_page_reader pages_;
  watch_line_decoder lines_;
  std::thread thread_;
};

}  // namespace sluice::kube
