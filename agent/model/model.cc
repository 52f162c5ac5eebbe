// Address and prefix parsing for the model (ParseIPSloppy / ParseCIDRSloppy compatible) and the
// small helpers declared in model.h.
#include "agent/model/model.h"

#include <arpa/inet.h>

#include <cstring>

namespace sluice {

namespace {

// Dotted-quad IPv4 as Go's pre-1.17 net.ParseIP (k8s.io/utils/net ParseIPSloppy): four decimal
// parts, each any number of digits with a value of at most 255, so "010" is ten, not octal.
std::optional<std::array<uint8_t, 4>> parse_ipv4_sloppy(std::string_view text) {
  std::array<uint8_t, 4> out{};
  std::size_t pos = 0;
  for (std::size_t part = 0; part < 4; ++part) {
    if (part > 0) {
      if (pos >= text.size() || text[pos] != '.') {
        return std::nullopt;
      }
      ++pos;
    }
    const std::size_t start = pos;
    unsigned value = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      value = value * 10 + static_cast<unsigned>(text[pos] - '0');
      if (value > 255) {
        return std::nullopt;
      }
      ++pos;
    }
    if (pos == start) {
      return std::nullopt;
    }
    out[part] = static_cast<uint8_t>(value);
  }
  if (pos != text.size()) {
    return std::nullopt;
  }
  return out;
}

}  // namespace

std::optional<ip_addr> parse_ip(std::string_view text) {
  ip_addr addr;
  if (text.find(':') == std::string_view::npos) {
    const std::optional<std::array<uint8_t, 4>> v4 = parse_ipv4_sloppy(text);
    if (!v4) {
      return std::nullopt;
    }
    addr.family = ip_family::v4;
    std::memcpy(addr.bytes.data(), v4->data(), 4);
    return addr;
  }

  // inet_pton needs a NUL-terminated string; anything longer than an IPv6 text form is invalid.
  char buf[INET6_ADDRSTRLEN];
  if (text.size() >= sizeof buf) {
    return std::nullopt;
  }
  std::memcpy(buf, text.data(), text.size());
  std::size_t len = text.size();
  // An embedded IPv4 tail ("::ffff:010.1.2.3") gets the same sloppy rules; inet_pton would
  // refuse its leading zeros, so it is rewritten in canonical form first.
  if (const std::size_t colon = text.rfind(':'); text.find('.', colon) != std::string_view::npos) {
    const std::optional<std::array<uint8_t, 4>> tail = parse_ipv4_sloppy(text.substr(colon + 1));
    if (!tail) {
      return std::nullopt;
    }
    char dotted[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, tail->data(), dotted, sizeof dotted) == nullptr) {
      return std::nullopt;
    }
    const std::size_t dotted_len = std::strlen(dotted);
    if (colon + 1 + dotted_len >= sizeof buf) {
      return std::nullopt;
    }
    std::memcpy(buf + colon + 1, dotted, dotted_len);
    len = colon + 1 + dotted_len;
  }
  buf[len] = '\0';
  addr.family = ip_family::v6;
  if (inet_pton(AF_INET6, buf, addr.bytes.data()) != 1) {
    return std::nullopt;
  }
  return addr;
}

std::string format_ip(const ip_addr& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = addr.family == ip_family::v4 ? AF_INET : AF_INET6;
  if (inet_ntop(af, addr.bytes.data(), buf, sizeof buf) == nullptr) {
    return "?";
  }
  return buf;
}

std::optional<ip_prefix> parse_prefix(std::string_view text, bool allow_host_bits) {
  const auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (!text.empty() && is_space(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && is_space(text.back())) {
    text.remove_suffix(1);
  }
  const std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return std::nullopt;
  }
  const std::optional<ip_addr> addr = parse_ip(text.substr(0, slash));
  if (!addr) {
    return std::nullopt;
  }
  // The length is decimal; leading zeros are accepted as ParseCIDRSloppy does ("/025").
  const std::string_view digits = text.substr(slash + 1);
  if (digits.empty()) {
    return std::nullopt;
  }
  unsigned length = 0;
  for (const char c : digits) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    length = length * 10 + static_cast<unsigned>(c - '0');
    if (length > 128) {
      return std::nullopt;
    }
  }
  const unsigned max_length = addr->family == ip_family::v4 ? 32 : 128;
  if (length > max_length) {
    return std::nullopt;
  }
  ip_prefix prefix{.addr = *addr, .length = static_cast<uint8_t>(length)};
  bool host_bits = false;
  for (unsigned bit = length; bit < max_length; ++bit) {
    uint8_t& byte = prefix.addr.bytes[bit / 8];
    const uint8_t mask = static_cast<uint8_t>(0x80u >> (bit % 8));
    if (byte & mask) {
      host_bits = true;
      byte = static_cast<uint8_t>(byte & ~mask);
    }
  }
  if (host_bits && !allow_host_bits) {
    return std::nullopt;
  }
  return prefix;
}

std::string format_prefix(const ip_prefix& prefix) {
  return format_ip(prefix.addr) + "/" + std::to_string(prefix.length);
}

bool prefix_contains(const ip_prefix& prefix, const ip_addr& addr) {
  // A length beyond the family's bits never comes from parse_prefix; refuse it rather than read
  // past the address.
  if (prefix.addr.family != addr.family ||
      prefix.length > (addr.family == ip_family::v4 ? 32 : 128)) {
    return false;
  }
  const unsigned full = prefix.length / 8u;
  if (std::memcmp(prefix.addr.bytes.data(), addr.bytes.data(), full) != 0) {
    return false;
  }
  const unsigned rest = prefix.length % 8u;
  if (rest == 0) {
    return true;
  }
  const uint8_t mask = static_cast<uint8_t>(0xffu << (8 - rest));
  return (prefix.addr.bytes[full] & mask) == (addr.bytes[full] & mask);
}

std::string node::zone() const {
  const auto it = labels.find(std::string(label_zone));
  return it == labels.end() ? std::string() : it->second;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM); 't' and 'z' are allowed by RFC 3339.
  const auto digits = [&](size_t at, size_t n) -> std::optional<int> {
    if (at + n > text.size()) {
      return std::nullopt;
    }
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (text[i] < '0' || text[i] > '9') {
        return std::nullopt;
      }
      v = v * 10 + (text[i] - '0');
    }
    return v;
  };
  const auto at = [&](size_t i, char c) {
    return i < text.size() && (text[i] == c || (c == 'T' && text[i] == 't'));
  };
  const auto year = digits(0, 4), month = digits(5, 2), day = digits(8, 2), hour = digits(11, 2),
             minute = digits(14, 2), second = digits(17, 2);
  if (!year || !month || !day || !hour || !minute || !second || !at(4, '-') || !at(7, '-') ||
      !at(10, 'T') || !at(13, ':') || !at(16, ':') || *month < 1 || *month > 12 || *day < 1 ||
      *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year(*year),
                                        std::chrono::month(static_cast<unsigned>(*month)),
                                        std::chrono::day(static_cast<unsigned>(*day))};
  if (!ymd.ok()) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t n = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (n < 9) {
        nanos = nanos * 10 + (text[pos] - '0');
      }
      ++n;
      ++pos;
    }
    if (n == 0) {
      return std::nullopt;
    }
    for (size_t i = n; i < 9; ++i) {
      nanos *= 10;
    }
  }
  int offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const auto oh = digits(pos + 1, 2), om = digits(pos + 4, 2);
    if (!oh || !om || !at(pos + 3, ':') || *oh > 23 || *om > 59) {
      return std::nullopt;
    }
    offset_minutes = (*oh * 60 + *om) * (text[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) {
    return std::nullopt;
  }
  const auto t = std::chrono::sys_days(ymd) + std::chrono::hours(*hour) +
                 std::chrono::minutes(*minute - offset_minutes) + std::chrono::seconds(*second) +
                 std::chrono::nanoseconds(nanos);
  return std::chrono::time_point_cast<std::chrono::system_clock::duration>(t);
}

}  // namespace sluice
