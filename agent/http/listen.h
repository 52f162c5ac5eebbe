// Listen addresses for the HTTP servers: "HOST:PORT" (numeric IPv4), "[IPV6]:PORT", or
// "unix:/path" (tests: no test traffic touches a network interface), and the listening sockets
// made from them. Sockets are created here rather than by evhttp_bind_socket so that every
// failure comes back as an errno with context, and so IPv6 sockets are V6ONLY (0.0.0.0:P and
// [::]:P can then both be bound).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "agent/datapath/error.h"

namespace sluice::http {

/// An owned file descriptor, closed on destruction.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept;
  ~unique_fd();
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  int get() const { return fd_; }
  /// Gives up ownership.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

struct listen_address {
  enum class kind : uint8_t { inet, unix_socket };
  kind type = kind::inet;
  std::string host;  ///< numeric IPv4 or IPv6 address (no brackets); inet only
  uint16_t port = 0; ///< inet only
  std::string path;  ///< unix_socket only

  /// The canonical spelling: "10.0.0.1:10256", "[::1]:10256", "unix:/run/x.sock".
  std::string to_string() const;
};

/// Parses "HOST:PORT", "[HOST]:PORT" or "unix:/path". HOST must be a numeric address (no
/// name resolution at start-up); PORT 0..65535. Errors are EINVAL with the offending text.
result<listen_address> parse_listen_address(std::string_view spec);

/// A non-blocking, close-on-exec socket bound to `a` and listening. A Unix socket path that
/// already exists is not removed: binding fails with EADDRINUSE (another agent may own it).
result<unique_fd> open_listener(const listen_address& a);

}  // namespace sluice::http
