// The JSON the API server sends for list and watch, read in place with simdjson On-Demand: a
// List page (metadata.resourceVersion, metadata.continue, items) and one watch event line
// ({"type": ..., "object": ...}). No I/O and no threads: the reflector feeds the bytes it
// received, the unit tests and tests/fuzz feed bytes directly. What is done with the objects
// (decoding, the store) is the caller's.
#pragma once

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <string_view>

namespace sluice::kube {

/// Watch event kinds delivered to the sink (BOOKMARK and ERROR are handled inside).
enum class watch_event_type { added, modified, deleted };

/// "ADDED", "MODIFIED", "DELETED".
std::string_view to_string(watch_event_type t);

/// What the first part of a List page says.
struct list_page_header {
  std::string resource_version;  ///< metadata.resourceVersion ("" when absent)
  std::string continue_token;    ///< metadata.continue ("" on the last page)
};

/// Reads one List page at a time. open() reads the page's metadata and finds `items`; items()
/// then hands every item that is a mapping to a callback, in document order. The body must stay
/// alive and unchanged until items() returns. The parser's buffers are reused from page to page.
class list_page_reader {
 public:
  /// The body is read in place: its capacity grows by simdjson's padding if it has to. Fails,
  /// with the reason for a log line, when the body is not a JSON object whose `items` is a list
  /// or null.
  std::expected<list_page_header, std::string_view> open(std::string& body);

  /// Calls `item(object)` for each mapping in `items` (the object is valid during the call).
  /// Returns how many items were skipped because they were not mappings. open() has checked the
  /// whole page, so no JSON error turns up halfway, after some items were delivered.
  std::expected<std::size_t, std::string_view> items(
      const std::function<void(simdjson::ondemand::object&)>& item);

  /// Gives the parser's buffers back (they grow to the largest page).
  void release() {
    parser_ = simdjson::ondemand::parser{};
    validator_ = simdjson::dom::parser{};
  }

 private:
  simdjson::ondemand::parser parser_;
  // Checks the whole page before any item is handed over: On-Demand finds a structural error
  // only where it reads, and a page that fails must not have delivered half its items.
  simdjson::dom::parser validator_;
  simdjson::ondemand::document page_;
  simdjson::ondemand::value items_;
  bool has_items_ = false;
};

/// One line of a watch body, classified.
struct watch_line {
  enum class kind : std::uint8_t {
    event,     ///< ADDED / MODIFIED / DELETED, handed to the callback
    bookmark,  ///< BOOKMARK: only its resourceVersion matters
    error,     ///< ERROR: a metav1.Status (410 = relist)
    malformed  ///< anything else: the watch must be restarted
  };
  kind what = kind::malformed;
  watch_event_type type = watch_event_type::added;  ///< event
  /// event: the object's metadata.resourceVersion (never empty); bookmark: the same, may be "".
  std::string resource_version;
  std::int64_t code = 0;  ///< error: the Status code (0 when absent or not an integer)
  /// error: the Status message; malformed: why, for a log line (never names the contents).
  std::string message;
};

/// Reads watch lines (one JSON object each, as line_reader splits them). A line is validated
/// whole (simdjson DOM, no model) before anything of it is handed over, so that a malformed line
/// restarts the watch before any of it reaches the sink; then it is read in place with
/// On-Demand. The buffers are reused from line to line.
class watch_line_decoder {
 public:
  using event_fn = std::function<void(watch_event_type, simdjson::ondemand::object&)>;

  /// Classifies `line`. For an ADDED/MODIFIED/DELETED event whose object has a
  /// metadata.resourceVersion, calls `event(type, object)` (valid during the call) before
  /// returning; an event without one is malformed and is not handed over.
  watch_line read(std::string_view line, const event_fn& event);

 private:
  simdjson::ondemand::parser parser_;
  simdjson::dom::parser validator_;
  std::string line_;  // the current line, with room for simdjson's padding
};

/// metadata.resourceVersion of `obj` ("" when absent or not a string); leaves `obj` reset.
std::string object_resource_version(simdjson::ondemand::object& obj);

/// `s` as simdjson input in place: its capacity grows by the padding simdjson reads past the
/// text when it has to (a copy only then).
simdjson::padded_string_view padded(std::string& s);

}  // namespace sluice::kube
