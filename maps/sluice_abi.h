/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The ABI shared verbatim by bpf/ (the datapath) and agent/, tools/, tests/ (user space).
 *
 * Plain C, no map definitions (those live in bpf/lib/maps.bpf.h). Every field says its byte
 * order: "be" = network order, "host" = the CPU's order. Padding is explicit so that a key
 * zeroed with {} or memset hashes the same in the kernel and in user space.
 *
 * Any change to a struct's layout must bump the version suffix of every map that uses it
 * (LB_*_MAP names below): pinned maps survive agent upgrades and libbpf refuses to reuse a pin
 * whose key/value sizes changed, but it cannot see a reordered field of the same size.
 */
#ifndef SLUICE_MAPS_SLUICE_ABI_H
#define SLUICE_MAPS_SLUICE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* ---- sizes ---------------------------------------------------------------------------- */

#define LB_MAX_SERVICES		65536	/* service ids are 1..LB_MAX_SERVICES-1; 0 = none */
#define LB_MAX_SVC_ENTRIES	262144	/* master + slot entries, per family */
#define LB_MAX_BACKENDS		262144	/* per family */
#define LB_MAX_CT_ENTRIES	262144	/* per family; two entries per flow */
#define LB_MAX_AFFINITY		65536	/* per family */
#define LB_MAX_FRAGMENTS	8192	/* per family, datagrams in flight in pieces */
#define LB_MAX_BACKENDS_PER_SVC	65535	/* slot numbers are __u16, slot 0 is the master */
#define LB_MAX_SRC_RANGES	65536	/* loadBalancerSourceRanges prefixes, per family */
#define LB_MAX_DEVICES		64	/* native devices (--devices) */
/*
 * Socket-LB reverse entries, per family: one per (socket, backend) a connect() or sendmsg() to a
 * service chose. LRU: a full table forgets the least recently used (recvmsg()/getpeername()
 * lookups keep a live socket's entry young); a forgotten entry shows the backend's address, it
 * never misroutes. Cilium's lb{4,6}_reverse_sk is 256Ki; LRU maps are preallocated and their
 * creation is most of the agent's start-up (bench/README.md), so 64Ki each here.
 */
#define LB_MAX_SOCK_REVNAT	65536
#define LB_MAX_SOCK_AFFINITY	16384	/* socket-LB ClientIP affinity, (netns, svc_id) pairs */
/*
 * Maglev lookup table size (entries, a prime). Cilium's default is 16381; at 100 backends that
 * moves up to 1.51% of the other backends' flows when one backend goes (measured over seeds,
 * tests/agent/maglev_test.cc), above the 1.5% sluice promises, so the default is the next size
 * of Cilium's list. 256 KiB of kernel memory per Maglev frontend (an array keeps 8 bytes per u32 value).
 */
#define LB_MAGLEV_DEFAULT_SIZE	32749
#define LB_MAGLEV_MAX_SIZE	131071
/*
 * Entries of lb_stats_v3: more than enum lb_stat uses, so that a new stat needs no new map
 * version (an array's size is part of its pinned layout). Never lower it.
 */
#define LB_STATS_SLOTS		64

/* ---- pin names (files under --bpffs-root) ---------------------------------------------- */

#define LB4_SERVICES_MAP	"lb4_services_v1"
#define LB6_SERVICES_MAP	"lb6_services_v1"
#define LB4_BACKENDS_MAP	"lb4_backends_v1"
#define LB6_BACKENDS_MAP	"lb6_backends_v1"
#define LB4_CT_MAP		"lb4_ct_v2"	/* v2: snat_port, snat_addr */
#define LB6_CT_MAP		"lb6_ct_v2"
#define LB4_AFFINITY_MAP	"lb4_affinity_v1"
#define LB6_AFFINITY_MAP	"lb6_affinity_v1"
#define LB4_FRAGS_MAP		"lb4_frags_v1"
#define LB6_FRAGS_MAP		"lb6_frags_v1"
#define LB_STATS_MAP		"lb_stats_v3"	/* v2: LB_STATS_SLOTS entries; v3: north-south stats */
#define LB_SVC_STATS_MAP	"lb_svc_stats_v1"
#define LB4_SRC_RANGES_MAP	"lb4_src_ranges_v1"
#define LB6_SRC_RANGES_MAP	"lb6_src_ranges_v1"
#define LB_MAGLEV_MAP		"lb_maglev_v2"	/* v2: one element per table, 4 bytes an entry */
#define LB_DEVICES_MAP		"lb_devices_v1"
#define LB4_SOCK_REVNAT_MAP	"lb4_sock_revnat_v1"
#define LB6_SOCK_REVNAT_MAP	"lb6_sock_revnat_v1"
#define LB_SOCK_AFFINITY_MAP	"lb_sock_affinity_v1"
/* Written by the agent for sluicectl only; the datapath never reads them. */
#define LB_SVC_INFO_MAP		"lb_svc_info_v1"
#define LB_UNPROXIED_MAP	"lb_unproxied_v1"
/* Written by the datapath in a dry run only (sluicectl trace). */
#define LB_TRACE_MAP		"lb_trace_v1"
/*
 * Every program of the object is pinned as LB_PROG_PIN_PREFIX + its name under --bpffs-root
 * (e.g. prog_lb_pod_ingress), so sluicectl runs exactly the programs that agent loaded.
 */
#define LB_PROG_PIN_PREFIX	"prog_"

/* Program names (the kernel keeps 15 characters). */
#define LB_POD_INGRESS_PROG	"lb_pod_ingress"	/* tc ingress of pod-facing devices */
#define LB_NODE_XDP_PROG	"lb_node_xdp"		/* XDP on native devices (--devices) */
#define LB_NODE_INGRESS_PROG	"lb_node_ingress"	/* tc ingress of native devices */
#define LB_NODE_EGRESS_PROG	"lb_node_egress"	/* tc egress of native devices */
/* Socket-LB: cgroup sock_addr programs on --cgroup (bpf/lib/sock.h). */
#define LB4_CONNECT_PROG	"lb4_connect"
#define LB6_CONNECT_PROG	"lb6_connect"
#define LB4_SENDMSG_PROG	"lb4_sendmsg"
#define LB6_SENDMSG_PROG	"lb6_sendmsg"
#define LB4_RECVMSG_PROG	"lb4_recvmsg"
#define LB6_RECVMSG_PROG	"lb6_recvmsg"
#define LB4_GETPEERNAME_PROG	"lb4_getpeername"
#define LB6_GETPEERNAME_PROG	"lb6_getpeername"
#define LB_SOCK_RELEASE_PROG	"lb_sock_release"	/* close(): the reverse entry goes */
/*
 * Their cgroup links are pinned under --bpffs-root as LB_SOCK_LINK_PREFIX + program name, so
 * the programs stay attached while no agent runs (an agent restart replaces the program inside
 * each link; --cleanup unpins them, which detaches them).
 */
#define LB_SOCK_LINK_PREFIX	"link_cgroup_"
/* tc filter identity on the clsact ingress hook; the agent replaces/detaches by these. */
#define LB_TC_HANDLE		0x51ce
#define LB_TC_PRIORITY		0x51

/* ---- services: master entry (slot 0) + one entry per backend slot ------------------------ */

enum lb_scope {
	LB_SCOPE_ALL = 0,	/* every source, unless the master says LB_SVC_F_EXT_LOCAL */
	/*
	 * externalTrafficPolicy Local: the backends for traffic from outside the node (this
	 * node's endpoints only; the client address is kept). Same svc_id as the ALL entries.
	 */
	LB_SCOPE_EXTERNAL = 1,
};

enum lb_svc_flags {
	LB_SVC_F_AFFINITY = 1 << 0,	/* ClientIP session affinity; timeout in affinity_timeout */
	/*
	 * With count == 0: drop new flows silently instead of rejecting them. A Local traffic
	 * policy without a local endpoint while the service has endpoints elsewhere (kube-proxy
	 * DROPs there; REJECT is only for a service without any endpoint).
	 */
	LB_SVC_F_DROP_EMPTY = 1 << 1,
	/* NodePort, LoadBalancer, ExternalIP or HostPort: served on native devices (XDP/tc). */
	LB_SVC_F_EXTERNAL = 1 << 2,
	/* Master of scope ALL: traffic from outside the node uses the LB_SCOPE_EXTERNAL entries. */
	LB_SVC_F_EXT_LOCAL = 1 << 3,
	/* New flows only from clients in lb{4,6}_src_ranges_v1 under svc_id; others dropped. */
	LB_SVC_F_SOURCE_RANGES = 1 << 4,
	/* Traffic from outside the node picks its backend from lb_maglev_v2[svc_id]. */
	LB_SVC_F_MAGLEV = 1 << 5,
	/*
	 * A loopback frontend (127.0.0.1:nodePort, a hostPort with a loopback hostIP): translated
	 * only at the socket and only in the host network namespace; the packet programs pass it
	 * (a pod's 127.0.0.1 is its own, and nothing from outside may reach the node's loopback).
	 */
	LB_SVC_F_LOOPBACK = 1 << 6,
	/*
	 * Served to traffic from outside the node only: pods and the node's own processes reach
	 * the address itself, untranslated. --external-ip-mitigation sets it on ExternalIPs that
	 * are not this node's (CVE-2020-8554: a Service claiming someone else's address).
	 */
	LB_SVC_F_OUTSIDE_ONLY = 1 << 7,
};

struct lb4_svc_key {
	__be32 vip;		/* be: service address */
	__be16 port;		/* be: service port */
	__u16 slot;		/* host: 0 = master entry, 1..count = backend slots */
	__u8 proto;		/* IPPROTO_TCP / IPPROTO_UDP */
	__u8 scope;		/* enum lb_scope */
	__u8 pad[2];
};

struct lb6_svc_key {
	__be32 vip[4];		/* be: service address */
	__be16 port;		/* be: service port */
	__u16 slot;		/* host: 0 = master entry, 1..count = backend slots */
	__u8 proto;		/* IPPROTO_TCP / IPPROTO_UDP */
	__u8 scope;		/* enum lb_scope */
	__u8 pad[2];
};

/* One value type for both kinds of entry; which fields mean something depends on the slot. */
struct lb_svc_value {
	__u32 backend_id;	/* host: slot > 0: id in lb{4,6}_backends; master: 0 */
	__u32 svc_id;		/* host: the frontend's id, same in master and slots */
	__u32 affinity_timeout;	/* host: master: ClientIP affinity timeout in seconds */
	__u16 count;		/* host: master: usable backends (slots 1..count); 0 = reject,
				 * or drop with LB_SVC_F_DROP_EMPTY */
	__u16 flags;		/* host: master: enum lb_svc_flags */
};

/* ---- backends: one entry per (service frontend, endpoint) -------------------------------- */

enum lb_backend_state {
	LB_BACKEND_ACTIVE = 0,
	LB_BACKEND_TERMINATING = 1,	/* serving && terminating: used only when nothing is ready */
};

/*
 * A backend id belongs to exactly one service frontend (svc_id), so "is this backend still part
 * of that service?" (affinity, UDP flow re-pinning) is a single lookup.
 */
struct lb4_backend {
	__be32 addr;		/* be */
	__be16 port;		/* be */
	__u8 proto;		/* IPPROTO_* */
	__u8 state;		/* enum lb_backend_state */
	__u32 svc_id;		/* host */
};

struct lb6_backend {
	__be32 addr[4];		/* be */
	__be16 port;		/* be */
	__u8 proto;		/* IPPROTO_* */
	__u8 state;		/* enum lb_backend_state */
	__u32 svc_id;		/* host */
};

/* ---- conntrack: two entries per translated flow, keyed by the packet's own tuple ---------- */

enum lb_ct_dir {
	LB_CT_FORWARD = 1,	/* client -> service: rewrite destination to the backend */
	LB_CT_REPLY = 2,	/* backend -> client: rewrite source back to the service */
};

enum lb_ct_flags {
	/*
	 * Source NAT: FORWARD rewrites the source to snat_addr:snat_port, REPLY restores the
	 * destination to snat_addr:snat_port. A pod that is its own backend (hairpin) is hidden
	 * behind the VIP with its own port; NodePort SNAT uses the node address and a new port.
	 */
	LB_CT_F_SNAT = 1 << 0,
	LB_CT_F_FIN_FWD = 1 << 1,	/* TCP FIN seen from the client */
	LB_CT_F_FIN_REPLY = 1 << 2,	/* TCP FIN seen from the backend */
	LB_CT_F_RST = 1 << 3,		/* TCP RST seen either way */
	LB_CT_F_SEEN_REPLY = 1 << 4,	/* the backend has answered */
	/*
	 * FORWARD: the backend is on another node and answers the client directly; the service
	 * address travels in a DSR option (TCP SYN, every UDP datagram). REPLY: made on the
	 * backend's node from such an option.
	 */
	LB_CT_F_DSR = 1 << 5,
	LB_CT_F_REMOTE = 1 << 6,	/* FORWARD: the backend is behind a native device (XDP_TX) */
	/*
	 * The service address is one of this node's (NodePort, hostPort): an answer translated at
	 * the pod's device would reach the stack with a local source address and be dropped as a
	 * martian (IPv4), so it leaves by a FIB redirect instead.
	 */
	LB_CT_F_VIP_LOCAL = 1 << 7,
};

struct lb4_ct_key {
	__be32 saddr;		/* be: packet source */
	__be32 daddr;		/* be: packet destination */
	__be16 sport;		/* be */
	__be16 dport;		/* be */
	__u8 proto;		/* IPPROTO_* */
	__u8 pad[3];
};

struct lb6_ct_key {
	__be32 saddr[4];	/* be */
	__be32 daddr[4];	/* be */
	__be16 sport;		/* be */
	__be16 dport;		/* be */
	__u8 proto;		/* IPPROTO_* */
	__u8 pad[3];
};

/* The family-independent part of a conntrack value; updated in place by the datapath. */
struct lb_ct_state {
	__u8 dir;		/* enum lb_ct_dir */
	__u8 flags;		/* enum lb_ct_flags */
	__be16 nat_port;	/* be: FORWARD: backend port; REPLY: service port */
	__u32 backend_id;	/* host */
	__u32 svc_id;		/* host */
	__be16 snat_port;	/* be: with LB_CT_F_SNAT, see there */
	__u8 pad[2];
	__u64 created_ns;	/* host: CLOCK_MONOTONIC_COARSE (lb_now()) at creation */
	__u64 last_seen_ns;	/* host: CLOCK_MONOTONIC, refreshed at most every LB_CT_REFRESH_S */
};

/*
 * FORWARD entry: nat_addr:state.nat_port = backend; snat_addr:snat_port = the new source.
 * REPLY entry:   nat_addr:state.nat_port = VIP:port; snat_addr:snat_port = the client to restore
 *                as destination. snat_* are meaningful only with LB_CT_F_SNAT.
 */
struct lb4_ct_value {
	struct lb_ct_state state;
	__be32 nat_addr;	/* be */
	__be32 snat_addr;	/* be */
};

struct lb6_ct_value {
	struct lb_ct_state state;
	__be32 nat_addr[4];	/* be */
	__be32 snat_addr[4];	/* be */
};

/*
 * How long a conntrack entry lives after its last packet, in ns: one rule for the datapath
 * (bpf/lib/conntrack.h, with its cfg_ct_* timeouts) and the agent's sweep
 * (agent/datapath/ct_gc.cc), which must never disagree about a flow. TCP that is closing (RST,
 * or FIN both ways) gets tcp_close; a DSR entry that saw the FIN of its own direction gets
 * tcp_fin, because it never sees the other one (the load-balancing node does not see the
 * backend's packets, the backend's node does not see the client's); other TCP gets tcp; UDP
 * and the rest udp. Always inlined: the datapath has no stack to spare for a call.
 */
static inline __attribute__((always_inline)) __u64
lb_ct_timeout_ns(__u8 flags, __u8 proto, __u64 tcp_ns, __u64 tcp_close_ns, __u64 tcp_fin_ns,
		 __u64 udp_ns)
{
	if (proto != 6)	/* IPPROTO_TCP */
		return udp_ns;
	if ((flags & LB_CT_F_RST) || ((flags & LB_CT_F_FIN_FWD) && (flags & LB_CT_F_FIN_REPLY)))
		return tcp_close_ns;
	if ((flags & LB_CT_F_DSR) && (flags & (LB_CT_F_FIN_FWD | LB_CT_F_FIN_REPLY)))
		return tcp_fin_ns;
	return tcp_ns;
}

/* ---- ClientIP session affinity ---------------------------------------------------------- */

struct lb4_affinity_key {
	__be32 client;		/* be */
	__u32 svc_id;		/* host */
};

struct lb6_affinity_key {
	__be32 client[4];	/* be */
	__u32 svc_id;		/* host */
};

struct lb_affinity_value {
	__u64 last_used_ns;	/* host: CLOCK_MONOTONIC of the last new connection */
	__u32 backend_id;	/* host */
	__u32 pad;
};

/* ---- socket-LB: the service behind a socket's backend, and affinity per netns ---------- */

/*
 * lb{4,6}_sock_revnat_v1: written by connect()/sendmsg() when they point a socket at a backend;
 * read by recvmsg()/getpeername() to show the service's address instead, and by the agent to
 * find connected UDP sockets whose backend has left (it destroys them).
 */
struct lb4_sock_revnat_key {
	__u64 cookie;		/* host: bpf_get_socket_cookie() */
	__be32 addr;		/* be: backend address */
	__be16 port;		/* be: backend port */
	__u8 pad[2];
};

struct lb6_sock_revnat_key {
	__u64 cookie;		/* host: bpf_get_socket_cookie() */
	__be32 addr[4];		/* be: backend address (a v4-mapped socket uses the v4 map) */
	__be16 port;		/* be: backend port */
	__u8 pad[6];
};

struct lb4_sock_revnat_value {
	__u64 netns_cookie;	/* host: the socket's network namespace (bpf_get_netns_cookie) */
	__be32 vip;		/* be: service address */
	__be16 port;		/* be: service port */
	__u8 proto;		/* IPPROTO_TCP / IPPROTO_UDP */
	__u8 pad;
	__u32 svc_id;		/* host: the frontend; a reverse entry of another svc_id is stale */
	__u32 backend_id;	/* host: the backend chosen */
};

struct lb6_sock_revnat_value {
	__u64 netns_cookie;	/* host */
	__be32 vip[4];		/* be */
	__be16 port;		/* be */
	__u8 proto;
	__u8 pad;
	__u32 svc_id;		/* host */
	__u32 backend_id;	/* host */
	__u32 pad2;
};

/*
 * lb_sock_affinity_v1: ClientIP affinity at the socket, where the client's address is not known
 * yet (connect() runs before the source is chosen). A pod has one address per family, so its
 * network namespace stands for it (Cilium does the same); the node's processes share one.
 * svc_ids are unique across families. Value: struct lb_affinity_value.
 */
struct lb_sock_affinity_key {
	__u64 netns_cookie;	/* host */
	__u32 svc_id;		/* host */
	__u32 pad;
};

/* ---- fragments: L4 ports of a fragmented datagram, learnt from its first fragment -------- */

struct lb4_frag_key {
	__be32 saddr;		/* be */
	__be32 daddr;		/* be */
	__be16 id;		/* be: IPv4 identification */
	__u8 proto;		/* IPPROTO_* of the datagram */
	__u8 pad;
};

struct lb6_frag_key {
	__be32 saddr[4];	/* be */
	__be32 daddr[4];	/* be */
	__be32 id;		/* be: fragment header identification */
	__u8 proto;		/* IPPROTO_* of the datagram */
	__u8 pad[3];
};

struct lb_frag_value {
	__be16 sport;		/* be */
	__be16 dport;		/* be */
};

/* ---- loadBalancerSourceRanges: LPM tries keyed by (svc_id, client prefix) ---------------- */

/* prefixlen = 32 (svc_id, always matched) + the prefix length of addr. */
struct lb4_src_range_key {
	__u32 prefixlen;	/* host */
	__u32 svc_id;		/* host (matched as bytes, all 32 bits) */
	__be32 addr;		/* be */
};

struct lb6_src_range_key {
	__u32 prefixlen;	/* host */
	__u32 svc_id;		/* host */
	__be32 addr[4];		/* be */
};

#define LB_SRC_RANGE_KEY_PREFIX	32	/* bits of svc_id ahead of the address */

/*
 * ---- Maglev: lb_maglev_v2[svc_id] is an inner ARRAY map of ONE element, the whole table:
 * M backend ids (host order), M = cfg_maglev_size (--maglev-table-size). As M elements of a
 * u32 each would take 8 bytes (an array pads every value to 8), this takes 4 bytes an entry.
 * Every table is created with these flags (the template's: the kernel requires equal flags).
 */
#define LB_MAGLEV_TABLE_FLAGS	(1U << 10)	/* BPF_F_MMAPABLE: filled by one copy */
#define LB_MAGLEV_TABLE_BYTES(m)	((m) * 4U)	/* value size of a table of m entries */

/* ---- native devices: where north-south traffic arrives and leaves ---------------------- */

enum lb_device_flags {
	LB_DEV_F_XDP = 1 << 0,	/* lb_node_xdp is attached: tc ingress need not look again */
};

/* Key: ifindex (host). Addresses used as the SNAT source of flows sent out of the device. */
struct lb_device {
	__be32 addr4;		/* be: 0 = none */
	__be32 addr6[4];	/* be: :: = none */
	__u32 flags;		/* host: enum lb_device_flags */
};

/* How a north-south flow reaches a backend on another node (cfg_lb_mode, --lb-mode). */
enum lb_mode {
	LB_MODE_SNAT = 0,	/* source becomes the node, replies come back through it */
	LB_MODE_DSR = 1,	/* client address kept, the backend's node answers directly */
	LB_MODE_HYBRID = 2,	/* DSR for TCP, SNAT for UDP (no per-datagram option) */
};

/* Default SNAT source ports: above Linux's ephemeral range (32768-60999), below 65536. */
#define LB_SNAT_PORT_MIN	61000
#define LB_SNAT_PORT_MAX	65535

/* ---- DSR: how the service address travels to the backend's node ----------------------- */

/* IPv4 option (Cilium's encoding): copied on fragmentation, class 0, number 26. */
#define LB_DSR_OPT4_TYPE	0x9a
struct lb_dsr_opt4 {
	__u8 type;		/* LB_DSR_OPT4_TYPE */
	__u8 len;		/* 8 */
	__be16 port;		/* be: service port */
	__be32 addr;		/* be: service address */
};

/* IPv6 destination option type 0x1b: top bits 00 = a node that does not know it skips it. */
#define LB_DSR_OPT6_TYPE	0x1b
struct lb_dsr_opt6 {
	__u8 nexthdr;		/* the header that follows */
	__u8 hdrlen;		/* 2: (24 / 8) - 1 */
	__u8 opt_type;		/* LB_DSR_OPT6_TYPE */
	__u8 opt_len;		/* 18 */
	__be32 addr[4];		/* be: service address */
	__be16 port;		/* be: service port */
	__u8 pad[2];		/* PadN would need 2 bytes of its own: zero = Pad1 Pad1 */
};

/* ---- counters ------------------------------------------------------------------------ */

/*
 * Index into lb_stats_v3: what happened to a packet. Values below LB_STAT_DROP_FIRST are not
 * drops. Names for each value are in lb_stat_names below so every tool prints the same words.
 */
enum lb_stat {
	LB_STAT_PASS = 0,		/* not for a service: left byte-identical */
	LB_STAT_FWD_NEW,		/* first packet of a flow to a service, backend chosen */
	LB_STAT_FWD_ESTABLISHED,	/* later packet of a flow, translated from conntrack */
	LB_STAT_REPLY,			/* backend's answer translated back to the service */
	LB_STAT_REJECT,			/* service without usable backends: ICMP unreachable sent */
	LB_STAT_PASS_FRAG_UNKNOWN,	/* non-first fragment of a datagram we never saw start */
	LB_STAT_PASS_MALFORMED,		/* header too short or inconsistent, left to the stack */
	LB_STAT_PASS_ROUTING_HDR,	/* IPv6 routing header with segments left: not final dst */
	LB_STAT_FWD_REMOTE_NEW,		/* north-south first packet sent to another node's backend */
	LB_STAT_FWD_REMOTE,		/* north-south later packet sent to another node's backend */
	LB_STAT_DSR_LEARNT,		/* DSR option from a load-balancing node: reply entry made */
	LB_STAT_ICMP_XLATE,		/* ICMP error about a translated flow, translated too */
	LB_STAT_PASS_TO_STACK,		/* XDP: left for tc (neighbour unresolved, too big, ...) */
	LB_STAT_DROP_FIRST,
	LB_STAT_DROP_NO_BACKEND = LB_STAT_DROP_FIRST, /* slot/backend vanished mid-update */
	LB_STAT_DROP_CT_INSERT,		/* conntrack insert failed: fail closed */
	LB_STAT_DROP_REWRITE,		/* a packet-rewrite helper failed */
	LB_STAT_DROP_UDP6_ZERO_CSUM,	/* RFC 8200 8.1: zero UDP checksum is invalid on IPv6 */
	LB_STAT_DROP_ICMP_FAILED,	/* could not build the ICMP unreachable */
	LB_STAT_DROP_NO_LOCAL_ENDPOINT,	/* count == 0 with LB_SVC_F_DROP_EMPTY: Local policy */
	LB_STAT_DROP_SOURCE_RANGE,	/* client outside the service's loadBalancerSourceRanges */
	LB_STAT_DROP_SNAT_PORTS,	/* no free SNAT port for the flow after the retries */
	LB_STAT_DROP_FIB,		/* no route to the backend or the client */
	/*
	 * Too big for the device it would leave by (IPv4 with DF, or IPv6; a DSR option counts):
	 * dropped, and ICMP "fragmentation needed" / ICMPv6 "packet too big" sent to its source
	 * with the MTU that fits, as a router does (RFC 1191, RFC 8201).
	 */
	LB_STAT_DROP_FRAG_NEEDED,
	/* IPv4 without DF, too big once SNATed: the stack would drop it as a martian, sluice
	 * cannot fragment. */
	LB_STAT_DROP_TOO_BIG,
	/*
	 * Socket-LB (cgroup hooks): socket calls, not packets (bytes stay 0), and no drop;
	 * LB_STAT_IS_DROP() leaves this block out. Packet drops added later go after it.
	 */
	LB_STAT_SOCK_FIRST,
	LB_STAT_SOCK_XLATE = LB_STAT_SOCK_FIRST, /* connect()/sendmsg() to a service: backend set */
	LB_STAT_SOCK_REVNAT,		/* recvmsg()/getpeername(): the backend shown as the service */
	LB_STAT_SOCK_REFUSED,		/* no usable endpoint: the call fails with ECONNREFUSED */
	LB_STAT_SOCK_UNREACHABLE,	/* Local policy without a local endpoint: EHOSTUNREACH */
	LB_STAT_SOCK_NO_BACKEND,	/* slot/backend vanished mid-update: EHOSTUNREACH */
	LB_STAT_SOCK_OUTSIDE_ONLY,	/* LB_SVC_F_OUTSIDE_ONLY: left to reach the real address */
	LB_STAT_SOCK_SOURCE_RANGES,	/* LB_SVC_F_SOURCE_RANGES: left to the packet path */
	LB_STAT_SOCK_REVNAT_STALE,	/* reverse entry of a removed service: dropped, not applied */
	LB_STAT_SOCK_LAST = LB_STAT_SOCK_REVNAT_STALE,
	LB_STAT_MAX,			/* <= LB_STATS_SLOTS */
};

/* Packet drops (TC_ACT_SHOT / XDP_DROP): from LB_STAT_DROP_FIRST on, the socket block aside. */
#define LB_STAT_IS_DROP(s)	((s) >= LB_STAT_DROP_FIRST && \
				 ((s) < LB_STAT_SOCK_FIRST || (s) > LB_STAT_SOCK_LAST))

#define LB_STAT_NAMES_INIT { \
	[LB_STAT_PASS] = "pass", \
	[LB_STAT_FWD_NEW] = "forward_new", \
	[LB_STAT_FWD_ESTABLISHED] = "forward_established", \
	[LB_STAT_REPLY] = "reply", \
	[LB_STAT_REJECT] = "reject_no_backend", \
	[LB_STAT_PASS_FRAG_UNKNOWN] = "pass_fragment_unknown", \
	[LB_STAT_PASS_MALFORMED] = "pass_malformed", \
	[LB_STAT_PASS_ROUTING_HDR] = "pass_routing_header", \
	[LB_STAT_FWD_REMOTE_NEW] = "forward_remote_new", \
	[LB_STAT_FWD_REMOTE] = "forward_remote", \
	[LB_STAT_DSR_LEARNT] = "dsr_learnt", \
	[LB_STAT_ICMP_XLATE] = "icmp_translated", \
	[LB_STAT_PASS_TO_STACK] = "pass_to_stack", \
	[LB_STAT_DROP_NO_BACKEND] = "drop_no_backend", \
	[LB_STAT_DROP_CT_INSERT] = "drop_ct_insert", \
	[LB_STAT_DROP_REWRITE] = "drop_rewrite", \
	[LB_STAT_DROP_UDP6_ZERO_CSUM] = "drop_udp6_zero_csum", \
	[LB_STAT_DROP_ICMP_FAILED] = "drop_icmp_failed", \
	[LB_STAT_DROP_NO_LOCAL_ENDPOINT] = "drop_no_local_endpoint", \
	[LB_STAT_DROP_SOURCE_RANGE] = "drop_source_range", \
	[LB_STAT_DROP_SNAT_PORTS] = "drop_snat_ports", \
	[LB_STAT_DROP_FIB] = "drop_fib", \
	[LB_STAT_DROP_FRAG_NEEDED] = "drop_frag_needed", \
	[LB_STAT_DROP_TOO_BIG] = "drop_too_big", \
	[LB_STAT_SOCK_XLATE] = "sock_translated", \
	[LB_STAT_SOCK_REVNAT] = "sock_reverse", \
	[LB_STAT_SOCK_REFUSED] = "sock_refused", \
	[LB_STAT_SOCK_UNREACHABLE] = "sock_unreachable", \
	[LB_STAT_SOCK_NO_BACKEND] = "sock_no_backend", \
	[LB_STAT_SOCK_OUTSIDE_ONLY] = "sock_outside_only", \
	[LB_STAT_SOCK_SOURCE_RANGES] = "sock_source_ranges", \
	[LB_STAT_SOCK_REVNAT_STALE] = "sock_reverse_stale", \
}

struct lb_stat_value {
	__u64 packets;		/* host */
	__u64 bytes;		/* host */
};

/* Per service frontend, indexed by svc_id. */
struct lb_svc_stat_value {
	__u64 fwd_packets;	/* host: client -> backend packets translated */
	__u64 fwd_bytes;	/* host */
	__u64 reply_packets;	/* host: backend -> client packets translated */
	__u64 reply_bytes;	/* host */
	__u64 new_flows;	/* host: backends chosen */
	__u64 rejected;		/* host: packets answered with ICMP unreachable */
};

/* ---- names of frontends and services (lb_svc_info_v1, lb_unproxied_v1) ------------------- */

/*
 * What the agent knows about a frontend beyond the datapath's needs, for sluicectl: written by
 * the map writer next to the master entry (before it), removed with it. Strings are
 * NUL-terminated and NUL-padded (a longer name is cut to fit: pod names may have 253 bytes).
 */
enum lb_svc_kind {
	LB_KIND_UNKNOWN = 0,
	LB_KIND_CLUSTER_IP,
	LB_KIND_NODE_PORT,
	LB_KIND_LOAD_BALANCER,
	LB_KIND_EXTERNAL_IP,
	LB_KIND_HOST_PORT,	/* namespace/name is the Pod's, port_name its hostPort number */
};

#define LB_NAMESPACE_LEN	64	/* DNS label: 63 bytes + NUL */
#define LB_NAME_LEN		128
#define LB_PORT_NAME_LEN	16	/* IANA service name: 15 bytes + NUL */
#define LB_EXTERNAL_NAME_LEN	256	/* DNS name: 253 bytes + NUL */

/* Key: svc_id (host). */
struct lb_svc_info {
	__u8 kind;				/* enum lb_svc_kind */
	__u8 pad[3];
	char ns[LB_NAMESPACE_LEN];
	char name[LB_NAME_LEN];
	char port_name[LB_PORT_NAME_LEN];	/* "" for an unnamed port */
};

/* Services the agent knows but does not proxy: sluicectl lists them as "not proxied". */
enum lb_unproxied_reason {
	LB_UNPROXIED_HEADLESS = 1,	/* clusterIP None: DNS answers with the endpoints */
	LB_UNPROXIED_EXTERNAL_NAME,	/* type ExternalName: a DNS CNAME, no traffic to proxy */
	LB_UNPROXIED_NO_CLUSTER_IP,	/* no cluster IP assigned (yet) */
	LB_UNPROXIED_OTHER_PROXY,	/* labelled for another service proxy */
};

struct lb_unproxied_key {
	char ns[LB_NAMESPACE_LEN];
	char name[LB_NAMESPACE_LEN];		/* Service names are DNS labels too */
};

struct lb_unproxied_value {
	__u8 reason;				/* enum lb_unproxied_reason */
	__u8 pad[3];
	char external_name[LB_EXTERNAL_NAME_LEN];	/* LB_UNPROXIED_EXTERNAL_NAME: the target */
};

/* ---- trace: a dry run of the datapath (sluicectl trace) -------------------------------- */

/*
 * sluicectl runs a described packet through a pinned program with BPF_PROG_TEST_RUN, marked
 * as a dry run: tc: __sk_buff mark == LB_TRACE_MARK and cb[0] == LB_TRACE_MAGIC, cb[1] = the
 * nonce; XDP: struct lb_trace_meta as the frame's metadata (xdp_md.data = its size). A dry run
 * decides and rewrites as a live packet would, but writes no map (conntrack, SNAT ports,
 * affinity, fragments, DSR learning, counters): it records its decision in lb_trace_v1 (a
 * one-entry per-CPU array) instead, which sluicectl reads right after the run on the same CPU.
 */
#define LB_TRACE_MARK		0x51ce7ace
#define LB_TRACE_MAGIC		0xd5e7ac3d

struct lb_trace_meta {
	__u32 magic;		/* host: LB_TRACE_MAGIC */
	__u32 nonce;		/* host: copied to lb_trace.nonce */
};

/* What the flow's conntrack said. */
enum lb_trace_ct {
	LB_TRACE_CT_NONE = 0,	/* not looked up (not translated), or no entry */
	LB_TRACE_CT_NEW,	/* a new flow: its entries would be created */
	LB_TRACE_CT_RENEW,	/* a FORWARD entry that must pick again (expired, port reuse, gone) */
	LB_TRACE_CT_FORWARD,	/* an established flow's FORWARD entry */
	LB_TRACE_CT_REPLY,	/* an established flow's REPLY entry */
};

/* How a new flow's backend was chosen. */
enum lb_trace_pick {
	LB_PICK_NONE = 0,
	LB_PICK_RANDOM,		/* a uniformly random slot: another run may pick another */
	LB_PICK_AFFINITY,	/* the client's ClientIP affinity entry */
	LB_PICK_MAGLEV,		/* the frontend's Maglev table at the flow's hash */
};

/* Where the packet goes after the program. */
enum lb_trace_where {
	LB_TRACE_TO_STACK = 0,	/* the kernel's own path (or dropped, per stat) */
	LB_TRACE_OUT_L2,	/* out of ifindex, L2 header from the FIB */
	LB_TRACE_OUT_NEIGH,	/* out of ifindex, the kernel resolves the neighbour */
};

struct lb_trace {
	__u32 nonce;		/* host: the run's lb_trace_meta.nonce / cb[1] */
	__u32 stat;		/* host: enum lb_stat the program would have counted */
	__u32 svc_id;		/* host: 0 = no service */
	__u32 backend_id;	/* host */
	__u8 ct;		/* enum lb_trace_ct */
	__u8 ct_dir;		/* enum lb_ct_dir of the entry used or (new) created */
	__u8 ct_flags;		/* enum lb_ct_flags of that entry */
	__u8 pick;		/* enum lb_trace_pick */
	__u8 where;		/* enum lb_trace_where */
	__u8 pad[3];
	__u32 ifindex;		/* host: with LB_TRACE_OUT_* */
	__be16 nat_port;	/* be: as lb_ct_state.nat_port */
	__be16 snat_port;	/* be: as lb_ct_state.snat_port */
	__be32 nat_addr[4];	/* be: as lb{4,6}_ct_value (IPv4 in [0]) */
	__be32 snat_addr[4];	/* be */
	__u64 created_ns;	/* host: CLOCK_MONOTONIC of the entry used (0 for a new flow) */
	__u64 last_seen_ns;	/* host */
};

/* ---- timeouts (seconds), defaults of the cfg_* knobs in the datapath ----------------------- */

#define LB_CT_TCP_TIMEOUT_S	21600	/* established TCP, as Cilium's service CT */
#define LB_CT_TCP_CLOSE_S	10	/* after RST or FIN both ways */
#define LB_CT_TCP_FIN_S		120	/* a DSR entry after its direction's FIN (netfilter's
					 * FIN_WAIT / TIME_WAIT): it never sees the other one */
#define LB_CT_UDP_TIMEOUT_S	120	/* netfilter's "UDP stream" timeout */
#define LB_CT_REFRESH_S		1	/* last_seen_ns is rewritten at most this often */

#endif /* SLUICE_MAPS_SLUICE_ABI_H */
