// The real receiving end of the API source for the list/watch fuzz targets: a kube_source (its
// metadata peek, relist skip, decode, reject/ignore counters) writing into a cluster_store. The
// kube_source is never started: no thread, no connection; its reflectors only hold idle
// libcurl handles. Inputs pick the resource with their first byte.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "agent/sources/kube/kube_source.h"
#include "agent/store/cluster_store.h"
#include "tests/fuzz/fuzz_support.h"

namespace sluice::fuzz {

constexpr std::string_view fuzz_node_name = "node-a";

struct resource_choice {
  std::string_view resource;  // as the reflectors name them
  object_kind kind;
};

// 'S' services, 'E' endpointslices, 'N' nodes, 'P' pods; other bytes pick one by value.
inline resource_choice resource_of(std::uint8_t b) {
  static constexpr std::array<resource_choice, 4> all{{{"services", object_kind::service},
                                                       {"endpointslices", object_kind::endpoint_slice},
                                                       {"nodes", object_kind::node},
                                                       {"pods", object_kind::pod}}};
  switch (b) {
    case 'S':
      return all[0];
    case 'E':
      return all[1];
    case 'N':
      return all[2];
    case 'P':
      return all[3];
    default:
      return all[b % all.size()];
  }
}

// A store and the kube_source that fills it.
struct kube_sink {
  cluster_store store{std::string(fuzz_node_name)};
  kube::kube_source source;

  kube_sink() : source(config(), store, {.node_name = std::string(fuzz_node_name)}) {}

  // What the store holds and what the source counted, for comparing two runs.
  struct view {
    cluster state;
    std::array<std::uint64_t, 10> counters{};
    bool operator==(const view&) const = default;
  };
  view snapshot() {
    view v;
    store.with_state([&](const cluster& c) { v.state = c; });
    for (std::size_t k = 0; k < 5; ++k) {
      const auto& d = source.decode_stats(static_cast<object_kind>(k));
      v.counters[2 * k] = d.rejected.load();
      v.counters[2 * k + 1] = d.ignored.load();
    }
    return v;
  }

 private:
  static kube::api_config config() {
    kube::api_config cfg;
    cfg.server = "http://localhost";
    cfg.unix_socket = "/nonexistent/fuzz.sock";  // never connected to
    return cfg;
  }
};

// The object the source decodes `obj` into, read in place (inside a page or an event line)
// and read again alone from its own text: the same result (On-Demand must not depend on what
// surrounds the object). Leaves `obj` reset. Only for valid JSON (the caller knows).
inline void check_in_place(simdjson::ondemand::object& obj, std::string_view kind) {
  std::string_view raw;
  FUZZ_ASSERT(obj.raw_json().get(raw) == simdjson::SUCCESS, "raw_json failed on valid JSON");
  const std::string text(raw);
  (void)obj.reset();
  const decoded in_place = decode_object(obj, kind);
  (void)obj.reset();
  check_decoded(in_place);
  const decoded alone = decode_json(text, kind);
  FUZZ_ASSERT(same(in_place, alone), "in place: {}\n  alone: {}\n  object: {}", show(in_place),
              show(alone), text);
}

}  // namespace sluice::fuzz
