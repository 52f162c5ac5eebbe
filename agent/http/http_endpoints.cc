// http_endpoints: one libevent event_base and one thread serving the health server, the metrics
// server and every healthCheckNodePort listener.
#include "agent/http/http_endpoints.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>

#include "agent/http/kube_format.h"
#include "agent/http/listen.h"

namespace sluice::http {

namespace {

struct event_base_deleter {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct event_deleter {
  void operator()(event* e) const { event_free(e); }
};
struct evhttp_deleter {
  void operator()(evhttp* h) const { evhttp_free(h); }
};
using event_base_ptr = std::unique_ptr<event_base, event_base_deleter>;
using event_ptr = std::unique_ptr<event, event_deleter>;
using evhttp_ptr = std::unique_ptr<evhttp, evhttp_deleter>;

// kube-proxy's handlers ignore the method; evhttp rejects methods outside this set with 405.
constexpr ev_uint16_t all_methods = EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                    EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH;

constexpr std::string_view text_plain = "text/plain; charset=utf-8";
constexpr std::string_view application_json = "application/json";
// What client_golang's promhttp answers for the text format.
constexpr std::string_view prometheus_text = "text/plain; version=0.0.4; charset=utf-8";

void init_libevent_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Cross-thread event_active() (set_health_checks, stop) needs a locking event_base.
    if (evthread_use_pthreads() != 0) {
      spdlog::critical("libevent: evthread_use_pthreads failed");
      std::abort();
    }
    event_set_log_callback([](int severity, const char* msg) {
      if (severity >= EVENT_LOG_ERR) {
        spdlog::error("libevent: {}", msg);
      } else if (severity == EVENT_LOG_WARN) {
        spdlog::warn("libevent: {}", msg);
      } else {
        spdlog::debug("libevent: {}", msg);
      }
    });
  });
}

const char* reason_phrase(int code) {
  switch (code) {
    case 200: return "OK";
    case 404: return "Not Found";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

struct header {
  const char* name;
  std::string value;
};

// One response: Content-Type, optional nosniff (Go handlers set it explicitly), extra headers.
void reply(evhttp_request* req, int code, std::string_view content_type, bool nosniff,
           std::string_view body, std::initializer_list<header> extra = {}) {
  evkeyvalq* h = evhttp_request_get_output_headers(req);
  evhttp_add_header(h, "Content-Type", std::string(content_type).c_str());
  if (nosniff) {
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
  }
  for (const header& x : extra) {
    evhttp_add_header(h, x.name, x.value.c_str());
  }
  if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
    // evhttp would send the body on HEAD too; Go's server announces its length and drops it.
    evhttp_add_header(h, "Content-Length", std::to_string(body.size()).c_str());
  } else {
    evbuffer_add(evhttp_request_get_output_buffer(req), body.data(), body.size());
  }
  evhttp_send_reply(req, code, reason_phrase(code), nullptr);
}

// Go's http.NotFound (what a ServeMux answers for unregistered paths).
void not_found(evhttp_request* req) {
  reply(req, 404, text_plain, true, "404 page not found\n");
}

// The decoded path of the request URI ("/" when empty), as Go's r.URL.Path.
std::string request_path(evhttp_request* req) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  if (raw == nullptr || *raw == '\0') {
    return "/";
  }
  size_t n = 0;
  char* decoded = evhttp_uridecode(raw, 0, &n);
  if (decoded == nullptr) {
    return raw;
  }
  std::string out(decoded, n);
  std::free(decoded);
  return out;
}

// True when the query string has parameter `key` (with or without a value), as Go's
// r.URL.Query()[key] lookup.
bool has_query_key(evhttp_request* req, std::string_view key) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* q = uri != nullptr ? evhttp_uri_get_query(uri) : nullptr;
  std::string_view rest = q != nullptr ? q : "";
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    if (pair.substr(0, pair.find('=')) == key) {
      return true;
    }
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
  }
  return false;
}

bool is_v6_unavailable(const error& e) {
  return e.code == std::errc::address_family_not_supported ||
         e.code == std::errc::address_not_available;
}

}  // namespace

struct http_endpoints::impl {
  impl(http_options o, metrics::agent_metrics& mm)
      : opts(std::move(o)), m(mm), health(opts.health_timeout, opts.clock) {
    health.set_source(opts.source_unreachable_since);
  }

  // One healthCheckNodePort: its evhttp (one or more listening sockets) and what it reports.
  struct hc_listener {
    impl* owner = nullptr;
    uint16_t port = 0;
    std::string namespace_;
    std::string name;
    uint32_t local_endpoints = 0;
    evhttp_ptr http;
    std::vector<std::string> unix_paths;  // bound by us: removed when the port closes

    hc_listener() = default;
    hc_listener(const hc_listener&) = delete;
    hc_listener& operator=(const hc_listener&) = delete;
    ~hc_listener() {
      http.reset();  // closes the listeners and every open connection
      for (const std::string& p : unix_paths) {
        ::unlink(p.c_str());
      }
    }
  };

  ~impl() { close_all(); }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  http_options opts;
  metrics::agent_metrics& m;
  proxy_health health;

  // Declared before the libevent objects that belong to it, so destroyed after them.
  event_base_ptr base;
  evhttp_ptr health_http;
  evhttp_ptr metrics_http;
  std::vector<std::string> server_unix_paths;
  event_ptr apply_ev;
  event_ptr stop_ev;
  std::thread thread;
  std::thread::id loop_id;

  // Loop thread only (and the stopping thread after the join).
  std::map<uint16_t, std::unique_ptr<hc_listener>> hc;

  mutable std::mutex mu;  // guards what follows
  mutable std::condition_variable applied_cv;
  std::optional<std::vector<desired_health_check>> pending;
  uint64_t requested_gen = 0;
  uint64_t applied_gen = 0;
  bool stopped = false;
  std::vector<health_check_port_status> status;

  // Closes every listener and connection and removes the socket files we bound. Called with
  // the loop stopped (or never started).
  void close_all() {
    hc.clear();
    health_http.reset();
    metrics_http.reset();
    for (const std::string& path : server_unix_paths) {
      ::unlink(path.c_str());
    }
    server_unix_paths.clear();
  }

  void configure(evhttp* h) const {
    evhttp_set_timeout(h, static_cast<int>(opts.connection_timeout.count()));
    evhttp_set_allowed_methods(h, all_methods);
    evhttp_set_max_headers_size(h, 16 * 1024);
    evhttp_set_max_body_size(h, 64 * 1024);
  }

  result<evhttp_ptr> open_server(const std::string& spec, void (*cb)(evhttp_request*, void*)) {
    auto addr = parse_listen_address(spec);
    if (!addr) {
      return std::unexpected(addr.error());
    }
    auto fd = open_listener(*addr);
    if (!fd) {
      return std::unexpected(fd.error());
    }
    if (addr->type == listen_address::kind::unix_socket) {
      server_unix_paths.push_back(addr->path);  // ours from here on, whatever happens next
    }
    evhttp_ptr h(evhttp_new(base.get()));
    if (!h) {
      return std::unexpected(error{std::make_error_code(std::errc::not_enough_memory),
                                   "evhttp_new for " + spec});
    }
    configure(h.get());
    if (evhttp_accept_socket_with_handle(h.get(), fd->get()) == nullptr) {
      return std::unexpected(error{std::make_error_code(std::errc::not_enough_memory),
                                   "evhttp_accept_socket for " + spec});
    }
    fd->release();  // the evhttp listener closes it
    evhttp_set_gencb(h.get(), cb, this);
    return h;
  }

  // The listen addresses of one healthCheckNodePort.
  std::vector<listen_address> hc_addresses(uint16_t port) const {
    std::vector<listen_address> out;
    const health_check_bind& b = opts.health_checks;
    switch (b.kind) {
      case health_check_bind::mode::unix_dir:
        out.push_back({listen_address::kind::unix_socket, {}, 0,
                       fmt::format("{}/hc-{}.sock", b.dir, port)});
        break;
      case health_check_bind::mode::addresses:
        for (const std::string& a : b.addresses) {
          out.push_back({listen_address::kind::inet, a, port, {}});
        }
        break;
      case health_check_bind::mode::all:
        out.push_back({listen_address::kind::inet, "0.0.0.0", port, {}});
        out.push_back({listen_address::kind::inet, "::", port, {}});
        break;
    }
    return out;
  }

  // Opens every listener of `l->port`; all or nothing (as kube-proxy, so a retry starts clean).
  std::optional<error> open_hc(hc_listener& l) {
    l.http.reset(evhttp_new(base.get()));
    if (!l.http) {
      return error{std::make_error_code(std::errc::not_enough_memory), "evhttp_new"};
    }
    configure(l.http.get());
    evhttp_set_gencb(l.http.get(), &impl::on_hc_request, &l);
    for (const listen_address& a : hc_addresses(l.port)) {
      auto fd = open_listener(a);
      if (!fd) {
        if (opts.health_checks.kind == health_check_bind::mode::all && a.host == "::" &&
            is_v6_unavailable(fd.error())) {
          continue;  // no IPv6 on this node: 0.0.0.0 alone is "all addresses"
        }
        return fd.error();
      }
      if (a.type == listen_address::kind::unix_socket) {
        l.unix_paths.push_back(a.path);  // removed with `l`, also if the next steps fail
      }
      if (evhttp_accept_socket_with_handle(l.http.get(), fd->get()) == nullptr) {
        return error{std::make_error_code(std::errc::not_enough_memory),
                     "evhttp_accept_socket for " + a.to_string()};
      }
      fd->release();
    }
    return std::nullopt;
  }

  void apply(const std::vector<desired_health_check>& want) {
    std::map<uint16_t, const desired_health_check*> by_port;
    for (const desired_health_check& w : want) {
      if (w.port == 0) {
        spdlog::warn("health check for {}/{} has port 0, ignored", w.namespace_, w.name);
        continue;
      }
      if (!by_port.emplace(w.port, &w).second) {
        spdlog::warn("healthCheckNodePort {} claimed by {}/{} and {}/{}; serving the first",
                     w.port, by_port[w.port]->namespace_, by_port[w.port]->name, w.namespace_,
                     w.name);
      }
    }
    for (auto it = hc.begin(); it != hc.end();) {
      if (!by_port.contains(it->first)) {
        spdlog::info("closing healthCheckNodePort {} ({}/{})", it->first, it->second->namespace_,
                     it->second->name);
        it = hc.erase(it);
      } else {
        ++it;
      }
    }
    std::vector<health_check_port_status> st;
    for (const auto& [port, w] : by_port) {
      health_check_port_status s{port, w->namespace_, w->name, w->local_endpoints, true, {}};
      auto it = hc.find(port);
      if (it != hc.end()) {
        // Same port: keep the sockets (and the LB's connections), take the new values.
        it->second->namespace_ = w->namespace_;
        it->second->name = w->name;
        it->second->local_endpoints = w->local_endpoints;
      } else {
        auto l = std::make_unique<hc_listener>();
        l->owner = this;
        l->port = port;
        l->namespace_ = w->namespace_;
        l->name = w->name;
        l->local_endpoints = w->local_endpoints;
        if (auto err = open_hc(*l)) {
          spdlog::error("healthCheckNodePort {} for {}/{}: {} (retried on the next update)", port,
                        w->namespace_, w->name, err->message());
          m.health_check_bind_errors_total.inc();
          s.serving = false;
          s.error = err->message();
        } else {
          spdlog::info("serving healthCheckNodePort {} for {}/{}", port, w->namespace_, w->name);
          hc.emplace(port, std::move(l));
        }
      }
      st.push_back(std::move(s));
    }
    m.health_check_ports.set(static_cast<double>(hc.size()));
    const std::lock_guard lock(mu);
    status = std::move(st);
  }

  void notify_request() const {
    if (opts.on_request) {
      opts.on_request();
    }
  }

  static void on_apply(evutil_socket_t, short, void* arg) {
    auto* self = static_cast<impl*>(arg);
    std::optional<std::vector<desired_health_check>> want;
    uint64_t gen = 0;
    {
      const std::lock_guard lock(self->mu);
      want.swap(self->pending);
      gen = self->requested_gen;
    }
    if (want) {
      self->apply(*want);
    }
    {
      const std::lock_guard lock(self->mu);
      self->applied_gen = std::max(self->applied_gen, gen);
    }
    self->applied_cv.notify_all();
  }

  static void on_stop(evutil_socket_t, short, void* arg) {
    event_base_loopbreak(static_cast<impl*>(arg)->base.get());
  }

  static void on_hc_request(evhttp_request* req, void* arg) {
    const auto* l = static_cast<const hc_listener*>(arg);
    l->owner->notify_request();
    const bool proxy_healthy = l->owner->health.healthy();
    const int code = l->local_endpoints != 0 && proxy_healthy ? 200 : 503;
    reply(req, code, application_json, true,
          service_health_body(l->namespace_, l->name, l->local_endpoints, proxy_healthy),
          {{"X-Load-Balancing-Endpoint-Weight", std::to_string(l->local_endpoints)}});
  }

  static void on_health_request(evhttp_request* req, void* arg) {
    auto* self = static_cast<impl*>(arg);
    self->notify_request();
    const std::string path = request_path(req);
    const bool healthz = path == "/healthz";
    if (!healthz && path != "/livez") {
      not_found(req);
      return;
    }
    const proxy_health::status s = self->health.check();
    // /livez stays kube-proxy's: restarting the agent cannot bring the API server back.
    const bool ok = healthz ? s.healthy && s.node_eligible && !s.source_stale : s.healthy;
    // kube-proxy reports lastUpdated = now while healthy ("recent if the server is healthy"),
    // for compatibility with releases where it was the time of the last sync loop run.
    const std::optional<time_point> last = ok ? std::optional(s.current_time) : s.last_updated;
    const int code = ok ? 200 : 503;
    (healthz ? self->m.proxy_healthz_total : self->m.proxy_livez_total)
        .with({std::to_string(code)})
        .inc();
    reply(req, code, application_json, true,
          healthz ? proxier_healthz_body(last, s.current_time, s.node_eligible)
                  : proxier_livez_body(last, s.current_time));
  }

  static void on_metrics_request(evhttp_request* req, void* arg) {
    auto* self = static_cast<impl*>(arg);
    self->notify_request();
    const std::string path = request_path(req);
    if (path == "/metrics") {
      reply(req, 200, prometheus_text, false, self->m.reg.scrape());
    } else if (path == "/proxyMode") {
      reply(req, 200, text_plain, true, self->opts.proxy_mode);
    } else if (path == "/healthz" || path == "/healthz/ping") {
      // k8s.io/apiserver healthz.InstallHandler with its default ping check.
      const bool verbose = path == "/healthz" && has_query_key(req, "verbose");
      reply(req, 200, text_plain, true, verbose ? "[+]ping ok\nhealthz check passed\n" : "ok");
    } else {
      not_found(req);
    }
  }
};

http_endpoints::http_endpoints(std::unique_ptr<impl> p) : impl_(std::move(p)) {}

http_endpoints::~http_endpoints() { stop(); }

result<std::unique_ptr<http_endpoints>> http_endpoints::start(http_options options,
                                                              metrics::agent_metrics& metrics) {
  init_libevent_once();
  const health_check_bind& b = options.health_checks;
  if (b.kind == health_check_bind::mode::unix_dir && b.dir.empty()) {
    return std::unexpected(error{std::make_error_code(std::errc::invalid_argument),
                                 "health check bind: empty unix directory"});
  }
  if (b.kind == health_check_bind::mode::addresses) {
    if (b.addresses.empty()) {
      return std::unexpected(error{std::make_error_code(std::errc::invalid_argument),
                                   "health check bind: no node addresses"});
    }
    for (const std::string& a : b.addresses) {
      const std::string spec = a.find(':') != std::string::npos ? "[" + a + "]:0" : a + ":0";
      if (auto parsed = parse_listen_address(spec); !parsed) {
        return std::unexpected(error{parsed.error().code, "health check bind address " + a});
      }
    }
  }

  auto p = std::make_unique<impl>(std::move(options), metrics);
  p->base.reset(event_base_new());
  if (!p->base) {
    return std::unexpected(
        error{std::make_error_code(std::errc::not_enough_memory), "event_base_new"});
  }
  if (!p->opts.health_address.empty()) {
    auto h = p->open_server(p->opts.health_address, &impl::on_health_request);
    if (!h) {
      return std::unexpected(
          error{h.error().code, "health server: " + h.error().context});
    }
    p->health_http = std::move(*h);
  }
  if (!p->opts.metrics_address.empty()) {
    auto h = p->open_server(p->opts.metrics_address, &impl::on_metrics_request);
    if (!h) {
      // ~impl closes the health server and removes its socket file, if any.
      return std::unexpected(
          error{h.error().code, "metrics server: " + h.error().context});
    }
    p->metrics_http = std::move(*h);
  }
  p->apply_ev.reset(event_new(p->base.get(), -1, 0, &impl::on_apply, p.get()));
  p->stop_ev.reset(event_new(p->base.get(), -1, 0, &impl::on_stop, p.get()));
  if (!p->apply_ev || !p->stop_ev) {
    return std::unexpected(error{std::make_error_code(std::errc::not_enough_memory), "event_new"});
  }
  impl* raw = p.get();
  p->thread = std::thread([raw] {
    // Keep running with no listeners at all (both servers disabled, no health checks).
    event_base_loop(raw->base.get(), EVLOOP_NO_EXIT_ON_EMPTY);
  });
  p->loop_id = p->thread.get_id();
  return std::unique_ptr<http_endpoints>(new http_endpoints(std::move(p)));
}

void http_endpoints::stop() {
  impl& p = *impl_;
  {
    const std::lock_guard lock(p.mu);
    if (p.stopped) {
      return;
    }
    p.stopped = true;
  }
  if (p.thread.joinable()) {
    // Through an event rather than event_base_loopbreak() here: a break requested before the
    // loop has started would be forgotten when it starts.
    event_active(p.stop_ev.get(), EV_READ, 0);
    p.thread.join();
  }
  p.close_all();
  p.applied_cv.notify_all();
}

void http_endpoints::queued_update() noexcept { impl_->health.queued_update(); }
void http_endpoints::updated() noexcept { impl_->health.updated(); }
void http_endpoints::set_node_eligible(bool eligible) noexcept {
  impl_->health.set_node_eligible(eligible);
}
const proxy_health& http_endpoints::health() const { return impl_->health; }

uint64_t http_endpoints::set_health_checks(std::vector<desired_health_check> checks) {
  impl& p = *impl_;
  uint64_t gen = 0;
  {
    const std::lock_guard lock(p.mu);
    p.pending = std::move(checks);
    gen = ++p.requested_gen;
    if (p.stopped) {
      return gen;
    }
  }
  event_active(p.apply_ev.get(), EV_READ, 0);
  return gen;
}

bool http_endpoints::wait_applied(uint64_t generation, std::chrono::milliseconds timeout) const {
  const impl& p = *impl_;
  std::unique_lock lock(p.mu);
  p.applied_cv.wait_for(lock, timeout,
                        [&] { return p.applied_gen >= generation || p.stopped; });
  return p.applied_gen >= generation;
}

std::vector<health_check_port_status> http_endpoints::health_check_status() const {
  const std::lock_guard lock(impl_->mu);
  return impl_->status;
}

std::thread::id http_endpoints::loop_thread_id() const { return impl_->loop_id; }

}  // namespace sluice::http
