// decode_object(): simdjson On-Demand -> model objects, in one pass over each object. Scalars
// are captured into slots as their keys go by (views into the parser's buffers, no copies) and
// checked after the object's last field, in the order the fields are described; lists, maps and
// nested objects are decoded where they are met. Strings are copied only into the model; field
// paths for messages are a chain of stack frames rendered only when something is wrong.
//
// Error codes only: simdjson is used through its error_code API and nothing here throws (the
// catch in decode_object() is for std::bad_alloc from the model's containers).
#include "agent/sources/decode.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace sluice {

namespace {

namespace od = simdjson::ondemand;
using od::json_type;

// A field path as a chain of frames on the caller's stack ("spec", "ports", [1], "port").
struct path {
  static constexpr std::size_t no_index = std::numeric_limits<std::size_t>::max();

  const path* parent = nullptr;
  std::string_view key;
  std::size_t index = no_index;

  path field(std::string_view k) const { return path{this, k, no_index}; }
  path item(std::size_t i) const { return path{this, {}, i}; }

  std::string str() const {
    std::vector<const path*> chain;
    for (const path* p = this; p != nullptr; p = p->parent) {
      chain.push_back(p);
    }
    std::string out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      const path& p = **it;
      if (p.index != no_index) {
        out += fmt::format("[{}]", p.index);
      } else if (!p.key.empty()) {
        if (!out.empty()) {
          out += '.';
        }
        out += p.key;
      }
    }
    return out;
  }
};

// A malformed field: the field named in the message, what is wrong with it, and where the
// offending value is (decode_error::path).
struct failure {
  std::string field;
  std::string message;
  std::string where;
  // simdjson reported an error: its iterator is dead, the object cannot be read again.
  bool broken_json = false;
};

template <typename T>
using result = std::expected<T, failure>;

std::unexpected<failure> fail(const path& p, std::string message) {
  std::string field = p.str();
  std::string where = field;
  return std::unexpected(failure{std::move(field), std::move(message), std::move(where)});
}

// A failure of field `p` located at `where` (the parent, for a missing field).
std::unexpected<failure> fail_in(const path& p, const path& where, std::string message) {
  return std::unexpected(failure{p.str(), std::move(message), where.str()});
}

std::unexpected<failure> fail_json(const path& p, simdjson::error_code e) {
  std::unexpected<failure> f = fail(p, fmt::format("malformed JSON ({})", simdjson::error_message(e)));
  f.error().broken_json = true;
  return f;
}

}  // namespace

std::string_view json_type_name(json_type t) {
  switch (t) {
    case json_type::object:
      return "a mapping";
    case json_type::array:
      return "a list";
    case json_type::string:
      return "a string";
    case json_type::boolean:
      return "a boolean";
    case json_type::number:
      return "a number";
    default:
      return "null";
  }
}

namespace {

// A scalar field as captured during the pass. Mappings and lists keep only their type (the
// parent skips them), which is all a message about a scalar field needs.
struct scalar {
  enum class number_kind : uint8_t { none, integer, too_big, fraction };

  json_type type = json_type::null;  // null also when absent: the API's nil
  number_kind number = number_kind::none;
  int64_t integer = 0;
  std::string_view text;  // strings: contents; numbers and booleans: as written

  bool null() const { return type == json_type::null; }
};

std::string_view trim_right(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

result<scalar> capture(od::value& v, const path& p) {
  scalar s;
  if (auto e = v.type().get(s.type); e) {
    return fail_json(p, e);
  }
  switch (s.type) {
    case json_type::string:
      if (auto e = v.get_string().get(s.text); e) {
        return fail_json(p, e);
      }
      break;
    case json_type::number: {
      s.text = trim_right(v.raw_json_token());
      // int64, else uint64 (too big for any field), else a fraction; a failed get does not
      // consume the value.
      uint64_t big = 0;
      double fraction = 0;
      if (v.get_int64().get(s.integer) == simdjson::SUCCESS) {
        s.number = scalar::number_kind::integer;
      } else if (v.get_uint64().get(big) == simdjson::SUCCESS) {
        s.number = scalar::number_kind::too_big;
      } else if (auto e = v.get_double().get(fraction); e) {
        return fail_json(p, e);
      } else {
        s.number = scalar::number_kind::fraction;
      }
      break;
    }
    case json_type::boolean: {
      bool b = false;
      if (auto e = v.get_bool().get(b); e) {
        return fail_json(p, e);
      }
      s.text = b ? "true" : "false";
      break;
    }
    case json_type::null: {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null); e || !is_null) {
        return fail_json(p, e ? e : simdjson::N_ATOM_ERROR);
      }
      break;
    }
    default:
      break;  // a mapping or a list: left for the parent to skip
  }
  return s;
}

// A value for "got ..." messages: strings quoted, numbers and booleans as written, else the type.
std::string show(const scalar& s) {
  if (s.type == json_type::string) {
    return fmt::format("\"{}\"", s.text);
  }
  if (s.type == json_type::number || s.type == json_type::boolean) {
    return std::string(s.text);
  }
  return std::string(json_type_name(s.type));
}

// A string; nullopt when absent or null.
result<std::optional<std::string_view>> get_string(const scalar& s, const path& at) {
  if (s.null()) {
    return std::nullopt;
  }
  if (s.type != json_type::string) {
    return fail(at, fmt::format("expected a string, got {}", json_type_name(s.type)));
  }
  return s.text;
}

// A string field where absent and "" mean the same.
result<std::string_view> get_text(const scalar& s, const path& at) {
  const result<std::optional<std::string_view>> text = get_string(s, at);
  if (!text) {
    return std::unexpected(text.error());
  }
  return text->value_or(std::string_view());
}

// An integer in [min, max]; nullopt when absent. A JSON string or a fraction is not an integer
// (the API server rejects both for an int32 field).
result<std::optional<int64_t>> get_int(const scalar& s, const path& at, int64_t min, int64_t max) {
  if (s.null()) {
    return std::nullopt;
  }
  if (s.type != json_type::number || s.number == scalar::number_kind::fraction) {
    return fail(at, fmt::format("expected an integer, got {}", show(s)));
  }
  if (s.number == scalar::number_kind::too_big || s.integer < min || s.integer > max) {
    return fail(at, fmt::format("{} is out of range {}..{}", s.text, min, max));
  }
  return s.integer;
}

result<std::optional<bool>> get_bool(const scalar& s, const path& at) {
  if (s.null()) {
    return std::nullopt;
  }
  if (s.type != json_type::boolean) {
    return fail(at, fmt::format("expected true or false, got {}", show(s)));
  }
  return s.text == "true";
}

// An IP address; a missing (or null) one is reported at `parent`.
result<ip_addr> get_ip(const scalar& s, const path& at, const path& parent) {
  if (s.null()) {
    return fail_in(at, parent, "expected an IP address, got null");
  }
  const result<std::optional<std::string_view>> text = get_string(s, at);
  if (!text) {
    return std::unexpected(text.error());
  }
  const std::optional<ip_addr> addr = parse_ip(**text);
  if (!addr) {
    return fail(at, fmt::format("\"{}\" is not an IP address", **text));
  }
  return *addr;
}

// A CIDR list entry, sloppy like kube-proxy's ParseCIDRSloppy (TrimSpace, host bits allowed).
result<ip_prefix> get_prefix(const scalar& s, const path& at) {
  const result<std::optional<std::string_view>> text = get_string(s, at);
  if (!text) {
    return std::unexpected(text.error());
  }
  const std::optional<ip_prefix> prefix =
      *text ? parse_prefix(**text, true) : std::optional<ip_prefix>();
  if (!prefix) {
    return fail(at, fmt::format("{} is not a CIDR", show(s)));
  }
  return *prefix;
}

// One of an enum's names, as a value. The empty text (absent or null) is the first name: the API
// server's default. Anything else fails naming the accepted ones: `unknown NOUN "x" (want A, B
// or C)`.
template <typename T>
result<T> get_one_of(const scalar& s, const path& at, std::string_view noun,
                     std::initializer_list<std::pair<std::string_view, T>> names) {
  const result<std::string_view> text = get_text(s, at);
  if (!text) {
    return std::unexpected(text.error());
  }
  if (text->empty()) {
    return names.begin()->second;
  }
  std::string want;
  size_t i = 0;
  for (const auto& [name, value] : names) {
    if (*text == name) {
      return value;
    }
    want += i == 0 ? "" : i + 1 == names.size() ? " or " : ", ";
    want += name;
    ++i;
  }
  return fail(at, fmt::format("unknown {} \"{}\" (want {})", noun, *text, want));
}

result<uint8_t> get_protocol(const scalar& s, const path& at) {
  return get_one_of<uint8_t>(s, at, "protocol",
                             {{"TCP", IPPROTO_TCP}, {"UDP", IPPROTO_UDP}, {"SCTP", IPPROTO_SCTP}});
}

// A named port (IANA_SVC_NAME): 1..15 of [a-z0-9-], at least one letter.
bool is_port_name(std::string_view name) {
  if (name.empty() || name.size() > 15) {
    return false;
  }
  bool letter = false;
  for (const char c : name) {
    if (c >= 'a' && c <= 'z') {
      letter = true;
    } else if (!(c >= '0' && c <= '9') && c != '-') {
      return false;
    }
  }
  return letter;
}

// A field's key. Keys without escapes (all the API server writes) are a view of the input up to
// the closing quote, which stage 1 guarantees is there; others are unescaped by simdjson.
simdjson::error_code key_of(od::field& field, std::string_view& key) {
  const char* const start = field.key().raw();
  const char* end = start;
  for (; *end != '"'; ++end) {
    if (*end == '\\') {
      return field.unescaped_key().get(key);
    }
  }
  key = std::string_view(start, static_cast<std::size_t>(end - start));
  return simdjson::SUCCESS;
}

// Calls `each(key, value)` for every field of `obj`, in document order.
template <typename F>
result<void> for_fields(od::object& obj, const path& at, F&& each) {
  for (auto field_result : obj) {
    od::field field;
    if (auto e = std::move(field_result).get(field); e) {
      return fail_json(at, e);
    }
    std::string_view key;
    if (auto e = key_of(field, key); e) {
      return fail_json(at, e);
    }
    if (result<void> r = each(key, field.value()); !r) {
      return r;
    }
  }
  return {};
}

// `v` as a mapping; nullopt when null.
result<std::optional<od::object>> get_object(od::value& v, const path& at) {
  json_type type;
  if (auto e = v.type().get(type); e) {
    return fail_json(at, e);
  }
  if (type == json_type::null) {
    return std::nullopt;
  }
  if (type != json_type::object) {
    return fail(at, fmt::format("expected a mapping, got {}", json_type_name(type)));
  }
  od::object obj;
  if (auto e = v.get_object().get(obj); e) {
    return fail_json(at, e);
  }
  return obj;
}

// for_fields() over a mapping-or-null value; `present` tells whether it was not null.
template <typename F>
result<void> for_fields_of(od::value& v, const path& at, F&& each, bool* present = nullptr) {
  result<std::optional<od::object>> obj = get_object(v, at);
  if (!obj) {
    return std::unexpected(std::move(obj.error()));
  }
  if (present != nullptr) {
    *present = obj->has_value();
  }
  if (!*obj) {
    return {};
  }
  return for_fields(**obj, at, each);
}

// Calls `each(item, item_path)` for every element of a list-or-null value; stops at the first
// failure.
template <typename F>
result<void> for_items(od::value& v, const path& at, F&& each) {
  json_type type;
  if (auto e = v.type().get(type); e) {
    return fail_json(at, e);
  }
  if (type == json_type::null) {
    return {};
  }
  if (type != json_type::array) {
    return fail(at, fmt::format("expected a list, got {}", json_type_name(type)));
  }
  od::array list;
  if (auto e = v.get_array().get(list); e) {
    return fail_json(at, e);
  }
  std::size_t i = 0;
  for (auto item_result : list) {
    const path item_path = at.item(i++);
    od::value item;
    if (auto e = std::move(item_result).get(item); e) {
      return fail_json(item_path, e);
    }
    if (result<void> r = each(item, item_path); !r) {
      return r;
    }
  }
  return {};
}

// Like for_items, but every element must be a mapping: `each(object, item_path)`.
template <typename F>
result<void> for_objects(od::value& v, const path& at, F&& each) {
  return for_items(v, at, [&](od::value& item, const path& p) -> result<void> {
    json_type type;
    if (auto e = item.type().get(type); e) {
      return fail_json(p, e);
    }
    if (type != json_type::object) {
      return fail(p, fmt::format("expected a mapping, got {}", json_type_name(type)));
    }
    od::object obj;
    if (auto e = item.get_object().get(obj); e) {
      return fail_json(p, e);
    }
    return each(obj, p);
  });
}

// Calls `each(scalar, item_path)` for every element of a list-or-null value.
template <typename F>
result<void> for_scalars(od::value& v, const path& at, F&& each) {
  return for_items(v, at, [&](od::value& item, const path& p) -> result<void> {
    const result<scalar> s = capture(item, p);
    if (!s) {
      return std::unexpected(s.error());
    }
    return each(*s, p);
  });
}

// Appends `decode(object, item_path)` of every element of a list-or-null of mappings to `out`.
template <typename T, typename F>
result<void> append_objects(od::value& v, const path& at, std::vector<T>& out, F&& decode) {
  return for_objects(v, at, [&](od::object& obj, const path& p) -> result<void> {
    result<T> item = decode(obj, p);
    if (!item) {
      return std::unexpected(std::move(item.error()));
    }
    out.push_back(std::move(*item));
    return {};
  });
}

// Appends `get(scalar, item_path)` of every element of a list-or-null to `out`.
template <typename T, typename F>
result<void> append_scalars(od::value& v, const path& at, std::vector<T>& out, F&& get) {
  return for_scalars(v, at, [&](const scalar& s, const path& p) -> result<void> {
    result<T> item = get(s, p);
    if (!item) {
      return std::unexpected(std::move(item.error()));
    }
    out.push_back(std::move(*item));
    return {};
  });
}

// Failures of nested fields (lists, maps, objects), held back so that they are reported in the
// order the fields are checked in, as if read in that order, whatever order they come in.
// Malformed JSON is not held: nothing after it can be read. Empty (no allocation) when all is
// well.
class held_failures {
 public:
  // `r`, with its failure held under `key` (a repeated key replaces it).
  result<void> hold(std::string_view key, result<void>&& r) {
    if (r && held_.empty()) [[likely]] {
      return {};
    }
    std::erase_if(held_, [&](const auto& h) { return h.first == key; });
    if (r || r.error().broken_json) {
      return r;
    }
    held_.emplace_back(key, std::move(r.error()));
    return {};
  }

  // The failure held for the first of `keys` that has one, if any.
  result<void> check(std::initializer_list<std::string_view> keys) {
    for (const std::string_view key : keys) {
      for (auto& [k, f] : held_) {
        if (k == key) {
          return std::unexpected(std::move(f));
        }
      }
    }
    return {};
  }

 private:
  std::vector<std::pair<std::string_view, failure>> held_;  // keys: views of the input
};

// `each(key, value)` with its failures held in `held` by key.
template <typename F>
auto holding(held_failures& held, F each) {
  return [&held, each = std::move(each)](std::string_view key, od::value& v) mutable {
    return held.hold(key, each(key, v));
  };
}

// Captures the value of a scalar field into `slot`.
result<void> take(scalar& slot, od::value& v, const path& at) {
  result<scalar> s = capture(v, at);
  if (!s) {
    return std::unexpected(std::move(s.error()));
  }
  slot = *s;
  return {};
}

// A scalar field for scalar_fields(): its key and the slot its value is captured into.
struct scalar_field {
  std::string_view key;
  scalar* slot;
};

// The callback for the keys no table lists: skipped.
struct skip_field {
  result<void> operator()(std::string_view, od::value&) const { return {}; }
};

// A for_fields() callback that captures the fields listed in `fields` into their slots and
// hands every other key to `other`. A repeated key: the last one wins.
template <std::size_t N, typename F = skip_field>
auto scalar_fields(const path& at, const scalar_field (&fields)[N], F other = {}) {
  return [at, fields = std::to_array(fields), other = std::move(other)](
             std::string_view key, od::value& v) mutable -> result<void> {
    for (const scalar_field& f : fields) {
      if (key == f.key) {
        return take(*f.slot, v, at.field(key));
      }
    }
    return other(key, v);
  };
}

// Reads the listed scalar fields of `obj` and skips the rest.
template <std::size_t N>
result<void> take_fields(od::object& obj, const path& at, const scalar_field (&fields)[N]) {
  return for_fields(obj, at, scalar_fields(at, fields));
}

// map[string]string (labels, annotations, selector). A null value reads as "".
// Of several values that are not strings, the one with the smallest key is reported, so that
// the error does not depend on the order of the keys (decode.h).
result<std::map<std::string, std::string>> get_string_map(od::value& v, const path& at) {
  std::map<std::string, std::string> out;
  std::optional<std::pair<std::string, failure>> bad;
  if (result<void> r =
          for_fields_of(v, at,
                        [&](std::string_view k, od::value& item) -> result<void> {
                          const result<scalar> s = capture(item, at);
                          if (!s) {
                            return std::unexpected(s.error());
                          }
                          if (!s->null() && s->type != json_type::string) {
                            if (!bad || k < bad->first) {
                              bad.emplace(std::string(k),
                                          failure{at.str(),
                                                  fmt::format("value of \"{}\": expected a "
                                                              "string, got {}",
                                                              k, json_type_name(s->type)),
                                                  fmt::format("{}[\"{}\"]", at.str(), k)});
                            }
                            return {};
                          }
                          // Go writes map keys sorted, so the hint is right nearly always; a
                          // repeated key: the last one wins.
                          out.insert_or_assign(out.end(), std::string(k), std::string(s->text));
                          return {};
                        });
      !r) {
    return std::unexpected(std::move(r.error()));
  }
  if (bad) {
    return std::unexpected(std::move(bad->second));
  }
  return out;
}

// The metadata fields every kind shares.
struct metadata {
  std::string namespace_ = "default";
  std::string name;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string resource_version;
  bool deleting = false;  // deletionTimestamp set
};

// Moves the metadata fields that `out`'s kind has into it (deletionTimestamp is left to each kind).
template <typename T>
void adopt_metadata(metadata&& meta, T& out) {
  if constexpr (requires { out.namespace_; }) {
    out.namespace_ = std::move(meta.namespace_);
  }
  out.name = std::move(meta.name);
  out.labels = std::move(meta.labels);
  if constexpr (requires { out.annotations; }) {
    out.annotations = std::move(meta.annotations);
  }
  if constexpr (requires { out.resource_version; }) {
    out.resource_version = std::move(meta.resource_version);
  }
}

// `v` is the value of "metadata".
result<metadata> decode_metadata(od::value& v, const path& root) {
  metadata out;
  const path mp = root.field("metadata");
  scalar name, ns, rv, deletion;
  held_failures held;
  bool present = false;
  const auto each = [&](std::string_view key, od::value& f) -> result<void> {
    if (key == "labels" || key == "annotations") {
      result<std::map<std::string, std::string>> m = get_string_map(f, mp.field(key));
      if (!m) {
        return held.hold(key, std::unexpected(std::move(m.error())));
      }
      (key == "labels" ? out.labels : out.annotations) = std::move(*m);
      return held.hold(key, {});
    }
    return {};
  };
  if (result<void> r = for_fields_of(v, mp,
                                     scalar_fields(mp,
                                                   {{"name", &name},
                                                    {"namespace", &ns},
                                                    {"resourceVersion", &rv},
                                                    {"deletionTimestamp", &deletion}},
                                                   each),
                                     &present);
      !r) {
    return std::unexpected(std::move(r.error()));
  }
  if (!present) {
    return fail_in(mp, root, "missing");
  }
  const result<std::string_view> name_text = get_text(name, mp.field("name"));
  if (!name_text) {
    return std::unexpected(name_text.error());
  }
  if (name_text->empty()) {
    return fail_in(mp.field("name"), mp, "missing");
  }
  out.name = *name_text;
  const result<std::string_view> ns_text = get_text(ns, mp.field("namespace"));
  if (!ns_text) {
    return std::unexpected(ns_text.error());
  }
  if (!ns_text->empty()) {
    out.namespace_ = *ns_text;
  }
  if (result<void> r = held.check({"labels", "annotations"}); !r) {
    return std::unexpected(std::move(r.error()));
  }
  // resourceVersion is a string in the API; a number (hand-written file) is shown as written.
  out.resource_version = rv.text;
  out.deleting = !deletion.null();
  return out;
}

// ---- Service ----

result<service_port> decode_service_port(od::object& p, const path& pp) {
  scalar name, protocol, number, target, node_port;
  if (result<void> r = take_fields(p, pp,
                                   {{"name", &name},
                                    {"protocol", &protocol},
                                    {"port", &number},
                                    {"targetPort", &target},
                                    {"nodePort", &node_port}});
      !r) {
    return std::unexpected(std::move(r.error()));
  }
  service_port port;
  const result<std::string_view> name_text = get_text(name, pp.field("name"));
  if (!name_text) {
    return std::unexpected(name_text.error());
  }
  port.name = *name_text;
  const result<uint8_t> proto = get_protocol(protocol, pp.field("protocol"));
  if (!proto) {
    return std::unexpected(proto.error());
  }
  port.protocol = *proto;
  const result<std::optional<int64_t>> value = get_int(number, pp.field("port"), 1, 65535);
  if (!value) {
    return std::unexpected(value.error());
  }
  if (!*value) {
    return fail_in(pp.field("port"), pp, "missing");
  }
  port.port = static_cast<uint16_t>(**value);
  // IntOrString. 0, "" and absent all mean "same as port" (the API server's defaulting).
  port.target_port = port.port;
  const path field = pp.field("targetPort");
  if (target.type == json_type::number && target.number != scalar::number_kind::fraction) {
    const result<std::optional<int64_t>> t = get_int(target, field, 0, 65535);
    if (!t) {
      return std::unexpected(t.error());
    }
    if (**t != 0) {
      port.target_port = static_cast<uint16_t>(**t);
    }
  } else if (target.type == json_type::string) {
    const std::string_view text = target.text;
    const bool digits = !text.empty() && text.find_first_not_of("0123456789") == text.npos;
    if (digits) {
      // A quoted number in a hand-written file: read as the number it spells.
      int64_t t = 0;
      if (text.size() <= 6) {
        std::from_chars(text.data(), text.data() + text.size(), t);
      }
      if (t < 1 || t > 65535) {
        return fail(field, fmt::format("{} is out of range 1..65535", text));
      }
      port.target_port = static_cast<uint16_t>(t);
    } else if (is_port_name(text)) {
      port.target_port = std::string(text);
    } else if (!text.empty()) {
      return fail(field, fmt::format("\"{}\" is neither a port number nor a port name", text));
    }
  } else if (!target.null()) {
    return fail(field,
                fmt::format("expected a port number or name, got {}", json_type_name(target.type)));
  }
  const result<std::optional<int64_t>> np = get_int(node_port, pp.field("nodePort"), 0, 65535);
  if (!np) {
    return std::unexpected(np.error());
  }
  port.node_port = static_cast<uint16_t>(np->value_or(0));
  return port;
}

result<traffic_policy> get_traffic_policy(const scalar& s, const path& at) {
  return get_one_of<traffic_policy>(
      s, at, "policy", {{"Cluster", traffic_policy::cluster}, {"Local", traffic_policy::local}});
}

// spec.sessionAffinityConfig, read as it goes by but judged only for ClientIP affinity (as
// before: a broken config of a service without affinity is not an error).
struct affinity_config {
  std::optional<int64_t> timeout;
  std::optional<failure> error;
};

affinity_config decode_affinity_config(od::value& v, const path& cp) {
  affinity_config out;
  const path ip = cp.field("clientIP");
  result<void> r = for_fields_of(v, cp, [&](std::string_view key, od::value& c) -> result<void> {
    if (key != "clientIP") {
      return {};
    }
    return for_fields_of(c, ip, [&](std::string_view k, od::value& t) -> result<void> {
      if (k != "timeoutSeconds") {
        return {};
      }
      const path tp = ip.field(k);
      const result<scalar> s = capture(t, tp);
      if (!s) {
        return std::unexpected(s.error());
      }
      const result<std::optional<int64_t>> timeout = get_int(*s, tp, 1, max_affinity_timeout_s);
      if (!timeout) {
        return std::unexpected(timeout.error());
      }
      out.timeout = *timeout;
      return {};
    });
  });
  if (!r) {
    out.error = std::move(r.error());
  }
  return out;
}

result<void> decode_service_spec(od::object& spec, const path& sp, service& svc) {
  scalar type, cluster_ip, affinity, etp, itp, hc, distribution, pnra, family_policy, allocate,
      external_name;
  const scalar_field scalars[] = {
      {"type", &type},
      {"externalName", &external_name},
      {"clusterIP", &cluster_ip},
      {"sessionAffinity", &affinity},
      {"externalTrafficPolicy", &etp},
      {"internalTrafficPolicy", &itp},
      {"healthCheckNodePort", &hc},
      {"trafficDistribution", &distribution},
      {"publishNotReadyAddresses", &pnra},
      {"ipFamilyPolicy", &family_policy},
      {"allocateLoadBalancerNodePorts", &allocate},
  };
  std::vector<std::string_view> cluster_ips;  // spec.clusterIPs, checked with spec.clusterIP
  std::optional<affinity_config> config;
  held_failures held;
  const auto each = [&](std::string_view key, od::value& v) -> result<void> {
    const path f = sp.field(key);
    if (key == "clusterIPs") {
      cluster_ips.clear();
      return for_scalars(v, f, [&](const scalar& s, const path& p) -> result<void> {
        const result<std::optional<std::string_view>> text = get_string(s, p);
        if (!text) {
          return std::unexpected(text.error());
        }
        if (!*text || (*text)->empty()) {
          return fail(p, "empty address");
        }
        cluster_ips.push_back(**text);
        return {};
      });
    }
    if (key == "ports") {
      svc.ports.clear();
      return for_objects(v, f, [&](od::object& p, const path& pp) -> result<void> {
        if (svc.ports.size() == max_service_ports) {
          return fail(f, fmt::format("more than {} ports", max_service_ports));
        }
        result<service_port> port = decode_service_port(p, pp);
        if (!port) {
          return std::unexpected(std::move(port.error()));
        }
        for (const service_port& seen : svc.ports) {
          if (seen.port == port->port && seen.protocol == port->protocol) {
            return fail(
                pp, fmt::format("duplicate port {}/{}", port->port, protocol_name(port->protocol)));
          }
          if (seen.name == port->name) {
            return fail_in(pp.field("name"), pp,
                           port->name.empty()
                               ? std::string("required when the service has several ports")
                               : fmt::format("duplicate port name \"{}\"", port->name));
          }
        }
        svc.ports.push_back(std::move(*port));
        return {};
      });
    }
    if (key == "sessionAffinityConfig") {
      config = decode_affinity_config(v, f);
      return {};
    }
    if (key == "externalIPs") {
      svc.external_ips.clear();
      return append_scalars(v, f, svc.external_ips,
                            [](const scalar& s, const path& p) { return get_ip(s, p, p); });
    }
    if (key == "loadBalancerSourceRanges") {
      svc.lb_source_ranges.clear();
      return append_scalars(v, f, svc.lb_source_ranges, get_prefix);
    }
    if (key == "selector") {
      result<std::map<std::string, std::string>> selector = get_string_map(v, f);
      if (!selector) {
        return std::unexpected(std::move(selector.error()));
      }
      svc.selector = std::move(*selector);
      return {};
    }
    if (key == "ipFamilies") {
      svc.ip_families.clear();
      return for_scalars(v, f, [&](const scalar& s, const path& p) -> result<void> {
        const result<std::optional<std::string_view>> text = get_string(s, p);
        if (!text) {
          return std::unexpected(text.error());
        }
        ip_family family;
        if (*text == "IPv4") {
          family = ip_family::v4;
        } else if (*text == "IPv6") {
          family = ip_family::v6;
        } else {
          return fail(p, fmt::format("unknown IP family {} (want IPv4 or IPv6)", show(s)));
        }
        for (const ip_family seen : svc.ip_families) {
          if (seen == family) {
            return fail(p, fmt::format("duplicate IP family {}", show(s)));
          }
        }
        svc.ip_families.push_back(family);
        return {};
      });
    }
    return {};
  };
  // Scalars are captured by the table, the rest go to `each` with their failures held (a
  // scalar's only failure, malformed JSON, would not be held anyway).
  if (result<void> r = for_fields(spec, sp, scalar_fields(sp, scalars, holding(held, each))); !r) {
    return r;
  }
  // In the order the old DOM decoder looked fields up, so one object gets the same message.

  const result<service_type> type_value =
      get_one_of<service_type>(type, sp.field("type"), "type",
                               {{"ClusterIP", service_type::cluster_ip},
                                {"NodePort", service_type::node_port},
                                {"LoadBalancer", service_type::load_balancer},
                                {"ExternalName", service_type::external_name}});
  if (!type_value) {
    return std::unexpected(type_value.error());
  }
  svc.type = *type_value;
  svc.external_name.clear();
  if (svc.type == service_type::external_name) {
    const result<std::string_view> target = get_text(external_name, sp.field("externalName"));
    if (!target) {
      return std::unexpected(target.error());
    }
    svc.external_name = std::string(*target);
  }

  if (result<void> r = held.check({"clusterIPs"}); !r) {
    return r;
  }
  // spec.clusterIPs, else spec.clusterIP; when both are set the first must agree.
  const result<std::string_view> single = get_text(cluster_ip, sp.field("clusterIP"));
  if (!single) {
    return std::unexpected(single.error());
  }
  const bool from_list = !cluster_ips.empty();
  if (!from_list) {
    if (!single->empty()) {
      cluster_ips.push_back(*single);
    }
  } else if (!single->empty() && *single != cluster_ips[0]) {
    return fail(sp.field("clusterIP"), fmt::format("\"{}\" differs from spec.clusterIPs[0] \"{}\"",
                                                   *single, cluster_ips[0]));
  }
  svc.headless = false;
  svc.cluster_ips.clear();
  const path list_path = sp.field("clusterIPs");
  for (std::size_t i = 0; i < cluster_ips.size(); ++i) {
    const path field = from_list ? list_path.item(i) : sp.field("clusterIP");
    if (cluster_ips[i] == "None") {
      if (cluster_ips.size() != 1) {
        return fail(field, "\"None\" cannot be combined with addresses");
      }
      svc.headless = true;
      break;
    }
    const std::optional<ip_addr> addr = parse_ip(cluster_ips[i]);
    if (!addr) {
      return fail(field, fmt::format("\"{}\" is not an IP address", cluster_ips[i]));
    }
    for (const ip_addr& seen : svc.cluster_ips) {
      if (seen.family == addr->family) {
        return fail(field, "at most one address per IP family");
      }
    }
    svc.cluster_ips.push_back(*addr);
  }

  if (result<void> r = held.check({"ports"}); !r) {
    return r;
  }
  const result<bool> client_ip = get_one_of<bool>(affinity, sp.field("sessionAffinity"), "value",
                                                  {{"None", false}, {"ClientIP", true}});
  if (!client_ip) {
    return std::unexpected(client_ip.error());
  }
  if (*client_ip) {
    svc.session_affinity_client_ip = true;
    svc.affinity_timeout_s = default_affinity_timeout_s;
    if (config) {
      if (config->error) {
        return std::unexpected(*config->error);
      }
      if (config->timeout) {
        svc.affinity_timeout_s = static_cast<uint32_t>(*config->timeout);
      }
    }
  }

  if (result<void> r = held.check({"externalIPs", "loadBalancerSourceRanges"}); !r) {
    return r;
  }
  const result<traffic_policy> external =
      get_traffic_policy(etp, sp.field("externalTrafficPolicy"));
  if (!external) {
    return std::unexpected(external.error());
  }
  svc.external_policy = *external;
  const result<traffic_policy> internal =
      get_traffic_policy(itp, sp.field("internalTrafficPolicy"));
  if (!internal) {
    return std::unexpected(internal.error());
  }
  svc.internal_policy = *internal;

  const result<std::optional<int64_t>> hc_port =
      get_int(hc, sp.field("healthCheckNodePort"), 0, 65535);
  if (!hc_port) {
    return std::unexpected(hc_port.error());
  }
  svc.health_check_node_port = static_cast<uint16_t>(hc_port->value_or(0));

  const result<std::string_view> distribution_text =
      get_text(distribution, sp.field("trafficDistribution"));
  if (!distribution_text) {
    return std::unexpected(distribution_text.error());
  }
  svc.traffic_distribution = *distribution_text;

  if (result<void> r = held.check({"selector"}); !r) {
    return r;
  }
  const result<std::optional<bool>> pnra_value =
      get_bool(pnra, sp.field("publishNotReadyAddresses"));
  if (!pnra_value) {
    return std::unexpected(pnra_value.error());
  }
  svc.publish_not_ready_addresses = pnra_value->value_or(false);

  if (result<void> r = held.check({"ipFamilies"}); !r) {
    return r;
  }
  const result<ip_family_policy> policy =
      get_one_of<ip_family_policy>(family_policy, sp.field("ipFamilyPolicy"), "policy",
                                   {{"SingleStack", ip_family_policy::single_stack},
                                    {"PreferDualStack", ip_family_policy::prefer_dual_stack},
                                    {"RequireDualStack", ip_family_policy::require_dual_stack}});
  if (!policy) {
    return std::unexpected(policy.error());
  }
  svc.family_policy = *policy;

  const result<std::optional<bool>> allocate_value =
      get_bool(allocate, sp.field("allocateLoadBalancerNodePorts"));
  if (!allocate_value) {
    return std::unexpected(allocate_value.error());
  }
  svc.allocate_lb_node_ports = allocate_value->value_or(true);
  return {};
}

// status.loadBalancer.ingress
result<void> decode_service_status(od::value& v, const path& st,
                                   std::vector<load_balancer_ingress>& out) {
  out.clear();
  return for_fields_of(v, st, [&](std::string_view key, od::value& lb) -> result<void> {
    if (key != "loadBalancer") {
      return {};
    }
    const path lp = st.field(key);
    return for_fields_of(lb, lp, [&](std::string_view k, od::value& list) -> result<void> {
      if (k != "ingress") {
        return {};
      }
      out.clear();
      return for_objects(list, lp.field(k), [&](od::object& ing, const path& p) -> result<void> {
        scalar ip, mode;
        if (result<void> r = take_fields(ing, p, {{"ip", &ip}, {"ipMode", &mode}}); !r) {
          return r;
        }
        const result<std::string_view> ip_text = get_text(ip, p.field("ip"));
        if (!ip_text) {
          return std::unexpected(ip_text.error());
        }
        const result<bool> proxy =
            get_one_of<bool>(mode, p.field("ipMode"), "ipMode", {{"VIP", false}, {"Proxy", true}});
        if (!proxy) {
          return std::unexpected(proxy.error());
        }
        load_balancer_ingress entry;
        entry.ip_mode_proxy = *proxy;
        if (ip_text->empty()) {
          return {};  // hostname-only (AWS ELB style): nothing to program
        }
        const result<ip_addr> addr = get_ip(ip, p.field("ip"), p);
        if (!addr) {
          return std::unexpected(addr.error());
        }
        entry.ip = *addr;
        out.push_back(entry);
        return {};
      });
    });
  });
}

// The fields of a Service after metadata.
struct service_body {
  service svc;
  bool spec_seen = false, has_spec = false;
  std::vector<load_balancer_ingress> ingress;
  held_failures held;

  result<void> field(std::string_view key, od::value& v, const path& root) {
    if (key == "spec") {
      const path sp = root.field(key);
      result<std::optional<od::object>> spec = get_object(v, sp);
      if (!spec) {
        return std::unexpected(std::move(spec.error()));
      }
      if (spec_seen) {
        svc = service{};  // a repeated spec replaces the first
      }
      spec_seen = true;
      has_spec = spec->has_value();
      return has_spec ? decode_service_spec(**spec, sp, svc) : result<void>();
    }
    if (key == "status") {
      return held.hold(key, decode_service_status(v, root.field(key), ingress));
    }
    return {};
  }

  result<service> finish(od::object&, const path& root, metadata&& meta) {
    if (!has_spec) {
      return fail_in(root.field("spec"), root, "missing");
    }
    if (result<void> r = held.check({"status"}); !r) {
      return std::unexpected(std::move(r.error()));
    }
    adopt_metadata(std::move(meta), svc);
    svc.lb_ingress = std::move(ingress);
    return std::move(svc);
  }
};

// ---- EndpointSlice ----

result<endpoint_port> decode_endpoint_port(od::object& p, const path& pp) {
  scalar name, number, protocol;
  if (result<void> r =
          take_fields(p, pp, {{"name", &name}, {"port", &number}, {"protocol", &protocol}});
      !r) {
    return std::unexpected(std::move(r.error()));
  }
  endpoint_port port;
  const result<std::optional<std::string_view>> name_text = get_string(name, pp.field("name"));
  if (!name_text) {
    return std::unexpected(name_text.error());
  }
  if (*name_text) {
    port.name = **name_text;
  }
  const result<std::optional<int64_t>> value = get_int(number, pp.field("port"), 1, 65535);
  if (!value) {
    return std::unexpected(value.error());
  }
  if (*value) {
    port.port = static_cast<uint16_t>(**value);
  }
  const result<uint8_t> proto = get_protocol(protocol, pp.field("protocol"));
  if (!proto) {
    return std::unexpected(proto.error());
  }
  port.protocol = *proto;
  return port;
}

// hints.forZones / hints.forNodes: lists of {name}.
result<void> decode_hint_names(od::value& v, const path& hp, std::vector<std::string>& names,
                               bool& present) {
  names.clear();
  json_type type;
  if (auto e = v.type().get(type); e) {
    return fail_json(hp, e);
  }
  present = type != json_type::null;
  return for_objects(v, hp, [&](od::object& h, const path& p) -> result<void> {
    scalar name;
    if (result<void> r = take_fields(h, p, {{"name", &name}}); !r) {
      return r;
    }
    const result<std::string_view> text = get_text(name, p.field("name"));
    if (!text) {
      return std::unexpected(text.error());
    }
    names.emplace_back(*text);
    return {};
  });
}

result<endpoint> decode_endpoint(od::object& e, const path& ep_path, slice_address_type type,
                                 std::string_view type_text) {
  endpoint ep;
  const ip_family want = type == slice_address_type::ipv4 ? ip_family::v4 : ip_family::v6;
  scalar node_name, zone;
  held_failures held;
  const auto each = [&](std::string_view key, od::value& v) -> result<void> {
    const path f = ep_path.field(key);
    if (key == "addresses") {
      ep.addresses.clear();
      return for_scalars(v, f, [&](const scalar& a, const path& p) -> result<void> {
        if (type == slice_address_type::fqdn) {
          // Type check only: FQDN slices carry no IPs.
          const result<std::optional<std::string_view>> s = get_string(a, p);
          return s ? result<void>() : std::unexpected(s.error());
        }
        const result<ip_addr> addr = get_ip(a, p, p);
        if (!addr) {
          return std::unexpected(addr.error());
        }
        if (addr->family != want) {
          return fail(
              p, fmt::format("\"{}\" does not match addressType {}", format_ip(*addr), type_text));
        }
        ep.addresses.push_back(*addr);
        return {};
      });
    }
    if (key == "conditions") {
      scalar ready, serving, terminating;
      if (result<void> c = for_fields_of(
              v, f,
              scalar_fields(
                  f, {{"ready", &ready}, {"serving", &serving}, {"terminating", &terminating}}));
          !c) {
        return c;
      }
      for (const auto& [k, slot, value] :
           {std::tuple{"ready", &ep.ready, &ready}, std::tuple{"serving", &ep.serving, &serving},
            std::tuple{"terminating", &ep.terminating, &terminating}}) {
        const result<std::optional<bool>> b = get_bool(*value, f.field(k));
        if (!b) {
          return std::unexpected(b.error());
        }
        *slot = *b;
      }
      return {};
    }
    if (key == "hints") {
      return for_fields_of(v, f, [&](std::string_view k, od::value& x) -> result<void> {
        if (k == "forZones") {
          return decode_hint_names(x, f.field(k), ep.hints_for_zones, ep.has_zone_hints);
        }
        if (k == "forNodes") {
          return decode_hint_names(x, f.field(k), ep.hints_for_nodes, ep.has_node_hints);
        }
        return {};
      });
    }
    return {};
  };
  if (result<void> r = for_fields(
          e, ep_path,
          scalar_fields(ep_path, {{"nodeName", &node_name}, {"zone", &zone}}, holding(held, each)));
      !r) {
    return std::unexpected(std::move(r.error()));
  }
  // The old lookup order: addresses, conditions, nodeName, zone, hints.
  if (result<void> r = held.check({"addresses", "conditions"}); !r) {
    return std::unexpected(std::move(r.error()));
  }
  const result<std::string_view> node_text = get_text(node_name, ep_path.field("nodeName"));
  if (!node_text) {
    return std::unexpected(node_text.error());
  }
  ep.node_name = *node_text;
  const result<std::string_view> zone_text = get_text(zone, ep_path.field("zone"));
  if (!zone_text) {
    return std::unexpected(zone_text.error());
  }
  ep.zone = *zone_text;
  if (result<void> r = held.check({"hints"}); !r) {
    return std::unexpected(std::move(r.error()));
  }
  return ep;
}

// The fields of an EndpointSlice after metadata. Endpoints are decoded against addressType; when
// they come first (a file's keys sorted), they are read in a second pass over the object.
struct slice_body {
  endpoint_slice slice;
  scalar address_type;
  std::optional<slice_address_type> type;  // set once addressType is known to be valid
  bool endpoints_deferred = false;
  held_failures held;

  result<void> set_type(od::value& v, const path& root) {
    type.reset();
    if (result<void> r = take(address_type, v, root.field("addressType")); !r) {
      return r;
    }
    if (address_type.type != json_type::string) {
      return {};  // reported by finish()
    }
    if (address_type.text == "IPv4") {
      type = slice_address_type::ipv4;
    } else if (address_type.text == "IPv6") {
      type = slice_address_type::ipv6;
    } else if (address_type.text == "FQDN") {
      type = slice_address_type::fqdn;
    }
    return {};
  }

  result<void> decode_endpoints(od::value& v, const path& root) {
    slice.endpoints.clear();
    result<void> r = append_objects(v, root.field("endpoints"), slice.endpoints,
                                    [&](od::object& e, const path& p) -> result<endpoint> {
                                      if (slice.endpoints.size() == max_slice_endpoints) {
                                        return fail(root.field("endpoints"),
                                                    fmt::format("more than {} endpoints (the "
                                                                "Kubernetes limit)",
                                                                max_slice_endpoints));
                                      }
                                      return decode_endpoint(e, p, *type, address_type.text);
                                    });
    // Doubling leaves a third of the capacity unused on average, and 100k endpoints are held
    // for the agent's lifetime (an on-demand array has no cheap count to reserve from).
    slice.endpoints.shrink_to_fit();
    return r;
  }

  result<void> field(std::string_view key, od::value& v, const path& root) {
    if (key == "addressType") {
      return set_type(v, root);
    }
    if (key == "endpoints") {
      if (!type) {
        endpoints_deferred = true;
        return {};
      }
      endpoints_deferred = false;
      return decode_endpoints(v, root);
    }
    if (key == "ports") {
      slice.ports.clear();
      return held.hold(key, append_objects(v, root.field(key), slice.ports,
                                           [&](od::object& p, const path& pp) -> result<endpoint_port> {
                                             if (slice.ports.size() == max_slice_ports) {
                                               return fail(root.field(key),
                                                           fmt::format("more than {} ports (the "
                                                                       "Kubernetes limit)",
                                                                       max_slice_ports));
                                             }
                                             return decode_endpoint_port(p, pp);
                                           }));
    }
    return {};
  }

  result<endpoint_slice> finish(od::object& obj, const path& root, metadata&& meta) {
    const path tp = root.field("addressType");
    const result<std::string_view> text = get_text(address_type, tp);
    if (!text) {
      return std::unexpected(text.error());
    }
    if (text->empty()) {
      return fail_in(tp, root, "missing");
    }
    if (!type) {
      return fail(tp, fmt::format("unknown address type \"{}\" (want IPv4, IPv6 or FQDN)", *text));
    }
    slice.address_type = *type;
    if (endpoints_deferred) {
      if (auto e = obj.reset().error(); e) {
        return fail_json(root.field("endpoints"), e);
      }
      if (result<void> r = for_fields(obj, root,
                                      [&](std::string_view key, od::value& v) -> result<void> {
                                        return key == "endpoints" ? decode_endpoints(v, root)
                                                                  : result<void>();
                                      });
          !r) {
        return std::unexpected(std::move(r.error()));
      }
    }
    if (result<void> r = held.check({"ports"}); !r) {
      return std::unexpected(std::move(r.error()));
    }
    slice.service_name = meta.labels.find(std::string(label_service_name))->second;
    adopt_metadata(std::move(meta), slice);
    return std::move(slice);
  }
};

// ---- Node ----

struct node_body {
  node n;
  scalar pod_cidr;  // spec.podCIDR: used when spec.podCIDRs is empty
  held_failures held;

  result<void> decode_spec(od::value& v, const path& sp) {
    n.pod_cidrs.clear();
    n.to_be_deleted_taint = false;
    pod_cidr = scalar{};
    const auto each = [&](std::string_view key, od::value& x) -> result<void> {
      const path f = sp.field(key);
      if (key == "podCIDRs") {
        n.pod_cidrs.clear();
        return append_scalars(x, f, n.pod_cidrs, get_prefix);
      }
      if (key == "taints") {
        return for_objects(x, f, [&](od::object& t, const path& p) -> result<void> {
          scalar taint_key;
          if (result<void> r = take_fields(t, p, {{"key", &taint_key}}); !r) {
            return r;
          }
          const result<std::string_view> text = get_text(taint_key, p.field("key"));
          if (!text) {
            return std::unexpected(text.error());
          }
          if (*text == "ToBeDeletedByClusterAutoscaler") {
            n.to_be_deleted_taint = true;
          }
          return {};
        });
      }
      return {};
    };
    return for_fields_of(v, sp, scalar_fields(sp, {{"podCIDR", &pod_cidr}}, holding(held, each)));
  }

  result<void> decode_status(od::value& v, const path& st) {
    return for_fields_of(v, st, [&](std::string_view key, od::value& x) -> result<void> {
      if (key != "addresses") {
        return {};
      }
      n.internal_ips.clear();
      n.external_ips.clear();
      return for_objects(x, st.field(key), [&](od::object& a, const path& p) -> result<void> {
        scalar type, address;
        if (result<void> r = take_fields(a, p, {{"type", &type}, {"address", &address}}); !r) {
          return r;
        }
        const result<std::string_view> type_text = get_text(type, p.field("type"));
        if (!type_text) {
          return std::unexpected(type_text.error());
        }
        const bool internal = *type_text == "InternalIP";
        if (!internal && *type_text != "ExternalIP") {
          return {};  // Hostname, InternalDNS, ...: not addresses we serve on
        }
        const result<ip_addr> addr = get_ip(address, p.field("address"), p);
        if (!addr) {
          return std::unexpected(addr.error());
        }
        (internal ? n.internal_ips : n.external_ips).push_back(*addr);
        return {};
      });
    });
  }

  result<void> field(std::string_view key, od::value& v, const path& root) {
    if (key == "spec") {
      return decode_spec(v, root.field(key));
    }
    if (key == "status") {
      return held.hold(key, decode_status(v, root.field(key)));
    }
    return {};
  }

  result<node> finish(od::object&, const path& root, metadata&& meta) {
    if (result<void> r = held.check({"podCIDRs"}); !r) {
      return std::unexpected(std::move(r.error()));
    }
    if (n.pod_cidrs.empty() && !pod_cidr.null()) {
      const result<ip_prefix> prefix = get_prefix(pod_cidr, root.field("spec").field("podCIDR"));
      if (!prefix) {
        return std::unexpected(prefix.error());
      }
      n.pod_cidrs.push_back(*prefix);
    }
    if (result<void> r = held.check({"taints", "status"}); !r) {
      return std::unexpected(std::move(r.error()));
    }
    n.deleting = meta.deleting;
    adopt_metadata(std::move(meta), n);
    return std::move(n);
  }
};

// ---- Pod ----

// One of a container's ports (spec.containers[].ports[]).
result<pod_port> decode_container_port(od::object& p, const path& pp) {
  scalar name, number, protocol, host_port, host_ip;
  if (result<void> r = take_fields(p, pp,
                                   {{"name", &name},
                                    {"containerPort", &number},
                                    {"protocol", &protocol},
                                    {"hostPort", &host_port},
                                    {"hostIP", &host_ip}});
      !r) {
    return std::unexpected(std::move(r.error()));
  }
  pod_port port;
  const result<std::string_view> name_text = get_text(name, pp.field("name"));
  if (!name_text) {
    return std::unexpected(name_text.error());
  }
  port.name = *name_text;
  const result<std::optional<int64_t>> value = get_int(number, pp.field("containerPort"), 1, 65535);
  if (!value) {
    return std::unexpected(value.error());
  }
  if (!*value) {
    return fail_in(pp.field("containerPort"), pp, "missing");
  }
  port.container_port = static_cast<uint16_t>(**value);
  const result<uint8_t> proto = get_protocol(protocol, pp.field("protocol"));
  if (!proto) {
    return std::unexpected(proto.error());
  }
  port.protocol = *proto;
  const result<std::optional<int64_t>> hp = get_int(host_port, pp.field("hostPort"), 0, 65535);
  if (!hp) {
    return std::unexpected(hp.error());
  }
  port.host_port = static_cast<uint16_t>(hp->value_or(0));
  const result<std::string_view> host_ip_text = get_text(host_ip, pp.field("hostIP"));
  if (!host_ip_text) {
    return std::unexpected(host_ip_text.error());
  }
  if (!host_ip_text->empty()) {
    const result<ip_addr> addr = get_ip(host_ip, pp.field("hostIP"), pp);
    if (!addr) {
      return std::unexpected(addr.error());
    }
    port.host_ip = *addr;
  }
  return port;
}

// Ports of spec.containers or spec.initContainers. Only init containers that keep running
// (restartPolicy Always, "sidecars") have ports the EndpointSlice controller resolves named
// targetPorts against; restartPolicy usually comes after ports, so a container's ports are
// decoded aside and kept (or their error reported) once the container is read.
result<void> decode_container_ports(od::value& v, const path& cp_list, bool sidecars_only,
                                    std::vector<pod_port>& out) {
  out.clear();
  return for_objects(v, cp_list, [&](od::object& c, const path& cp) -> result<void> {
    scalar restart;
    std::vector<pod_port> ports;
    std::optional<failure> ports_error;
    if (result<void> r =
            for_fields(c, cp,
                       scalar_fields(cp, {{"restartPolicy", &restart}},
                                     [&](std::string_view key, od::value& x) -> result<void> {
                                       if (key != "ports") {
                                         return {};
                                       }
                                       ports.clear();
                                       ports_error.reset();
                                       result<void> pr = append_objects(x, cp.field(key), ports,
                                                                        decode_container_port);
                                       if (!pr) {
                                         ports_error = std::move(pr.error());
                                       }
                                       return {};
                                     }));
        !r) {
      return r;
    }
    if (sidecars_only) {
      const result<std::string_view> policy = get_text(restart, cp.field("restartPolicy"));
      if (!policy) {
        return std::unexpected(policy.error());
      }
      if (*policy != "Always") {
        return {};
      }
    }
    if (ports_error) {
      return std::unexpected(std::move(*ports_error));
    }
    std::move(ports.begin(), ports.end(), std::back_inserter(out));
    return {};
  });
}

struct pod_body {
  pod p;
  std::vector<pod_port> init_ports, container_ports;  // joined in this order, as before
  scalar node_name, host_network, pod_ip, phase;
  bool has_spec = false, has_status = false;
  held_failures held;

  result<void> decode_spec(od::value& v, const path& sp) {
    const auto each = [&](std::string_view key, od::value& x) -> result<void> {
      const path f = sp.field(key);
      if (key == "initContainers") {
        return decode_container_ports(x, f, true, init_ports);
      }
      if (key == "containers") {
        return decode_container_ports(x, f, false, container_ports);
      }
      return {};
    };
    return for_fields_of(
        v, sp,
        scalar_fields(sp, {{"nodeName", &node_name}, {"hostNetwork", &host_network}},
                      holding(held, each)),
        &has_spec);
  }

  result<void> decode_status(od::value& v, const path& st) {
    const auto each = [&](std::string_view key, od::value& x) -> result<void> {
      const path f = st.field(key);
      if (key == "podIPs") {
        p.pod_ips.clear();
        return for_objects(x, f, [&](od::object& item, const path& ip_path) -> result<void> {
          scalar ip;
          if (result<void> r = take_fields(item, ip_path, {{"ip", &ip}}); !r) {
            return r;
          }
          const result<ip_addr> addr = get_ip(ip, ip_path.field("ip"), ip_path);
          if (!addr) {
            return std::unexpected(addr.error());
          }
          p.pod_ips.push_back(*addr);
          return {};
        });
      }
      if (key == "conditions") {
        return for_objects(x, f, [&](od::object& c, const path& cp) -> result<void> {
          scalar type, status;
          if (result<void> r = take_fields(c, cp, {{"type", &type}, {"status", &status}}); !r) {
            return r;
          }
          const result<std::string_view> type_text = get_text(type, cp.field("type"));
          if (!type_text) {
            return std::unexpected(type_text.error());
          }
          if (*type_text != "Ready") {
            return {};
          }
          const result<std::string_view> value = get_text(status, cp.field("status"));
          if (!value) {
            return std::unexpected(value.error());
          }
          p.ready = *value == "True";
          return {};
        });
      }
      return {};
    };
    return for_fields_of(
        v, st, scalar_fields(st, {{"podIP", &pod_ip}, {"phase", &phase}}, holding(held, each)),
        &has_status);
  }

  result<void> field(std::string_view key, od::value& v, const path& root) {
    if (key == "spec") {
      return decode_spec(v, root.field(key));
    }
    if (key == "status") {
      return decode_status(v, root.field(key));
    }
    return {};
  }

  result<pod> finish(od::object&, const path& root, metadata&& meta) {
    if (has_spec) {
      const path sp = root.field("spec");
      const result<std::string_view> node_text = get_text(node_name, sp.field("nodeName"));
      if (!node_text) {
        return std::unexpected(node_text.error());
      }
      p.node_name = *node_text;
      const result<std::optional<bool>> hn = get_bool(host_network, sp.field("hostNetwork"));
      if (!hn) {
        return std::unexpected(hn.error());
      }
      p.host_network = hn->value_or(false);
      if (result<void> r = held.check({"initContainers", "containers"}); !r) {
        return std::unexpected(std::move(r.error()));
      }
      p.ports = std::move(init_ports);
      std::move(container_ports.begin(), container_ports.end(), std::back_inserter(p.ports));
    }
    if (has_status) {
      const path st = root.field("status");
      if (result<void> r = held.check({"podIPs"}); !r) {
        return std::unexpected(std::move(r.error()));
      }
      const result<std::string_view> single = get_text(pod_ip, st.field("podIP"));
      if (!single) {
        return std::unexpected(single.error());
      }
      if (p.pod_ips.empty() && !single->empty()) {
        const result<ip_addr> addr = get_ip(pod_ip, st.field("podIP"), st);
        if (!addr) {
          return std::unexpected(addr.error());
        }
        p.pod_ips.push_back(*addr);
      }
      const result<std::string_view> phase_text = get_text(phase, st.field("phase"));
      if (!phase_text) {
        return std::unexpected(phase_text.error());
      }
      p.finished = *phase_text == "Succeeded" || *phase_text == "Failed";
      if (result<void> r = held.check({"conditions"}); !r) {
        return std::unexpected(std::move(r.error()));
      }
    }
    p.terminating = meta.deleting;
    adopt_metadata(std::move(meta), p);
    return std::move(p);
  }
};

// ---- Endpoints (legacy) ----

result<void> decode_subset_addresses(od::value& v, const path& ap_list,
                                     std::vector<endpoints_subset::address>& out) {
  out.clear();
  return for_objects(v, ap_list, [&](od::object& a, const path& ap) -> result<void> {
    scalar ip, node_name;
    if (result<void> r = take_fields(a, ap, {{"ip", &ip}, {"nodeName", &node_name}}); !r) {
      return r;
    }
    const result<ip_addr> addr = get_ip(ip, ap.field("ip"), ap);
    if (!addr) {
      return std::unexpected(addr.error());
    }
    const result<std::string_view> node_text = get_text(node_name, ap.field("nodeName"));
    if (!node_text) {
      return std::unexpected(node_text.error());
    }
    out.push_back({*addr, std::string(*node_text)});
    return {};
  });
}

struct endpoints_body {
  endpoints eps;

  result<void> field(std::string_view key, od::value& v, const path& root) {
    if (key != "subsets") {
      return {};
    }
    eps.subsets.clear();
    return for_objects(v, root.field(key), [&](od::object& s, const path& sp) -> result<void> {
      endpoints_subset subset;
      // Held, so that with several bad lists the one named does not depend on field order.
      held_failures held;
      if (result<void> r = for_fields(
              s, sp,
              holding(held, [&](std::string_view k, od::value& x) -> result<void> {
                if (k == "addresses") {
                  return decode_subset_addresses(x, sp.field(k), subset.addresses);
                }
                if (k == "notReadyAddresses") {
                  return decode_subset_addresses(x, sp.field(k), subset.not_ready_addresses);
                }
                if (k == "ports") {
                  subset.ports.clear();
                  return for_objects(x, sp.field(k),
                                     [&](od::object& p, const path& pp) -> result<void> {
                                       result<endpoint_port> port = decode_endpoint_port(p, pp);
                                       if (!port) {
                                         return std::unexpected(std::move(port.error()));
                                       }
                                       if (!port->port) {
                                         return fail_in(pp.field("port"), pp, "missing");
                                       }
                                       subset.ports.push_back(std::move(*port));
                                       return {};
                                     });
                }
                return {};
              }));
          !r) {
        return r;
      }
      if (result<void> r = held.check({"addresses", "notReadyAddresses", "ports"}); !r) {
        return r;
      }
      eps.subsets.push_back(std::move(subset));
      return {};
    });
  }

  result<endpoints> finish(od::object&, const path&, metadata&& meta) {
    adopt_metadata(std::move(meta), eps);
    return std::move(eps);
  }
};

// ---- The object ----

struct kind_info {
  std::string_view kind;
  std::string_view api_version;
  bool namespaced;
};

constexpr kind_info known_kinds[] = {
    {"Service", "v1", true},   {"EndpointSlice", "discovery.k8s.io/v1", true},
    {"Node", "v1", false},     {"Pod", "v1", true},
    {"Endpoints", "v1", true},
};

// metadata.name and metadata.namespace, read leniently for messages (another pass over the
// object; only when something is wrong).
struct names {
  std::string ns = "default";
  std::string name;
  bool has_namespace = false;  // metadata.namespace present and not null
};

names lenient_names(od::object& obj) {
  names out;
  if (obj.reset().error()) {
    return out;
  }
  od::object meta;
  if (obj.find_field_unordered("metadata").get_object().get(meta)) {
    return out;
  }
  for (auto field_result : meta) {
    od::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      break;
    }
    if (key != "name" && key != "namespace") {
      continue;
    }
    json_type type;
    if (field.value().type().get(type) || type == json_type::null) {
      continue;
    }
    std::string_view text;
    if (key == "namespace") {
      out.has_namespace = true;
    }
    if (type != json_type::string || field.value().get_string().get(text)) {
      continue;
    }
    if (key == "name") {
      out.name = text;
    } else if (!text.empty()) {
      out.ns = text;
    }
  }
  return out;
}

// "default/web" (or "web" for a Node); "<no name>" when unreadable.
std::string describe(od::object& obj, bool namespaced) {
  names n = lenient_names(obj);
  if (n.name.empty()) {
    n.name = "<no name>";
  }
  return namespaced ? fmt::format("{}/{}", n.ns, n.name) : n.name;
}

using body = std::variant<service_body, slice_body, node_body, pod_body, endpoints_body>;

class object_decoder {
 public:
  object_decoder(od::object& obj, std::string_view default_kind)
      : obj_(obj), default_kind_(default_kind) {}

  std::expected<kube_object, decode_error> run() {
    // One pass when kind, apiVersion and metadata come before the rest, as the API server writes
    // them. Otherwise: the header first, then the rest in a second pass.
    enum class mode { header, fast, slow, restart } m = mode::header;
    for (auto field_result : obj_) {
      od::field field;
      std::string_view key;
      if (auto e = std::move(field_result).get(field); e) {
        return malformed(e);
      }
      if (auto e = key_of(field, key); e) {
        return malformed(e);
      }
      if (key == "kind" || key == "apiVersion" || key == "metadata") {
        if (m == mode::fast) {
          m = mode::restart;  // a header field after the body: start over, header first
          break;
        }
        if (result<void> r = header_field(key, field.value()); !r) {
          return malformed(r.error());
        }
        continue;
      }
      if (m == mode::header) {
        if (!meta_) {
          m = mode::slow;
        } else if (commit()) {
          // Perhaps only because kind or apiVersion comes later: decide once everything has
          // been read. commit() may have read the object again, so start over.
          m = mode::restart;
          break;
        } else {
          m = mode::fast;
        }
      }
      if (m == mode::fast) {
        if (result<void> r = body_field(key, field.value()); !r) {
          return wrap(r.error());
        }
      }
    }
    if (m == mode::restart) {
      kind_ = api_version_ = scalar{};
      meta_.reset();
      if (auto e = obj_.reset().error(); e) {
        return malformed(e);
      }
      if (result<void> r = for_fields(obj_, root_,
                                      [&](std::string_view key, od::value& v) -> result<void> {
                                        return key == "kind" || key == "apiVersion" ||
                                                       key == "metadata"
                                                   ? header_field(key, v)
                                                   : result<void>();
                                      });
          !r) {
        return malformed(r.error());
      }
      m = mode::slow;
    }
    if (m != mode::fast) {
      if (std::optional<decode_error> e = commit(); e) {
        return std::unexpected(std::move(*e));
      }
    }
    if (m == mode::slow) {
      if (auto e = obj_.reset().error(); e) {
        return malformed(e);
      }
      if (result<void> r = for_fields(obj_, root_,
                                      [&](std::string_view key, od::value& v) -> result<void> {
                                        return key == "kind" || key == "apiVersion" ||
                                                       key == "metadata"
                                                   ? result<void>()
                                                   : body_field(key, v);
                                      });
          !r) {
        return wrap(r.error());
      }
    }
    return std::visit(
        [&](auto& b) -> std::expected<kube_object, decode_error> {
          auto r = b.finish(obj_, root_, std::move(**meta_));
          if (!r) {
            return wrap(r.error());
          }
          return kube_object(std::move(*r));
        },
        *body_);
  }

 private:
  result<void> header_field(std::string_view key, od::value& v) {
    if (key == "kind") {
      return take(kind_, v, root_.field(key));
    }
    if (key == "apiVersion") {
      return take(api_version_, v, root_.field(key));
    }
    meta_ = decode_metadata(v, root_);
    // A JSON error is not the metadata's fault: report it now.
    if (!*meta_ && meta_->error().broken_json) {
      return std::unexpected(meta_->error());
    }
    return {};
  }

  result<void> body_field(std::string_view key, od::value& v) {
    return std::visit([&](auto& b) { return b.field(key, v, root_); }, *body_);
  }

  // Kind, apiVersion and metadata are all in: decide what the object is.
  std::optional<decode_error> commit() {
    std::string_view kind = default_kind_;
    if (!kind_.null()) {
      if (kind_.type != json_type::string) {
        return decode_error{
            false, fmt::format("kind: expected a string, got {}", json_type_name(kind_.type)),
            "kind"};
      }
      if (!kind_.text.empty()) {
        kind = kind_.text;
      }
    }
    if (kind.empty()) {
      return decode_error{false, "kind: missing", ""};
    }
    // A restart (kind after the body) commits again: nothing of the first guess may stay.
    info_ = nullptr;
    for (const kind_info& k : known_kinds) {
      if (k.kind == kind) {
        info_ = &k;
      }
    }
    if (info_ == nullptr) {
      // Cluster-scoped kinds (Namespace, ClusterRole) have no namespace to show.
      names n = lenient_names(obj_);
      if (n.name.empty()) {
        n.name = "<no name>";
      }
      return decode_error{true,
                          n.has_namespace
                              ? fmt::format("{} {}/{}: kind not used", kind, n.ns, n.name)
                              : fmt::format("{} {}: kind not used", kind, n.name),
                          ""};
    }
    if (!api_version_.null() && api_version_.type != json_type::string) {
      return decode_error{
          false,
          fmt::format("{} {}: apiVersion: expected a string, got {}", info_->kind,
                      describe(obj_, info_->namespaced), json_type_name(api_version_.type)),
          "apiVersion"};
    }
    const std::string_view api_version = api_version_.text;
    if (api_version.empty()) {
      // Items of a typed list carry neither kind nor apiVersion; a standalone object must
      // say which API it belongs to.
      if (default_kind_.empty()) {
        return decode_error{false,
                            fmt::format("{} {}: apiVersion: missing (want {})", info_->kind,
                                        describe(obj_, info_->namespaced), info_->api_version),
                            ""};
      }
    } else if (api_version != info_->api_version) {
      // Another group's kind of the same name (Knative's serving.knative.dev Service) or an
      // API version that no longer exists (discovery.k8s.io/v1beta1).
      return decode_error{
          true,
          fmt::format("{} {}: apiVersion {} not used (want {})", info_->kind,
                      describe(obj_, info_->namespaced), api_version, info_->api_version),
          ""};
    }
    if (!meta_) {
      return wrap(failure{"metadata", "missing", ""}).error();
    }
    if (!*meta_) {
      return wrap(meta_->error()).error();
    }
    const metadata& meta = **meta_;
    if (info_->kind == "Service") {
      body_.emplace(std::in_place_type<service_body>);
    } else if (info_->kind == "EndpointSlice") {
      const auto owner = meta.labels.find(std::string(label_service_name));
      if (owner == meta.labels.end() || owner->second.empty()) {
        return decode_error{true,
                            fmt::format("EndpointSlice {}: no {} label, not used by any Service",
                                        describe(obj_, true), label_service_name),
                            ""};
      }
      body_.emplace(std::in_place_type<slice_body>);
    } else if (info_->kind == "Node") {
      body_.emplace(std::in_place_type<node_body>);
    } else if (info_->kind == "Pod") {
      body_.emplace(std::in_place_type<pod_body>);
    } else {
      body_.emplace(std::in_place_type<endpoints_body>);
    }
    return std::nullopt;
  }

  std::unexpected<decode_error> wrap(const failure& f) {
    return std::unexpected(decode_error{
        false, fmt::format("{} {}: {}: {}", info_->kind, describe_self(f.broken_json), f.field, f.message),
        f.where});
  }

  // "namespace/name" (or "name") of the object for a message, read again leniently; after a
  // JSON error, what the pass had read of its metadata (simdjson's iterator is dead then:
  // reading the object again would dereference a null parser).
  std::string describe_self(bool broken_json) {
    if (!broken_json) {
      return describe(obj_, info_->namespaced);
    }
    const metadata* meta = meta_ && *meta_ ? &**meta_ : nullptr;
    const std::string name = meta != nullptr && !meta->name.empty() ? meta->name : "<no name>";
    if (!info_->namespaced) {
      return name;
    }
    return fmt::format("{}/{}", meta != nullptr && !meta->namespace_.empty() ? meta->namespace_ : "default",
                       name);
  }

  // JSON that simdjson could not read, outside any field we decode.
  static std::unexpected<decode_error> malformed(simdjson::error_code e) {
    return std::unexpected(
        decode_error{false, fmt::format("malformed JSON ({})", simdjson::error_message(e)), ""});
  }
  static std::unexpected<decode_error> malformed(const failure& f) {
    return std::unexpected(decode_error{
        false, f.field.empty() ? f.message : fmt::format("{}: {}", f.field, f.message), f.where});
  }

  od::object& obj_;
  const std::string_view default_kind_;
  const path root_;
  scalar kind_, api_version_;
  std::optional<result<metadata>> meta_;  // set once "metadata" has been read
  const kind_info* info_ = nullptr;
  std::optional<body> body_;
};

}  // namespace

std::string_view protocol_name(uint8_t protocol) {
  switch (protocol) {
    case IPPROTO_TCP:
      return "TCP";
    case IPPROTO_UDP:
      return "UDP";
    default:
      return "SCTP";
  }
}

simdjson::error_code reserve_for_decode(od::parser& parser, std::size_t bytes) {
  const std::size_t want = 2 * bytes + simdjson::SIMDJSON_PADDING;
  return parser.capacity() >= want ? simdjson::SUCCESS : parser.allocate(want);
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      // U+0080..U+009F (C1 controls: NEL, CSI, ...) in UTF-8.
      out += fmt::format("\\u{:04x}", static_cast<unsigned char>(text[++i]));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::expected<kube_object, decode_error> decode_object(od::object& obj,
                                                       std::string_view default_kind) {
  std::expected<kube_object, decode_error> r = std::unexpected(decode_error{});
  try {
    r = object_decoder(obj, default_kind).run();
  } catch (const std::exception& e) {
    // std::bad_alloc from the model's containers: this function never throws.
    return std::unexpected(decode_error{false, fmt::format("cannot decode: {}", e.what()), ""});
  }
  if (!r) {
    // Messages quote names and values from the object and go to the log as one line.
    r.error().message = printable(r.error().message);
  }
  return r;
}

std::expected<kube_object, decode_error> decode_json(std::string_view text,
                                                     std::string_view default_kind) {
  // One parser per thread: its buffers grow to the largest document and are reused.
  thread_local od::parser parser;
  if (text.size() > max_object_bytes) {
    return std::unexpected(decode_error{
        false, fmt::format("object of {} bytes is larger than the limit of {} bytes", text.size(),
                           max_object_bytes),
        ""});
  }
  const simdjson::padded_string padded(text);
  od::document doc;
  if (auto e = reserve_for_decode(parser, text.size()); e) {
    return std::unexpected(
        decode_error{false, fmt::format("no memory to parse ({})", simdjson::error_message(e)), ""});
  }
  if (auto e = parser.iterate(padded).get(doc); e) {
    return std::unexpected(
        decode_error{false, fmt::format("malformed JSON ({})", simdjson::error_message(e)), ""});
  }
  json_type type;
  if (auto e = doc.type().get(type); e) {
    return std::unexpected(
        decode_error{false, fmt::format("malformed JSON ({})", simdjson::error_message(e)), ""});
  }
  if (type != json_type::object) {
    return std::unexpected(
        decode_error{false, fmt::format("expected a mapping, got {}", json_type_name(type)), ""});
  }
  od::object obj;
  if (auto e = doc.get_object().get(obj); e) {
    return std::unexpected(
        decode_error{false, fmt::format("malformed JSON ({})", simdjson::error_message(e)), ""});
  }
  return decode_object(obj, default_kind);
}

}  // namespace sluice
