// Malformed watch streams, which the protocol-faithful fake server never produces: a tiny
// scripted HTTP/1.1 server on a Unix socket answers lists with a fixed List and each watch with
// the next scripted body, then holds the connection open until the client leaves.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/sources/kube/reflector.h"
#include "tests/kube/harness.h"

using namespace sluice::kube;
using namespace sluice::kube::test;

namespace {

class scripted_server {
 public:
  scripted_server(const temp_dir& dir, std::string list_body, std::vector<std::string> watches)
      : list_body_(std::move(list_body)), watches_(std::move(watches)) {
    path_ = (dir.path() / "scripted.sock").string();
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    std::copy(path_.begin(), path_.end(), addr.sun_path);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(listen(fd_, 16) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~scripted_server() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }

  api_config config() const {
    api_config c;
    c.server = "http://scripted.test";
    c.unix_socket = path_;
    return c;
  }
  std::vector<std::string> paths() const {
    std::lock_guard lock(mu_);
    return paths_;
  }

 private:
  // One connection at a time is enough: the reflector has one transfer in flight.
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) {
        continue;
      }
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      handle(c);
      close(c);
    }
  }

  void handle(int c) {
    std::string req;
    char buf[4096];
    while (req.find("\r\n\r\n") == std::string::npos) {
      pollfd p{c, POLLIN, 0};
      if (stop_ || poll(&p, 1, 2000) <= 0) {
        return;
      }
      const ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) {
        return;
      }
      req.append(buf, static_cast<size_t>(n));
    }
    const std::size_t sp = req.find(' ');
    const std::string path = req.substr(sp + 1, req.find(' ', sp + 1) - sp - 1);
    std::string body;
    {
      std::lock_guard lock(mu_);
      paths_.push_back(path);
      if (path.find("watch=1") == std::string::npos) {
        body = list_body_;
      } else if (next_watch_ < watches_.size()) {
        body = watches_[next_watch_++];
      }
    }
    // Close-delimited body: HTTP/1.1 allows it with Connection: close.
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    write_all(c, head + body);
    if (path.find("watch=1") == std::string::npos) {
      return;
    }
    // Hold the watch open until the client goes away or the test ends.
    while (!stop_) {
      pollfd p{c, POLLIN, 0};
      if (poll(&p, 1, 20) > 0 && read(c, buf, sizeof buf) <= 0) {
        return;
      }
    }
  }

  static void write_all(int c, std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = send(c, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        return;
      }
      s.remove_prefix(static_cast<size_t>(n));
    }
  }

  std::string path_;
  int fd_ = -1;
  std::string list_body_;
  std::vector<std::string> watches_;
  mutable std::mutex mu_;
  std::vector<std::string> paths_;
  std::size_t next_watch_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string event(const char* type, const std::string& name, int rv) {
  return fmt::format(
             R"({{"type":"{}","object":{{"kind":"Service","apiVersion":"v1","metadata":{{"name":"{}","namespace":"default","resourceVersion":"{}"}}}}}})",
             type, name, rv) +
         "\n";
}

}  // namespace

TEST_CASE("reflector: malformed and oversized watch lines are counted and the watch restarts") {
  temp_dir dir;
  const std::string list =
      R"({"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"10"},"items":[{"metadata":{"name":"a","namespace":"default","resourceVersion":"5"}}]})";
  scripted_server server(
      dir, list,
      {
          // 1: one good event, then garbage: counted, stream restarted from RV 11.
          event("ADDED", "b", 11) + "{\"type\":\"ADDED\",\"object\":{\n" + event("ADDED", "x", 99),
          // 2: a line over the 2000-byte bound: counted, restarted from RV 12.
          event("MODIFIED", "b", 12) + "{\"type\":\"ADDED\"," + std::string(3000, ' ') + "}\n",
          // 3: unknown event type, then (never read) a good one.
          "{\"type\":\"SURPRISE\",\"object\":{}}\n" + event("ADDED", "y", 98),
          // 4: healthy.
          event("DELETED", "a", 13) + event("ADDED", "c", 14),
      });
  reflector_options o = service_options();
  o.max_line_bytes = 2000;
  recording_sink sink;
  reflector r(server.config(), o, sink);
  r.start();
  const std::map<std::string, std::string> want = {{"default/b", "12"}, {"default/c", "14"}};
  REQUIRE(wait_until([&] { return sink.view() == want; }));
  CHECK(r.stats().decode_errors.load() == 3);
  CHECK(r.stats().lists.load() == 1);
  CHECK(r.stats().relists.load() == 0);
  CHECK(r.stats().events.load() == 4);
  const auto paths = server.paths();
  REQUIRE(paths.size() == 5);
  CHECK(paths[0] == "/api/v1/services?limit=500");
  CHECK(paths[1].find("resourceVersion=10&") != std::string::npos);
  CHECK(paths[2].find("resourceVersion=11&") != std::string::npos);
  CHECK(paths[3].find("resourceVersion=12&") != std::string::npos);
  CHECK(paths[4].find("resourceVersion=12&") != std::string::npos);
  r.stop();
}
