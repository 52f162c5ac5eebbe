// Native devices follow their links: lb_devices_v1 holds a device's SNAT source addresses when
// it is attached, gets the new ones when an address changes (rtnetlink RTM_NEWADDR/DELADDR),
// and loses the entry when the device goes (RTM_DELLINK) or, at start-up, when an earlier run
// left it for a device that is not there now. Runs in a network namespace of its own, entered
// by one thread of the test (unshare(CLONE_NEWNET) moves only the calling thread); the dummy
// device and every command live there and vanish with it.
#include "agent/datapath/native_devices.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <poll.h>
#include <sched.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "helpers.h"
#include "sluice_bpf.skel.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

std::optional<lb_device> entry(const datapath& dp, int ifindex) {
  const uint32_t key = static_cast<uint32_t>(ifindex);
  lb_device v{};
  if (bpf_map_lookup_elem(bpf_map__fd(dp.skel()->maps.lb_devices_v1), &key, &v) != 0) {
    return std::nullopt;
  }
  return v;
}

uint32_t addr4(const char* s) {
  in_addr a{};
  inet_pton(AF_INET, s, &a);
  return a.s_addr;
}

// Drains the watch until `done` says the events it wants arrived, or 5 s passed.
template <typename Pred>
bool wait_events(link_watch& w, native_devices& nd, Pred done) {
  const auto end = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{.fd = w.fd(), .events = POLLIN};
    if (poll(&p, 1, 100) > 0) {
      auto ev = w.drain();
      if (!ev) {
        return false;
      }
      nd.on_removed(ev->removed);
      for (const auto& l : ev->links) {
        if (nd.matches(l.name)) {
          nd.on_link(l);
        }
      }
      nd.on_addresses(ev->addresses);
    }
    if (done()) {
      return true;
    }
  }
  return false;
}

TEST_CASE("native devices: lb_devices_v1 follows address changes and device removal") {
  dptest::temp_bpffs fs;
  REQUIRE(ensure_bpffs(fs.root()));
  auto dp = datapath::load(fs.root());
  REQUIRE(dp);

  // Results are checked on the test's own thread; the worker only records them.
  struct outcome {
    std::string failed;  // empty: every step worked
    bool attached_v4 = false, attached_v6 = false, stale_pruned = false, readdressed = false,
         removed = false;
  } o;
  std::thread worker([&] {
    struct stat before {};
    stat("/proc/thread-self/ns/net", &before);
    if (unshare(CLONE_NEWNET) != 0) {
      o.failed = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    struct stat after {};
    // Safety: never run a command unless this thread is in a new namespace.
    if (stat("/proc/thread-self/ns/net", &after) != 0 || after.st_ino == before.st_ino) {
      o.failed = "the thread's network namespace did not change";
      return;
    }
    if (std::system("ip link add dum0 type veth peer name peer0 && ip link set dum0 up && "
                    "ip addr add 192.0.2.10/24 dev dum0 && "
                    "ip -6 addr add 2001:db8::10/64 dev dum0 nodad") != 0) {
      o.failed = "could not create dum0";
      return;
    }
    auto w = link_watch::open();
    if (!w) {
      o.failed = w.error().message();
      return;
    }
    native_devices nd(*dp, {"dum*"}, xdp_mode::off);
    int ifindex = 0;
    for (const auto& l : list_links()) {
      if (nd.matches(l.name)) {
        ifindex = l.ifindex;
        nd.on_link(l);
      }
    }
    const auto e = entry(*dp, ifindex);
    in6_addr want6{};
    inet_pton(AF_INET6, "2001:db8::10", &want6);
    o.attached_v4 = e && e->addr4 == addr4("192.0.2.10");
    o.attached_v6 = e && std::memcmp(e->addr6, &want6, 16) == 0;

    // An entry an earlier run left for a device that is gone.
    lb_device stale{};
    const uint32_t stale_key = 999;
    bpf_map_update_elem(bpf_map__fd(dp->skel()->maps.lb_devices_v1), &stale_key, &stale, BPF_ANY);
    nd.prune();
    o.stale_pruned = !entry(*dp, 999) && entry(*dp, ifindex);

    if (std::system("ip addr del 192.0.2.10/24 dev dum0 && ip addr add 192.0.2.20/24 dev dum0") != 0) {
      o.failed = "could not change dum0's address";
      return;
    }
    o.readdressed = wait_events(*w, nd, [&] {
      const auto x = entry(*dp, ifindex);
      return x && x->addr4 == addr4("192.0.2.20");
    });
    if (std::system("ip link del dum0") != 0) {
      o.failed = "could not delete dum0";
      return;
    }
    o.removed = wait_events(*w, nd, [&] { return !entry(*dp, ifindex) && nd.attached().empty(); });
  });
  worker.join();
  REQUIRE_MESSAGE(o.failed.empty(), o.failed);
  CHECK_MESSAGE(o.attached_v4, "lb_devices_v1 lacks dum0's IPv4 address after the attach");
  CHECK_MESSAGE(o.attached_v6, "lb_devices_v1 lacks dum0's IPv6 address after the attach");
  CHECK_MESSAGE(o.stale_pruned, "prune() kept an entry of a device that is not attached");
  CHECK_MESSAGE(o.readdressed, "the new address did not reach lb_devices_v1 within 5 s");
  CHECK_MESSAGE(o.removed, "the entry of the deleted device is still there after 5 s");
  (void)cleanup(fs.root());
}

}  // namespace
}  // namespace sluice
