// Listen address parsing and listening socket creation.
#include "agent/http/listen.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace sluice::http {

namespace {

std::unexpected<error> invalid(std::string context) {
  return std::unexpected(
      error{std::make_error_code(std::errc::invalid_argument), std::move(context)});
}

bool is_ipv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool is_ipv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

}  // namespace

unique_fd& unique_fd::operator=(unique_fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

unique_fd::~unique_fd() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

std::string listen_address::to_string() const {
  if (type == kind::unix_socket) {
    return "unix:" + path;
  }
  if (host.find(':') != std::string::npos) {
    return fmt::format("[{}]:{}", host, port);
  }
  return fmt::format("{}:{}", host, port);
}

result<listen_address> parse_listen_address(std::string_view spec) {
  listen_address a;
  if (spec.starts_with("unix:")) {
    a.type = listen_address::kind::unix_socket;
    a.path = std::string(spec.substr(5));
    if (a.path.empty() || a.path.size() >= sizeof(sockaddr_un::sun_path)) {
      return invalid(fmt::format("listen address {:?}: bad unix socket path length", spec));
    }
    return a;
  }
  std::string_view host;
  std::string_view port;
  if (spec.starts_with('[')) {
    const size_t close = spec.find("]:");
    if (close == std::string_view::npos) {
      return invalid(fmt::format("listen address {:?}: expected [IPV6]:PORT", spec));
    }
    host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    const size_t colon = spec.rfind(':');
    if (colon == std::string_view::npos) {
      return invalid(fmt::format("listen address {:?}: expected HOST:PORT", spec));
    }
    host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
  }
  a.host = std::string(host);
  const bool bracketed = spec.starts_with('[');
  if (bracketed ? !is_ipv6(a.host) : !is_ipv4(a.host)) {
    return invalid(fmt::format("listen address {:?}: {:?} is not a numeric IPv{} address", spec,
                               host, bracketed ? 6 : 4));
  }
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return invalid(fmt::format("listen address {:?}: bad port {:?}", spec, port));
  }
  a.port = static_cast<uint16_t>(value);
  return a;
}

result<unique_fd> open_listener(const listen_address& a) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_UNIX;
  if (a.type == listen_address::kind::unix_socket) {
    auto* un = reinterpret_cast<sockaddr_un*>(&ss);
    un->sun_family = AF_UNIX;
    if (a.path.size() >= sizeof(un->sun_path)) {
      return invalid("unix socket path too long: " + a.path);
    }
    std::memcpy(un->sun_path, a.path.data(), a.path.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.path.size() + 1);
  } else if (is_ipv4(a.host)) {
    family = AF_INET;
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(a.port);
    inet_pton(AF_INET, a.host.c_str(), &in->sin_addr);
    len = sizeof(sockaddr_in);
  } else if (is_ipv6(a.host)) {
    family = AF_INET6;
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(a.port);
    inet_pton(AF_INET6, a.host.c_str(), &in6->sin6_addr);
    len = sizeof(sockaddr_in6);
  } else {
    return invalid("not a numeric address: " + a.host);
  }

  // errno is read before the context string is built (allocation may overwrite it).
  const auto fail = [&a](std::string_view what) {
    const int e = errno;
    return std::unexpected(
        error{std::error_code(e, std::generic_category()), fmt::format("{} {}", what, a.to_string())});
  };
  unique_fd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return fail("socket for");
  }
  if (family != AF_UNIX) {
    const int one = 1;
    // Restarting agents must rebind while old connections sit in TIME_WAIT.
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
      return fail("SO_REUSEADDR on");
    }
    if (family == AF_INET6 &&
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) {
      return fail("IPV6_V6ONLY on");
    }
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) < 0) {
    return fail("bind");
  }
  if (::listen(fd.get(), SOMAXCONN) < 0) {
    auto err = fail("listen");
    if (family == AF_UNIX) {
      ::unlink(a.path.c_str());  // bind created it; leave nothing behind
    }
    return err;
  }
  return fd;
}

}  // namespace sluice::http
