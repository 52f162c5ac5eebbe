#include "agent/datapath/datapath.h"

#include <ifaddrs.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "maps/sluice_abi.h"
#include "sluice_bpf.skel.h"

void sluice_dp::skel_deleter::operator()(::sluice_bpf* s) const { sluice_bpf::destroy(s); }

namespace sluice {
namespace fs = std::filesystem;

namespace {

bool on_bpffs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

constexpr const char* k_default_bpffs = "/sys/fs/bpf";

bpf_tc_hook tc_hook(int ifindex, bpf_tc_attach_point point) {
  bpf_tc_hook hook{};
  hook.sz = sizeof(hook);
  hook.ifindex = ifindex;
  hook.attach_point = point;
  return hook;
}


// Creates clsact (once per device) and puts prog_fd at sluice's handle and priority, replacing
// an earlier sluice program there in one step.
result<void> tc_attach(int ifindex, bpf_tc_attach_point point, int prog_fd) {
  auto hook = tc_hook(ifindex, point);
  hook.attach_point = BPF_TC_INGRESS;
  int rc = bpf_tc_hook_create(&hook);
  if (rc != 0 && rc != -EEXIST) {
    return os_error(rc, fmt::format("create clsact on ifindex {}", ifindex));
  }
  hook.attach_point = point;
  LIBBPF_OPTS(bpf_tc_opts, tc, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE,
              .handle = LB_TC_HANDLE, .priority = LB_TC_PRIORITY);
  rc = bpf_tc_attach(&hook, &tc);
  if (rc != 0) {
    return os_error(rc, fmt::format("attach tc {} on ifindex {}",
                                    point == BPF_TC_INGRESS ? "ingress" : "egress", ifindex));
  }
  return {};
}

// The name of the program with this id ("" when it cannot be read).
std::string prog_name(uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) {
    return {};
  }
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  std::string name;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
    name = info.name;
  }
  close(fd);
  return name;
}

// Pins every program as <root>/prog_<name>, replacing an earlier agent's pin in one rename
// (bpffs renames atomically), so `sluicectl trace` always finds a whole program: the one this
// agent loaded and attaches.
result<void> pin_programs(bpf_object* obj, const std::string& root) {
  bpf_program* prog = nullptr;
  bpf_object__for_each_program(prog, obj) {
    const fs::path pin = fs::path(root) / (std::string(LB_PROG_PIN_PREFIX) + bpf_program__name(prog));
    // bpffs refuses dots in names.
    const fs::path tmp = fs::path(root) / (std::string("new_") + pin.filename().string());
    unlink(tmp.c_str());
    if (bpf_obj_pin(bpf_program__fd(prog), tmp.c_str()) != 0) {
      return os_error(-errno, fmt::format("pin {}", tmp.string()));
    }
    if (rename(tmp.c_str(), pin.c_str()) != 0) {
      const int err = errno;
      unlink(tmp.c_str());
      return os_error(-err, fmt::format("rename {} to {}", tmp.string(), pin.string()));
    }
  }
  return {};
}

}  // namespace

result<void> ensure_bpffs(const std::string& root) {
  std::error_code ec;
  fs::path p = fs::absolute(root, ec);
  fs::path probe = p;
  while (!probe.empty() && !fs::exists(probe, ec)) {
    probe = probe.parent_path();
  }
  if (!on_bpffs(probe.string())) {
    const fs::path sysbpf(k_default_bpffs);
    const bool under_sys = p.string().starts_with(sysbpf.string());
    if (!under_sys) {
      return std::unexpected(error{std::make_error_code(std::errc::invalid_argument),
                                   fmt::format("{} is not on a bpf filesystem (mount -t bpf bpf "
                                               "DIR)", root)});
    }
    fs::create_directories(sysbpf, ec);
    if (mount("bpf", k_default_bpffs, "bpf", 0, "mode=0700") != 0) {
      return os_error(-1, fmt::format("mount bpffs at {}", k_default_bpffs));
    }
  }
  fs::create_directories(p, ec);
  if (ec) {
    return std::unexpected(error{ec, fmt::format("create {}", p.string())});
  }
  // Pinned state (flows, ids) is for root only, also in a directory the user made beforehand;
  // the pins in it get 0600 from the kernel (tests/datapath/pins_test.cc).
  if (chmod(p.c_str(), 0700) != 0) {
    return os_error(-errno, fmt::format("chmod 0700 {}", p.string()));
  }
  return {};
}

namespace {

// A pinned lb_maglev_v2 takes only tables of the size it was created for (its inner template is
// fixed then), and libbpf reuses a pin by the outer map's attributes alone. After a change of
// --maglev-table-size the pin is dropped before the load: the program would not verify against
// it, and the writer rebuilds every table anyway. Probed by swapping a table of the new size
// in under a key no service uses.
void drop_other_maglev_size(const std::string& bpffs_root, uint32_t m) {
  const std::string pin = (fs::path(bpffs_root) / LB_MAGLEV_MAP).string();
  const int outer = bpf_obj_get(pin.c_str());
  if (outer < 0) {
    return;
  }
  LIBBPF_OPTS(bpf_map_create_opts, create, .map_flags = LB_MAGLEV_TABLE_FLAGS);
  const int probe = bpf_map_create(BPF_MAP_TYPE_ARRAY, "mg_probe", sizeof(uint32_t),
                                   LB_MAGLEV_TABLE_BYTES(m), 1, &create);
  const uint32_t key = UINT32_MAX;  // svc ids are below LB_MAX_SERVICES
  if (probe >= 0) {
    if (bpf_map_update_elem(outer, &key, &probe, BPF_ANY) == 0) {
      bpf_map_delete_elem(outer, &key);
    } else if (errno == EINVAL) {
      unlink(pin.c_str());
    }
    close(probe);
  }
  close(outer);
}

// Copies every entry of map `from` into map `to` (same key and value sizes). `flags` BPF_ANY
// fills a fresh map in batches; BPF_NOEXIST (the pass after the programs were replaced) keeps
// what the new programs wrote since. A full `to` ends the copy (an LRU map evicts instead).
// Returns the entries copied.
size_t copy_entries(int from, int to, uint64_t flags) {
  bpf_map_info info{};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(from, &info, &len) != 0) {
    return 0;
  }
  size_t chunk = 4096, copied = 0;
  std::vector<uint8_t> keys, values;
  __u32 in = 0, out = 0;
  bool first = true;
  for (;;) {
    keys.resize(chunk * info.key_size);
    values.resize(chunk * info.value_size);
    auto count = static_cast<__u32>(chunk);
    LIBBPF_OPTS(bpf_map_batch_opts, lookup);
    const int rc = bpf_map_lookup_batch(from, first ? nullptr : &in, &out, keys.data(),
                                        values.data(), &count, &lookup);
    const int err = rc == 0 ? 0 : errno;
    if (rc != 0 && err == ENOSPC && count == 0) {
      chunk *= 2;
      continue;
    }
    if (rc != 0 && err != ENOENT) {
      return copied;
    }
    __u32 put = count;
    LIBBPF_OPTS(bpf_map_batch_opts, update, .elem_flags = flags);
    if (flags != BPF_ANY || count == 0 ||
        bpf_map_update_batch(to, keys.data(), values.data(), &put, &update) != 0) {
      for (__u32 i = flags == BPF_ANY ? put : 0; i < count; ++i) {
        if (bpf_map_update_elem(to, &keys[i * info.key_size], &values[i * info.value_size],
                                flags) == 0) {
          ++copied;
        } else if (errno == E2BIG) {
          return copied;
        }
      }
      copied += flags == BPF_ANY ? put : 0;
    } else {
      copied += count;
    }
    if (err == ENOENT) {
      return copied;
    }
    in = out;
    first = false;
  }
}

}  // namespace

datapath::datapath(datapath&& o) noexcept
    : skel_(std::move(o.skel_)), resized_(std::exchange(o.resized_, {})) {}

datapath& datapath::operator=(datapath&& o) noexcept {
  if (this != &o) {
    finish_resize();
    skel_ = std::move(o.skel_);
    resized_ = std::exchange(o.resized_, {});
  }
  return *this;
}

datapath::~datapath() { finish_resize(); }

size_t datapath::finish_resize() {
  size_t copied = 0;
  for (const resized& r : resized_) {
    const size_t n = copy_entries(r.old_fd, r.new_fd, BPF_NOEXIST);
    if (n > 0) {
      spdlog::info("{}: {} entries the previous programs added while being replaced carried over",
                   r.name, n);
    }
    copied += n;
    close(r.old_fd);
  }
  resized_.clear();
  return copied;
}

result<datapath> datapath::load(const std::string& bpffs_root, const datapath_options& o) {
  LIBBPF_OPTS(bpf_object_open_opts, opts, .pin_root_path = bpffs_root.c_str());
  ::sluice_bpf* raw = ::sluice_bpf::open(&opts);
  if (!raw) {
    return os_error(-1, "open BPF skeleton");
  }
  std::unique_ptr<::sluice_bpf, sluice_dp::skel_deleter> s(raw);
  s->rodata->cfg_lb_mode = o.lb_mode;
  s->rodata->cfg_snat_port_min = o.snat_port_min;
  s->rodata->cfg_snat_port_max = o.snat_port_max;
  s->rodata->cfg_maglev_size = o.maglev_table_size;
  s->rodata->cfg_maglev_seed0 = o.maglev_seed0;
  s->rodata->cfg_maglev_seed1 = o.maglev_seed1;
  s->rodata->cfg_host_netns_cookie = o.host_netns_cookie;
  s->rodata->cfg_sock_host_only = o.sock_host_only ? 1 : 0;
  // Maglev tables hold all entries in one value: the template's value size follows the size.
  if (int rc = bpf_map__set_value_size(bpf_map__inner_map(s->maps.lb_maglev_v2),
                                       LB_MAGLEV_TABLE_BYTES(o.maglev_table_size));
      rc != 0) {
    return os_error(rc, "size the Maglev table template");
  }
  drop_other_maglev_size(bpffs_root, o.maglev_table_size);
  // Sizes are part of a map's pinned layout. A pin of another size (the flag changed) is moved
  // aside so that libbpf creates the map at the new size; its entries are copied over below, so
  // flows and ids survive the resize.
  std::vector<resized> moved;
  struct close_moved {
    std::vector<resized>& m;
    ~close_moved() {
      for (const resized& r : m) {
        close(r.old_fd);
      }
    }
  } closer{moved};
  const auto aside_pin = [&](const std::string& name) {
    return (fs::path(bpffs_root) / ("resize_" + name)).string();
  };
  // A failed load leaves the pins as they were.
  const auto put_back = [&] {
    for (const resized& r : moved) {
      rename(aside_pin(r.name).c_str(), (fs::path(bpffs_root) / r.name).c_str());
    }
  };
  for (const auto& [map, want] : {std::pair{s->maps.lb4_ct_v2, o.conntrack_max},
                                  std::pair{s->maps.lb6_ct_v2, o.conntrack_max},
                                  std::pair{s->maps.lb4_services_v1, o.services_max},
                                  std::pair{s->maps.lb6_services_v1, o.services_max},
                                  std::pair{s->maps.lb4_backends_v1, o.backends_max},
                                  std::pair{s->maps.lb6_backends_v1, o.backends_max}}) {
    if (int rc = bpf_map__set_max_entries(map, want); rc != 0) {
      return os_error(rc, fmt::format("size {} to {} entries", bpf_map__name(map), want));
    }
    const std::string name = bpf_map__name(map);
    const std::string pin = (fs::path(bpffs_root) / name).string();
    const int fd = bpf_obj_get(pin.c_str());
    if (fd < 0) {
      continue;
    }
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0 || info.max_entries == want ||
        info.key_size != bpf_map__key_size(map) || info.value_size != bpf_map__value_size(map) ||
        info.type != bpf_map__type(map)) {
      close(fd);  // the same size, or not a map of this layout: libbpf decides
      continue;
    }
    unlink(aside_pin(name).c_str());
    if (rename(pin.c_str(), aside_pin(name).c_str()) != 0) {
      const int err = errno;
      close(fd);
      put_back();
      return os_error(-err, fmt::format("move {} aside to resize it", pin));
    }
    spdlog::info("{}: pinned with {} entries at most, {} wanted: resizing (entries are copied)",
                 name, info.max_entries, want);
    moved.push_back({name, fd, -1});
  }
  if (int rc = ::sluice_bpf::load(s.get()); rc != 0) {
    put_back();
    return os_error(rc, fmt::format("load BPF skeleton (pins under {})", bpffs_root));
  }
  for (resized& r : moved) {
    r.new_fd = bpf_map__fd(bpf_object__find_map_by_name(s->obj, r.name.c_str()));
    const size_t n = copy_entries(r.old_fd, r.new_fd, BPF_ANY);
    unlink(aside_pin(r.name).c_str());
    spdlog::info("{}: {} entries copied into the resized map", r.name, n);
  }
  // Only the datapath adds to conntrack: the agent's own maps were complete when copied (the
  // previous agent is gone), and a second copy after this agent's first sync would bring back
  // entries it deleted.
  std::erase_if(moved, [&](const resized& r) {
    const bool agent_map = r.name.find("_ct_") == std::string::npos;
    if (agent_map) {
      close(r.old_fd);
    }
    return agent_map;
  });
  // Maps an older release pinned under names this one no longer uses (a layout change got a new
  // name): nothing reads them any more.
  for (const char* old : {"lb_stats_v1", "lb_stats_v2", "lb4_ct_v1", "lb6_ct_v1", "lb_maglev_v1"}) {
    unlink((fs::path(bpffs_root) / old).c_str());
  }
  if (auto r = pin_programs(s->obj, bpffs_root); !r) {
    return std::unexpected(r.error());
  }
  return datapath(std::move(s), std::exchange(moved, {}));
}

int datapath::pod_ingress_fd() const { return bpf_program__fd(skel_->progs.lb_pod_ingress); }

result<void> datapath::attach_pod_device(int ifindex) const {
  return tc_attach(ifindex, BPF_TC_INGRESS, pod_ingress_fd());
}

device_addrs device_addresses(int ifindex) {
  device_addrs out;
  char name[IF_NAMESIZE] = {};
  ifaddrs* list = nullptr;
  if (if_indextoname(static_cast<unsigned>(ifindex), name) == nullptr || getifaddrs(&list) != 0) {
    return out;
  }
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || std::strcmp(a->ifa_name, name) != 0) {
      continue;
    }
    if (a->ifa_addr->sa_family == AF_INET && out.addr4 == 0) {
      out.addr4 = reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr;
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ifa_addr);
      // Link-local addresses are not routable as a SNAT source.
      if (!IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) && out.addr6 == std::array<uint8_t, 16>{}) {
        std::memcpy(out.addr6.data(), &in6->sin6_addr, 16);
      }
    }
  }
  freeifaddrs(list);
  return out;
}

result<void> datapath::set_native_device(int ifindex, xdp_mode mode,
                                         const device_addrs& addrs) const {
  lb_device dev{};
  dev.addr4 = addrs.addr4;
  std::memcpy(dev.addr6, addrs.addr6.data(), sizeof(dev.addr6));
  dev.flags = mode == xdp_mode::off ? 0 : LB_DEV_F_XDP;
  const uint32_t key = static_cast<uint32_t>(ifindex);
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.lb_devices_v1), &key, &dev, BPF_ANY) != 0) {
    return os_error(-1, fmt::format("write lb_devices_v1[{}]", ifindex));
  }
  return {};
}

result<void> datapath::forget_native_device(int ifindex) const {
  const uint32_t key = static_cast<uint32_t>(ifindex);
  if (bpf_map_delete_elem(bpf_map__fd(skel_->maps.lb_devices_v1), &key) != 0 && errno != ENOENT) {
    return os_error(-1, fmt::format("delete lb_devices_v1[{}]", ifindex));
  }
  return {};
}

result<std::vector<int>> datapath::native_device_entries() const {
  std::vector<int> out;
  const int fd = bpf_map__fd(skel_->maps.lb_devices_v1);
  uint32_t key = 0, next = 0;
  const uint32_t* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    out.push_back(static_cast<int>(next));
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) {
    return os_error(-1, "walk lb_devices_v1");
  }
  return out;
}

result<void> datapath::attach_native_device(int ifindex, xdp_mode mode,
                                            const device_addrs& addrs) const {
  // The device map first: the programs read it as soon as they are attached.
  if (auto r = set_native_device(ifindex, mode, addrs); !r) {
    return r;
  }
  if (auto r = tc_attach(ifindex, BPF_TC_INGRESS, bpf_program__fd(skel_->progs.lb_node_ingress));
      !r) {
    return r;
  }
  if (auto r = tc_attach(ifindex, BPF_TC_EGRESS, bpf_program__fd(skel_->progs.lb_node_egress));
      !r) {
    return r;
  }
  if (mode == xdp_mode::off) {
    return {};
  }
  const uint32_t flags = mode == xdp_mode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
  // The kernel swaps the program in one step (no packet sees none). It is made conditional on
  // what was there when we looked: sluice's own program of an earlier run (XDP_FLAGS_REPLACE
  // with it as the expected one) or nothing (XDP_FLAGS_UPDATE_IF_NOEXIST), so a program someone
  // else attaches in between is never replaced.
  int rc = -EEXIST;
  for (int attempt = 0; attempt < 3 && rc == -EEXIST; ++attempt) {
    uint32_t cur = 0;
    if (bpf_xdp_query_id(ifindex, static_cast<int>(flags), &cur) != 0) {
      cur = 0;
    }
    if (cur != 0 && prog_name(cur) != LB_NODE_XDP_PROG) {
      return std::unexpected(error{std::make_error_code(std::errc::device_or_resource_busy),
                                   fmt::format("ifindex {} already has XDP program {} ({}); "
                                               "not replacing someone else's",
                                               ifindex, cur, prog_name(cur))});
    }
    const int new_fd = bpf_program__fd(skel_->progs.lb_node_xdp);
    if (cur == 0) {
      rc = bpf_xdp_attach(ifindex, new_fd, flags | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
      rc = rc == -EBUSY ? -EEXIST : rc;  // one appeared meanwhile: look again
      continue;
    }
    const int old_fd = bpf_prog_get_fd_by_id(cur);
    if (old_fd < 0) {
      continue;  // detached meanwhile: look again
    }
    LIBBPF_OPTS(bpf_xdp_attach_opts, xo, .old_prog_fd = old_fd);
    rc = bpf_xdp_attach(ifindex, new_fd, flags | XDP_FLAGS_REPLACE, &xo);
    close(old_fd);
  }
  if (rc != 0) {
    return os_error(rc, fmt::format("attach XDP ({}) on ifindex {}",
                                    mode == xdp_mode::native ? "native" : "generic", ifindex));
  }
  return {};
}

result<std::vector<std::string>> cleanup(const std::string& bpffs_root) {
  std::vector<std::string> done;
  // Probing links without a clsact qdisc makes libbpf print kernel errors: expected here.
  struct quiet_libbpf {
    libbpf_print_fn_t old = libbpf_set_print(nullptr);
    ~quiet_libbpf() { libbpf_set_print(old); }
  } quiet;
  if (struct if_nameindex* links = if_nameindex()) {
    for (auto* l = links; l->if_index != 0; ++l) {
      const int ifindex = static_cast<int>(l->if_index);
      for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
        auto hook = tc_hook(ifindex, point);
        LIBBPF_OPTS(bpf_tc_opts, q, .handle = LB_TC_HANDLE, .priority = LB_TC_PRIORITY);
        if (bpf_tc_query(&hook, &q) != 0) {
          continue;
        }
        const std::string name = prog_name(q.prog_id);
        LIBBPF_OPTS(bpf_tc_opts, d, .handle = LB_TC_HANDLE, .priority = LB_TC_PRIORITY);
        if (int rc = bpf_tc_detach(&hook, &d); rc != 0) {
          if_freenameindex(links);
          return os_error(rc, fmt::format("detach tc from {}", l->if_name));
        }
        done.push_back(fmt::format("detached {} from {}", name, l->if_name));
      }
      for (uint32_t mode : {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE}) {
        uint32_t id = 0;
        if (bpf_xdp_query_id(ifindex, static_cast<int>(mode), &id) != 0 || id == 0 ||
            prog_name(id) != LB_NODE_XDP_PROG) {
          continue;
        }
        if (int rc = bpf_xdp_detach(ifindex, mode, nullptr); rc != 0) {
          if_freenameindex(links);
          return os_error(rc, fmt::format("detach XDP from {}", l->if_name));
        }
        done.push_back(fmt::format("detached {} from {}", LB_NODE_XDP_PROG, l->if_name));
      }
    }
    if_freenameindex(links);
  }

  std::error_code ec;
  if (!fs::exists(bpffs_root, ec)) {
    return done;
  }
  if (!on_bpffs(bpffs_root)) {
    return std::unexpected(error{std::make_error_code(std::errc::invalid_argument),
                                 fmt::format("{} is not on a bpf filesystem", bpffs_root)});
  }
  for (const auto& e : fs::directory_iterator(bpffs_root, ec)) {
    // maps.debug / progs.debug: the kernel's own iterators in every bpffs mount root.
    if (e.path().extension() == ".debug") {
      continue;
    }
    if (unlink(e.path().c_str()) != 0) {
      return os_error(-1, fmt::format("unpin {}", e.path().string()));
    }
    done.push_back(fmt::format("unpinned {}", e.path().string()));
  }
  // The root itself, unless it is a mount point someone else made (tests mount their own).
  struct stat self {}, parent {};
  const fs::path rp = fs::absolute(bpffs_root);
  if (stat(rp.c_str(), &self) == 0 && stat(rp.parent_path().c_str(), &parent) == 0 &&
      self.st_dev == parent.st_dev && rmdir(rp.c_str()) == 0) {
    done.push_back(fmt::format("removed {}", rp.string()));
  }
  return done;
}

}  // namespace sluice
