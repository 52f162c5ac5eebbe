// libcurl implementation of the API client's HTTP layer (see http_client.h).
#include "agent/sources/kube/http_client.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <strings.h>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace sluice::kube {
namespace {

// Upper bound of a buffered (list page) body; a page of 500 EndpointSlices with managedFields
// stays far below it.
constexpr std::size_t max_body_bytes = std::size_t{512} << 20;
// Error bodies are Status objects; keep only enough to show the message.
constexpr std::size_t max_error_body_bytes = 64 * 1024;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.pop_back();
  }
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) {
    ++i;
  }
  return s.substr(i);
}

// scheme://authority/prefix split of the configured server URL.
struct url_parts {
  std::string scheme, host, port, prefix;
};

url_parts split_url(const std::string& url) {
  url_parts p;
  std::size_t pos = url.find("://");
  p.scheme = pos == std::string::npos ? "https" : url.substr(0, pos);
  std::string rest = pos == std::string::npos ? url : url.substr(pos + 3);
  const std::size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) {
    p.prefix = rest.substr(slash);
    while (!p.prefix.empty() && p.prefix.back() == '/') {
      p.prefix.pop_back();
    }
  }
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    p.host = authority.substr(0, close + 1);
    if (close != std::string::npos && close + 1 < authority.size() && authority[close + 1] == ':') {
      p.port = authority.substr(close + 2);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    p.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
      p.port = authority.substr(colon + 1);
    }
  }
  if (p.port.empty()) {
    p.port = p.scheme == "http" ? "80" : "443";
  }
  return p;
}

struct curl_slist_deleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using slist_ptr = std::unique_ptr<curl_slist, curl_slist_deleter>;

}  // namespace

// ---------------------------------------------------------------------------------------------

token_source::token_source(std::string static_token, std::string token_file,
                           std::chrono::seconds refresh)
    : token_(std::move(static_token)), file_(std::move(token_file)), refresh_(refresh) {}

std::string token_source::current() {
  std::lock_guard lock(mu_);
  if (file_.empty()) {
    return token_;
  }
  const auto now = std::chrono::steady_clock::now();
  if (stale_ || now - last_read_ >= refresh_) {
    reads_.fetch_add(1, std::memory_order_relaxed);
    std::ifstream in(file_, std::ios::binary);
    std::ostringstream ss;
    if (in) {
      ss << in.rdbuf();
    }
    std::string t = trim(ss.str());
    if (!in || t.empty()) {
      spdlog::warn("kube: cannot read token file {}; keeping the previous token", file_);
    } else {
      token_ = std::move(t);
    }
    last_read_ = now;
    stale_ = false;
  }
  return token_;
}

void token_source::invalidate() {
  std::lock_guard lock(mu_);
  stale_ = true;
}

// ---------------------------------------------------------------------------------------------

struct http_client::impl {
  CURLM* multi = nullptr;
  CURL* easy = nullptr;
  url_parts base;
  std::string url_host;     // host put in URLs (tls_server_name when set)
  std::string host_header;  // "Host: ..." when the URL host is not the real one
  std::string user_agent;
  slist_ptr connect_to;
  char errbuf[CURL_ERROR_SIZE] = {};

  // Per-transfer state read by the callbacks.
  const data_fn* on_data = nullptr;
  const std::function<void()>* on_open = nullptr;
  bool opened = false;
  std::string* body = nullptr;
  std::string error_body;
  std::optional<std::chrono::seconds> retry_after;
  bool callback_stopped = false;
  bool too_large = false;
  const std::atomic<bool>* aborted = nullptr;

  ~impl() {
    if (multi != nullptr && easy != nullptr) {
      curl_multi_remove_handle(multi, easy);
    }
    if (easy != nullptr) {
      curl_easy_cleanup(easy);
    }
    if (multi != nullptr) {
      curl_multi_cleanup(multi);
    }
  }

  static size_t on_header(char* data, size_t size, size_t n, void* self_v) {
    auto* self = static_cast<impl*>(self_v);
    const std::string_view line(data, size * n);
    if (line.starts_with("HTTP/")) {
      self->retry_after.reset();  // a new response (after 100-continue, for instance)
    } else if (line == "\r\n" || line == "\n") {
      long status = 0;
      curl_easy_getinfo(self->easy, CURLINFO_RESPONSE_CODE, &status);
      if (status >= 200 && status < 300 && !self->opened && self->on_open != nullptr &&
          *self->on_open) {
        self->opened = true;
        (*self->on_open)();
      }
    } else if (line.size() > 12 && strncasecmp(line.data(), "retry-after:", 12) == 0) {
      std::string v = trim(std::string(line.substr(12)));
      long secs = 0;
      const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
      // An HTTP-date form is legal but the API server sends seconds; ignore the date form.
      if (ec == std::errc() && ptr == v.data() + v.size() && secs >= 0) {
        self->retry_after = std::chrono::seconds(secs);
      }
    }
    return size * n;
  }

  static size_t on_write(char* data, size_t size, size_t n, void* self_v) {
    auto* self = static_cast<impl*>(self_v);
    const size_t len = size * n;
    if (self->aborted->load(std::memory_order_acquire)) {
      return 0;  // any count other than len fails the transfer
    }
    long status = 0;
    curl_easy_getinfo(self->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) {
      if (self->error_body.size() < max_error_body_bytes) {
        self->error_body.append(data,
                                std::min(len, max_error_body_bytes - self->error_body.size()));
      }
      return len;
    }
    if (self->on_data != nullptr) {
      if (!(*self->on_data)(std::string_view(data, len))) {
        self->callback_stopped = true;
        return 0;  // any count other than len fails the transfer
      }
      return len;
    }
    if (self->body->size() + len > max_body_bytes) {
      self->too_large = true;
      return 0;  // any count other than len fails the transfer
    }
    self->body->append(data, len);
    return len;
  }

  static int on_progress(void* self_v, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* self = static_cast<impl*>(self_v);
    return self->aborted->load(std::memory_order_acquire) ? 1 : 0;
  }
};

http_client::http_client(const api_config& cfg, std::shared_ptr<token_source> tokens)
    : impl_(std::make_unique<impl>()), tokens_(std::move(tokens)) {
  global_init();
  if (!tokens_) {
    tokens_ = std::make_shared<token_source>(cfg.token, cfg.token_file);
  }
  impl& d = *impl_;
  d.aborted = &aborted_;
  d.base = split_url(cfg.server);
  d.url_host = d.base.host;
  d.user_agent = cfg.user_agent;
  d.multi = curl_multi_init();
  d.easy = curl_easy_init();
  if (d.multi == nullptr || d.easy == nullptr) {
    throw std::runtime_error("curl_easy_init/curl_multi_init failed");
  }
  CURL* e = d.easy;
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, d.errbuf);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  // One connection per reflector thread anyway; HTTP/1.1 chunked watch streams are what every
  // API server and proxy in front of it supports.
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(e, CURLOPT_USERAGENT, d.user_agent.c_str());
  // gzip lists when the server offers it (client-go's default), except over a Unix socket: a
  // local peer (`kubectl proxy -u`) costs nothing to read from, so compressing 30 MB of lists
  // would only spend CPU on both ends.
  if (cfg.unix_socket.empty()) {
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  }
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &impl::on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &d);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &impl::on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &d);
  curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, &impl::on_progress);
  curl_easy_setopt(e, CURLOPT_XFERINFODATA, &d);
  if (!cfg.unix_socket.empty()) {
    curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, cfg.unix_socket.c_str());
  }

  // TLS. Blobs are copied by libcurl (CURL_BLOB_COPY), so cfg may go away.
  if (cfg.insecure_skip_tls_verify) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  }
  if (!cfg.ca_data.empty()) {
    curl_blob blob{const_cast<char*>(cfg.ca_data.data()), cfg.ca_data.size(), CURL_BLOB_COPY};
    curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
  } else if (!cfg.ca_file.empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, cfg.ca_file.c_str());
  }
  if (!cfg.client_cert_data.empty()) {
    curl_blob blob{const_cast<char*>(cfg.client_cert_data.data()), cfg.client_cert_data.size(),
                   CURL_BLOB_COPY};
    curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
    curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
  } else if (!cfg.client_cert_file.empty()) {
    curl_easy_setopt(e, CURLOPT_SSLCERT, cfg.client_cert_file.c_str());
    curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
  }
  if (!cfg.client_key_data.empty()) {
    curl_blob blob{const_cast<char*>(cfg.client_key_data.data()), cfg.client_key_data.size(),
                   CURL_BLOB_COPY};
    curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
    curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
  } else if (!cfg.client_key_file.empty()) {
    curl_easy_setopt(e, CURLOPT_SSLKEY, cfg.client_key_file.c_str());
    curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (!cfg.tls_server_name.empty() && cfg.tls_server_name != d.base.host) {
    // libcurl derives SNI and the name checked against the certificate from the URL's host, so
    // the URL names tls_server_name, CONNECT_TO sends the connection to the real host, and the
    // Host header keeps the real authority (client-go changes only the TLS ServerName).
    d.url_host = cfg.tls_server_name;
    const bool default_port = (d.base.scheme == "https" && d.base.port == "443") ||
                              (d.base.scheme == "http" && d.base.port == "80");
    d.host_header = default_port ? fmt::format("Host: {}", d.base.host)
                                 : fmt::format("Host: {}:{}", d.base.host, d.base.port);
    const std::string mapping =
        fmt::format("{}:{}:{}:{}", d.url_host, d.base.port, d.base.host, d.base.port);
    d.connect_to.reset(curl_slist_append(nullptr, mapping.c_str()));
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, d.connect_to.get());
  }
}

http_client::~http_client() = default;

std::string http_client::url(std::string_view path_and_query) const {
  const impl& d = *impl_;
  return fmt::format("{}://{}:{}{}{}", d.base.scheme, d.url_host, d.base.port, d.base.prefix,
                     path_and_query);
}

void http_client::abort() {
  aborted_.store(true, std::memory_order_release);
  curl_multi_wakeup(impl_->multi);
}

std::expected<long, http_error> http_client::perform(std::string_view path_and_query,
                                                     const data_fn* on_data, std::string* body,
                                                     const request_options& opts) {
  impl& d = *impl_;
  const std::string full_url = url(path_and_query);
  const auto fail = [&](std::string what) {
    http_error err;
    err.message = fmt::format("GET {}: {}", full_url, what);
    return std::unexpected(std::move(err));
  };
  if (aborted()) {
    auto err = fail("aborted");
    err.error().aborted = true;
    return err;
  }

  slist_ptr headers(curl_slist_append(nullptr, "Accept: application/json"));
  const std::string token = tokens_->current();
  if (!token.empty()) {
    headers.reset(curl_slist_append(headers.release(),
                                    fmt::format("Authorization: Bearer {}", token).c_str()));
  }
  if (!d.host_header.empty()) {
    headers.reset(curl_slist_append(headers.release(), d.host_header.c_str()));
  }
  CURL* e = d.easy;
  curl_easy_setopt(e, CURLOPT_URL, full_url.c_str());
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(e, CURLOPT_TIMEOUT, static_cast<long>(opts.max_duration.count()));
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, opts.low_speed_time.count() > 0 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, static_cast<long>(opts.low_speed_time.count()));
  d.on_data = on_data;
  d.on_open = &opts.on_open;
  d.opened = false;
  d.body = body;
  d.error_body.clear();
  d.retry_after.reset();
  d.callback_stopped = false;
  d.too_large = false;
  d.errbuf[0] = '\0';

  CURLcode result = CURLE_OK;
  bool done = false;
  curl_multi_add_handle(d.multi, e);
  while (!done) {
    int running = 0;
    const CURLMcode mc = curl_multi_perform(d.multi, &running);
    if (mc != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      snprintf(d.errbuf, sizeof d.errbuf, "curl_multi_perform: %s", curl_multi_strerror(mc));
      break;
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(d.multi, &queued)) {
      if (msg->msg == CURLMSG_DONE) {
        result = msg->data.result;
        done = true;
      }
    }
    if (done) {
      break;
    }
    if (aborted()) {
      result = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    // 100 ms bounds how late a stop is noticed even if a wakeup were lost.
    curl_multi_poll(d.multi, nullptr, 0, 100, nullptr);
  }
  curl_multi_remove_handle(d.multi, e);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, nullptr);

  long status = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (aborted() || d.callback_stopped) {
    auto err = fail(d.callback_stopped ? "stopped by the reader" : "aborted");
    err.error().aborted = true;
    err.error().status = 0;
    return err;
  }
  if (d.too_large) {
    return fail(fmt::format("response body larger than {} bytes", max_body_bytes));
  }
  if (result != CURLE_OK && (status == 0 || (status >= 200 && status < 300))) {
    // No response, or a good status line followed by a broken body (connection dropped
    // mid-stream): a transport error either way, the body is incomplete.
    return fail(fmt::format("{} (curl error {})",
                            d.errbuf[0] != '\0' ? d.errbuf : curl_easy_strerror(result),
                            static_cast<int>(result)));
  }
  if (status < 200 || status >= 300) {
    http_error err;
    err.status = status;
    err.retry_after = d.retry_after;
    std::string detail;
    const auto parsed = nlohmann::json::parse(d.error_body, nullptr, false);
    if (parsed.is_object()) {
      err.reason = parsed.value("reason", std::string());
      detail = parsed.value("message", std::string());
    }
    if (detail.empty()) {
      detail = d.error_body.substr(0, 200);
    }
    err.message =
        fmt::format("GET {}: HTTP {}{}{}", full_url, status, detail.empty() ? "" : ": ", detail);
    if (status == 401) {
      tokens_->invalidate();  // bound tokens rotate: read the file again before the next try
    }
    return std::unexpected(std::move(err));
  }
  return status;
}

std::expected<http_response, http_error> http_client::get(std::string_view path_and_query,
                                                          const request_options& opts) {
  http_response resp;
  auto r = perform(path_and_query, nullptr, &resp.body, opts);
  if (!r) {
    return std::unexpected(std::move(r.error()));
  }
  resp.status = *r;
  return resp;
}

std::expected<long, http_error> http_client::stream(std::string_view path_and_query,
                                                    const data_fn& on_data,
                                                    const request_options& opts) {
  return perform(path_and_query, &on_data, nullptr, opts);
}

}  // namespace sluice::kube
