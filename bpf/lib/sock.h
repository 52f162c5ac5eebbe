/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Socket-LB: service translation at the socket, by cgroup sock_addr programs (as Cilium's
 * socket-LB). connect() (TCP, connected UDP) and sendmsg() (unconnected UDP) get the backend's
 * address in place of the service's before the kernel routes anything, so every packet of the
 * flow carries the backend from the first one on: no per-packet NAT, no conntrack, and the
 * node's own processes (kubelet, hostNetwork pods), which no packet program sees, reach
 * services too. recvmsg() and getpeername() show the service's address again, from
 * lb{4,6}_sock_revnat_v1 (socket cookie + backend -> service), written at connect()/sendmsg().
 *
 * close() (lb_sock_release) removes a connected socket's entry, so the LRU map holds live
 * sockets: the churn of short connections neither evicts the entries of long-lived ones nor
 * makes every connect() evict (measured: an insert into the full LRU cost about 1 us, most of
 * the program's time). An unconnected UDP socket's entries (one per backend it sent to) are
 * left to the LRU.
 *
 * The packet programs then see these flows as plain pod-to-pod traffic: no master matches a
 * backend's address, nothing is rewritten either way, so no reply is ever translated twice.
 *
 * Which sockets: every socket of the cgroup the programs are attached to (--cgroup), except,
 * with cfg_sock_host_only, those of other network namespaces than the agent's (pods then use
 * the packet path: service meshes need the service address on the wire). A loopback frontend
 * (LB_SVC_F_LOOPBACK: 127.0.0.1:nodePort) is the node's loopback, so only the node's own
 * network namespace has it; in a pod 127.0.0.1 is the pod's.
 */
#ifndef SLUICE_BPF_LIB_SOCK_H
#define SLUICE_BPF_LIB_SOCK_H

#include <linux/errno.h>

#include "lib/common.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/lb.h"

/* The agent's network namespace (SO_NETNS_COOKIE): the node's own processes live there. */
const volatile __u64 cfg_host_netns_cookie = 0;
/* --socket-lb-host-only: translate only in cfg_host_netns_cookie. */
const volatile __u8 cfg_sock_host_only = 0;

/* What a socket program did, for its exit to count; stat LB_STAT_MAX = nothing to count. */
struct lb_sock_out {
	__u32 stat;
	__u32 svc_id;
};

/*
 * The address a socket call names (connect/sendmsg: the destination; recvmsg/getpeername: the
 * peer) as p->daddr:p->dport, with the socket's protocol. An IPv6 socket naming a v4-mapped
 * address (::ffff:a.b.c.d; Java, dual-stack servers) is treated as IPv4: *mapped says so.
 * Returns false for protocols other than TCP and UDP.
 */
static __always_inline bool lb_sock_addr(struct bpf_sock_addr *ctx, bool v6, struct lb_pkt *p,
					 bool *mapped)
{
	__u32 a0, a1, a2, a3;

	p->proto = ctx->protocol;
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return false;
	/* user_port: the be16 port in the low-order bytes of a u32 (network order). */
	p->dport = (__be16)ctx->user_port;
	*mapped = false;
	if (!v6) {
		p->family = 4;
		p->daddr.a[0] = ctx->user_ip4;
		return true;
	}
	a0 = ctx->user_ip6[0];
	a1 = ctx->user_ip6[1];
	a2 = ctx->user_ip6[2];
	a3 = ctx->user_ip6[3];
	if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff)) {
		*mapped = true;
		p->family = 4;
		p->daddr.a[0] = a3;
		return true;
	}
	p->family = 6;
	p->daddr.a[0] = a0;
	p->daddr.a[1] = a1;
	p->daddr.a[2] = a2;
	p->daddr.a[3] = a3;
	return true;
}

/* Writes addr:port (family of p) back into the call's address; v4-mapped keeps ::ffff:. */
static __always_inline void lb_sock_set_addr(struct bpf_sock_addr *ctx, bool v6, bool mapped,
					     __u8 family, const union lb_addr *addr, __be16 port)
{
	if (!v6) {
		ctx->user_ip4 = addr->a[0];
	} else if (mapped) {
		ctx->user_ip6[3] = addr->a[0];
	} else if (family == 6) {
		ctx->user_ip6[0] = addr->a[0];
		ctx->user_ip6[1] = addr->a[1];
		ctx->user_ip6[2] = addr->a[2];
		ctx->user_ip6[3] = addr->a[3];
	}
	ctx->user_port = (__u32)port;
}

/*
 * Remembers which service the socket's backend stands for. sendmsg() runs per datagram
 * (per_datagram): a lookup first, because an LRU update allocates and frees a node each time;
 * connect() writes a key that is new (a socket connects once), so it skips the lookup.
 */
static __always_inline void lb_sock_revnat_put(__u64 cookie, __u64 netns_cookie,
					       const struct lb_pkt *p,
					       const struct lb_svc_value *svc,
					       const struct lb_backend_info *b, bool per_datagram)
{
	if (p->family == 4) {
		struct lb4_sock_revnat_key k = { .cookie = cookie, .addr = b->addr.a[0],
						 .port = b->port };
		struct lb4_sock_revnat_value v = { .netns_cookie = netns_cookie,
						   .vip = p->daddr.a[0], .port = p->dport,
						   .proto = p->proto, .svc_id = svc->svc_id,
						   .backend_id = b->id };
		struct lb4_sock_revnat_value *cur =
			per_datagram ? bpf_map_lookup_elem(&lb4_sock_revnat_v1, &k) : NULL;

		if (!cur || cur->vip != v.vip || cur->port != v.port || cur->proto != v.proto ||
		    cur->svc_id != v.svc_id || cur->backend_id != v.backend_id)
			bpf_map_update_elem(&lb4_sock_revnat_v1, &k, &v, BPF_ANY);
	} else {
		struct lb6_sock_revnat_key k = { .cookie = cookie, .port = b->port };
		struct lb6_sock_revnat_value v = { .netns_cookie = netns_cookie, .port = p->dport,
						   .proto = p->proto, .svc_id = svc->svc_id,
						   .backend_id = b->id };
		struct lb6_sock_revnat_value *cur;

		__builtin_memcpy(k.addr, b->addr.a, 16);
		__builtin_memcpy(v.vip, p->daddr.a, 16);
		cur = per_datagram ? bpf_map_lookup_elem(&lb6_sock_revnat_v1, &k) : NULL;
		if (!cur || cur->vip[0] != v.vip[0] || cur->vip[1] != v.vip[1] ||
		    cur->vip[2] != v.vip[2] || cur->vip[3] != v.vip[3] || cur->port != v.port ||
		    cur->proto != v.proto || cur->svc_id != v.svc_id ||
		    cur->backend_id != v.backend_id)
			bpf_map_update_elem(&lb6_sock_revnat_v1, &k, &v, BPF_ANY);
	}
}

/*
 * connect() and sendmsg() (per_datagram): points the call at a backend when it names a service
 * this socket may use. Returns 0 to let the call go on (translated or not), or the errno it fails with:
 * ECONNREFUSED when the service has no usable endpoint (what kube-proxy's REJECT gives a
 * client), EHOSTUNREACH when a Local traffic policy has no local endpoint (kube-proxy drops;
 * a socket cannot be left waiting for an answer that never comes, so the call fails the way a
 * dropped destination looks) or the backend vanished under a concurrent update.
 */
static __always_inline int lb_sock_fwd(struct bpf_sock_addr *ctx, bool v6, bool per_datagram,
				       struct lb_sock_out *out)
{
	struct lb_backend_info b = {};
	struct lb_svc_value *svc;
	struct lb_pkt p = {};
	__u64 netns, cookie, now;
	__u32 pick = 0;
	bool mapped;

	out->stat = LB_STAT_MAX;
	if (!lb_sock_addr(ctx, v6, &p, &mapped))
		return 0;
	svc = lb_svc_lookup(&p, 0, LB_SCOPE_ALL);
	if (!svc)
		return 0;
	netns = bpf_get_netns_cookie(ctx);
	if (netns != cfg_host_netns_cookie &&
	    (cfg_sock_host_only || (svc->flags & LB_SVC_F_LOOPBACK)))
		return 0;
	out->svc_id = svc->svc_id;
	if (svc->flags & LB_SVC_F_OUTSIDE_ONLY) {
		out->stat = LB_STAT_SOCK_OUTSIDE_ONLY;
		return 0;
	}
	/*
	 * loadBalancerSourceRanges judge the client's address, which connect() has not chosen
	 * yet: a pod's packets meet the ranges on the packet path, the node's go to the address.
	 */
	if (svc->flags & LB_SVC_F_SOURCE_RANGES) {
		out->stat = LB_STAT_SOCK_SOURCE_RANGES;
		return 0;
	}
	if (svc->count == 0) {
		if (svc->flags & LB_SVC_F_DROP_EMPTY) {
			out->stat = LB_STAT_SOCK_UNREACHABLE;
			return EHOSTUNREACH;
		}
		out->stat = LB_STAT_SOCK_REFUSED;
		return ECONNREFUSED;
	}
	cookie = bpf_get_socket_cookie(ctx);
	/*
	 * TCP: a random slot per connection. UDP: a slot from the socket's cookie, so all of an
	 * unconnected socket's datagrams go to one backend (QUIC, DNS over one socket) and a new
	 * socket draws again. The clock only matters to affinity (connect() is the hot path).
	 */
	if (p.proto == IPPROTO_UDP)
		pick = lb_jhash3((__u32)cookie, (__u32)(cookie >> 32), 0, cfg_maglev_seed0);
	now = (svc->flags & LB_SVC_F_AFFINITY) ? lb_now() : 0;
	if (!lb_choose_backend(&p, svc, LB_SCOPE_ALL, false, now, netns,
			       p.proto == IPPROTO_UDP ? &pick : NULL, &b)) {
		out->stat = LB_STAT_SOCK_NO_BACKEND;
		return EHOSTUNREACH;
	}
	lb_sock_revnat_put(cookie, netns, &p, svc, &b, per_datagram);
	lb_sock_set_addr(ctx, v6, mapped, p.family, &b.addr, b.port);
	out->stat = LB_STAT_SOCK_XLATE;
	return 0;
}

/*
 * recvmsg() (UDP: the datagram's source) and getpeername(): a backend this socket was pointed
 * at is shown as its service. An entry whose service is gone or was replaced (another svc_id)
 * is deleted and not applied: the socket may talk to that address directly by now.
 */
static __always_inline void lb_sock_rev(struct bpf_sock_addr *ctx, bool v6,
					struct lb_sock_out *out)
{
	struct lb6_sock_revnat_key k6 = {};
	struct lb4_sock_revnat_key k4 = {};
	struct lb_svc_value *svc;
	struct lb_pkt p = {};
	bool mapped;
	__u32 svc_id;

	out->stat = LB_STAT_MAX;
	if (!lb_sock_addr(ctx, v6, &p, &mapped))
		return;
	/* From here p names the service the entry stands for: its master must still be svc_id. */
	if (p.family == 4) {
		struct lb4_sock_revnat_value *v;

		k4.cookie = bpf_get_socket_cookie(ctx);
		k4.addr = p.daddr.a[0];
		k4.port = p.dport;
		v = bpf_map_lookup_elem(&lb4_sock_revnat_v1, &k4);
		if (!v)
			return;
		p.daddr.a[0] = v->vip;
		p.dport = v->port;
		p.proto = v->proto;
		svc_id = v->svc_id;
	} else {
		struct lb6_sock_revnat_value *v;

		k6.cookie = bpf_get_socket_cookie(ctx);
		__builtin_memcpy(k6.addr, p.daddr.a, 16);
		k6.port = p.dport;
		v = bpf_map_lookup_elem(&lb6_sock_revnat_v1, &k6);
		if (!v)
			return;
		__builtin_memcpy(p.daddr.a, v->vip, 16);
		p.dport = v->port;
		p.proto = v->proto;
		svc_id = v->svc_id;
	}
	svc = lb_svc_lookup(&p, 0, LB_SCOPE_ALL);
	if (!svc || svc->svc_id != svc_id) {
		if (p.family == 4)
			bpf_map_delete_elem(&lb4_sock_revnat_v1, &k4);
		else
			bpf_map_delete_elem(&lb6_sock_revnat_v1, &k6);
		out->stat = LB_STAT_SOCK_REVNAT_STALE;
		return;
	}
	lb_sock_set_addr(ctx, v6, mapped, p.family, &p.daddr, p.dport);
	out->svc_id = svc_id;
	out->stat = LB_STAT_SOCK_REVNAT;
}

/* AF_INET, AF_INET6: no libc headers under -target bpf. */
#define LB_AF_INET	2
#define LB_AF_INET6	10

/* close() of a socket: the reverse entry of its peer (if connected) goes with it. */
static __always_inline void lb_sock_forget(struct bpf_sock *sk)
{
	__u32 a0, a1, a2, a3;
	__be16 port = sk->dst_port;

	if (!port || (sk->protocol != IPPROTO_TCP && sk->protocol != IPPROTO_UDP))
		return;
	if (sk->family == LB_AF_INET) {
		struct lb4_sock_revnat_key k = { .cookie = bpf_get_socket_cookie(sk),
						 .addr = sk->dst_ip4, .port = port };

		bpf_map_delete_elem(&lb4_sock_revnat_v1, &k);
		return;
	}
	if (sk->family != LB_AF_INET6)
		return;
	a0 = sk->dst_ip6[0];
	a1 = sk->dst_ip6[1];
	a2 = sk->dst_ip6[2];
	a3 = sk->dst_ip6[3];
	if (a0 == 0 && a1 == 0 && a2 == bpf_htonl(0xffff)) {
		/* connect() to a v4-mapped service wrote the IPv4 entry */
		struct lb4_sock_revnat_key k = { .cookie = bpf_get_socket_cookie(sk), .addr = a3,
						 .port = port };

		bpf_map_delete_elem(&lb4_sock_revnat_v1, &k);
	} else {
		struct lb6_sock_revnat_key k = { .cookie = bpf_get_socket_cookie(sk),
						 .addr = { a0, a1, a2, a3 }, .port = port };

		bpf_map_delete_elem(&lb6_sock_revnat_v1, &k);
	}
}

#endif
