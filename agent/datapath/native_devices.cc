#include "agent/datapath/native_devices.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "agent/model/model.h"
#include "maps/sluice_abi.h"

namespace sluice {

bool native_devices::on_link(const link_info& l) {
  // Every change of a link (up, down, an XDP program attached: ours too) is an RTM_NEWLINK;
  // a device attached already only gets its addresses re-read.
  if (const auto it = attached_.find(l.ifindex); it != attached_.end() && it->second == l.name) {
    on_addresses({l.ifindex});
    return true;
  }
  const device_addrs a = device_addresses(l.ifindex);
  if (auto r = dp_.attach_native_device(l.ifindex, mode_, a); !r) {
    spdlog::warn("native device {}: {}", l.name, r.error().message());
    (void)dp_.forget_native_device(l.ifindex);  // written before the attach failed
    return false;
  }
  const bool is_new = attached_.insert_or_assign(l.ifindex, l.name).second;
  written_[l.ifindex] = a;
  if (is_new) {
    spdlog::info("attached {}{} and {} to {} (ifindex {})", LB_NODE_INGRESS_PROG,
                 mode_ == xdp_mode::off ? "" : ", " LB_NODE_XDP_PROG, LB_NODE_EGRESS_PROG, l.name,
                 l.ifindex);
  }
  return true;
}

void native_devices::on_addresses(const std::vector<int>& ifindexes) {
  for (const int ifindex : ifindexes) {
    const auto it = attached_.find(ifindex);
    if (it == attached_.end()) {
      continue;
    }
    const device_addrs a = device_addresses(ifindex);
    const auto was = written_.find(ifindex);
    if (was != written_.end() && was->second.addr4 == a.addr4 && was->second.addr6 == a.addr6) {
      continue;
    }
    if (auto r = dp_.set_native_device(ifindex, mode_, a); !r) {
      spdlog::error("native device {}: {}", it->second, r.error().message());
      continue;
    }
    ip_addr v4, v6{.family = ip_family::v6};
    std::memcpy(v4.bytes.data(), &a.addr4, 4);
    v6.bytes = a.addr6;
    written_[ifindex] = a;
    spdlog::info("native device {}: SNAT source addresses now {} / {}", it->second,
                 a.addr4 ? format_ip(v4) : "none",
                 a.addr6 != std::array<uint8_t, 16>{} ? format_ip(v6) : "none");
  }
}

void native_devices::on_removed(const std::vector<int>& ifindexes) {
  for (const int ifindex : ifindexes) {
    const auto it = attached_.find(ifindex);
    if (it == attached_.end()) {
      continue;
    }
    if (auto r = dp_.forget_native_device(ifindex); !r) {
      spdlog::error("native device {}: {}", it->second, r.error().message());
      continue;
    }
    spdlog::info("native device {} (ifindex {}) is gone: its lb_devices_v1 entry removed",
                 it->second, ifindex);
    attached_.erase(it);
    written_.erase(ifindex);
  }
}

std::vector<int> native_devices::missing(const std::vector<link_info>& links) const {
  std::vector<int> out;
  for (const auto& [ifindex, name] : attached_) {
    const bool present = std::any_of(links.begin(), links.end(), [&](const link_info& l) {
      return l.ifindex == ifindex && l.name == name;
    });
    if (!present) {
      out.push_back(ifindex);
    }
  }
  return out;
}

void native_devices::prune() {
  auto entries = dp_.native_device_entries();
  if (!entries) {
    spdlog::error("{}", entries.error().message());
    return;
  }
  for (const int ifindex : *entries) {
    if (attached_.contains(ifindex)) {
      continue;
    }
    if (auto r = dp_.forget_native_device(ifindex); !r) {
      spdlog::error("{}", r.error().message());
      continue;
    }
    spdlog::info("lb_devices_v1: removed the entry of ifindex {} (not a --devices link now)",
                 ifindex);
  }
}

}  // namespace sluice
