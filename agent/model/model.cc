#include "agent/model/model.h"

#include <arpa/inet.h>

#include <cstring>

namespace sluice {

std::optional<ip_addr> parse_ip(std::string_view text) {
  // inet_pton needs a NUL-terminated string; anything longer than an IPv6 text form is invalid.
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof buf) {
    return std::nullopt;
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';

  ip_addr addr;
  if (text.find(':') == std::string_view::npos) {
    addr.family = ip_family::v4;
    if (inet_pton(AF_INET, buf, addr.bytes.data()) != 1) {
      return std::nullopt;
    }
  } else {
    addr.family = ip_family::v6;
    if (inet_pton(AF_INET6, buf, addr.bytes.data()) != 1) {
      return std::nullopt;
    }
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

}  // namespace sluice
