// Errors at the OS / libbpf boundary: an errno-style code plus what was being done.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <system_error>

#include <fmt/format.h>

namespace sluice {

struct error {
  std::error_code code;
  std::string context;

  std::string message() const { return fmt::format("{}: {}", context, code.message()); }
};

template <typename T>
using result = std::expected<T, error>;

/// An error from a libbpf-style return (negative errno) or from errno when rc is -1.
inline std::unexpected<error> os_error(int rc, std::string context) {
  const int e = rc < -1 ? -rc : errno;
  return std::unexpected(error{std::error_code(e, std::generic_category()), std::move(context)});
}

}  // namespace sluice
