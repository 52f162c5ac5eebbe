// Test helpers for the HTTP server tests: a tiny blocking HTTP/1.1 client over AF_UNIX (write a
// request, read until the peer closes or Content-Length is complete, parse status, headers and
// body), a temporary directory and a settable clock. Every wait has a deadline.
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <expected>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "agent/http/kube_format.h"

namespace sluice::test {

struct http_response {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;

  /// Value of the only header with this name (case-insensitive); nullopt when absent.
  /// Throws when it appears more than once (a response must not repeat these).
  std::optional<std::string> header(std::string_view name) const {
    std::optional<std::string> found;
    for (const auto& [n, v] : headers) {
      if (n.size() == name.size() &&
          std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        if (found) {
          throw std::runtime_error("header repeated: " + n);
        }
        found = v;
      }
    }
    return found;
  }
};

namespace detail {

inline std::expected<http_response, std::error_code> parse_response(const std::string& raw,
                                                                    bool head_request) {
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) {
    return std::unexpected(std::make_error_code(std::errc::bad_message));
  }
  http_response r;
  std::string_view head(raw.data(), end);
  const size_t first_eol = head.find("\r\n");
  const std::string_view status_line = head.substr(0, first_eol);
  // "HTTP/1.1 200 OK"
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) {
    return std::unexpected(std::make_error_code(std::errc::bad_message));
  }
  r.status = std::stoi(std::string(status_line.substr(9, 3)));
  r.reason = std::string(status_line.substr(13 <= status_line.size() ? 13 : status_line.size()));
  size_t pos = first_eol == std::string_view::npos ? head.size() : first_eol + 2;
  while (pos < head.size()) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) {
      eol = head.size();
    }
    const std::string_view line = head.substr(pos, eol - pos);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return std::unexpected(std::make_error_code(std::errc::bad_message));
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') {
      value.remove_prefix(1);
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
    pos = eol + 2;
  }
  r.body = raw.substr(end + 4);
  if (!head_request) {
    if (const auto cl = r.header("Content-Length")) {
      r.body.resize(std::min(r.body.size(), static_cast<size_t>(std::stoul(*cl))));
    }
  }
  return r;
}

// True once `raw` holds the whole response (headers plus Content-Length bytes of body).
inline bool complete(const std::string& raw, bool head_request) {
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) {
    return false;
  }
  if (head_request) {
    return false;  // read to EOF: the test checks that no body bytes follow
  }
  auto parsed = parse_response(raw.substr(0, end + 4), true);
  if (!parsed) {
    return false;
  }
  const auto cl = parsed->header("Content-Length");
  return cl && raw.size() - (end + 4) >= std::stoul(*cl);
}

}  // namespace detail

/// One client connection to a Unix socket; several requests may be sent on it (keep-alive).
class http_connection {
 public:
  /// Connects; errors are the errno of socket()/connect() (ENOENT: nothing listens at the
  /// path, ECONNREFUSED: the socket file exists but nobody accepts).
  static std::expected<http_connection, std::error_code> open(const std::string& path) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      return std::unexpected(std::error_code(errno, std::generic_category()));
    }
    http_connection c(fd);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
      return std::unexpected(std::make_error_code(std::errc::filename_too_long));
    }
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
      return std::unexpected(std::error_code(errno, std::generic_category()));
    }
    return c;
  }
  http_connection(http_connection&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  http_connection& operator=(http_connection&&) = delete;
  ~http_connection() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  /// Sends `raw_request` and reads one response: up to Content-Length, or (HEAD) to EOF.
  /// Errors: timed_out when `timeout` passes, bad_message for an unparsable response.
  std::expected<http_response, std::error_code> exchange(
      std::string_view raw_request, bool head_request = false,
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t sent = 0;
    while (sent < raw_request.size()) {
      const ssize_t n = ::send(fd_, raw_request.data() + sent, raw_request.size() - sent,
                               MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return std::unexpected(std::error_code(errno, std::generic_category()));
      }
      sent += static_cast<size_t>(n);
    }
    std::string raw;
    char buf[4096];
    while (!detail::complete(raw, head_request)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return std::unexpected(std::make_error_code(std::errc::timed_out));
      }
      pollfd p{fd_, POLLIN, 0};
      const int pr = ::poll(&p, 1, static_cast<int>(left.count()));
      if (pr < 0 && errno == EINTR) {
        continue;
      }
      if (pr <= 0) {
        return std::unexpected(std::make_error_code(std::errc::timed_out));
      }
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        return std::unexpected(std::error_code(errno, std::generic_category()));
      }
      if (n == 0) {
        break;  // peer closed: whatever arrived is the response
      }
      raw.append(buf, static_cast<size_t>(n));
    }
    return detail::parse_response(raw, head_request);
  }

 private:
  explicit http_connection(int fd) : fd_(fd) {}
  int fd_ = -1;
};

/// Connects to the Unix socket at `path`, sends `raw_request` and reads one response.
inline std::expected<http_response, std::error_code> http_exchange(
    const std::string& path, std::string_view raw_request, bool head_request = false) {
  auto c = http_connection::open(path);
  if (!c) {
    return std::unexpected(c.error());
  }
  return c->exchange(raw_request, head_request);
}

/// `METHOD target HTTP/1.1` with Host and Connection: close. For HEAD, everything after the
/// headers up to EOF is returned as the body (it must be empty).
inline std::expected<http_response, std::error_code> http_request(const std::string& path,
                                                                  std::string_view method,
                                                                  std::string_view target) {
  std::string req;
  req += method;
  req += ' ';
  req += target;
  req += " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  return http_exchange(path, req, method == "HEAD");
}

inline std::expected<http_response, std::error_code> http_get(const std::string& path,
                                                              std::string_view target) {
  return http_request(path, "GET", target);
}

/// A fresh directory under /tmp (short: Unix socket paths are limited to 107 bytes), removed
/// with its contents at the end of the test.
class temp_dir {
 public:
  temp_dir() {
    char tmpl[] = "/tmp/sluice-http-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

/// A wall clock the test sets; safe to read from the server thread.
class fake_clock {
 public:
  explicit fake_clock(http::time_point start) : ns_(to_ns(start)) {}
  http::time_point now() const {
    return http::time_point(std::chrono::duration_cast<http::time_point::duration>(
        std::chrono::nanoseconds(ns_.load())));
  }
  void advance(std::chrono::nanoseconds d) { ns_.fetch_add(d.count()); }

 private:
  static int64_t to_ns(http::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  std::atomic<int64_t> ns_;
};

/// A UTC wall-clock time from its parts plus nanoseconds.
inline http::time_point utc(int y, unsigned mo, unsigned d, int h, int mi, int s, int64_t ns = 0) {
  using namespace std::chrono;
  const sys_days date = year{y} / month{mo} / day{d};
  return time_point_cast<system_clock::duration>(date + hours{h} + minutes{mi} + seconds{s} +
                                                 nanoseconds{ns});
}

/// Polls `pred` until it is true or `timeout` passes; returns its last value.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return pred();
    }
    std::this_thread::yield();
  }
  return true;
}

}  // namespace sluice::test
