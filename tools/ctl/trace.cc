#include "tools/ctl/trace.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sys/random.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

namespace sluice::ctl {

namespace {

// An fd closed on every way out.
struct owned_fd {
  int fd = -1;
  explicit owned_fd(int f) : fd(f) {}
  ~owned_fd() {
    if (fd >= 0) {
      close(fd);
    }
  }
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
};

// The program's own lb_trace_v1 (by its map ids, so it is the map this program writes), or -1.
int trace_map_of(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0 || info.nr_map_ids == 0) {
    return -1;
  }
  std::vector<uint32_t> ids(info.nr_map_ids);
  const uint32_t n = info.nr_map_ids;
  info = {};
  info.nr_map_ids = n;
  info.map_ids = reinterpret_cast<uint64_t>(ids.data());
  len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) {
    return -1;
  }
  for (uint32_t i = 0; i < n && i < info.nr_map_ids; ++i) {
    const int fd = bpf_map_get_fd_by_id(ids[i]);
    if (fd < 0) {
      continue;
    }
    bpf_map_info mi{};
    uint32_t mlen = sizeof(mi);
    if (bpf_obj_get_info_by_fd(fd, &mi, &mlen) == 0 && std::strcmp(mi.name, LB_TRACE_MAP) == 0 &&
        mi.value_size == sizeof(lb_trace)) {
      return fd;
    }
    close(fd);
  }
  return -1;
}

// The device's MAC address from sysfs (the frame's destination when the user gave none).
std::optional<mac_addr> device_mac(const std::string& dev) {
  std::ifstream in("/sys/class/net/" + dev + "/address");
  std::string text;
  if (!std::getline(in, text)) {
    return std::nullopt;
  }
  return parse_mac(text);
}

uint32_t fresh_nonce() {
  uint32_t n = 0;
  while (n == 0) {
    if (getrandom(&n, sizeof(n), 0) != sizeof(n)) {
      n = static_cast<uint32_t>(getpid()) ^ 0x51ce7ace;
    }
  }
  return n;
}

}  // namespace

std::expected<trace_run, std::string> run_trace(const std::string& root, const trace_request& r) {
  trace_run run;
  run.program = hook_program(r.where);
  const std::string pin = fmt::format("{}/{}{}", root, LB_PROG_PIN_PREFIX, run.program);
  const owned_fd prog(bpf_obj_get(pin.c_str()));
  if (prog.fd < 0) {
    return std::unexpected(fmt::format(
        "open {}: {} (is sluice-agent running with --bpffs-root {}?)", pin, strerror(errno), root));
  }
  bpf_prog_info pinfo{};
  uint32_t plen = sizeof(pinfo);
  if (bpf_obj_get_info_by_fd(prog.fd, &pinfo, &plen) == 0) {
    run.prog_id = pinfo.id;
  }
  const owned_fd trace_map(trace_map_of(prog.fd));
  if (trace_map.fd < 0) {
    return std::unexpected(fmt::format(
        "{} has no {} map: it predates dry runs and would change live state; not running it "
        "(restart sluice-agent with this release)",
        pin, LB_TRACE_MAP));
  }

  packet_spec spec = r.packet;
  if (!r.dev.empty()) {
    run.ifindex = if_nametoindex(r.dev.c_str());
    if (run.ifindex == 0) {
      return std::unexpected(fmt::format("device {}: {}", r.dev, strerror(errno)));
    }
    if (!r.dmac_given) {
      if (const auto m = device_mac(r.dev)) {
        spec.dmac = *m;
      }
    }
  }
  run.in = build_packet(spec);
  const uint32_t nonce = fresh_nonce();

  bytes data = run.in;
  std::vector<uint8_t> out(run.in.size() + 4096);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_out = out.data(),
              .data_size_out = static_cast<__u32>(out.size()), .repeat = 1);
  __sk_buff skb{};
  xdp_md xdp{}, xdp_out{};
  if (r.where == hook::xdp) {
    // The mark travels as the frame's metadata: BPF_PROG_TEST_RUN takes data_in as metadata
    // then frame, xdp_md.data being the metadata's size.
    const lb_trace_meta meta{LB_TRACE_MAGIC, nonce};
    data.insert(data.begin(), reinterpret_cast<const uint8_t*>(&meta),
                reinterpret_cast<const uint8_t*>(&meta) + sizeof(meta));
    xdp.data = sizeof(meta);
    xdp.data_end = static_cast<__u32>(data.size());
    xdp.ingress_ifindex = run.ifindex;
    opts.ctx_in = &xdp;
    opts.ctx_size_in = sizeof(xdp);
    opts.ctx_out = &xdp_out;
    opts.ctx_size_out = sizeof(xdp_out);
  } else {
    skb.mark = LB_TRACE_MARK;
    skb.cb[0] = LB_TRACE_MAGIC;
    skb.cb[1] = nonce;
    skb.ifindex = run.ifindex;
    if (r.where != hook::tc_egress) {
      skb.ingress_ifindex = run.ifindex;
    }
    opts.ctx_in = &skb;
    opts.ctx_size_in = sizeof(skb);
  }
  opts.data_in = data.data();
  opts.data_size_in = static_cast<__u32>(data.size());
  if (bpf_prog_test_run_opts(prog.fd, &opts) != 0) {
    return std::unexpected(fmt::format("BPF_PROG_TEST_RUN of {}: {}", run.program, strerror(errno)));
  }
  run.retval = opts.retval;
  out.resize(std::min<size_t>(opts.data_size_out, out.size()));
  if (r.where == hook::xdp && xdp_out.data <= out.size()) {
    out.erase(out.begin(), out.begin() + xdp_out.data);  // the metadata in front of the frame
  }
  run.out = std::move(out);

  // The run executed on some CPU; its slot holds our nonce.
  const int ncpu = libbpf_num_possible_cpus();
  std::vector<lb_trace> per_cpu(ncpu > 0 ? static_cast<size_t>(ncpu) : 1);
  const uint32_t zero = 0;
  if (bpf_map_lookup_elem(trace_map.fd, &zero, per_cpu.data()) != 0) {
    return std::unexpected(fmt::format("read {}: {}", LB_TRACE_MAP, strerror(errno)));
  }
  for (const lb_trace& t : per_cpu) {
    if (t.nonce == nonce) {
      run.record = t;
      break;
    }
  }
  if (run.record && run.record->ifindex != 0) {
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(run.record->ifindex, name) != nullptr) {
      run.out_dev = name;
    }
  }
  return run;
}

}  // namespace sluice::ctl
