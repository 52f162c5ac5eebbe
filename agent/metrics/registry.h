// A small thread-safe Prometheus registry: counters, gauges and fixed-bucket histograms, with
// optional labels, rendered in the text exposition format 0.0.4. Writers (sync loop, reflector
// threads) touch atomics; a short per-family mutex covers only the label-set lookup, so a writer
// never waits for a whole scrape.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::metrics {

/// A value that only goes up (reset only by a process restart).
class counter {
 public:
  /// Adds v; v must be >= 0 (negative increments are ignored: a counter never goes down).
  void inc(double v = 1.0) noexcept {
    if (v > 0) {
      value_.fetch_add(v, std::memory_order_relaxed);
    }
  }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// A value that goes up and down.
class gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(double v) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
  void inc() noexcept { add(1); }
  void dec() noexcept { add(-1); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

/// Observations counted into fixed buckets (upper bounds, ascending), plus their sum.
class histogram {
 public:
  /// `bounds` must outlive the histogram (it is owned by the family).
  explicit histogram(const std::vector<double>& bounds);

  void observe(double v) noexcept;

  /// A consistent-enough copy: `cumulative[i]` counts observations <= bounds[i]; the last
  /// element (+Inf) equals `count`.
  struct snapshot {
    std::vector<uint64_t> cumulative;
    uint64_t count = 0;
    double sum = 0;
  };
  snapshot snap() const;

 private:
  const std::vector<double>& bounds_;
  // One slot per bound plus the overflow slot; per-bucket (not cumulative) so an observation
  // is a single atomic increment.
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

/// What the TYPE line says.
enum class metric_type { counter, gauge, histogram };

/// One metric name with its HELP/TYPE and all its label sets. Registered in a `registry`.
class family_base {
 public:
  family_base(std::string name, std::string help, std::vector<std::string> label_names)
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}
  virtual ~family_base() = default;
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  virtual metric_type type() const = 0;
  /// Appends HELP, TYPE and every sample line to `out`.
  virtual void render(std::string& out) const = 0;

 protected:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
};

/// A family of one metric kind. Children are created on first use and live as long as the
/// registry, so references returned by with()/get() may be cached by hot paths.
template <typename Metric>
class family final : public family_base {
 public:
  family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {});

  /// The child for these label values, in label_names() order. Aborts when the number of
  /// values differs from the number of label names (a programming error, not an input error).
  Metric& with(std::initializer_list<std::string_view> values);
  Metric& with(const std::vector<std::string>& values);
  /// The only child of a family without labels.
  Metric& get() { return with({}); }

  metric_type type() const override;
  void render(std::string& out) const override;

 private:
  std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;       // guards children_ (the map, not the values)
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

using counter_family = family<counter>;
using gauge_family = family<gauge>;
using histogram_family = family<histogram>;

/// Buckets start, start*factor, ... (count of them), as prometheus.ExponentialBuckets.
std::vector<double> exponential_buckets(double start, double factor, int count);
/// Buckets start, start+width, ... (count of them), as prometheus.LinearBuckets.
std::vector<double> linear_buckets(double start, double width, int count);

/// The set of families served on /metrics.
class registry {
 public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Registration happens at start-up: an invalid or duplicate name, an invalid label name or
  /// unsorted buckets throw std::invalid_argument.
  counter_family& add_counter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  gauge_family& add_gauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  histogram_family& add_histogram(std::string name, std::string help, std::vector<double> buckets,
                                  std::vector<std::string> label_names = {});

  /// A callback run at scrape time, before rendering, on the scraping thread (the HTTP thread):
  /// the place to copy values that live elsewhere (BPF maps) into gauges or counters. Hooks run
  /// one scrape at a time, in registration order; they must not call scrape().
  using collect_hook = std::function<void()>;
  void add_collect_hook(collect_hook hook);

  /// Runs the collect hooks, then renders every family sorted by name.
  std::string scrape();
  /// Renders every family sorted by name, without running hooks.
  std::string render() const;

 private:
  template <typename F, typename... Args>
  F& add(std::string name, Args&&... args);

  mutable std::mutex mu_;  // guards families_ and hooks_
  std::map<std::string, std::unique_ptr<family_base>> families_;
  std::vector<collect_hook> hooks_;
  std::mutex scrape_mu_;  // one scrape (hook run) at a time
};

/// A label value escaped for the exposition format (backslash, double quote, newline).
std::string escape_label_value(std::string_view v);
/// A sample value as the exposition format writes it: shortest round-trip decimal, +Inf, -Inf,
/// NaN.
std::string format_value(double v);

}  // namespace sluice::metrics
