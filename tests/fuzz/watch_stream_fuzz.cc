// The watch stream of the Kubernetes source: the body of a watch response, as libcurl hands it
// over in pieces, through line_reader (the framer), watch_line_decoder (one event per line:
// ADDED / MODIFIED / DELETED / BOOKMARK / ERROR) and the kube_source into a cluster_store,
// with the reflector's rule that an ERROR or malformed line ends the watch.
//
// Input: one byte choosing the resource (kube_sink.h: 'S', 'E', 'N', 'P'), one byte seeding the
// chunking, then the body.
//
// Properties, beyond "no crash, no sanitizer report":
// - the chunking does not matter: the body fed whole and fed in random pieces (1..32 bytes)
//   gives the same lines, the same classified events, the same end (clean, stopped by a line,
//   line too long), the same unterminated rest and the same store contents and counters;
// - CRLF is the same as LF (for a body without '\r' that ends with a newline, with the line
//   bound one byte larger for the '\r');
// - each event's object decodes the same read in place and read alone.
#include <string>
#include <vector>

#include "agent/sources/kube/line_reader.h"
#include "agent/sources/kube/wire_format.h"
#include "tests/fuzz/kube_sink.h"

using namespace sluice;
using namespace sluice::fuzz;
using sluice::kube::line_reader;
using sluice::kube::watch_line;
using sluice::kube::watch_line_decoder;

namespace {

// Small, so that fuzz inputs reach the line_too_long path.
constexpr std::size_t max_line = 2048;

struct outcome {
  std::vector<std::string> lines;  // one per classified line
  std::string end;
  std::string pending;
  kube_sink::view store;
  bool operator==(const outcome&) const = default;
};

std::string describe(const watch_line& w) {
  switch (w.what) {
    case watch_line::kind::event:
      return fmt::format("event {} rv={}", kube::to_string(w.type), w.resource_version);
    case watch_line::kind::bookmark:
      return fmt::format("bookmark rv={}", w.resource_version);
    case watch_line::kind::error:
      return fmt::format("error {} {}", w.code, w.message);
    case watch_line::kind::malformed:
      return fmt::format("malformed ({})", w.message);
  }
  return "?";
}

// Feeds `body` in pieces of the given sizes (the rest in one piece) and returns what happened.
outcome run(const resource_choice& res, std::string_view body, const std::vector<std::size_t>& sizes,
            std::size_t line_bound) {
  kube_sink sink;
  outcome out;
  // The list that precedes every watch (empty), so that the kind is synced as in the agent.
  sink.source.list_begin(res.resource);
  sink.source.list_end(res.resource, "1");
  line_reader reader(line_bound);
  watch_line_decoder decoder;
  const std::string_view kind = kind_name(res.kind);
  const auto on_line = [&](std::string_view line) {
    const watch_line w =
        decoder.read(line, [&](kube::watch_event_type t, simdjson::ondemand::object& obj) {
          check_in_place(obj, kind);
          sink.source.event(res.resource, t, obj);
        });
    out.lines.push_back(describe(w));
    return w.what == watch_line::kind::event || w.what == watch_line::kind::bookmark;
  };
  out.end = "clean";
  std::size_t i = 0;
  for (std::size_t k = 0; i < body.size(); ++k) {
    const std::size_t n = k < sizes.size() ? std::min(sizes[k], body.size() - i) : body.size() - i;
    const auto r = reader.feed(body.substr(i, n), on_line);
    i += n;
    if (r == line_reader::feed_result::stopped) {
      out.end = "stopped";
      break;
    }
    if (r == line_reader::feed_result::line_too_long) {
      out.end = "line too long";
      break;
    }
  }
  // What stays unread after a stop depends on where the piece ended; compare it only after a
  // clean end, where it is the truncated last event.
  if (out.end == "clean") {
    out.pending = reader.pending();
  }
  out.store = sink.snapshot();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const resource_choice res = resource_of(data[0]);
  std::uint32_t seed = data[1] * 2654435761u + static_cast<std::uint32_t>(size);
  const std::string_view body = as_text(data + 2, size - 2);

  const outcome whole = run(res, body, {}, max_line);

  std::vector<std::size_t> sizes;
  for (std::size_t covered = 0; covered < body.size();) {
    seed = seed * 1103515245u + 12345u;
    sizes.push_back(1 + (seed >> 16) % 32);
    covered += sizes.back();
  }
  const outcome pieces = run(res, body, sizes, max_line);
  FUZZ_ASSERT(whole == pieces, "chunking changed the result: {} lines/{} whole, {} lines/{} in pieces",
              whole.lines.size(), whole.end, pieces.lines.size(), pieces.end);

  if (body.find('\r') == std::string_view::npos && (body.empty() || body.back() == '\n')) {
    std::string crlf;
    for (const char c : body) {
      crlf += c == '\n' ? "\r\n" : std::string(1, c);
    }
    const outcome dos = run(res, crlf, {}, max_line + 1);
    FUZZ_ASSERT(whole == dos, "CRLF changed the result: {} lines/{} with LF, {} lines/{} with CRLF",
                whole.lines.size(), whole.end, dos.lines.size(), dos.end);
  }
  return 0;
}
