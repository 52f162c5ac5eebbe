// Reading the datapath's maps from user space: iteration and per-CPU sums, shared by the map
// writer, sluicectl and the tests so every reader agrees on what a counter is.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <vector>

#include "maps/sluice_abi.h"

namespace sluice {

/// Calls fn(key, value) for every entry of a hash map. Returns false (errno set) if the walk
/// stopped on an error rather than at the end.
template <typename Key, typename Value, typename Fn>
bool for_each_entry(int fd, Fn&& fn) {
  Key cur{}, next{};
  Value v{};
  bool first = true;
  while (bpf_map_get_next_key(fd, first ? nullptr : &cur, &next) == 0) {
    first = false;
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) {
      fn(next, v);
    }
    cur = next;
  }
  return errno == ENOENT;
}

/// The same walk with BPF_MAP_LOOKUP_BATCH: one syscall per `chunk` entries instead of two per
/// entry (hash and LRU hash maps; other types fall back to for_each_entry). Entries deleted
/// concurrently never restart the walk (the cursor is a bucket, not a key).
template <typename Key, typename Value, typename Fn>
bool for_each_entry_batched(int fd, Fn&& fn, size_t chunk = 4096) {
  std::vector<Key> keys;
  std::vector<Value> values;
  __u32 in = 0, out = 0;
  bool first = true;
  for (;;) {
    keys.resize(chunk);
    values.resize(chunk);
    auto count = static_cast<__u32>(chunk);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    const int rc = bpf_map_lookup_batch(fd, first ? nullptr : &in, &out, keys.data(), values.data(),
                                        &count, &opts);
    const int err = rc == 0 ? 0 : errno;
    if (err == ENOSPC && count == 0) {
      chunk *= 2;  // one hash bucket holds more entries than a chunk
      continue;
    }
    if (rc != 0 && err != ENOENT) {
      if (first && (err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP)) {
        return for_each_entry<Key, Value>(fd, std::forward<Fn>(fn));
      }
      errno = err;
      return false;
    }
    for (__u32 i = 0; i < count; ++i) {
      fn(keys[i], values[i]);
    }
    if (err == ENOENT) {
      errno = ENOENT;
      return true;
    }
    in = out;
    first = false;
  }
}

inline void accumulate(lb_stat_value& t, const lb_stat_value& v) {
  t.packets += v.packets;
  t.bytes += v.bytes;
}

inline void accumulate(lb_svc_stat_value& t, const lb_svc_stat_value& v) {
  t.fwd_packets += v.fwd_packets;
  t.fwd_bytes += v.fwd_bytes;
  t.reply_packets += v.reply_packets;
  t.reply_bytes += v.reply_bytes;
  t.new_flows += v.new_flows;
  t.rejected += v.rejected;
}

inline void accumulate(lb_ct_count& t, const lb_ct_count& v) {
  t.created += v.created;
  t.deleted += v.deleted;
}

/// The sum over all CPUs of one element of a PERCPU_ARRAY; false if the lookup failed.
template <typename Value>
bool percpu_sum(int fd, uint32_t index, Value& total) {
  const int n = libbpf_num_possible_cpus();
  std::vector<Value> per_cpu(n > 0 ? static_cast<size_t>(n) : 1);
  total = Value{};
  if (bpf_map_lookup_elem(fd, &index, per_cpu.data()) != 0) {
    return false;
  }
  for (const auto& v : per_cpu) {
    accumulate(total, v);
  }
  return true;
}

}  // namespace sluice
