// The manifest file source: YAML/JSON text -> nlohmann::json documents (keeping each node's
// line) -> JSON text -> decode_json(), the decoder the API source uses too; an error's path is
// looked up in the document again to report its line.
#include "agent/sources/manifest.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "agent/sources/decode.h"

namespace sluice {

namespace {

using json = nlohmann::json;

bool all_of_chars(std::string_view text, std::string_view allowed) {
  return !text.empty() && text.find_first_not_of(allowed) == std::string_view::npos;
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, the YAML 1.2 core schema float.
bool is_core_float(std::string_view t) {
  std::size_t i = 0;
  if (i < t.size() && (t[i] == '-' || t[i] == '+')) {
    ++i;
  }
  std::size_t int_digits = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
    ++i;
    ++int_digits;
  }
  std::size_t frac_digits = 0;
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
      ++i;
      ++frac_digits;
    }
  }
  if (int_digits == 0 && frac_digits == 0) {
    return false;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < t.size() && (t[i] == '-' || t[i] == '+')) {
      ++i;
    }
    std::size_t exp_digits = 0;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
      ++i;
      ++exp_digits;
    }
    if (exp_digits == 0) {
      return false;
    }
  }
  return i == t.size();
}

// The JSON value of a plain (unquoted) scalar: YAML 1.2 core schema (null, booleans, decimal,
// 0o octal and 0x hex integers, floats), plus the YAML 1.1 words yes/no/on/off as booleans,
// because kubectl (go-yaml v2 underneath) reads them so. Everything else is a string.
json resolve_plain(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") {
    return nullptr;
  }
  for (const std::string_view yes :
       {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"}) {
    if (text == yes) {
      return true;
    }
  }
  for (const std::string_view no :
       {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"}) {
    if (text == no) {
      return false;
    }
  }
  const std::string_view t(text);
  const auto integer = [&](std::string_view digits, int base,
                           bool negative) -> std::optional<json> {
    uint64_t value = 0;
    const auto [end, ec] =
        std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
    if (ec != std::errc{} || end != digits.data() + digits.size()) {
      return std::nullopt;
    }
    if (!negative) {
      return json(value);
    }
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
      return std::nullopt;
    }
    return json(static_cast<int64_t>(0 - value));
  };
  if (t.size() > 2 && t[0] == '0' && t[1] == 'o' && all_of_chars(t.substr(2), "01234567")) {
    if (auto v = integer(t.substr(2), 8, false)) {
      return *v;
    }
  }
  if (t.size() > 2 && t[0] == '0' && t[1] == 'x' &&
      all_of_chars(t.substr(2), "0123456789abcdefABCDEF")) {
    if (auto v = integer(t.substr(2), 16, false)) {
      return *v;
    }
  }
  const bool negative = t[0] == '-';
  const std::string_view unsigned_part = t[0] == '-' || t[0] == '+' ? t.substr(1) : t;
  if (all_of_chars(unsigned_part, "0123456789")) {
    if (auto v = integer(unsigned_part, 10, negative)) {
      return *v;
    }
    return std::strtod(text.c_str(), nullptr);  // too large for 64 bits: a float, as in YAML
  }
  if (is_core_float(t)) {
    return std::strtod(text.c_str(), nullptr);
  }
  for (const std::string_view inf : {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"}) {
    if (t == inf) {
      return std::numeric_limits<double>::infinity();
    }
  }
  for (const std::string_view inf : {"-.inf", "-.Inf", "-.INF"}) {
    if (t == inf) {
      return -std::numeric_limits<double>::infinity();
    }
  }
  if (t == ".nan" || t == ".NaN" || t == ".NAN") {
    return std::numeric_limits<double>::quiet_NaN();
  }
  return text;
}

// Converts yaml-cpp documents to JSON, remembering the YAML mark of every JSON node so that
// errors found later by the decoder point at a file line. Aliases are expanded, with a
// node budget so that an alias bomb fails instead of exhausting memory, and a depth bound so
// that an alias inside the node it names (`a: &x [*x]`, a cycle) fails before the recursion
// exhausts the stack (the budget alone grows with the file: 300 KB allowed 600k levels).
class yaml_to_json {
 public:
  explicit yaml_to_json(std::size_t node_budget) : budget_(node_budget) {}

  // Deeper than any Kubernetes object, and below simdjson's limit (1024) for the decoder.
  static constexpr int max_depth = 512;

  // Fills `out` in place (its address, and those of all nodes below it, are what the marks are
  // keyed on, so `out` must not move while the marks are used). Returns an error message, or
  // nullopt on success.
  std::optional<std::string> convert(const YAML::Node& in, json& out, int depth = 0) {
    if (++used_ > budget_) {
      return std::string(
          "document expands to far more nodes than the file has bytes (YAML "
          "aliases nested too deeply?)");
    }
    if (depth > max_depth) {
      return fmt::format("line {}: nested deeper than {} levels (a YAML alias inside the node "
                         "it names?)",
                         in.Mark().line + 1, max_depth);
    }
    marks_[&out] = in.Mark();
    switch (in.Type()) {
      case YAML::NodeType::Map: {
        out = json::object();
        for (const auto& entry : in) {
          if (!entry.first.IsScalar()) {
            return fmt::format("line {}: a mapping key must be a string",
                               entry.first.Mark().line + 1);
          }
          json& value = out[entry.first.Scalar()];
          if (std::optional<std::string> e = convert(entry.second, value, depth + 1)) {
            return e;
          }
        }
        return std::nullopt;
      }
      case YAML::NodeType::Sequence: {
        out = json::array();
        // Reserved up front: elements must not move once their marks are recorded.
        json::array_t& items = out.get_ref<json::array_t&>();
        items.reserve(in.size());
        for (const YAML::Node& item : in) {
          items.emplace_back();
          if (std::optional<std::string> e = convert(item, items.back(), depth + 1)) {
            return e;
          }
        }
        return std::nullopt;
      }
      case YAML::NodeType::Scalar: {
        const std::string& tag = in.Tag();
        // "?" = plain (resolved by content); "!" = quoted; "!!str" = explicitly a string.
        if (tag == "?" ||
            (tag.starts_with("tag:yaml.org,2002:") && tag != "tag:yaml.org,2002:str")) {
          out = resolve_plain(in.Scalar());
        } else {
          out = in.Scalar();
        }
        return std::nullopt;
      }
      default:
        out = nullptr;
        return std::nullopt;
    }
  }

  // The mark of a converted node, or a null mark when `at` was not converted here.
  YAML::Mark mark(const json* at) const {
    const auto it = marks_.find(at);
    return it == marks_.end() ? YAML::Mark::null_mark() : it->second;
  }

 private:
  std::size_t budget_;
  std::size_t used_ = 0;
  std::unordered_map<const json*, YAML::Mark> marks_;
};

// The element kind of a list kind ("ServiceList" -> "Service"); "" for the untyped "List";
// nullopt when `kind` is not a list kind we read.
std::optional<std::string_view> list_item_kind(std::string_view kind) {
  if (kind == "List") {
    return std::string_view();
  }
  for (const std::string_view item : {"Service", "EndpointSlice", "Pod", "Node", "Endpoints"}) {
    if (kind.size() == item.size() + 4 && kind.starts_with(item) && kind.ends_with("List")) {
      return item;
    }
  }
  return std::nullopt;
}

// "a mapping", "a list", ... as the decoder says it, for the messages of this file.
std::string_view json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::object:
      return "a mapping";
    case json::value_t::array:
      return "a list";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    default:
      return "null";
  }
}

// The node a decode_error::path names (`spec.ports[1].port`, `metadata.labels["app"]`, "" =
// `obj`), or the deepest one of it that exists; its mark is the line to report.
const json* locate(const json& obj, std::string_view path) {
  const json* at = &obj;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '.') {
      ++i;
      continue;
    }
    const json* next = nullptr;
    if (path[i] == '[' && i + 1 < path.size() && path[i + 1] == '"') {
      const std::size_t end = path.find("\"]", i + 2);
      if (end == std::string_view::npos) {
        break;
      }
      const std::string_view key = path.substr(i + 2, end - i - 2);
      if (at->is_object()) {
        const auto it = at->find(key);
        next = it == at->end() ? nullptr : &*it;
      }
      i = end + 2;
    } else if (path[i] == '[') {
      const std::size_t end = path.find(']', i);
      if (end == std::string_view::npos) {
        break;
      }
      std::size_t index = 0;
      std::from_chars(path.data() + i + 1, path.data() + end, index);
      if (at->is_array() && index < at->size()) {
        next = &(*at)[index];
      }
      i = end + 1;
    } else {
      std::size_t end = path.find_first_of(".[", i);
      if (end == std::string_view::npos) {
        end = path.size();
      }
      const std::string_view key = path.substr(i, end - i);
      if (at->is_object()) {
        const auto it = at->find(key);
        next = it == at->end() ? nullptr : &*it;
      }
      i = end;
    }
    if (next == nullptr) {
      break;
    }
    at = next;
  }
  return at;
}

class decoder {
 public:
  decoder(std::string_view source, decode_result& out, const yaml_to_json& marks)
      : source_(source), out_(out), marks_(marks) {}

  // Decodes one document or list item (`where` = "document N" or "document N, items[i]").
  // `default_kind` is inherited from a typed list (ServiceList items have no kind).
  void decode(const json& obj, const std::string& where, std::string_view default_kind, int depth) {
    if (obj.is_null()) {
      return;  // empty document, e.g. after a trailing "---"
    }
    if (!obj.is_object()) {
      reject(&obj, fmt::format("{}: expected a mapping, got {}", where, json_type_name(obj)));
      return;
    }
    const auto kind_it = obj.find("kind");
    if (kind_it != obj.end() && kind_it->is_string()) {
      const std::string& kind = kind_it->get_ref<const std::string&>();
      if (const std::optional<std::string_view> item_kind = list_item_kind(kind)) {
        decode_list(obj, where, kind, *item_kind, depth);
        return;
      }
    }
    if (default_kind.empty() && (kind_it == obj.end() || kind_it->is_null() ||
                                 (kind_it->is_string() && kind_it->get<std::string>().empty()))) {
      reject(&obj, fmt::format("{}: kind: missing", where));
      return;
    }
    // The decoder reads JSON text; the document is small, and dumping it keeps one decoder for
    // both sources. Invalid UTF-8 from the YAML is replaced, as nlohmann would otherwise throw.
    std::expected<kube_object, decode_error> decoded =
        decode_json(obj.dump(-1, ' ', false, json::error_handler_t::replace), default_kind);
    if (!decoded) {
      if (decoded.error().ignored) {
        ++out_.ignored;
      } else {
        reject(locate(obj, decoded.error().path), decoded.error().message);
      }
      return;
    }
    std::visit([&](auto& o) { add(std::move(o), &obj); }, *decoded);
  }

 private:
  void decode_list(const json& obj, const std::string& where, std::string_view kind,
                   std::string_view item_kind, int depth) {
    if (depth > 4) {
      reject(&obj, fmt::format("{}: lists nested too deeply", where));
      return;
    }
    const auto items = obj.find("items");
    if (items == obj.end() || items->is_null()) {
      return;
    }
    if (!items->is_array()) {
      reject(&*items, fmt::format("{} {}: items: expected a list, got {}", kind, where,
                                  json_type_name(*items)));
      return;
    }
    std::size_t i = 0;
    for (const json& item : *items) {
      decode(item, fmt::format("{}, items[{}]", where, i++), item_kind, depth + 1);
    }
  }

  template <typename T>
  static constexpr std::string_view kind_of() {
    if constexpr (std::is_same_v<T, service>) {
      return "Service";
    } else if constexpr (std::is_same_v<T, endpoint_slice>) {
      return "EndpointSlice";
    } else if constexpr (std::is_same_v<T, node>) {
      return "Node";
    } else if constexpr (std::is_same_v<T, pod>) {
      return "Pod";
    } else {
      return "Endpoints";
    }
  }

  template <typename T>
  void add(T&& obj, const json* at) {
    obj.source = source_;
    if constexpr (std::is_same_v<T, node>) {
      insert(out_.nodes, obj.name, std::move(obj), at);
    } else if constexpr (std::is_same_v<T, service>) {
      insert(out_.objects.services, obj.key(), std::move(obj), at);
    } else if constexpr (std::is_same_v<T, endpoint_slice>) {
      insert(out_.objects.endpoint_slices, obj.key(), std::move(obj), at);
    } else if constexpr (std::is_same_v<T, pod>) {
      insert(out_.objects.pods, obj.key(), std::move(obj), at);
    } else {
      insert(out_.objects.legacy_endpoints, obj.key(), std::move(obj), at);
    }
  }

  template <typename K, typename T>
  void insert(std::map<K, T>& into, K key, T&& obj, const json* at) {
    const auto [it, inserted] = into.try_emplace(std::move(key), std::move(obj));
    if (inserted) {
      ++out_.loaded;
      return;
    }
    std::string name;
    if constexpr (std::is_same_v<K, std::string>) {
      name = it->first;
    } else {
      name = it->first.str();
    }
    reject(at, fmt::format("{} {}: defined twice (also earlier in this file); ignoring this one",
                           kind_of<T>(), name));
  }

  void reject(const json* at, const std::string& message) {
    const YAML::Mark mark = marks_.mark(at);
    if (mark.is_null() || mark.line < 0) {
      out_.errors.push_back(printable(fmt::format("{}: {}", source_, message)));
    } else {
      out_.errors.push_back(printable(fmt::format("{}:{}: {}", source_, mark.line + 1, message)));
    }
    ++out_.rejected;
  }

  std::string source_;
  decode_result& out_;
  const yaml_to_json& marks_;
};

void merge(decode_result& into, decode_result&& from) {
  into.errors.insert(into.errors.end(), std::make_move_iterator(from.errors.begin()),
                     std::make_move_iterator(from.errors.end()));
  into.loaded += from.loaded;
  into.ignored += from.ignored;
  into.rejected += from.rejected;
  const auto move_all = [&](auto& dst, auto& src, std::string_view kind) {
    for (auto& [key, obj] : src) {
      const auto found = dst.find(key);
      if (found == dst.end()) {
        dst.emplace(key, std::move(obj));
        continue;
      }
      std::string name;
      if constexpr (std::is_same_v<std::decay_t<decltype(key)>, std::string>) {
        name = key;
      } else {
        name = key.str();
      }
      into.errors.push_back(
          printable(fmt::format("{}: {} {}: defined twice (also in {}); ignoring this one",
                                obj.source, kind, name, found->second.source)));
      --into.loaded;
      ++into.rejected;
    }
  };
  move_all(into.objects.services, from.objects.services, "Service");
  move_all(into.objects.endpoint_slices, from.objects.endpoint_slices, "EndpointSlice");
  move_all(into.objects.pods, from.objects.pods, "Pod");
  move_all(into.objects.legacy_endpoints, from.objects.legacy_endpoints, "Endpoints");
  move_all(into.nodes, from.nodes, "Node");
}

// Walks the documents with the event parser only, to catch input on which yaml-cpp 0.7's LoadAll
// never returns: a stray token such as a top-level ',' (e.g. "{...},\n{...}") makes the parser
// report an empty document forever without consuming it, and LoadAll collects them until memory
// runs out (fixed upstream in yaml-cpp 0.8.0, PR #1319). Throws YAML::ParserException there, or
// for any syntax error the parser finds itself.
class stuck_document_check : public YAML::EventHandler {
 public:
  static void run(const std::string& text) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    stuck_document_check check;
    int last_pos = -1;
    std::size_t documents = 0;
    while (parser.HandleNextDocument(check)) {
      // A document that starts where the previous one did has consumed nothing. Every real
      // document takes at least one byte, so the count bound is a second, cruder guard.
      const bool stuck = !check.start_.is_null() && check.start_.pos == last_pos;
      if (stuck || ++documents > text.size() + 1) {
        throw YAML::ParserException(check.start_,
                                    "stray token outside any node (a comma between documents?)");
      }
      last_pos = check.start_.pos;
    }
  }

  void OnDocumentStart(const YAML::Mark&) override {
    first_ = true;
    start_ = YAML::Mark::null_mark();
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnMapEnd() override {}

 private:
  void note(const YAML::Mark& mark) {
    if (first_) {
      start_ = mark;
      first_ = false;
    }
  }

  bool first_ = true;
  YAML::Mark start_ = YAML::Mark::null_mark();
};

// Reads a whole file; manifests larger than this are refused rather than read into memory.
constexpr std::size_t max_manifest_bytes = 64u << 20;

std::expected<std::string, std::error_code> read_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(std::error_code(errno, std::system_category()));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const std::error_code ec(errno, std::system_category());
      ::close(fd);
      return std::unexpected(ec);
    }
    if (n == 0) {
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max_manifest_bytes) {
      ::close(fd);
      return std::unexpected(std::make_error_code(std::errc::file_too_large));
    }
  }
  ::close(fd);
  return text;
}

}  // namespace

decode_result decode_manifest(std::string_view text, std::string_view source_name) {
  decode_result out;
  std::vector<YAML::Node> documents;
  try {
    const std::string owned(text);
    stuck_document_check::run(owned);
    documents = YAML::LoadAll(owned);
  } catch (const YAML::Exception& e) {
    // The whole file is unusable: one error, nothing loaded from it.
    if (e.mark.is_null()) {
      out.errors.push_back(
          printable(fmt::format("{}: not valid YAML/JSON: {}", source_name, e.msg)));
    } else {
      out.errors.push_back(printable(fmt::format("{}:{}:{}: not valid YAML/JSON: {}", source_name,
                                                 e.mark.line + 1, e.mark.column + 1, e.msg)));
    }
    ++out.rejected;
    return out;
  }
  // Without aliases a document has fewer nodes than the file has bytes.
  yaml_to_json converter(2 * text.size() + 4096);
  decoder dec(source_name, out, converter);
  for (std::size_t i = 0; i < documents.size(); ++i) {
    const std::string where = fmt::format("document {}", i + 1);
    json doc;
    if (std::optional<std::string> e = converter.convert(documents[i], doc)) {
      out.errors.push_back(printable(fmt::format("{}: {}: {}", source_name, where, *e)));
      ++out.rejected;
      continue;
    }
    dec.decode(doc, where, "", 0);
  }
  return out;
}

bool is_manifest_file_name(std::string_view file_name) {
  if (file_name.empty() || file_name.front() == '.') {
    return false;
  }
  for (const std::string_view ext : {".yaml", ".yml", ".json"}) {
    if (file_name.size() > ext.size() && file_name.ends_with(ext)) {
      return true;
    }
  }
  return false;
}

std::expected<decode_result, std::error_code> load_manifest_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::vector<std::string> names;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_manifest_file_name(name)) {
      names.push_back(name);
    }
  }
  if (ec) {
    return std::unexpected(ec);
  }
  std::sort(names.begin(), names.end());

  decode_result out;
  for (const std::string& name : names) {
    const std::filesystem::path path = dir / name;
    std::error_code status_ec;
    // Follows symlinks (ConfigMap volumes link every key into a hidden ..data directory).
    if (!std::filesystem::is_regular_file(path, status_ec)) {
      if (status_ec) {
        out.errors.push_back(
            printable(fmt::format("{}: cannot read: {}", path.string(), status_ec.message())));
      }
      continue;  // a directory named like a manifest, a dangling link: not a manifest
    }
    std::expected<std::string, std::error_code> text = read_file(path);
    if (!text) {
      out.errors.push_back(
          printable(fmt::format("{}: cannot read: {}", path.string(), text.error().message())));
      continue;
    }
    merge(out, decode_manifest(*text, path.string()));
  }
  return out;
}

}  // namespace sluice
