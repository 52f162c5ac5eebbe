// Compile-time guard on maps/sluice_abi.h as C++ sees it: sizes and offsets of every key and
// value must match what the BPF object was built with (clang -target bpf lays structs out like
// x86-64 here: no implicit holes, see the explicit pad fields). A failing assert means the ABI
// changed: bump the map's version suffix (LB_*_MAP) and update the numbers below.
#include <cstddef>

#include "maps/sluice_abi.h"

#define SLUICE_ABI(type, size) static_assert(sizeof(type) == (size), #type " size changed")
#define SLUICE_OFF(type, field, off) \
  static_assert(offsetof(type, field) == (off), #type "." #field " moved")

SLUICE_ABI(struct lb4_svc_key, 12);
SLUICE_OFF(struct lb4_svc_key, port, 4);
SLUICE_OFF(struct lb4_svc_key, slot, 6);
SLUICE_OFF(struct lb4_svc_key, proto, 8);
SLUICE_OFF(struct lb4_svc_key, scope, 9);
SLUICE_ABI(struct lb6_svc_key, 24);
SLUICE_OFF(struct lb6_svc_key, port, 16);
SLUICE_OFF(struct lb6_svc_key, slot, 18);
SLUICE_OFF(struct lb6_svc_key, proto, 20);
SLUICE_ABI(struct lb_svc_value, 16);
SLUICE_OFF(struct lb_svc_value, svc_id, 4);
SLUICE_OFF(struct lb_svc_value, affinity_timeout, 8);
SLUICE_OFF(struct lb_svc_value, count, 12);
SLUICE_OFF(struct lb_svc_value, flags, 14);

SLUICE_ABI(struct lb4_backend, 12);
SLUICE_OFF(struct lb4_backend, port, 4);
SLUICE_OFF(struct lb4_backend, state, 7);
SLUICE_OFF(struct lb4_backend, svc_id, 8);
SLUICE_ABI(struct lb6_backend, 24);
SLUICE_OFF(struct lb6_backend, port, 16);
SLUICE_OFF(struct lb6_backend, svc_id, 20);

SLUICE_ABI(struct lb4_ct_key, 16);
SLUICE_OFF(struct lb4_ct_key, sport, 8);
SLUICE_OFF(struct lb4_ct_key, proto, 12);
SLUICE_ABI(struct lb6_ct_key, 40);
SLUICE_OFF(struct lb6_ct_key, sport, 32);
SLUICE_OFF(struct lb6_ct_key, proto, 36);
SLUICE_ABI(struct lb_ct_state, 32);
SLUICE_OFF(struct lb_ct_state, nat_port, 2);
SLUICE_OFF(struct lb_ct_state, backend_id, 4);
SLUICE_OFF(struct lb_ct_state, svc_id, 8);
SLUICE_OFF(struct lb_ct_state, created_ns, 16);
SLUICE_OFF(struct lb_ct_state, last_seen_ns, 24);
SLUICE_ABI(struct lb4_ct_value, 40);
SLUICE_OFF(struct lb4_ct_value, nat_addr, 32);
SLUICE_OFF(struct lb4_ct_value, snat_addr, 36);
SLUICE_ABI(struct lb6_ct_value, 64);
SLUICE_OFF(struct lb6_ct_value, snat_addr, 48);

SLUICE_ABI(struct lb4_affinity_key, 8);
SLUICE_ABI(struct lb6_affinity_key, 20);
SLUICE_ABI(struct lb_affinity_value, 16);
SLUICE_OFF(struct lb_affinity_value, backend_id, 8);

SLUICE_ABI(struct lb4_frag_key, 12);
SLUICE_OFF(struct lb4_frag_key, id, 8);
SLUICE_ABI(struct lb6_frag_key, 40);
SLUICE_OFF(struct lb6_frag_key, id, 32);
SLUICE_ABI(struct lb_frag_value, 4);

SLUICE_ABI(struct lb4_sock_revnat_key, 16);
SLUICE_OFF(struct lb4_sock_revnat_key, addr, 8);
SLUICE_OFF(struct lb4_sock_revnat_key, port, 12);
SLUICE_ABI(struct lb6_sock_revnat_key, 32);
SLUICE_OFF(struct lb6_sock_revnat_key, port, 24);
SLUICE_ABI(struct lb4_sock_revnat_value, 24);
SLUICE_OFF(struct lb4_sock_revnat_value, vip, 8);
SLUICE_OFF(struct lb4_sock_revnat_value, port, 12);
SLUICE_OFF(struct lb4_sock_revnat_value, proto, 14);
SLUICE_OFF(struct lb4_sock_revnat_value, svc_id, 16);
SLUICE_OFF(struct lb4_sock_revnat_value, backend_id, 20);
SLUICE_ABI(struct lb6_sock_revnat_value, 40);
SLUICE_OFF(struct lb6_sock_revnat_value, port, 24);
SLUICE_OFF(struct lb6_sock_revnat_value, svc_id, 28);
SLUICE_OFF(struct lb6_sock_revnat_value, backend_id, 32);
SLUICE_ABI(struct lb_sock_affinity_key, 16);
SLUICE_OFF(struct lb_sock_affinity_key, svc_id, 8);

SLUICE_ABI(struct lb_stat_value, 16);
SLUICE_ABI(struct lb_svc_stat_value, 48);

SLUICE_ABI(struct lb_svc_info, 212);
SLUICE_OFF(struct lb_svc_info, ns, 4);
SLUICE_OFF(struct lb_svc_info, name, 68);
SLUICE_OFF(struct lb_svc_info, port_name, 196);
SLUICE_ABI(struct lb_unproxied_key, 128);
SLUICE_ABI(struct lb_unproxied_value, 260);
SLUICE_OFF(struct lb_unproxied_value, external_name, 4);

SLUICE_ABI(struct lb_trace_meta, 8);
SLUICE_ABI(struct lb_trace, 80);
SLUICE_OFF(struct lb_trace, ct, 16);
SLUICE_OFF(struct lb_trace, ifindex, 24);
SLUICE_OFF(struct lb_trace, nat_port, 28);
SLUICE_OFF(struct lb_trace, nat_addr, 32);
SLUICE_OFF(struct lb_trace, snat_addr, 48);
SLUICE_OFF(struct lb_trace, created_ns, 64);

static_assert(LB_STAT_MAX <= LB_STATS_SLOTS, "enum lb_stat outgrew lb_stats_v3 (LB_STATS_SLOTS)");
