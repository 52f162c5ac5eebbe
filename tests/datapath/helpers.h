// Shared by the datapath tests: a private bpffs mount per test case, addresses, and running a
// packet through the loaded lb_pod_ingress with BPF_PROG_TEST_RUN.
#pragma once

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/planner/desired.h"

namespace sluice::dptest {

// A private bpffs mount for one test case; unmounted (lazily) and removed also on failure.
class temp_bpffs {
 public:
  temp_bpffs() {
    char tmpl[] = "/tmp/sluice-dp-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    if (mount("bpf", dir_.c_str(), "bpf", 0, nullptr) != 0) {
      rmdir(dir_.c_str());
      FAIL("mount bpffs on " << dir_);
    }
  }
  ~temp_bpffs() {
    umount2(dir_.c_str(), MNT_DETACH);
    rmdir(dir_.c_str());
  }
  temp_bpffs(const temp_bpffs&) = delete;
  temp_bpffs& operator=(const temp_bpffs&) = delete;
  std::string root() const { return dir_ + "/sluice"; }

 private:
  std::string dir_;
};

// Usable in static initialisers (no doctest assertion outside a test case).
inline ip_addr v4(const char* s) {
  ip_addr a;
  if (inet_pton(AF_INET, s, a.bytes.data()) != 1) {
    throw std::invalid_argument(s);
  }
  return a;
}

inline ip_addr v6(const char* s) {
  ip_addr a;
  a.family = ip_family::v6;
  if (inet_pton(AF_INET6, s, a.bytes.data()) != 1) {
    throw std::invalid_argument(s);
  }
  return a;
}

struct run_result {
  uint32_t verdict = 0;
  std::vector<uint8_t> out;
};

inline run_result run_packet(int prog_fd, const std::vector<uint8_t>& in) {
  run_result r;
  r.out.assign(4096, 0);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = r.out.data(),
              .data_size_in = static_cast<__u32>(in.size()),
              .data_size_out = static_cast<__u32>(r.out.size()), .repeat = 1);
  REQUIRE(bpf_prog_test_run_opts(prog_fd, &opts) == 0);
  r.verdict = opts.retval;
  r.out.resize(opts.data_size_out);
  return r;
}

}  // namespace sluice::dptest

namespace sluice::dptest {

// `frontends` frontends per family with `per_frontend` distinct backends each: TCP port 80 on
// VIPs 10.96.0.0/16 + fd00:96::/112, backends 10.128.0.0/9 + fd00:244::/96 port 8080. The
// vector is sorted by key, as the planner emits it.
inline desired_state scale_state(uint32_t frontends, uint32_t per_frontend) {
  desired_state d;
  d.frontends.reserve(2 * static_cast<size_t>(frontends));
  uint32_t next_be = 0;
  for (ip_family fam : {ip_family::v4, ip_family::v6}) {
    for (uint32_t i = 0; i < frontends; ++i) {
      desired_frontend f;
      f.vip = fam == ip_family::v4 ? v4("10.96.0.0") : v6("fd00:96::");
      const size_t last = fam == ip_family::v4 ? 3 : 15;
      f.vip.bytes[last] = static_cast<uint8_t>(i);
      f.vip.bytes[last - 1] = static_cast<uint8_t>(i >> 8);
      f.port = 80;
      f.proto = IPPROTO_TCP;
      f.name = "scale/svc-" + std::to_string(i);
      for (uint32_t j = 0; j < per_frontend; ++j, ++next_be) {
        ip_addr b = fam == ip_family::v4 ? v4("10.128.0.0") : v6("fd00:244::");
        b.bytes[last] = static_cast<uint8_t>(next_be);
        b.bytes[last - 1] = static_cast<uint8_t>(next_be >> 8);
        b.bytes[last - 2] = static_cast<uint8_t>(next_be >> 16);
        f.backends.push_back({b, 8080, false});
      }
      d.frontends.push_back(std::move(f));
    }
  }
  return d;
}

}  // namespace sluice::dptest
