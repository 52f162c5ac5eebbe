// Prometheus registry: families, children, and the text exposition format 0.0.4 renderer.
#include "agent/metrics/registry.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

namespace sluice::metrics {

namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) {
    return false;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) {
      return false;
    }
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  // "le" is reserved for histogram buckets; "__" prefixes are reserved by Prometheus.
  if (n.empty() || n.starts_with("__") || n == "le") {
    return false;
  }
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) {
      return false;
    }
  }
  return true;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` (plus an optional extra pair, used for `le`), or nothing without labels.
void append_labels(std::string& out, const std::vector<std::string>& names,
                   const std::vector<std::string>& values, std::string_view extra_name = {},
                   std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) {
    return;
  }
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) {
      out += ',';
    }
    out += names[i];
    out += "=\"";
    out += escape_label_value(values[i]);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!names.empty()) {
      out += ',';
    }
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
}

void append_header(std::string& out, const std::string& name, const std::string& help,
                   std::string_view type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += escape_help(help);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  // fmt's default for double is the shortest string that round-trips, like Go's
  // strconv.FormatFloat(v, 'g', -1, 64) that client_golang uses: 42, 0.005, 1e+20.
  return fmt::format("{}", v);
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i) {
    out.push_back(v);
    v *= factor;
  }
  return out;
}

std::vector<double> linear_buckets(double start, double width, int count) {
  std::vector<double> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(start + width * i);
  }
  return out;
}

histogram::histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    buckets_[i].store(0, std::memory_order_relaxed);
  }
}

void histogram::observe(double v) noexcept {
  // Bucket i holds observations in (bounds[i-1], bounds[i]]; `le` is inclusive.
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
  buckets_[static_cast<size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

histogram::snapshot histogram::snap() const {
  snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  // _count is derived from the buckets so that it always equals the +Inf bucket, even while
  // another thread observes during the scrape.
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

template <typename Metric>
family<Metric>::family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds)
    : family_base(std::move(name), std::move(help), std::move(label_names)),
      bounds_(std::move(bounds)) {
  // An unlabelled metric exists (at zero) from registration on, as in client_golang.
  if (label_names_.empty()) {
    get();
  }
}

template <typename Metric>
Metric& family<Metric>::with(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    spdlog::critical("metric {}: {} label values for {} labels", name_, values.size(),
                     label_names_.size());
    std::abort();
  }
  const std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    std::unique_ptr<Metric> child;
    if constexpr (std::is_same_v<Metric, histogram>) {
      child = std::make_unique<histogram>(bounds_);
    } else {
      child = std::make_unique<Metric>();
    }
    it = children_.emplace(values, std::move(child)).first;
  }
  return *it->second;
}

template <typename Metric>
Metric& family<Metric>::with(std::initializer_list<std::string_view> values) {
  std::vector<std::string> v;
  v.reserve(values.size());
  for (const std::string_view s : values) {
    v.emplace_back(s);
  }
  return with(v);
}

template <typename Metric>
metric_type family<Metric>::type() const {
  if constexpr (std::is_same_v<Metric, counter>) {
    return metric_type::counter;
  } else if constexpr (std::is_same_v<Metric, gauge>) {
    return metric_type::gauge;
  } else {
    return metric_type::histogram;
  }
}

template <typename Metric>
void family<Metric>::render(std::string& out) const {
  static constexpr std::string_view type_names[] = {"counter", "gauge", "histogram"};
  append_header(out, name_, help_, type_names[static_cast<int>(type())]);
  // Children are created, never removed, and their addresses are stable: the lock covers the
  // walk of the map, the values are atomics read without it.
  const std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<Metric, histogram>) {
      const histogram::snapshot s = child->snap();
      for (size_t i = 0; i <= bounds_.size(); ++i) {
        out += name_;
        out += "_bucket";
        const std::string le = i < bounds_.size() ? format_value(bounds_[i]) : "+Inf";
        append_labels(out, label_names_, values, "le", le);
        out += ' ';
        out += std::to_string(s.cumulative[i]);
        out += '\n';
      }
      out += name_;
      out += "_sum";
      append_labels(out, label_names_, values);
      out += ' ';
      out += format_value(s.sum);
      out += '\n';
      out += name_;
      out += "_count";
      append_labels(out, label_names_, values);
      out += ' ';
      out += std::to_string(s.count);
      out += '\n';
    } else {
      out += name_;
      append_labels(out, label_names_, values);
      out += ' ';
      out += format_value(child->value());
      out += '\n';
    }
  }
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

template <typename F, typename... Args>
F& registry::add(std::string name, Args&&... args) {
  if (!valid_metric_name(name)) {
    throw std::invalid_argument("invalid metric name: " + name);
  }
  auto f = std::make_unique<F>(name, std::forward<Args>(args)...);
  for (const std::string& l : f->label_names()) {
    if (!valid_label_name(l)) {
      throw std::invalid_argument("metric " + name + ": invalid label name: " + l);
    }
  }
  F& ref = *f;
  const std::lock_guard lock(mu_);
  if (!families_.emplace(name, std::move(f)).second) {
    throw std::invalid_argument("metric registered twice: " + name);
  }
  return ref;
}

counter_family& registry::add_counter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  return add<counter_family>(std::move(name), std::move(help), std::move(label_names));
}

gauge_family& registry::add_gauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  return add<gauge_family>(std::move(name), std::move(help), std::move(label_names));
}

histogram_family& registry::add_histogram(std::string name, std::string help,
                                          std::vector<double> buckets,
                                          std::vector<std::string> label_names) {
  if (buckets.empty()) {
    throw std::invalid_argument("histogram " + name + ": no buckets");
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (std::isnan(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
      throw std::invalid_argument("histogram " + name + ": buckets must be strictly ascending");
    }
  }
  // +Inf is always implied; a trailing explicit +Inf would print twice.
  if (std::isinf(buckets.back()) && buckets.back() > 0) {
    buckets.pop_back();
  }
  return add<histogram_family>(std::move(name), std::move(help), std::move(label_names),
                               std::move(buckets));
}

void registry::add_collect_hook(collect_hook hook) {
  const std::lock_guard lock(mu_);
  hooks_.push_back(std::move(hook));
}

std::string registry::scrape() {
  const std::lock_guard scrape_lock(scrape_mu_);
  std::vector<collect_hook> hooks;
  {
    const std::lock_guard lock(mu_);
    hooks = hooks_;
  }
  for (const collect_hook& h : hooks) {
    h();
  }
  return render();
}

std::string registry::render() const {
  std::string out;
  const std::lock_guard lock(mu_);
  for (const auto& [name, f] : families_) {
    f->render(out);
  }
  return out;
}

}  // namespace sluice::metrics
