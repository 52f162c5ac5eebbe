#include "agent/sources/dir_watch.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>

#include <cstdio>
#include <filesystem>
#include <utility>

#include "test_helpers.h"

namespace sluice {

namespace {

using test::temp_dir;
using test::write_text;

constexpr const char* manifest =
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {clusterIP: 10.96.0.1}\n";

dir_watch open_watch(const std::filesystem::path& dir) {
  auto watch = dir_watch::open(dir);
  REQUIRE(watch);
  // Nothing has happened yet.
  CHECK_FALSE(watch->drain());
  return std::move(*watch);
}

bool readable(const dir_watch& watch) {
  pollfd pfd{.fd = watch.fd(), .events = POLLIN, .revents = 0};
  return ::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN) != 0;
}

}  // namespace

TEST_CASE("dir_watch: open fails for a missing directory or a file") {
  temp_dir dir;
  const auto missing = dir_watch::open(dir / "nope");
  REQUIRE_FALSE(missing);
  CHECK(missing.error() == std::errc::no_such_file_or_directory);

  write_text(dir / "file.yaml", manifest);
  const auto file = dir_watch::open(dir / "file.yaml");
  REQUIRE_FALSE(file);
  CHECK(file.error() == std::errc::not_a_directory);
}

TEST_CASE("dir_watch: fd is non-blocking and becomes readable on a change") {
  temp_dir dir;
  dir_watch watch = open_watch(dir.path());
  REQUIRE(watch.fd() >= 0);
  CHECK((::fcntl(watch.fd(), F_GETFL) & O_NONBLOCK) != 0);
  CHECK((::fcntl(watch.fd(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK_FALSE(readable(watch));
  write_text(dir / "web.yaml", manifest);
  CHECK(readable(watch));
  CHECK(watch.drain());
  CHECK_FALSE(readable(watch));
  CHECK_FALSE(watch.drain());
}

TEST_CASE("dir_watch: writing, renaming in, renaming out and deleting a manifest are seen") {
  temp_dir dir;
  temp_dir outside;
  dir_watch watch = open_watch(dir.path());

  SUBCASE("write a new file") {
    write_text(dir / "web.yaml", manifest);
    CHECK(watch.drain());
    CHECK_FALSE(watch.drain());
  }
  SUBCASE("rewrite an existing file in place") {
    write_text(dir / "web.json", "{}");
    CHECK(watch.drain());
    write_text(dir / "web.json", "{\"kind\": \"List\"}");
    CHECK(watch.drain());
  }
  SUBCASE("rename a file in from another directory") {
    write_text(outside / "web.yml", manifest);
    CHECK_FALSE(watch.drain());
    std::filesystem::rename(outside / "web.yml", dir / "web.yml");
    CHECK(watch.drain());
  }
  SUBCASE("editor save: write a hidden temp file, rename it over the manifest") {
    write_text(dir / "web.yaml", manifest);
    CHECK(watch.drain());
    write_text(dir / ".web.yaml.tmp", manifest);
    CHECK_FALSE(watch.drain());
    std::filesystem::rename(dir / ".web.yaml.tmp", dir / "web.yaml");
    CHECK(watch.drain());
  }
  SUBCASE("rename a manifest out of the directory") {
    write_text(dir / "web.yaml", manifest);
    CHECK(watch.drain());
    std::filesystem::rename(dir / "web.yaml", outside / "web.yaml");
    CHECK(watch.drain());
  }
  SUBCASE("rename a manifest to a non-manifest name") {
    write_text(dir / "web.yaml", manifest);
    CHECK(watch.drain());
    std::filesystem::rename(dir / "web.yaml", dir / "web.yaml.disabled");
    CHECK(watch.drain());  // the MOVED_FROM of web.yaml
  }
  SUBCASE("delete a manifest") {
    write_text(dir / "web.yaml", manifest);
    CHECK(watch.drain());
    std::filesystem::remove(dir / "web.yaml");
    CHECK(watch.drain());
  }
  SUBCASE("symlink to a manifest") {
    write_text(outside / "web.yaml", manifest);
    std::filesystem::create_symlink(outside / "web.yaml", dir / "web.yaml");
    CHECK(watch.drain());
  }
}

TEST_CASE("dir_watch: hidden, temporary and non-manifest files are not reported") {
  temp_dir dir;
  dir_watch watch = open_watch(dir.path());
  write_text(dir / ".web.yaml.swp", "x");
  write_text(dir / ".#web.yaml", "x");
  write_text(dir / "web.yaml~", "x");
  write_text(dir / "4913", "x");
  write_text(dir / "notes.txt", "x");
  std::filesystem::rename(dir / "notes.txt", dir / "notes.md");
  std::filesystem::remove(dir / ".web.yaml.swp");
  std::filesystem::remove(dir / "web.yaml~");
  std::filesystem::create_directory(dir / "subdir");
  write_text(dir / "subdir" / "inner.yaml", manifest);  // not watched: not recursive
  CHECK_FALSE(watch.drain());
  CHECK_FALSE(watch.dir_gone());
}

TEST_CASE("dir_watch: a ConfigMap volume update (..data symlink swap) is seen") {
  temp_dir dir;
  std::filesystem::create_directory(dir / "..2025_01");
  write_text(dir / "..2025_01" / "web.yaml", manifest);
  std::filesystem::create_directory_symlink("..2025_01", dir / "..data");
  std::filesystem::create_symlink("..data/web.yaml", dir / "web.yaml");
  dir_watch watch = open_watch(dir.path());

  // What kubelet's atomic writer does: new timestamped dir, new link, rename over ..data.
  std::filesystem::create_directory(dir / "..2025_02");
  write_text(dir / "..2025_02" / "web.yaml", manifest);
  std::filesystem::create_directory_symlink("..2025_02", dir / "..data_tmp");
  CHECK_FALSE(watch.drain());
  std::filesystem::rename(dir / "..data_tmp", dir / "..data");
  CHECK(watch.drain());
}

TEST_CASE("dir_watch: removing the watched directory is reported and marks it gone") {
  temp_dir parent;
  std::filesystem::create_directory(parent / "manifests");
  dir_watch watch = open_watch(parent / "manifests");
  CHECK_FALSE(watch.dir_gone());
  std::filesystem::remove(parent / "manifests");
  CHECK(watch.drain());
  CHECK(watch.dir_gone());
}

TEST_CASE("dir_watch: moving the watched directory is reported and marks it gone") {
  temp_dir parent;
  std::filesystem::create_directory(parent / "manifests");
  dir_watch watch = open_watch(parent / "manifests");
  std::filesystem::rename(parent / "manifests", parent / "manifests.old");
  CHECK(watch.drain());
  CHECK(watch.dir_gone());
}

TEST_CASE("dir_watch: is movable; the moved-from object is inert") {
  temp_dir dir;
  dir_watch first = open_watch(dir.path());
  const int fd = first.fd();
  dir_watch second = std::move(first);
  CHECK(second.fd() == fd);
  CHECK(first.fd() == -1);  // NOLINT(bugprone-use-after-move): checking the moved-from state
  CHECK_FALSE(first.drain());
  write_text(dir / "web.yaml", manifest);
  CHECK(second.drain());

  temp_dir other;
  dir_watch third = open_watch(other.path());
  third = std::move(second);
  CHECK(third.fd() == fd);
  write_text(dir / "api.yaml", manifest);
  CHECK(third.drain());
  CHECK_FALSE(third.drain());
}

}  // namespace sluice
