// Shared by the sluicectl tests on real maps: an agent's datapath loaded into the test's own
// bpffs (maps and programs pinned as sluice-agent pins them), golden files, map dumps.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/datapath/datapath.h"
#include "agent/datapath/map_writer.h"
#include "tests/datapath/helpers.h"  // temp_bpffs, v4(), v6()
#include "sluice_bpf.skel.h"
#include "tools/ctl/commands.h"

namespace sluice::ctltest {

using dptest::temp_bpffs;
using dptest::v4;
using dptest::v6;

/// One agent's datapath in a private bpffs: load (pins), writer restored.
struct agent {
  temp_bpffs fs;
  std::optional<datapath> dp;
  std::optional<map_writer> writer;

  explicit agent(const datapath_options& o = {}) {
    REQUIRE(ensure_bpffs(fs.root()));
    auto d = datapath::load(fs.root(), o);
    REQUIRE_MESSAGE(d, (d ? "" : d.error().message()));
    dp.emplace(std::move(*d));
    writer.emplace(dp->skel());
    REQUIRE(writer->restore());
  }
  std::string root() const { return fs.root(); }
  sluice_bpf* skel() const { return dp->skel(); }
  void sync(const desired_state& d) { REQUIRE(writer->sync(d).failed_ops == 0); }
};

/// sluicectl with --bpffs-root of `a` and these words.
inline ctl::output ctl(const agent& a, std::vector<std::string> words) {
  words.insert(words.begin(), {"--bpffs-root", a.root()});
  return ctl::run(words);
}

/// The golden file's content, or (SLUICE_UPDATE_GOLDEN=1) the file rewritten with `got`.
inline void check_golden(const std::string& name, const std::string& got) {
  const std::string path = std::string(SLUICE_CTL_GOLDEN_DIR) + "/" + name;
  if (const char* u = std::getenv("SLUICE_UPDATE_GOLDEN"); u != nullptr && std::string(u) == "1") {
    std::ofstream(path) << got;
    MESSAGE("rewrote " << path);
    return;
  }
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing golden file " << path << " (SLUICE_UPDATE_GOLDEN=1 writes it)");
  std::stringstream want;
  want << in.rdbuf();
  INFO("golden " << path << "\n--- want\n" << want.str() << "--- got\n" << got);
  CHECK(got == want.str());
}

/// Every pinned map under root (programs and lb_trace_v1 excepted) as bytes: name -> sorted
/// (key, value) pairs; a per-CPU value holds every CPU's copy; a Maglev table's inner array
/// is dumped as well (its entries follow its svc_id).
using map_dump = std::map<std::string, std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>>>;

inline std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> dump_fd(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  REQUIRE(bpf_obj_get_info_by_fd(fd, &info, &len) == 0);
  const bool percpu = info.type == BPF_MAP_TYPE_PERCPU_ARRAY ||
                      info.type == BPF_MAP_TYPE_PERCPU_HASH ||
                      info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
  const size_t vsize = percpu ? ((info.value_size + 7) / 8 * 8) * libbpf_num_possible_cpus()
                              : info.value_size;
  std::vector<std::pair<std::vector<uint8_t>, std::vector<uint8_t>>> out;
  // Whole maps in batches (the per-service counters are 65536 per-CPU entries); a key walk for
  // the maps without batch lookup (LPM tries) and for maps of maps (inner tables follow).
  if (info.type != BPF_MAP_TYPE_HASH_OF_MAPS && info.type != BPF_MAP_TYPE_LPM_TRIE) {
    const uint32_t chunk = 8192;
    std::vector<uint8_t> keys(size_t{chunk} * info.key_size), values(size_t{chunk} * vsize);
    uint32_t in_batch = 0, out_batch = 0;
    bool first = true;
    for (;;) {
      uint32_t count = chunk;
      LIBBPF_OPTS(bpf_map_batch_opts, opts);
      const int rc = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, keys.data(),
                                          values.data(), &count, &opts);
      const int err = rc == 0 ? 0 : errno;
      REQUIRE_MESSAGE((rc == 0 || err == ENOENT), "batch lookup: " << std::strerror(err));
      for (uint32_t i = 0; i < count; ++i) {
        out.emplace_back(
            std::vector<uint8_t>(keys.begin() + i * info.key_size, keys.begin() + (i + 1) * info.key_size),
            std::vector<uint8_t>(values.begin() + static_cast<long>(i * vsize),
                                 values.begin() + static_cast<long>((i + 1) * vsize)));
      }
      if (err == ENOENT) {
        break;
      }
      in_batch = out_batch;
      first = false;
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<uint8_t> cur(info.key_size), next(info.key_size);
  bool first = true;
  while (bpf_map_get_next_key(fd, first ? nullptr : cur.data(), next.data()) == 0) {
    first = false;
    std::vector<uint8_t> v(vsize);
    if (bpf_map_lookup_elem(fd, next.data(), v.data()) == 0) {
      if (info.type == BPF_MAP_TYPE_HASH_OF_MAPS) {
        uint32_t inner_id = 0;
        std::memcpy(&inner_id, v.data(), sizeof(inner_id));
        const int inner = bpf_map_get_fd_by_id(inner_id);
        REQUIRE(inner >= 0);
        for (const auto& [k, iv] : dump_fd(inner)) {
          v.insert(v.end(), iv.begin(), iv.end());
        }
        close(inner);
      }
      out.emplace_back(next, v);
    }
    cur = next;
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline map_dump dump_maps(const std::string& root) {
  map_dump d;
  for (const auto& e : std::filesystem::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (name.starts_with(LB_PROG_PIN_PREFIX) || name == LB_TRACE_MAP) {
      continue;
    }
    const int fd = bpf_obj_get(e.path().c_str());
    REQUIRE_MESSAGE(fd >= 0, "open " << e.path());
    d[name] = dump_fd(fd);
    close(fd);
  }
  return d;
}

/// Names of the maps whose content differs.
inline std::string changed_maps(const map_dump& a, const map_dump& b) {
  std::string out;
  for (const auto& [name, entries] : a) {
    const auto it = b.find(name);
    if (it == b.end() || it->second != entries) {
      out += (out.empty() ? "" : ",") + name;
    }
  }
  return out;
}

/// Per-CPU values of one PERCPU_ARRAY element, CPU i at index i (for tests that fill counters).
template <typename V>
void put_percpu(int fd, uint32_t index, const std::vector<V>& per_cpu) {
  std::vector<V> all(static_cast<size_t>(libbpf_num_possible_cpus()));
  for (size_t i = 0; i < per_cpu.size() && i < all.size(); ++i) {
    all[i] = per_cpu[i];
  }
  REQUIRE(bpf_map_update_elem(fd, &index, all.data(), BPF_ANY) == 0);
}

}  // namespace sluice::ctltest
