// List pages and watch lines read in place (see wire_format.h).
#include "agent/sources/kube/wire_format.h"

#include <fmt/format.h>

#include "agent/sources/decode.h"

namespace sluice::kube {

namespace od = simdjson::ondemand;

std::string_view to_string(watch_event_type t) {
  switch (t) {
    case watch_event_type::added:
      return "ADDED";
    case watch_event_type::modified:
      return "MODIFIED";
    case watch_event_type::deleted:
      return "DELETED";
  }
  return "?";
}

simdjson::padded_string_view padded(std::string& s) {
  if (s.capacity() - s.size() < simdjson::SIMDJSON_PADDING) {
    s.reserve(s.size() + simdjson::SIMDJSON_PADDING);
  }
  return simdjson::padded_string_view(s.data(), s.size(), s.capacity());
}

std::string object_resource_version(od::object& obj) {
  std::string out;
  od::object md;
  std::string_view rv;
  if (obj.find_field_unordered("metadata").get_object().get(md) == simdjson::SUCCESS &&
      md.find_field_unordered("resourceVersion").get_string().get(rv) == simdjson::SUCCESS) {
    out = rv;
  }
  (void)obj.reset();
  return out;
}

std::expected<list_page_header, std::string_view> list_page_reader::open(std::string& body) {
  constexpr std::string_view not_a_list = "is not a List object";
  has_items_ = false;
  od::object page_obj;
  const simdjson::padded_string_view text = padded(body);
  simdjson::dom::element valid;
  if (validator_.parse(text.data(), text.length(), false).get(valid) != simdjson::SUCCESS ||
      reserve_for_decode(parser_, body.size()) != simdjson::SUCCESS ||
      parser_.iterate(text).get(page_) != simdjson::SUCCESS ||
      page_.get_object().get(page_obj) != simdjson::SUCCESS) {
    return std::unexpected(not_a_list);
  }
  // metadata comes before items from the API server; find_field_unordered copes otherwise.
  list_page_header header;
  od::value md;
  if (const auto e = page_obj.find_field_unordered("metadata").get(md); e == simdjson::SUCCESS) {
    od::object md_obj;
    if (md.get_object().get(md_obj) == simdjson::SUCCESS) {
      for (auto field : md_obj) {
        std::string_view key, value;
        if (field.unescaped_key().get(key) != simdjson::SUCCESS) {
          return std::unexpected(not_a_list);
        }
        if ((key == "resourceVersion" || key == "continue") &&
            field.value().get_string().get(value) == simdjson::SUCCESS) {
          (key == "continue" ? header.continue_token : header.resource_version) = value;
        }
      }
    }
  } else if (e != simdjson::NO_SUCH_FIELD) {
    return std::unexpected(not_a_list);
  }
  od::json_type items_type{};
  if (page_obj.find_field_unordered("items").get(items_) != simdjson::SUCCESS ||
      items_.type().get(items_type) != simdjson::SUCCESS ||
      (items_type != od::json_type::array && items_type != od::json_type::null)) {
    return std::unexpected(not_a_list);
  }
  has_items_ = items_type == od::json_type::array;
  return header;
}

std::expected<std::size_t, std::string_view> list_page_reader::items(
    const std::function<void(od::object&)>& item) {
  std::size_t skipped = 0;
  if (!has_items_) {
    return skipped;
  }
  has_items_ = false;
  od::array items;
  if (items_.get_array().get(items) != simdjson::SUCCESS) {
    return std::unexpected("is not a List object");
  }
  for (auto item_result : items) {
    od::value value;
    od::json_type type{};
    if (item_result.get(value) != simdjson::SUCCESS ||
        value.type().get(type) != simdjson::SUCCESS) {
      return std::unexpected("is not valid JSON");
    }
    od::object obj;
    if (type != od::json_type::object || value.get_object().get(obj) != simdjson::SUCCESS) {
      ++skipped;
      continue;
    }
    item(obj);
  }
  return skipped;
}

watch_line watch_line_decoder::read(std::string_view line, const event_fn& event) {
  watch_line out;
  const auto bad = [&](std::string_view why) {
    out.what = watch_line::kind::malformed;
    out.message = why;
    return out;
  };
  if (line.size() > max_object_bytes) {
    out.what = watch_line::kind::malformed;
    out.message = fmt::format("larger than the limit of {} bytes", max_object_bytes);
    return out;
  }
  line_.reserve(line.size() + simdjson::SIMDJSON_PADDING);
  line_.assign(line);
  simdjson::dom::element valid;
  od::document ev;
  od::object ev_obj;
  if (validator_.parse(line_.data(), line_.size(), false).get(valid) != simdjson::SUCCESS ||
      !valid.is_object() || reserve_for_decode(parser_, line_.size()) != simdjson::SUCCESS ||
      parser_.iterate(padded(line_)).get(ev) != simdjson::SUCCESS ||
      ev.get_object().get(ev_obj) != simdjson::SUCCESS) {
    return bad("not JSON");
  }
  std::string_view type;
  od::object obj;
  if (ev_obj.find_field_unordered("type").get_string().get(type) != simdjson::SUCCESS ||
      ev_obj.find_field_unordered("object").get_object().get(obj) != simdjson::SUCCESS) {
    return bad("no type/object");
  }
  if (type == "ADDED") {
    out.type = watch_event_type::added;
  } else if (type == "MODIFIED") {
    out.type = watch_event_type::modified;
  } else if (type == "DELETED") {
    out.type = watch_event_type::deleted;
  } else if (type == "BOOKMARK") {
    out.what = watch_line::kind::bookmark;
    out.resource_version = object_resource_version(obj);
    return out;
  } else if (type == "ERROR") {
    // A metav1.Status: code and message, if they are what they should be.
    out.what = watch_line::kind::error;
    for (auto field : obj) {
      std::string_view key, text;
      if (field.unescaped_key().get(key) != simdjson::SUCCESS) {
        break;
      }
      if (key == "code") {
        if (field.value().get_int64().get(out.code) != simdjson::SUCCESS) {
          out.code = 0;
        }
      } else if (key == "message" && field.value().get_string().get(text) == simdjson::SUCCESS) {
        out.message = sluice::printable(text);  // from the server, for one log line
      }
    }
    return out;
  } else {
    return bad("unknown event type");
  }
  out.resource_version = object_resource_version(obj);
  if (out.resource_version.empty()) {
    return bad("object without metadata.resourceVersion");
  }
  out.what = watch_line::kind::event;
  event(out.type, obj);
  return out;
}

}  // namespace sluice::kube
