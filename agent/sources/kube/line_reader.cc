// Incremental line splitting for watch streams (see line_reader.h).
#include "agent/sources/kube/line_reader.h"

namespace sluice::kube {

bool line_reader::deliver(std::string_view line, const line_fn& on_line) {
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (line.empty()) {
    return true;
  }
  return on_line(line);
}

line_reader::feed_result line_reader::feed(std::string_view chunk, const line_fn& on_line) {
  while (!chunk.empty()) {
    const std::size_t nl = chunk.find('\n');
    if (nl == std::string_view::npos) {
      // Only the new bytes are scanned on every call, so a line spread over many chunks costs
      // linear time in its length.
      if (buf_.size() + chunk.size() > max_line_) {
        buf_.clear();
        return feed_result::line_too_long;
      }
      buf_.append(chunk);
      return feed_result::ok;
    }
    bool go_on;
    if (buf_.empty()) {
      // Common case: the whole line is inside this chunk; no copy.
      if (nl > max_line_) {
        return feed_result::line_too_long;
      }
      go_on = deliver(chunk.substr(0, nl), on_line);
    } else {
      if (buf_.size() + nl > max_line_) {
        buf_.clear();
        return feed_result::line_too_long;
      }
      buf_.append(chunk.substr(0, nl));
      std::string line = std::move(buf_);
      buf_.clear();
      go_on = deliver(line, on_line);
    }
    chunk.remove_prefix(nl + 1);
    if (!go_on) {
      return feed_result::stopped;
    }
  }
  return feed_result::ok;
}

}  // namespace sluice::kube
