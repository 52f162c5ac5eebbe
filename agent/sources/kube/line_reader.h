// Splits a byte stream (an HTTP watch body arriving in arbitrary chunks) into lines. A line
// may span any number of chunks and be hundreds of KB long (an EndpointSlice with managedFields);
// a bound on the line size turns a runaway stream into an error instead of unbounded memory.
#pragma once

#include <cstddef>
#include <expected>
#include <functional>
#include <string>
#include <string_view>

namespace sluice::kube {

/// Incremental line splitter. Lines end at '\n'; a trailing '\r' is removed (CRLF tolerant);
/// empty lines are skipped (a watch stream never carries meaningful empty lines).
class line_reader {
 public:
  /// `on_line` gets each complete line without its terminator; the view is valid only during
  /// the call. Returning false stops the feed (the rest of the chunk stays unread and is
  /// dropped: call reset() before reusing the reader).
  using line_fn = std::function<bool(std::string_view line)>;

  enum class feed_result { ok, stopped, line_too_long };

  explicit line_reader(std::size_t max_line_bytes = std::size_t{64} << 20)
      : max_line_(max_line_bytes) {}

  /// Consumes one chunk. Complete lines are delivered in order. line_too_long when a line
  /// (without terminator) exceeds the bound; the reader must then be reset().
  feed_result feed(std::string_view chunk, const line_fn& on_line);

  /// Bytes of an unterminated last line (a truncated event when the stream broke).
  std::string_view pending() const { return buf_; }

  /// Forgets any partial line.
  void reset() { buf_.clear(); }

 private:
  bool deliver(std::string_view line, const line_fn& on_line);

  std::size_t max_line_;
  std::string buf_;  // the start of a line whose end has not arrived yet
};

}  // namespace sluice::kube
