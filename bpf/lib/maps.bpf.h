/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Every map of the datapath is defined here, once (bpftool gen object rejects a second
 * definition). BTF-typed so `bpftool map dump` prints field names, pinned by name so state
 * survives agent restarts: the agent sets the pin root (--bpffs-root).
 */
#ifndef SLUICE_BPF_LIB_MAPS_BPF_H
#define SLUICE_BPF_LIB_MAPS_BPF_H

#include "lib/common.h"

/* Written by the agent only, sparse: no preallocation, memory follows the cluster size. */
#define LB_AGENT_HASH(name, ktype, vtype, max)				\
	struct {							\
		__uint(type, BPF_MAP_TYPE_HASH);			\
		__type(key, ktype);					\
		__type(value, vtype);					\
		__uint(max_entries, max);				\
		__uint(map_flags, BPF_F_NO_PREALLOC);			\
		__uint(pinning, LIBBPF_PIN_BY_NAME);			\
	} name SEC(".maps")

/* Written per flow by the datapath: LRU so a full table evicts the oldest, never fails. */
#define LB_FLOW_LRU(name, ktype, vtype, max)				\
	struct {							\
		__uint(type, BPF_MAP_TYPE_LRU_HASH);			\
		__type(key, ktype);					\
		__type(value, vtype);					\
		__uint(max_entries, max);				\
		__uint(pinning, LIBBPF_PIN_BY_NAME);			\
	} name SEC(".maps")

LB_AGENT_HASH(lb4_services_v1, struct lb4_svc_key, struct lb_svc_value, LB_MAX_SVC_ENTRIES);
LB_AGENT_HASH(lb6_services_v1, struct lb6_svc_key, struct lb_svc_value, LB_MAX_SVC_ENTRIES);
LB_AGENT_HASH(lb4_backends_v1, __u32, struct lb4_backend, LB_MAX_BACKENDS);
LB_AGENT_HASH(lb6_backends_v1, __u32, struct lb6_backend, LB_MAX_BACKENDS);

LB_FLOW_LRU(lb4_ct_v2, struct lb4_ct_key, struct lb4_ct_value, LB_MAX_CT_ENTRIES);
LB_FLOW_LRU(lb6_ct_v2, struct lb6_ct_key, struct lb6_ct_value, LB_MAX_CT_ENTRIES);
LB_FLOW_LRU(lb4_affinity_v1, struct lb4_affinity_key, struct lb_affinity_value, LB_MAX_AFFINITY);
LB_FLOW_LRU(lb6_affinity_v1, struct lb6_affinity_key, struct lb_affinity_value, LB_MAX_AFFINITY);
LB_FLOW_LRU(lb4_frags_v1, struct lb4_frag_key, struct lb_frag_value, LB_MAX_FRAGMENTS);
LB_FLOW_LRU(lb6_frags_v1, struct lb6_frag_key, struct lb_frag_value, LB_MAX_FRAGMENTS);
/* Socket-LB (lib/sock.h): written per connect()/sendmsg() to a service. */
LB_FLOW_LRU(lb4_sock_revnat_v1, struct lb4_sock_revnat_key, struct lb4_sock_revnat_value,
	    LB_MAX_SOCK_REVNAT);
LB_FLOW_LRU(lb6_sock_revnat_v1, struct lb6_sock_revnat_key, struct lb6_sock_revnat_value,
	    LB_MAX_SOCK_REVNAT);
LB_FLOW_LRU(lb_sock_affinity_v1, struct lb_sock_affinity_key, struct lb_affinity_value,
	    LB_MAX_SOCK_AFFINITY);

/* Written by the agent, read per new north-south flow. */
#define LB_AGENT_LPM(name, ktype)					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);			\
		__type(key, ktype);					\
		__type(value, __u8);					\
		__uint(max_entries, LB_MAX_SRC_RANGES);			\
		__uint(map_flags, BPF_F_NO_PREALLOC);			\
		__uint(pinning, LIBBPF_PIN_BY_NAME);			\
	} name SEC(".maps")

LB_AGENT_LPM(lb4_src_ranges_v1, struct lb4_src_range_key);
LB_AGENT_LPM(lb6_src_ranges_v1, struct lb6_src_range_key);

/*
 * One table per Maglev frontend: an array of one element that holds all M backend ids
 * (maps/sluice_abi.h). The agent builds a new inner map and swaps it in with one update of the
 * outer map, so a reader sees the whole old table or the whole new one. The template's value
 * size is set at load to LB_MAGLEV_TABLE_BYTES(cfg_maglev_size), so it has no BTF types (their
 * size would no longer match); every inner map has that size and these flags.
 */
struct lb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, LB_MAGLEV_TABLE_BYTES(LB_MAGLEV_DEFAULT_SIZE));
	__uint(max_entries, 1);
	__uint(map_flags, LB_MAGLEV_TABLE_FLAGS);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32);	/* svc_id */
	__uint(max_entries, LB_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb_maglev_inner);
} lb_maglev_v2 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);	/* ifindex */
	__type(value, struct lb_device);
	__uint(max_entries, LB_MAX_DEVICES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_devices_v1 SEC(".maps");

/* For sluicectl: frontend names and kinds, services not proxied. The datapath never reads them. */
LB_AGENT_HASH(lb_svc_info_v1, __u32, struct lb_svc_info, LB_MAX_SERVICES);
LB_AGENT_HASH(lb_unproxied_v1, struct lb_unproxied_key, struct lb_unproxied_value,
	      LB_MAX_SERVICES);

/* A dry run's decision (sluicectl trace); live packets never touch it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_trace);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_trace_v1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_stat_value);
	__uint(max_entries, LB_STATS_SLOTS);	/* headroom: a new stat keeps the layout */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_stats_v3 SEC(".maps");

_Static_assert(LB_STAT_MAX <= LB_STATS_SLOTS, "enum lb_stat outgrew lb_stats_v3");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_svc_stat_value);
	__uint(max_entries, LB_MAX_SERVICES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_svc_stats_v1 SEC(".maps");

/* Per-CPU scratch for the quoted packet of an ICMP error: too big for the 512-byte stack. */
#define LB_QUOTE_MAX 256

struct lb_quote {
	__u8 bytes[LB_QUOTE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_quote);
	__uint(max_entries, 1);
} lb_scratch SEC(".maps");

#endif
