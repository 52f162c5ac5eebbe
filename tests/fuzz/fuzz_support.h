// What the fuzz targets share: the property check that makes libFuzzer keep the input, JSON
// rewriting for the differential properties, and comparison of decode results.
#pragma once

#include <fmt/format.h>
#include <simdjson.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/sources/decode.h"

namespace sluice::fuzz {

// A property that must hold for every input. On failure: what failed, then abort(), which
// libFuzzer reports as a crash and saves the input as a reproducer.
#define FUZZ_ASSERT(cond, ...)                                                          \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "\nfuzz property failed: %s\n  at %s:%d\n", #cond, __FILE__, \
                   __LINE__);                                                           \
      std::fputs(fmt::format(__VA_ARGS__).c_str(), stderr);                             \
      std::fputc('\n', stderr);                                                         \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A message for one log line: no line breaks or other control characters, C0, DEL or C1
// (which would let an object's contents forge log lines or drive a terminal).
inline bool one_line(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x20 || u == 0x7f ||
        (u == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) <= 0x9f &&
         static_cast<unsigned char>(s[i + 1]) >= 0x80)) {
      return false;
    }
  }
  return true;
}

// The default kind of a decode input, from its first byte: '-' none (the object's own kind),
// 'S' Service, 'E' EndpointSlice, 'N' Node, 'P' Pod, 'L' legacy Endpoints; other bytes pick one
// of these by value. Seeds start with the letter, so that they stay readable.
inline std::string_view default_kind_of(std::uint8_t b) {
  switch (b) {
    case '-':
      return "";
    case 'S':
      return "Service";
    case 'E':
      return "EndpointSlice";
    case 'N':
      return "Node";
    case 'P':
      return "Pod";
    case 'L':
      return "Endpoints";
    default: {
      static constexpr std::string_view kinds[] = {"",    "Service", "EndpointSlice",
                                                   "Node", "Pod",     "Endpoints"};
      return kinds[b % 6];
    }
  }
}

using decoded = std::expected<kube_object, decode_error>;

// One line about a decode result, for failure reports.
inline std::string show(const decoded& r) {
  if (!r) {
    return fmt::format("error{{ignored={}, message=\"{}\", path=\"{}\"}}", r.error().ignored,
                       r.error().message, r.error().path);
  }
  return std::visit(
      [](const auto& o) {
        if constexpr (requires { o.namespace_; }) {
          return fmt::format("object {}/{} (rv \"{}\")", o.namespace_, o.name,
                             [&] {
                               if constexpr (requires { o.resource_version; }) {
                                 return o.resource_version;
                               } else {
                                 return std::string();
                               }
                             }());
        } else {
          return fmt::format("node {} (rv \"{}\")", o.name, o.resource_version);
        }
      },
      *r);
}

// Same object, or the same error (kind of error, message and path).
inline bool same(const decoded& a, const decoded& b) {
  if (a.has_value() != b.has_value()) {
    return false;
  }
  if (a) {
    return *a == *b;
  }
  return a.error().ignored == b.error().ignored && a.error().message == b.error().message &&
         a.error().path == b.error().path;
}

// What every decode result must satisfy, whatever the input.
inline void check_decoded(const decoded& r) {
  if (!r) {
    FUZZ_ASSERT(!r.error().message.empty(), "empty error message");
    FUZZ_ASSERT(one_line(r.error().message), "message is not one line: {}", show(r));
    return;
  }
  std::visit(
      [&](const auto& o) {
        FUZZ_ASSERT(!o.name.empty(), "decoded without a name: {}", show(r));
        if constexpr (requires { o.namespace_; }) {
          FUZZ_ASSERT(!o.namespace_.empty(), "decoded without a namespace: {}", show(r));
        }
      },
      *r);
}

namespace detail {

// Writes `v` with the keys of every mapping in reverse order; false on a repeated key.
inline bool write_reversed(simdjson::ondemand::value v, std::string& out) {
  namespace od = simdjson::ondemand;
  od::json_type type;
  if (v.type().get(type) != simdjson::SUCCESS) {
    return false;
  }
  switch (type) {
    case od::json_type::object: {
      od::object obj;
      if (v.get_object().get(obj) != simdjson::SUCCESS) {
        return false;
      }
      std::vector<std::string> fields;
      std::set<std::string, std::less<>> keys;
      for (auto f : obj) {
        od::field field;
        std::string_view key;
        if (std::move(f).get(field) != simdjson::SUCCESS ||
            field.unescaped_key().get(key) != simdjson::SUCCESS ||
            !keys.emplace(key).second) {
          return false;
        }
        std::string item = nlohmann::json(std::string(key)).dump() + ":";
        if (!write_reversed(field.value(), item)) {
          return false;
        }
        fields.push_back(std::move(item));
      }
      out += '{';
      for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
        out += it == fields.rbegin() ? "" : ",";
        out += *it;
      }
      out += '}';
      return true;
    }
    case od::json_type::array: {
      od::array arr;
      if (v.get_array().get(arr) != simdjson::SUCCESS) {
        return false;
      }
      out += '[';
      bool first = true;
      for (auto item : arr) {
        od::value value;
        if (item.get(value) != simdjson::SUCCESS) {
          return false;
        }
        out += first ? "" : ",";
        first = false;
        if (!write_reversed(value, out)) {
          return false;
        }
      }
      out += ']';
      return true;
    }
    default: {
      // Scalars exactly as written (numbers are shown as written in messages).
      std::string_view raw = v.raw_json_token();
      while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' ||
                              raw.back() == '\t')) {
        raw.remove_suffix(1);
      }
      out += raw;
      return true;
    }
  }
}

}  // namespace detail

// `text` with the keys of every mapping in reverse order, scalars as written; nullopt when the
// text is not valid JSON (strictly: simdjson's DOM parser), its root is not a mapping, or a
// mapping repeats a key (where order decides which value counts).
inline std::optional<std::string> reversed_keys(std::string_view text) {
  static simdjson::dom::parser validator;
  static simdjson::ondemand::parser parser;
  const simdjson::padded_string padded(text);
  simdjson::dom::element root;
  if (validator.parse(padded).get(root) != simdjson::SUCCESS || !root.is_object()) {
    return std::nullopt;
  }
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  // A document's root cannot be taken as a value: walk its fields here.
  std::vector<std::string> fields;
  std::set<std::string, std::less<>> keys;
  for (auto f : obj) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(f).get(field) != simdjson::SUCCESS ||
        field.unescaped_key().get(key) != simdjson::SUCCESS || !keys.emplace(key).second) {
      return std::nullopt;
    }
    std::string item = nlohmann::json(std::string(key)).dump() + ":";
    if (!detail::write_reversed(field.value(), item)) {
      return std::nullopt;
    }
    fields.push_back(std::move(item));
  }
  std::string out = "{";
  for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
    out += it == fields.rbegin() ? "" : ",";
    out += *it;
  }
  out += '}';
  return out;
}

}  // namespace sluice::fuzz
