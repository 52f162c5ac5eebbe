#include "agent/sources/dir_watch.h"

#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "agent/sources/manifest.h"

namespace sluice {

namespace {

constexpr uint32_t watch_mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

// Kubernetes ConfigMap/Secret volumes publish a new version by renaming this symlink.
constexpr std::string_view configmap_data_link = "..data";

}  // namespace

std::expected<dir_watch, std::error_code> dir_watch::open(const std::filesystem::path& dir) {
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(std::error_code(errno, std::system_category()));
  }
  if (inotify_add_watch(fd, dir.c_str(), watch_mask) < 0) {
    const std::error_code ec(errno, std::system_category());
    ::close(fd);
    return std::unexpected(ec);
  }
  return dir_watch(fd);
}

dir_watch::dir_watch(dir_watch&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), dir_gone_(other.dir_gone_) {}

dir_watch& dir_watch::operator=(dir_watch&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = std::exchange(other.fd_, -1);
    dir_gone_ = other.dir_gone_;
  }
  return *this;
}

dir_watch::~dir_watch() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool dir_watch::drain() {
  if (fd_ < 0) {
    return false;
  }
  bool relevant = false;
  alignas(inotify_event) char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return relevant;
    }
    if (n <= 0) {
      return true;  // unexpected read failure: let the caller reload rather than miss a change
    }
    for (ssize_t off = 0; off < n;) {
      inotify_event event;
      std::memcpy(&event, buf + off, sizeof event);
      const char* name = buf + off + sizeof event;
      off += static_cast<ssize_t>(sizeof event + event.len);

      if (event.mask & IN_Q_OVERFLOW) {
        relevant = true;
        continue;
      }
      if (event.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
        dir_gone_ = true;
        relevant = true;
        continue;
      }
      if (event.len == 0) {
        continue;
      }
      const std::string_view file(name, strnlen(name, event.len));
      if (file == configmap_data_link || is_manifest_file_name(file)) {
        relevant = true;
      }
    }
  }
}

}  // namespace sluice
