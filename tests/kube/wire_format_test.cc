// wire_format: list pages and watch lines read in place, with the bound on one object
// (max_object_bytes) and one-line messages from the server.
#include "agent/sources/kube/wire_format.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <string>
#include <vector>

#include "agent/sources/decode.h"

using namespace sluice::kube;
using sluice::max_object_bytes;

namespace {

// A Service item of exactly `bytes` bytes of JSON (padded with an annotation).
std::string service_json(const std::string& name, std::size_t bytes) {
  const std::string head = fmt::format(
      R"({{"metadata":{{"name":"{}","resourceVersion":"7","annotations":{{"pad":")", name);
  const std::string tail = R"("}}})";
  REQUIRE(bytes >= head.size() + tail.size());
  return head + std::string(bytes - head.size() - tail.size(), 'x') + tail;
}

}  // namespace

TEST_CASE("wire_format: a watch line larger than max_object_bytes is malformed, not delivered") {
  watch_line_decoder lines;
  int delivered = 0;
  const auto count = [&](watch_event_type, simdjson::ondemand::object&) { ++delivered; };
  const std::string obj = service_json("big", max_object_bytes);  // the line is larger
  const std::string line = R"({"type":"ADDED","object":)" + obj + "}";
  const watch_line w = lines.read(line, count);
  CHECK(w.what == watch_line::kind::malformed);
  CHECK(w.message == "larger than the limit of 4194304 bytes");
  CHECK(delivered == 0);
  // A line at the bound is read (the same decoder, buffers reused).
  const std::string small =
      R"({"type":"ADDED","object":)" +
      service_json("ok", max_object_bytes - std::string(R"({"type":"ADDED","object":})").size()) +
      "}";
  REQUIRE(small.size() == max_object_bytes);
  const watch_line ok = lines.read(small, count);
  CHECK(ok.what == watch_line::kind::event);
  CHECK(ok.resource_version == "7");
  CHECK(delivered == 1);
}

TEST_CASE("wire_format: an ERROR event's message is one line") {
  watch_line_decoder lines;
  const watch_line w = lines.read(
      R"({"type":"ERROR","object":{"kind":"Status","code":500,"message":"bad\nINFO forged"}})",
      [](watch_event_type, simdjson::ondemand::object&) { FAIL("delivered"); });
  CHECK(w.what == watch_line::kind::error);
  CHECK(w.code == 500);
  CHECK(w.message == "bad\\nINFO forged");
}
