// Watches a manifest directory with inotify so that the file source reloads when a manifest
// is written, renamed into place, renamed away or deleted. Owns the inotify fd.
#pragma once

#include <expected>
#include <filesystem>
#include <system_error>

namespace sluice {

/// RAII inotify watch on one directory (not recursive). Movable, not copyable.
///
/// Usage: poll() on fd() for POLLIN, then call drain(); when it returns true, reload the
/// directory (load_manifest_dir). Editors that save by writing a temporary file and renaming
/// it over the target are seen through IN_MOVED_TO. A new file shows up first through
/// IN_CREATE, possibly before its content is written, and again at IN_CLOSE_WRITE: callers
/// should debounce (reload once events have stopped for a short while).
class dir_watch {
 public:
  /// Starts watching `dir`. Fails with the inotify_init1/inotify_add_watch errno
  /// (ENOENT, ENOTDIR, EACCES, EMFILE, ENOSPC for too many watches, ...).
  static std::expected<dir_watch, std::error_code> open(const std::filesystem::path& dir);

  dir_watch(dir_watch&& other) noexcept;
  dir_watch& operator=(dir_watch&& other) noexcept;
  dir_watch(const dir_watch&) = delete;
  dir_watch& operator=(const dir_watch&) = delete;
  ~dir_watch();

  /// The inotify descriptor (non-blocking, close-on-exec), for poll/epoll. -1 after a move.
  int fd() const { return fd_; }

  /// Reads every pending event without blocking. Returns true if any event concerns a
  /// manifest file (is_manifest_file_name), or the directory itself went away (see
  /// dir_gone()), or the kernel queue overflowed (events were lost), or reading failed.
  /// Also true for the ConfigMap-volume switch (the "..data" symlink renamed into place).
  bool drain();

  /// True once the watched directory was deleted, moved or unmounted. The watch is dead then:
  /// open a new dir_watch when the directory is back.
  bool dir_gone() const { return dir_gone_; }

 private:
  explicit dir_watch(int fd) : fd_(fd) {}

  int fd_ = -1;
  bool dir_gone_ = false;
};

}  // namespace sluice
