// One List page of the Kubernetes source (GET /api/v1/services?limit=500 and the like):
// list_page_reader reads its metadata and hands the items to the kube_source, in place, inside
// list_begin / list_end (or list_abort when the page fails), as the reflector does.
//
// Input: one byte choosing the resource (kube_sink.h: 'S', 'E', 'N', 'P'), then the body.
//
// Properties, beyond "no crash, no sanitizer report":
// - for a body that is valid JSON (simdjson's DOM parser, which validates everything) without a
//   repeated top-level key, the On-Demand reader agrees with the DOM: it accepts the page exactly
//   when it is a mapping whose `items` is a list or null, reports the same resourceVersion and
//   continue token, hands over exactly the items that are mappings, in order, and counts the
//   others as skipped;
// - each item decodes the same read in place and read alone;
// - a page that fails leaves the store as it was (list_abort keeps the previous state).
#include <set>
#include <string>
#include <vector>

#include "agent/sources/kube/wire_format.h"
#include "tests/fuzz/kube_sink.h"

using namespace sluice;
using namespace sluice::fuzz;
namespace dom = simdjson::dom;

namespace {

// What the DOM says the reader must report; nullopt when the property does not apply.
struct expected_page {
  bool ok = false;
  kube::list_page_header header;
  std::vector<std::string> items;  // minified
  std::size_t skipped = 0;
};

std::optional<expected_page> expect(std::string_view body) {
  static dom::parser parser;
  const simdjson::padded_string padded(body);
  dom::element root;
  if (parser.parse(padded).get(root) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  expected_page e;
  dom::object page;
  if (root.get_object().get(page) != simdjson::SUCCESS) {
    return e;
  }
  std::set<std::string_view> keys;
  for (const auto field : page) {
    if (!keys.insert(field.key).second) {
      return std::nullopt;  // which one counts is On-Demand's business
    }
  }
  dom::element items;
  if (page["items"].get(items) != simdjson::SUCCESS ||
      (!items.is_array() && !items.is_null())) {
    return e;
  }
  e.ok = true;
  dom::object md;
  if (page["metadata"].get_object().get(md) == simdjson::SUCCESS) {
    for (const auto field : md) {  // a repeated key: the last string wins
      std::string_view value;
      if ((field.key == "resourceVersion" || field.key == "continue") &&
          field.value.get_string().get(value) == simdjson::SUCCESS) {
        (field.key == "continue" ? e.header.continue_token : e.header.resource_version) = value;
      }
    }
  }
  if (items.is_array()) {
    for (const dom::element item : items.get_array().value_unsafe()) {
      if (item.is_object()) {
        e.items.push_back(simdjson::minify(item));
      } else {
        ++e.skipped;
      }
    }
  }
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const resource_choice res = resource_of(data[0]);
  std::string body(as_text(data + 1, size - 1));
  const std::optional<expected_page> want = expect(body);

  kube_sink sink;
  // A first, complete list, so that a failing second one has a state to keep.
  sink.source.list_begin(res.resource);
  sink.source.list_end(res.resource, "1");
  const kube_sink::view before = sink.snapshot();

  kube::list_page_reader reader;
  std::vector<std::string> items;
  sink.source.list_begin(res.resource);
  auto header = reader.open(body);
  std::expected<std::size_t, std::string_view> skipped = std::unexpected("not opened");
  if (header) {
    skipped = reader.items([&](simdjson::ondemand::object& obj) {
      if (want) {
        std::string_view raw;
        FUZZ_ASSERT(obj.raw_json().get(raw) == simdjson::SUCCESS, "raw_json failed");
        items.emplace_back(raw);
        (void)obj.reset();
        check_in_place(obj, kind_name(res.kind));
      }
      sink.source.list_item(res.resource, obj);
    });
  }
  const bool ok = header && skipped;
  if (ok) {
    sink.source.list_end(res.resource, header->resource_version);
  } else {
    sink.source.list_abort(res.resource);
    FUZZ_ASSERT(sink.snapshot().state == before.state, "a failed page changed the store");
  }

  if (want) {
    FUZZ_ASSERT(ok == want->ok, "On-Demand says {}, DOM says {}", ok ? "a List" : "not a List",
                want->ok ? "a List" : "not a List");
    if (ok) {
      FUZZ_ASSERT(header->resource_version == want->header.resource_version &&
                      header->continue_token == want->header.continue_token,
                  "header differs: rv \"{}\"/\"{}\", continue \"{}\"/\"{}\"",
                  header->resource_version, want->header.resource_version,
                  header->continue_token, want->header.continue_token);
      FUZZ_ASSERT(*skipped == want->skipped, "skipped {} but the DOM has {} non-mappings",
                  *skipped, want->skipped);
      FUZZ_ASSERT(items.size() == want->items.size(), "{} items handed over, the DOM has {}",
                  items.size(), want->items.size());
      for (std::size_t i = 0; i < items.size(); ++i) {
        simdjson::padded_string item(items[i]);
        static dom::parser reparse;
        dom::element e;
        FUZZ_ASSERT(reparse.parse(item).get(e) == simdjson::SUCCESS, "item {} is not JSON", i);
        FUZZ_ASSERT(simdjson::minify(e) == want->items[i], "item {} differs", i);
      }
    }
  }
  return 0;
}
