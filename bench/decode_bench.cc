// decode_bench: CPU per list page of the Kubernetes source's parse + decode, on realistic pages.
//
// Reads a tests/kube/gen_cluster.py file, builds list pages of N EndpointSlices and of N Services
// as the API server sends them (List envelope, metadata with resourceVersion and continue,
// items without kind/apiVersion, object metadata in the server's order with resourceVersion),
// then times, per page, what the reflector and kube_source do with a page body: parse, read the
// list metadata, and for each item read name/namespace/resourceVersion and decode it into the
// model. Not a ctest test; see bench/README.md.
//
// Built with -DSLUICE_DECODE_BENCH_NLOHMANN it times the former path instead (nlohmann DOM of
// the page, kind/apiVersion set on each item, decode_object(const nlohmann::json&)), so that the
// same file measures both sides of the change at their own commits.
#include <fmt/format.h>
#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "agent/sources/decode.h"

#ifndef SLUICE_DECODE_BENCH_NLOHMANN
#include <simdjson.h>
#endif

namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* metadata_order[] = {"name",
                                          "generateName",
                                          "namespace",
                                          "selfLink",
                                          "uid",
                                          "resourceVersion",
                                          "generation",
                                          "creationTimestamp",
                                          "deletionTimestamp",
                                          "deletionGracePeriodSeconds",
                                          "labels",
                                          "annotations",
                                          "ownerReferences",
                                          "finalizers",
                                          "managedFields"};

// An object as the API server writes it in a list: metadata first (server order, with
// resourceVersion and, for slices, generation), then the rest; no kind/apiVersion.
ojson as_served(const ojson& obj, uint64_t rv, bool slice) {
  ojson md = obj.value("metadata", ojson::object());
  md["resourceVersion"] = std::to_string(rv);
  if (slice) {
    md["generation"] = 1;
  }
  ojson ordered_md = ojson::object();
  for (const char* k : metadata_order) {
    if (md.contains(k)) {
      ordered_md[k] = md[k];
    }
  }
  ojson out = ojson::object();
  out["metadata"] = ordered_md;
  for (const auto& [k, v] : obj.items()) {
    if (k != "metadata" && k != "kind" && k != "apiVersion") {
      out[k] = v;
    }
  }
  return out;
}

struct page {
  std::string body;
  std::size_t items = 0;
};

std::vector<page> make_pages(const ojson& objects, std::string_view list_kind,
                             std::string_view api_version, bool slice, std::size_t per_page,
                             std::size_t max_pages) {
  std::vector<page> pages;
  uint64_t rv = 1000;
  for (std::size_t start = 0; start < objects.size() && pages.size() < max_pages;
       start += per_page) {
    ojson items = ojson::array();
    for (std::size_t i = start; i < std::min(objects.size(), start + per_page); ++i) {
      items.push_back(as_served(objects[i], ++rv, slice));
    }
    const bool last = start + per_page >= objects.size();
    ojson list = ojson::object();
    list["kind"] = list_kind;
    list["apiVersion"] = api_version;
    list["metadata"] = {{"resourceVersion", "200000"},
                        {"continue", last ? "" : "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MjAwMDAwfQ"}};
    if (last) {
      list["metadata"].erase("continue");
    }
    list["items"] = items;
    pages.push_back({list.dump(), items.size()});
  }
  return pages;
}

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field)) {
      return std::strtol(line.c_str() + std::string_view(field).size(), nullptr, 10);
    }
  }
  return -1;
}

void reset_peak_rss() { std::ofstream("/proc/self/clear_refs") << "5"; }

#ifdef SLUICE_DECODE_BENCH_NLOHMANN
// The former path: reflector.cc parsed the page into a DOM, filled kind/apiVersion of each item,
// kube_source.cc looked up metadata and called decode_object() on the item.
std::size_t decode_page(page& p, std::string_view kind, std::string_view api_version,
                        std::vector<sluice::kube_object>& out) {
  nlohmann::json doc = nlohmann::json::parse(p.body, nullptr, false);
  std::string rv = doc["metadata"].value("resourceVersion", std::string());
  std::string cont = doc["metadata"].value("continue", std::string());
  std::size_t bad = rv.empty() ? 1 : 0;
  for (nlohmann::json& item : doc["items"]) {
    if (!item.contains("kind")) {
      item["kind"] = kind;
    }
    if (!item.contains("apiVersion")) {
      item["apiVersion"] = api_version;
    }
    const auto m = item.find("metadata");
    if (m == item.end() || !m->is_object() || !m->contains("name")) {
      ++bad;
      continue;
    }
    auto r = sluice::decode_object(item, kind);
    if (!r) {
      ++bad;
      continue;
    }
    out.push_back(std::move(*r));
  }
  return bad;
}
#else
namespace od = simdjson::ondemand;

// The path of reflector.cc and kube_source.cc: On-Demand over the padded body in place, list
// metadata, then per item metadata.{name,namespace,resourceVersion}, reset, decode_object().
std::size_t decode_page(page& p, std::string_view kind, std::string_view,
                        std::vector<sluice::kube_object>& out) {
  static od::parser parser;
  p.body.reserve(p.body.size() + simdjson::SIMDJSON_PADDING);
  od::document doc;
  od::object list;
  if (parser.iterate(simdjson::padded_string_view(p.body.data(), p.body.size(), p.body.capacity()))
          .get(doc) ||
      doc.get_object().get(list)) {
    return p.items;
  }
  std::size_t bad = 0;
  std::string rv, cont;
  od::object md;
  if (list.find_field_unordered("metadata").get_object().get(md) == simdjson::SUCCESS) {
    for (auto field : md) {
      std::string_view key, value;
      if (field.unescaped_key().get(key) == simdjson::SUCCESS &&
          (key == "resourceVersion" || key == "continue") &&
          field.value().get_string().get(value) == simdjson::SUCCESS) {
        (key == "continue" ? cont : rv) = value;
      }
    }
  }
  if (rv.empty()) {
    ++bad;
  }
  od::array items;
  if (list.find_field_unordered("items").get_array().get(items)) {
    return p.items;
  }
  for (auto item_result : items) {
    od::object obj;
    if (item_result.get_object().get(obj)) {
      ++bad;
      continue;
    }
    od::object m;
    std::string_view name;
    if (obj.find_field_unordered("metadata").get_object().get(m) ||
        m.find_field_unordered("name").get_string().get(name) || obj.reset().error()) {
      ++bad;
      continue;
    }
    auto r = sluice::decode_object(obj, kind);
    if (!r) {
      ++bad;
      continue;
    }
    out.push_back(std::move(*r));
  }
  return bad;
}
#endif

struct figures {
  double cpu_ms_per_page = 0;
  double wall_ms_per_page = 0;
  double mb_per_s = 0;
  double bytes_per_page = 0;
  std::size_t objects = 0;
};

figures run(std::vector<page>& pages, std::string_view kind, std::string_view api_version,
            int rounds) {
  std::vector<double> cpu;
  std::vector<double> wall;
  double bytes = 0;
  std::size_t objects = 0;
  std::vector<sluice::kube_object> out;
  if (pages.empty()) {
    return {};
  }
  for (int r = 0; r < rounds; ++r) {
    for (page& p : pages) {
      out.clear();
      out.reserve(p.items);
      const double c0 = thread_cpu_ms();
      const auto w0 = std::chrono::steady_clock::now();
      const std::size_t bad = decode_page(p, kind, api_version, out);
      const double c1 = thread_cpu_ms();
      const auto w1 = std::chrono::steady_clock::now();
      if (bad != 0 || out.size() != p.items) {
        fmt::print(stderr, "decode_bench: {} of {} {} items failed\n", bad, p.items, kind);
        std::exit(1);
      }
      cpu.push_back(c1 - c0);
      wall.push_back(std::chrono::duration<double, std::milli>(w1 - w0).count());
      if (r == 0) {
        bytes += static_cast<double>(p.body.size());
        objects += out.size();
      }
    }
  }
  std::sort(cpu.begin(), cpu.end());
  std::sort(wall.begin(), wall.end());
  figures f;
  f.cpu_ms_per_page = cpu[cpu.size() / 2];
  f.wall_ms_per_page = wall[wall.size() / 2];
  f.bytes_per_page = bytes / static_cast<double>(pages.size());
  f.mb_per_s = f.bytes_per_page / 1e6 / (f.cpu_ms_per_page / 1e3);
  f.objects = objects;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) == "--help") {
    fmt::print(
        "usage: decode_bench CLUSTER.json [PER_PAGE=500] [PAGES=20] [ROUNDS=3]\n"
        "  CLUSTER.json from tests/kube/gen_cluster.py; prints median CPU ms per page and MB/s\n");
    return argc < 2 ? 2 : 0;
  }
  const std::size_t per_page = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 500;
  const std::size_t max_pages = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 20;
  const int rounds = argc > 4 ? std::atoi(argv[4]) : 3;

  std::vector<page> slice_pages, service_pages;
  {
    std::ifstream in(argv[1]);
    if (!in) {
      fmt::print(stderr, "decode_bench: cannot read {}\n", argv[1]);
      return 1;
    }
    const ojson cluster = ojson::parse(in);
    slice_pages = make_pages(cluster["endpointslices"], "EndpointSliceList", "discovery.k8s.io/v1",
                             true, per_page, max_pages);
    service_pages =
        make_pages(cluster["services"], "ServiceList", "v1", false, per_page, max_pages);
  }
#ifdef SLUICE_DECODE_BENCH_NLOHMANN
  const char* impl = "nlohmann DOM";
#else
  const char* impl = "simdjson On-Demand";
#endif
  malloc_trim(0);  // give back the cluster DOM, so the figures below are the decoder's
  reset_peak_rss();
  const long rss_before = status_kib("VmRSS:");
  const figures slices = run(slice_pages, "EndpointSlice", "discovery.k8s.io/v1", rounds);
  const figures services = run(service_pages, "Service", "v1", rounds);
  const long peak = status_kib("VmHWM:");
  fmt::print("decode_bench ({}): {} items per page, {} pages x {} rounds\n", impl, per_page,
             slice_pages.size(), rounds);
  for (const auto& [name, f] :
       {std::pair{"EndpointSlice", slices}, std::pair{"Service", services}}) {
    fmt::print(
        "  {:<13} page {:6.2f} MB: {:7.2f} ms CPU/page (median; wall {:7.2f} ms), {:6.1f} MB/s\n",
        name, f.bytes_per_page / 1e6, f.cpu_ms_per_page, f.wall_ms_per_page, f.mb_per_s);
  }
  fmt::print(
      "  RSS: {:.1f} MiB before decoding (pages in memory), peak while decoding {:.1f} MiB\n",
      static_cast<double>(rss_before) / 1024, static_cast<double>(peak) / 1024);
  return 0;
}
