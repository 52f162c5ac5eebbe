// The list/watch loop of one resource (see reflector.h). Modelled on client-go's
// tools/cache/reflector.go (ListAndWatch, watchHandler) and tools/pager/pager.go.
#include "agent/sources/kube/reflector.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "agent/sources/kube/line_reader.h"

namespace sluice::kube {
namespace {

// Percent-encodes everything but RFC 3986 unreserved characters (selectors hold '!', ',',
// '=', '/'; continue tokens are base64 with '=' padding).
std::string url_encode(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 3);
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out += fmt::format("%{:02X}", u);
    }
  }
  return out;
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A watch that ends sooner than this without delivering anything is treated as a failure for
// backoff purposes, so a server (or proxy) that closes every watch at once is not hammered.
constexpr auto min_healthy_watch = std::chrono::seconds(1);

}  // namespace

reflector_options services_reflector(std::string label_selector) {
  reflector_options o;
  o.resource = "services";
  o.path = "/api/v1/services";
  o.label_selector = std::move(label_selector);
  o.item_kind = "Service";
  o.item_api_version = "v1";
  return o;
}

reflector_options endpointslices_reflector(std::string label_selector) {
  reflector_options o;
  o.resource = "endpointslices";
  o.path = "/apis/discovery.k8s.io/v1/endpointslices";
  o.label_selector = std::move(label_selector);
  o.item_kind = "EndpointSlice";
  o.item_api_version = "discovery.k8s.io/v1";
  return o;
}

reflector_options node_reflector(std::string_view node_name) {
  reflector_options o;
  o.resource = "nodes";
  o.path = "/api/v1/nodes";
  o.field_selector = fmt::format("metadata.name={}", node_name);
  o.item_kind = "Node";
  o.item_api_version = "v1";
  return o;
}

reflector_options pods_reflector(std::string_view node_name) {
  reflector_options o;
  o.resource = "pods";
  o.path = "/api/v1/pods";
  o.field_selector = fmt::format("spec.nodeName={}", node_name);
  o.item_kind = "Pod";
  o.item_api_version = "v1";
  return o;
}

reflector::reflector(const api_config& cfg, reflector_options opts, reflector_sink& sink,
                     std::shared_ptr<token_source> tokens)
    : cfg_(cfg),
      opts_(std::move(opts)),
      sink_(sink),
      client_(cfg, std::move(tokens)),
      rng_(std::random_device{}()) {}

reflector::~reflector() { stop(); }

void reflector::start() {
  if (!thread_.joinable()) {
    thread_ = std::thread([this] { run(); });
  }
}

void reflector::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    if (pager_) {
      pager_->abort();
    }
  }
  cv_.notify_all();
  client_.abort();
  if (thread_.joinable()) {
    thread_.join();
  }
}

std::string reflector::last_resource_version() const {
  std::lock_guard lock(mu_);
  return rv_;
}

void reflector::set_rv(std::string rv) {
  std::lock_guard lock(mu_);
  rv_ = std::move(rv);
}

void reflector::mark_synced() { stats_.last_sync_unix_ms.store(now_unix_ms()); }

void reflector::mark_failing() {
  std::int64_t none = 0;
  stats_.failing_since_unix_ms.compare_exchange_strong(none, now_unix_ms());
}

void reflector::mark_reachable() {
  if (stats_.failing_since_unix_ms.exchange(0) != 0 && on_recovered_) {
    on_recovered_();
  }
}

void reflector::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

bool reflector::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  const bool stopping = cv_.wait_for(lock, d, [this] { return stopping_ || woken_; }) && stopping_;
  woken_ = false;
  return !stopping;
}

void reflector::backoff(std::optional<std::chrono::seconds> retry_after) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_failure_ > opts_.backoff_reset_after) {
    backoff_step_ = 0;
  }
  last_failure_ = now;
  // Full jitter (uniform in [0, cap]) spreads the reconnects of many agents after an API
  // server restart; the cap doubles per consecutive failure.
  const auto shift = std::min(backoff_step_, 20u);
  const auto cap =
      std::min<std::int64_t>(opts_.backoff_max.count(), opts_.backoff_initial.count() << shift);
  ++backoff_step_;
  std::uniform_int_distribution<std::int64_t> dist(0, std::max<std::int64_t>(cap, 0));
  std::chrono::milliseconds delay(dist(rng_));
  if (retry_after) {
    delay = std::max<std::chrono::milliseconds>(delay, *retry_after);
  }
  spdlog::debug("kube {}: retrying in {} ms", opts_.resource, delay.count());
  sleep_for(delay);
}

std::string reflector::query(bool for_watch, std::string_view continue_token,
                             unsigned timeout_seconds) const {
  std::string q = opts_.path;
  char sep = '?';
  const auto add = [&](std::string_view key, std::string_view value) {
    q += sep;
    sep = '&';
    q += key;
    q += '=';
    q += url_encode(value);
  };
  if (for_watch) {
    add("watch", "1");
    add("allowWatchBookmarks", "true");
    add("resourceVersion", last_resource_version());
    add("timeoutSeconds", std::to_string(timeout_seconds));
  } else {
    if (opts_.page_size > 0) {
      add("limit", std::to_string(opts_.page_size));
    }
    if (!continue_token.empty()) {
      add("continue", continue_token);
    }
  }
  if (!opts_.label_selector.empty()) {
    add("labelSelector", opts_.label_selector);
  }
  if (!opts_.field_selector.empty()) {
    add("fieldSelector", opts_.field_selector);
  }
  return q;
}

reflector::failure reflector::classify(const http_error& err, const char* what) {
  if (err.aborted) {
    return {outcome::stopped, {}};
  }
  if (err.transport()) {
    stats_.errors_transport.fetch_add(1);
  } else if (err.status >= 500) {
    stats_.errors_5xx.fetch_add(1);
  } else {
    stats_.errors_4xx.fetch_add(1);
  }
  if (err.status == 410) {
    spdlog::info("kube {}: {} expired ({}); relisting", opts_.resource, what, err.message);
    return {outcome::relist, {}};
  }
  mark_failing();
  spdlog::warn("kube {}: {} failed: {}", opts_.resource, what, err.message);
  return {outcome::retry, err.retry_after};
}

std::future<reflector::get_result> reflector::fetch_page_async(std::string continue_token) {
  std::string q = query(false, continue_token, 0);
  http_client* pager = nullptr;
  try {
    std::lock_guard lock(mu_);
    if (!pager_) {
      pager_ = std::make_unique<http_client>(cfg_, client_.tokens());
      if (stopping_) {
        pager_->abort();  // stop() ran before pager_ existed
      }
    }
    pager = pager_.get();
  } catch (const std::exception& e) {
    spdlog::warn("kube {}: no second HTTP client ({}); list pages are fetched one by one",
                 opts_.resource, e.what());
    return std::async(std::launch::deferred, [this, q = std::move(q)] { return client_.get(q); });
  }
  return std::async(std::launch::async, [pager, q = std::move(q)] { return pager->get(q); });
}

reflector::failure reflector::list() {
  // Items are handed over page by page. While page n's items go to the sink, page n+1 is
  // already being fetched on a second client (pager_), so server time and decode time overlap;
  // at most two pages are in memory. All pages belong to the snapshot at the first page's RV.
  // An expired continue token (410) means the snapshot is gone: start the list over without
  // it, as client-go's pager does (it falls back to one unpaged list; we stay paged so memory
  // stays bounded and retry from the first page, at most a few times before backing off).
  constexpr int max_restarts = 3;
  for (int restart = 0; restart <= max_restarts; ++restart) {
    sink_.list_begin(opts_.resource);
    std::string continue_token;  // the token `resp` was requested with
    std::string rv;
    bool expired = false;
    get_result resp = client_.get(query(false, continue_token, 0));
    for (;;) {
      if (!resp) {
        if (resp.error().status == 410 && !continue_token.empty() && !resp.error().aborted) {
          stats_.errors_4xx.fetch_add(1);
          stats_.relists.fetch_add(1);
          spdlog::info("kube {}: list continue token expired; listing again from the start",
                       opts_.resource);
          expired = true;
          break;
        }
        sink_.list_abort(opts_.resource);
        auto f = classify(resp.error(), "list");
        if (f.what == outcome::relist) {
          f.what = outcome::retry;  // a 410 on a fresh list: nothing better than to retry
        }
        if (f.what != outcome::stopped) {
          sink_.synced(opts_.resource, false);
        }
        return f;
      }
      stats_.list_pages.fetch_add(1);
      mark_reachable();
      // On-Demand over the body in place: metadata, then the items one by one. The body must
      // outlive the items (they are read from it), so it is released only with `resp`.
      const auto not_a_list = [&](std::string_view why) -> failure {
        stats_.decode_errors.fetch_add(1);
        mark_failing();
        spdlog::warn("kube {}: list page {}", opts_.resource, why);
        sink_.list_abort(opts_.resource);
        sink_.synced(opts_.resource, false);
        return {outcome::retry, {}};
      };
      auto header = pages_.open(resp->body);
      if (!header) {
        return not_a_list(header.error());
      }
      continue_token = std::move(header->continue_token);
      rv = std::move(header->resource_version);
      // Joined by its destructor on every path out of this iteration.
      std::future<get_result> next;
      if (!continue_token.empty() && !client_.aborted()) {
        next = fetch_page_async(continue_token);
      }
      // JSON errors inside the page show up only as the items are read: the items before were
      // delivered, and the list is aborted (like a page that fails to arrive).
      const auto skipped = pages_.items(
          [&](simdjson::ondemand::object& obj) { sink_.list_item(opts_.resource, obj); });
      if (!skipped) {
        return not_a_list(skipped.error());
      }
      stats_.decode_errors.fetch_add(*skipped);
      if (continue_token.empty()) {
        break;
      }
      if (client_.aborted() || !next.valid()) {  // stop() aborts client_ and pager_
        sink_.list_abort(opts_.resource);
        return {outcome::stopped, {}};
      }
      resp = next.get();
    }
    if (expired) {
      sink_.list_abort(opts_.resource);
      continue;
    }
    set_rv(rv);
    // The parser's buffers have grown to a whole page (megabytes for slices); watch events are
    // small, so give that back now rather than hold it until the next relist.
    pages_.release();
    sink_.list_end(opts_.resource, rv);
    stats_.lists.fetch_add(1);
    mark_synced();
    sink_.synced(opts_.resource, true);
    spdlog::info("kube {}: listed at resourceVersion {}", opts_.resource, rv);
    return {outcome::ok, {}};
  }
  sink_.synced(opts_.resource, false);
  return {outcome::retry, {}};
}

reflector::failure reflector::watch() {
  // client-go: timeoutSeconds uniform in [min, max) so that watches of many clients do not
  // all end, and reconnect, at the same moment.
  const auto lo = static_cast<unsigned>(opts_.watch_timeout_min.count());
  const auto hi = std::max(static_cast<unsigned>(opts_.watch_timeout_max.count()), lo + 1);
  const unsigned timeout = std::uniform_int_distribution<unsigned>(lo, hi - 1)(rng_);

  line_reader reader(opts_.max_line_bytes);
  std::optional<failure> verdict;  // set by an ERROR event or a malformed line
  std::uint64_t delivered = 0;

  const auto on_line = [&](std::string_view line) -> bool {
    const watch_line w = lines_.read(line, [&](watch_event_type t, simdjson::ondemand::object& obj) {
      sink_.event(opts_.resource, t, obj);
    });
    switch (w.what) {
      case watch_line::kind::event:
        set_rv(w.resource_version);
        stats_.events.fetch_add(1);
        ++delivered;
        mark_synced();
        return true;
      case watch_line::kind::bookmark:
        if (!w.resource_version.empty()) {
          set_rv(w.resource_version);
        }
        stats_.bookmarks.fetch_add(1);
        ++delivered;
        mark_synced();
        return true;
      case watch_line::kind::error:
        if (w.code >= 500) {
          stats_.errors_5xx.fetch_add(1);
        } else {
          stats_.errors_4xx.fetch_add(1);
        }
        if (w.code == 410) {
          spdlog::info("kube {}: watch expired ({}); relisting", opts_.resource, w.message);
          verdict = failure{outcome::relist, {}};
        } else {
          spdlog::warn("kube {}: watch ERROR event {}: {}", opts_.resource, w.code, w.message);
          verdict = failure{outcome::retry, {}};
        }
        return false;
      case watch_line::kind::malformed:
        break;
    }
    const auto n = stats_.decode_errors.fetch_add(1);
    if (opts_.decode_error_log_every == 0 || n % opts_.decode_error_log_every == 0) {
      spdlog::warn("kube {}: malformed watch event ({}, {} bytes); restarting the watch",
                   opts_.resource, w.message, line.size());
    }
    verdict = failure{outcome::retry, {}};
    return false;
  };

  bool got_body = false;
  const http_client::data_fn on_data = [&](std::string_view bytes) -> bool {
    got_body = true;
    switch (reader.feed(bytes, on_line)) {
      case line_reader::feed_result::ok:
        return true;
      case line_reader::feed_result::stopped:
        return false;
      case line_reader::feed_result::line_too_long:
        stats_.decode_errors.fetch_add(1);
        spdlog::warn("kube {}: watch event longer than {} bytes; restarting the watch",
                     opts_.resource, opts_.max_line_bytes);
        verdict = failure{outcome::retry, {}};
        return false;
    }
    return false;
  };

  request_options ro;
  ro.max_duration = std::chrono::seconds(timeout) + std::chrono::seconds(30);
  ro.low_speed_time = std::chrono::seconds(0);
  ro.on_open = [this] { mark_reachable(); };
  const std::string q = query(true, {}, timeout);
  stats_.watches.fetch_add(1);
  spdlog::debug("kube {}: watching from resourceVersion {}", opts_.resource,
                last_resource_version());
  const auto started = std::chrono::steady_clock::now();
  watch_started_ = started;
  auto r = client_.stream(q, on_data, ro);
  if (verdict) {
    return client_.aborted() ? failure{outcome::stopped, {}} : *verdict;
  }
  const bool healthy =
      delivered > 0 || std::chrono::steady_clock::now() - started >= min_healthy_watch;
  if (!r) {
    if (r.error().transport() && got_body && healthy) {
      // The stream broke after it had worked (API server restart, proxy idle cut, load
      // balancer failover): like client-go on a probable EOF, watch again at once from the
      // last RV; the next attempt backs off if it fails.
      stats_.errors_transport.fetch_add(1);
      spdlog::info("kube {}: watch stream broke ({}); watching again", opts_.resource,
                   r.error().message);
      return {outcome::ok, {}};
    }
    return classify(r.error(), "watch");
  }
  // Clean end (timeoutSeconds reached): a trailing unterminated line is a truncated event.
  if (!reader.pending().empty()) {
    stats_.decode_errors.fetch_add(1);
  }
  mark_synced();
  return healthy ? failure{outcome::ok, {}} : failure{outcome::retry, {}};
}

void reflector::run() {
  bool need_list = true;
  while (true) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return;
      }
    }
    if (need_list) {
      const failure f = list();
      if (f.what == outcome::stopped) {
        return;
      }
      if (f.what != outcome::ok) {
        backoff(f.retry_after);
        continue;
      }
      need_list = false;
    }
    const failure f = watch();
    switch (f.what) {
      case outcome::stopped:
        return;
      case outcome::ok:
        break;  // the server ended the stream: watch again from the last RV, no relist
      case outcome::relist:
        stats_.relists.fetch_add(1);
        need_list = true;
        // A server answering every fresh watch with 410 must not turn into a list loop.
        if (std::chrono::steady_clock::now() - watch_started_ < min_healthy_watch) {
          backoff({});
        }
        break;
      case outcome::retry:
        backoff(f.retry_after);
        break;
    }
  }
}

}  // namespace sluice::kube
