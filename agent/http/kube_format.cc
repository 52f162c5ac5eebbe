// kube-proxy's response formats, byte for byte.
#include "agent/http/kube_format.h"

#include <fmt/format.h>

namespace sluice::http {

std::string go_time_string(std::optional<time_point> t) {
  if (!t) {
    return "0001-01-01 00:00:00 +0000 UTC";
  }
  using namespace std::chrono;
  const auto ns_since_epoch = duration_cast<nanoseconds>(t->time_since_epoch());
  const sys_days day = floor<days>(*t);
  const year_month_day ymd{day};
  const nanoseconds in_day = ns_since_epoch - duration_cast<nanoseconds>(day.time_since_epoch());
  const hh_mm_ss<nanoseconds> hms{in_day};

  std::string out = fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                                hms.hours().count(), hms.minutes().count(), hms.seconds().count());
  // Go's layout ".999999999": nine digits with trailing zeros dropped, nothing when zero.
  if (const auto frac = hms.subseconds().count(); frac != 0) {
    std::string digits = fmt::format("{:09}", frac);
    digits.erase(digits.find_last_not_of('0') + 1);
    out += '.';
    out += digits;
  }
  out += " +0000 UTC";
  return out;
}

std::string go_quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\a': out += "\\a"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\v': out += "\\v"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string service_health_body(std::string_view namespace_, std::string_view name,
                                uint32_t local_endpoints, bool proxy_healthy) {
  // kube-proxy dedents a tab-indented template and trims the surrounding newlines.
  return fmt::format(
      "{{\n"
      "\t\"service\": {{\n"
      "\t\t\"namespace\": {},\n"
      "\t\t\"name\": {}\n"
      "\t}},\n"
      "\t\"localEndpoints\": {},\n"
      "\t\"serviceProxyHealthy\": {}\n"
      "}}",
      go_quote(namespace_), go_quote(name), local_endpoints, proxy_healthy ? "true" : "false");
}

std::string proxier_healthz_body(std::optional<time_point> last_updated, time_point current_time,
                                 bool node_eligible) {
  return fmt::format("{{\"lastUpdated\": {},\"currentTime\": {}, \"nodeEligible\": {}}}",
                     go_quote(go_time_string(last_updated)),
                     go_quote(go_time_string(current_time)), node_eligible ? "true" : "false");
}

std::string proxier_livez_body(std::optional<time_point> last_updated, time_point current_time) {
  return fmt::format("{{\"lastUpdated\": {},\"currentTime\": {}}}",
                     go_quote(go_time_string(last_updated)),
                     go_quote(go_time_string(current_time)));
}

}  // namespace sluice::http
