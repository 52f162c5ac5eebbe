// The HTTP layer of the Kubernetes API client: one libcurl easy handle (driven through a private
// multi handle so another thread can abort it within ~100 ms) per thread, TLS with the
// api_config's CA / client certificate / server name, bearer tokens re-read from a file, and
// two request shapes: get() for bounded responses (list pages) and stream() for watch bodies.
#pragma once

#include <atomic>
#include <chrono>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "agent/sources/kube/api_config.h"

namespace sluice::kube {

/// Bearer token provider shared by every client of one API server. A token file (projected,
/// rotating service-account token) is re-read at most once per `refresh`, and on the next
/// request after invalidate() (called on every HTTP 401). Thread-safe.
class token_source {
 public:
  token_source(std::string static_token, std::string token_file,
               std::chrono::seconds refresh = std::chrono::seconds(60));

  /// The token to send now ("" when none is configured). A failed re-read keeps the last good
  /// token (the kubelet replaces the file atomically, so a failure is transient).
  std::string current();

  /// Forces a re-read on the next current() (after a 401: bound tokens rotate).
  void invalidate();

  /// Number of times the token file was read (for tests and metrics).
  std::uint64_t reads() const { return reads_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;
  std::string token_;
  const std::string file_;
  const std::chrono::seconds refresh_;
  std::chrono::steady_clock::time_point last_read_{};
  bool stale_ = true;
  std::atomic<std::uint64_t> reads_{0};
};

/// A failed request. `message` names the method, URL and what failed (curl error text, or the
/// HTTP status with the API's Status message).
struct http_error {
  std::string message;
  long status = 0;       ///< HTTP status; 0 when no response arrived (transport error, abort)
  bool aborted = false;  ///< http_client::abort() was called, or the stream callback said stop
  std::optional<std::chrono::seconds> retry_after;  ///< Retry-After of a 429/503
  std::string reason;  ///< metav1.Status reason of the error body ("Expired", "Gone", ...)

  /// No HTTP response: connection refused/reset, TLS failure, timeout.
  bool transport() const { return status == 0 && !aborted; }
};

/// A complete 2xx response.
struct http_response {
  long status = 0;
  std::string body;
};

/// Per-request knobs.
struct request_options {
  /// Whole-transfer limit (0: none). Watches use timeoutSeconds plus a margin so a server that
  /// never closes the stream cannot wedge the reflector.
  std::chrono::seconds max_duration{0};
  /// Abort when fewer than 1 byte/s arrive for this long (0: off). Lists use it; watches do
  /// not, because an idle watch is healthy.
  std::chrono::seconds low_speed_time{60};
  /// Called once, on the client's thread, when the headers of a 2xx answer are complete: the
  /// server is there even if the body (an idle watch) is slow to come.
  std::function<void()> on_open;
};

/// HTTP client for one thread. Not thread-safe except abort().
class http_client {
 public:
  /// Receives body bytes of a 2xx stream as they arrive (chunk boundaries anywhere). Return
  /// false to end the transfer (stream() then fails with aborted = true).
  using data_fn = std::function<bool(std::string_view bytes)>;

  /// Prepares a handle for `cfg`. `tokens` may be shared between clients; null means the
  /// client builds its own from cfg.token / cfg.token_file.
  explicit http_client(const api_config& cfg, std::shared_ptr<token_source> tokens = nullptr);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// GET `path_and_query` (e.g. "/api/v1/services?limit=500"). A non-2xx status is an error
  /// carrying the status, Retry-After and the Status reason. A 401 invalidates the token.
  std::expected<http_response, http_error> get(std::string_view path_and_query,
                                               const request_options& opts = {});

  /// GET whose 2xx body goes to `on_data` while it arrives. Returns the HTTP status when the
  /// server ended the body cleanly; errors as for get().
  std::expected<long, http_error> stream(std::string_view path_and_query, const data_fn& on_data,
                                         const request_options& opts);

  /// Ends the transfer in progress (within ~100 ms) and makes every later call fail with
  /// aborted = true. Callable from any thread.
  void abort();

  /// True after abort().
  bool aborted() const { return aborted_.load(std::memory_order_acquire); }

  /// The full URL requested for `path_and_query`.
  std::string url(std::string_view path_and_query) const;

  /// The token provider in use.
  const std::shared_ptr<token_source>& tokens() const { return tokens_; }

 private:
  struct impl;
  std::expected<long, http_error> perform(std::string_view path_and_query, const data_fn* on_data,
                                          std::string* body, const request_options& opts);

  std::unique_ptr<impl> impl_;
  std::shared_ptr<token_source> tokens_;
  std::atomic<bool> aborted_{false};
};

}  // namespace sluice::kube
