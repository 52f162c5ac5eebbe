// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * sluice datapath: the entry programs. Logic lives in lib/<subsystem>.h; this file wires the
 * steps together and owns each program's single exit, which counts the verdict. One code path
 * serves every hook (lib/ctx.h): pod devices (tc), native devices at XDP, and the tc ingress
 * and egress of native devices.
 */
#include "lib/common.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"
#include "lib/nat.h"
#include "lib/conntrack.h"
#include "lib/lb.h"
#include "lib/reject.h"
#include "lib/nodeport.h"
#include "lib/sock.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What a handled packet needs from its program's exit. */
struct lb_out {
	__u32 svc_id;
	bool send;		/* leave by route.ifindex (L2 written unless route.where is NEIGH) */
	bool dry_run;		/* a trace: counted in lb_trace_v1 instead */
	struct lb_route route;
};

static __always_inline void lb_count(__u32 stat, __u32 len, const struct lb_out *out)
{
	__u32 svc_id = out->svc_id;
	struct lb_svc_stat_value *s;
	struct lb_stat_value *v;

	lb_revision_mark();
	if (out->dry_run)
		return;
	v = bpf_map_lookup_elem(&lb_stats_v3, &stat);
	if (v) {
		v->packets++;
		v->bytes += len;
	}
	if (!svc_id)
		return;
	s = bpf_map_lookup_elem(&lb_svc_stats_v1, &svc_id);
	if (!s)
		return;
	switch (stat) {
	case LB_STAT_FWD_NEW:
	case LB_STAT_FWD_REMOTE_NEW:
		s->new_flows++;
		/* fall through */
	case LB_STAT_FWD_ESTABLISHED:
	case LB_STAT_FWD_REMOTE:
		s->fwd_packets++;
		s->fwd_bytes += len;
		break;
	case LB_STAT_REPLY:
		s->reply_packets++;
		s->reply_bytes += len;
		break;
	case LB_STAT_REJECT:
	case LB_STAT_SOCK_REFUSED:
		s->rejected++;
		break;
	case LB_STAT_SOCK_XLATE:	/* a backend chosen at connect()/sendmsg() */
		s->new_flows++;
		break;
	}
}

/* A FORWARD hit that must pick again: the flow ended, or its backend is gone. */
static __always_inline bool lb_ct_renew(const struct lb_pkt *p, const struct lb_tuple *t,
					const struct lb_ct_state *st, const struct lb_ct_nat *nat,
					__u64 now)
{
	bool syn = p->proto == IPPROTO_TCP &&
		   (p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN;
	struct lb_backend_info b = {};

	if (!lb_ct_alive(t, st, nat, now))
		return true;
	/* A new SYN on a closed tuple is a new connection (port reuse), not a retransmit. */
	if (syn && (st->flags & (LB_CT_F_RST | LB_CT_F_FIN_FWD | LB_CT_F_FIN_REPLY)))
		return true;
	/*
	 * UDP has no end, so a removed backend would blackhole the flow forever (kube-proxy
	 * deletes such UDP conntrack entries); TCP keeps its backend to drain gracefully.
	 */
	if ((p->proto == IPPROTO_UDP || syn) &&
	    !lb_backend_get(p->family, st->backend_id, st->svc_id, &b))
		return true;
	return false;
}

/*
 * A client talking directly to a pod (not to a service) from a port that an earlier service
 * flow to the same pod used: that flow's REPLY entry would turn the pod's answers into ones from
 * the VIP and the client's socket would drop them. A bare TCP SYN, or any UDP datagram, from
 * client:port straight to backend:port proves the old flow is over, so both its entries go.
 * Costs one lookup per TCP SYN and per UDP datagram that is not for a service. Pod devices
 * only: on a native device the DNATed packets of a flow look exactly like that.
 */
static __noinline void lb_ct_forget_reply(const struct lb_pkt *p, const struct lb_tuple *t)
{
	struct lb_ct_state *st;
	struct lb_ct_nat nat;
	struct lb_tuple fwd, rev;

	if (p->dry_run ||
	    (p->proto == IPPROTO_TCP && (p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) != LB_TCP_SYN))
		return;
	lb_tuple_reverse(&rev, t);
	st = lb_ct_lookup(&rev, &nat);
	if (!st || st->dir != LB_CT_REPLY)
		return;
	lb_ct_peer(&fwd, &rev, st, &nat);
	lb_ct_delete(&fwd);
	lb_ct_delete(&rev);
}


/* After the rewrite: a packet for another node gets its L2 header. 0 or -1. */
static __always_inline int lb_send_prepare(void *ctx, enum lb_hook hook, struct lb_out *out)
{
	if (out->route.where == LB_WHERE_LOCAL || out->route.where == LB_WHERE_STACK)
		return 0;
	out->send = true;
	if (out->route.where != LB_WHERE_REMOTE)
		return 0;
	if (lb_store(ctx, hook, 0, out->route.dmac, ETH_ALEN) < 0 ||
	    lb_store(ctx, hook, ETH_ALEN, out->route.smac, ETH_ALEN) < 0)
		return -1;
	return 0;
}

static __always_inline bool lb_is_syn(const struct lb_pkt *p)
{
	return p->proto == IPPROTO_TCP && (p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN;
}

/*
 * Whether the DSR option fits where lb_dsr_insert() writes it, right after the fixed IP header:
 * IPv4 without options, IPv6 without extension headers. Any other packet would come out with
 * a header length that does not count the bytes before the option.
 */
static __always_inline bool lb_dsr_fits(const struct lb_pkt *p)
{
	return p->family == 4 ? p->ip_hl5 : p->l4_off == ETH_HLEN + sizeof(struct ipv6hdr);
}

/*
 * A DSR flow's forward packet that carries the option: a TCP SYN (and its retransmits), or
 * any UDP datagram (the backend's node may have missed the earlier ones), when it fits; one
 * that does not goes without it (the backend's node learnt the flow from an earlier one).
 */
static __always_inline bool lb_dsr_due(const struct lb_pkt *p, const struct lb_ct_state *st)
{
	return (st->flags & LB_CT_F_DSR) && (p->proto == IPPROTO_UDP || lb_is_syn(p)) &&
	       lb_dsr_fits(p);
}

/* DSR to another node: TCP only when the option fits next to the headers present. */
static __always_inline bool lb_use_dsr(const struct lb_pkt *p)
{
	if (cfg_lb_mode == LB_MODE_SNAT || p->frag != LB_FRAG_NONE)
		return false;
	if (cfg_lb_mode == LB_MODE_HYBRID && p->proto != IPPROTO_TCP)
		return false;
	return lb_dsr_fits(p);
}

/*
 * One packet's working state, on the entry program's stack. The big steps below are BPF
 * subprograms (__noinline) that get a pointer to it: each has its own stack frame, so the
 * frames of disjoint paths (new flow, known flow, ICMP error) do not add up in the 512 bytes.
 * The hook is a constant at every call, which the verifier tracks into the callee, so it only
 * ever walks the helper calls valid for the program type.
 */
struct lb_flow {
	/* Cleared for every packet (lb_run). */
	struct lb_pkt p;
	struct lb_tuple t;
	struct lb_out out;
	__u64 now;		/* lb_now(), read only where a flow's time is needed */
	bool replace;
	__u16 svc_flags;	/* the ALL master's */
	/* A dry run (p.dry_run): the run's nonce, and whether a known flow's entry was used. */
	bool trace_hit;
	__u32 trace_nonce;
	/*
	 * lb_new_flow()'s working set, the flow's two conntrack entries: cleared only when a
	 * packet gets that far (lb_handle), so a known flow's packet does not pay for it.
	 */
	struct lb_backend_info b;
	struct lb_ct_state st, rst;
	struct lb_ct_nat nat, rnat;
	struct lb_tuple rt;
};

#define LB_FLOW_NEW_OFF __builtin_offsetof(struct lb_flow, b)

/*
 * Per-CPU home of struct lb_flow: on the entry's stack it would count in every call chain's
 * 512 bytes. Every hook runs with bottom halves off (NAPI, netif_receive_skb, dev_queue_xmit),
 * so no program of this object can interrupt another on the same CPU. Not pinned: scratch.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_flow);
	__uint(max_entries, 1);
} lb_work SEC(".maps");

/*
 * A new flow's service and backend: LB_CONTINUE with f->b and f->st.svc_id filled, or the
 * verdict (not a service, policy drop, reject).
 */
static __noinline int lb_pick_backend(void *ctx, enum lb_hook hook, struct lb_flow *f)
{
	bool external = lb_hook_external(hook);
	struct lb_pkt *p = &f->p;
	struct lb_svc_value *svc;
	__u8 scope = LB_SCOPE_ALL;

	svc = lb_svc_lookup(p, 0, LB_SCOPE_ALL);
	if (!svc) {
		if (hook == LB_HOOK_POD)
			lb_ct_forget_reply(p, &f->t);
		else if (p->has_dsr && p->frag != LB_FRAG_LATER) {
			f->rst.last_seen_ns = lb_now();
			return lb_dsr_learn(p, &f->t, &f->rst, &f->rnat, &f->rt);
		}
		return LB_STAT_PASS;
	}
	/*
	 * A loopback frontend exists only at the socket; an outside-only one (an ExternalIP under
	 * --external-ip-mitigation) is the real address for pods (CVE-2020-8554).
	 */
	if (hook == LB_HOOK_POD && (svc->flags & (LB_SVC_F_LOOPBACK | LB_SVC_F_OUTSIDE_ONLY)))
		return LB_STAT_PASS;
	/* A ClusterIP is not reachable from outside the node (kube-proxy: no rule there). */
	if (external && !(svc->flags & LB_SVC_F_EXTERNAL))
		return LB_STAT_PASS;
	f->svc_flags = svc->flags;	/* the ALL master's: the EXTERNAL one has no kind flags */
	f->now = lb_now();
	if (external && (svc->flags & LB_SVC_F_EXT_LOCAL)) {
		scope = LB_SCOPE_EXTERNAL;
		svc = lb_svc_lookup(p, 0, scope);
		if (!svc)
			return LB_STAT_DROP_NO_BACKEND;
	}
	f->out.svc_id = svc->svc_id;
	f->st.svc_id = svc->svc_id;
	if (p->frag == LB_FRAG_LATER)
		return LB_STAT_PASS_FRAG_UNKNOWN;
	/*
	 * Source ranges and Maglev are the frontend's, read from the ALL master: an EXTERNAL
	 * master carries only what its own count needs (agent/reconcile external_flags()).
	 */
	if ((f->svc_flags & LB_SVC_F_SOURCE_RANGES) && !lb_src_range_ok(p, svc->svc_id))
		return LB_STAT_DROP_SOURCE_RANGE;
	if (lb_udp6_zero_csum(p))
		return LB_STAT_DROP_UDP6_ZERO_CSUM;
	if (svc->count == 0) {
		/*
		 * Endpoints exist, none that this frontend's traffic policy may use: kube-proxy
		 * drops silently. Neither verdict leaves conntrack state, so the first packet after
		 * endpoints appear picks a backend (no stale "no endpoint" flow, kubernetes#48370).
		 */
		if (svc->flags & LB_SVC_F_DROP_EMPTY)
			return LB_STAT_DROP_NO_LOCAL_ENDPOINT;
		/* lb_run() builds the answer, outside the deep call chains; XDP leaves it to tc. */
		return hook == LB_HOOK_XDP ? LB_STAT_PASS_TO_STACK : LB_STAT_REJECT;
	}
	if (!lb_select_backend(p, svc, scope, external && (f->svc_flags & LB_SVC_F_MAGLEV), f->now,
			       &f->b))
		return LB_STAT_DROP_NO_BACKEND;
	return LB_CONTINUE;
}

/*
 * The way out of a known flow's forward packet to another node's backend: the DSR option it
 * will carry (TCP SYN, every UDP datagram) counts against the MTU; without SNAT the client
 * stays the source, so the stack may fragment it.
 */
static __always_inline int lb_fwd_route(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
					const struct lb_ct_state *st, const struct lb_ct_nat *nat,
					struct lb_out *out)
{
	return lb_route_check(ctx, hook, p, &nat->addr, &out->route,
			      LB_RC_MTU | (st->flags & LB_CT_F_SNAT ? 0 : LB_RC_CAN_FRAG),
			      lb_dsr_due(p, st) ? lb_dsr_room(p) : 0);
}

/* Rewrites a forward packet as f->st/f->nat say and prepares it for its way out. */
static __noinline int lb_fwd_rewrite(void *ctx, enum lb_hook hook, struct lb_flow *f)
{
	const struct lb_ct_state *st = &f->st;
	const struct lb_pkt *p = &f->p;

	if (lb_xlate_fwd(ctx, hook, p, &f->nat.addr, st->nat_port, st->flags & LB_CT_F_SNAT,
			 &f->nat.snat, st->snat_port) < 0)
		return -1;
	if (lb_dsr_due(p, st) && lb_dsr_insert(ctx, hook, p, &p->daddr, p->dport) < 0)
		return -1;
	return lb_send_prepare(ctx, hook, &f->out);
}

static __noinline int lb_new_flow(void *ctx, enum lb_hook hook, struct lb_flow *f)
{
	bool external = lb_hook_external(hook), snat = false, dsr = false;
	struct lb_ct_state *st = &f->st, *rst = &f->rst;
	struct lb_ct_nat *nat = &f->nat, *rnat = &f->rnat;
	struct lb_backend_info *b = &f->b;
	struct lb_out *out = &f->out;
	struct lb_pkt *p = &f->p;
	int ret;

	if (hook == LB_HOOK_NODE_OUT)
		return LB_STAT_PASS;	/* the node's own traffic: only replies are translated */
	ret = lb_pick_backend(ctx, hook, f);
	if (ret != LB_CONTINUE)
		return ret;
	/* A ClusterIP is never a local address; a NodePort or hostPort frontend's is. */
	if (f->svc_flags & LB_SVC_F_EXTERNAL) {
		lb_route_lookup(ctx, hook, p, &p->daddr, &out->route);
		if (out->route.local_addr)
			st->flags = LB_CT_F_VIP_LOCAL;
		__builtin_memset(&out->route, 0, sizeof(out->route));
	}

	if (external) {
		/* Decided before the route is known: the MTU check counts the option's bytes. */
		bool dsr_ok = lb_use_dsr(p);

		ret = lb_route_check(ctx, hook, p, &b->addr, &out->route,
				     LB_RC_MTU | (dsr_ok ? LB_RC_CAN_FRAG : 0),
				     dsr_ok ? lb_dsr_room(p) : 0);
		if (ret != LB_CONTINUE)
			return ret;
		if (out->route.where != LB_WHERE_LOCAL) {
			dsr = dsr_ok;
			snat = !dsr;
			if (snat && !lb_snat_addr(out->route.ifindex, p->family, &nat->snat))
				return LB_STAT_DROP_FIB;
		}
	} else if (lb_addr_eq(&b->addr, &p->saddr)) {
		/* Pod to its own service, answered by itself: without SNAT it drops its reply. */
		snat = true;
		nat->snat = p->daddr;
		st->snat_port = p->sport;
	}

	st->dir = LB_CT_FORWARD;
	st->flags |= (snat ? LB_CT_F_SNAT : 0) | (dsr ? LB_CT_F_DSR : 0) |
		     (out->route.where != LB_WHERE_LOCAL ? LB_CT_F_REMOTE : 0);
	st->nat_port = b->port;
	st->backend_id = b->id;
	st->created_ns = f->now;
	st->last_seen_ns = f->now;
	nat->addr = b->addr;

	/* The REPLY entry: backend -> client (or -> the SNAT address:port hiding it). */
	*rst = *st;
	rst->dir = LB_CT_REPLY;
	rst->nat_port = p->dport;
	rst->snat_port = p->sport;
	rnat->addr = p->daddr;
	rnat->snat = p->saddr;
	lb_ct_peer(&f->rt, &f->t, st, nat);
	if (snat && external) {
		/* NodePort SNAT: the REPLY entry's insertion takes the port (a dry run looks). */
		__u32 seed = lb_flow_hash(p, false) ^ bpf_get_prandom_u32();

		st->snat_port = p->dry_run ? lb_snat_peek(ctx, &f->rt, seed) :
					     lb_snat_take(ctx, &f->rt, rst, rnat, seed);
		if (!st->snat_port)
			return LB_STAT_DROP_SNAT_PORTS;
	}
	/*
	 * BPF_NOEXIST: two CPUs may race on a flow's first packets (a resolver's parallel A/AAAA
	 * queries share a socket); the loser adopts the winner's backend.
	 */
	if (p->dry_run) {
		/* A trace: the flow is decided and the packet rewritten, nothing is remembered. */
	} else if (lb_ct_write(&f->t, st, nat, f->replace ? BPF_ANY : BPF_NOEXIST) < 0) {
		struct lb_ct_state *won = lb_ct_lookup(&f->t, nat);

		if (snat && external)
			lb_ct_delete(&f->rt);
		if (!won || won->dir != LB_CT_FORWARD)
			return LB_STAT_DROP_CT_INSERT;
		*st = *won;
		if (external) {
			ret = lb_fwd_route(ctx, hook, p, st, nat, out);
			if (ret != LB_CONTINUE)
				return ret;
		}
	} else if (!dsr && !(snat && external) && lb_ct_write(&f->rt, rst, rnat, BPF_ANY) < 0) {
		/* DSR: the answer never comes back through this node. */
		lb_ct_delete(&f->t);
		return LB_STAT_DROP_CT_INSERT;
	}
	if (p->frag == LB_FRAG_FIRST)
		lb_frag_remember(p);
	if (lb_fwd_rewrite(ctx, hook, f) < 0)
		return LB_STAT_DROP_REWRITE;
	return out->route.where != LB_WHERE_LOCAL ? LB_STAT_FWD_REMOTE_NEW : LB_STAT_FWD_NEW;
}

/* A packet of a known flow, either way: translate it as its conntrack entry says. */
static __noinline int lb_ct_xlate(void *ctx, enum lb_hook hook, struct lb_flow *f,
				   struct lb_ct_state *st, const struct lb_ct_nat *nat)
{
	const struct lb_pkt *p = &f->p;
	const struct lb_tuple *t = &f->t;
	struct lb_out *out = &f->out;
	__u64 now = f->now;
	bool snat = st->flags & LB_CT_F_SNAT;
	bool reply = st->dir == LB_CT_REPLY;
	int err, ret;

	if (p->dry_run) {
		f->st = *st;	/* for lb_trace_write() */
		f->trace_hit = true;
	}
	out->svc_id = st->svc_id;
	if (hook == LB_HOOK_NODE_OUT && !reply)
		return LB_STAT_PASS;
	if (lb_udp6_zero_csum(p))
		return LB_STAT_DROP_UDP6_ZERO_CSUM;
	/* Replies to a SNATed client and flows to another node's backend leave from here. */
	if (lb_hook_external(hook) && reply && snat) {
		ret = lb_route_check(ctx, hook, p, &nat->snat, &out->route, LB_RC_MTU, 0);
		if (ret != LB_CONTINUE)
			return ret;
	} else if (lb_hook_external(hook) && !reply && (st->flags & LB_CT_F_REMOTE)) {
		ret = lb_fwd_route(ctx, hook, p, st, nat, out);
		if (ret != LB_CONTINUE)
			return ret;
	}
	/*
	 * A pod's answer from a node address (NodePort, hostPort) would be a martian to the stack:
	 * it leaves by the FIB's device, the kernel's neighbour code filling in L2 where needed.
	 */
	if (hook == LB_HOOK_POD && reply && (st->flags & LB_CT_F_VIP_LOCAL)) {
		lb_route_lookup(ctx, hook, p, snat ? &nat->snat : &p->daddr, &out->route);
		if (out->route.where == LB_WHERE_NONE)
			return LB_STAT_DROP_FIB;
		if (out->route.where == LB_WHERE_LOCAL && !out->route.local_addr)
			out->route.where = LB_WHERE_NEIGH;	/* a pod's device, or a bridge */
	}
	lb_ct_touch(t, p, st, nat, now);
	if (p->frag == LB_FRAG_FIRST)
		lb_frag_remember(p);
	if (reply)
		err = lb_xlate_reply(ctx, hook, p, &nat->addr, st->nat_port, snat, &nat->snat,
				     st->snat_port);
	else
		err = lb_xlate_fwd(ctx, hook, p, &nat->addr, st->nat_port, snat, &nat->snat,
				   st->snat_port);
	if (err < 0)
		return LB_STAT_DROP_REWRITE;
	if (!reply && lb_dsr_due(p, st) && lb_dsr_insert(ctx, hook, p, &p->daddr, p->dport) < 0)
		return LB_STAT_DROP_REWRITE;
	if (lb_send_prepare(ctx, hook, out) < 0)
		return LB_STAT_DROP_REWRITE;
	if (reply)
		return LB_STAT_REPLY;
	return out->route.where != LB_WHERE_LOCAL ? LB_STAT_FWD_REMOTE : LB_STAT_FWD_ESTABLISHED;
}

/*
 * An ICMP error about a translated flow, translated too; from outside the node it leaves
 * towards its new destination from here. Pod devices hand it to the stack, which routes it.
 */
static __noinline int lb_icmp_handle(void *ctx, enum lb_hook hook, struct lb_flow *f)
{
	bool rerouted = false;
	int stat = lb_icmp_xlate(ctx, hook, &f->p, &rerouted), ret;

	if (stat != LB_STAT_ICMP_XLATE || !rerouted || !lb_hook_external(hook))
		return stat;
	ret = lb_route_check(ctx, hook, &f->p, &f->p.daddr, &f->out.route, LB_RC_STACK_ROUTES, 0);
	if (ret != LB_CONTINUE)
		return ret;
	if (lb_send_prepare(ctx, hook, &f->out) < 0)
		return LB_STAT_DROP_REWRITE;
	return stat;
}

static __noinline int lb_handle(void *ctx, enum lb_hook hook, struct lb_flow *f)
{
	struct lb_pkt *p = &f->p;
	struct lb_ct_state *st;

	if (p->icmp_off)
		return lb_icmp_handle(ctx, hook, f);
	if (p->frag == LB_FRAG_LATER && !lb_frag_recall(p))
		return LB_STAT_PASS_FRAG_UNKNOWN;
	lb_tuple_of(&f->t, p);

	st = lb_ct_lookup(&f->t, &f->nat);
	if (st)
		f->now = lb_now();
	if (st && st->dir == LB_CT_FORWARD && hook != LB_HOOK_NODE_OUT &&
	    lb_ct_renew(p, &f->t, st, &f->nat, f->now)) {
		/* The old backend's reply entry would rewrite unrelated traffic later. */
		lb_ct_peer(&f->rt, &f->t, st, &f->nat);
		if (!p->dry_run)
			lb_ct_delete(&f->rt);
		f->replace = true;
	} else if (st && (st->dir == LB_CT_FORWARD || lb_ct_alive(&f->t, st, &f->nat, f->now))) {
		return lb_ct_xlate(ctx, hook, f, st, &f->nat);
	} else if (st) {
		f->replace = true;	/* an expired REPLY entry holds the tuple: overwrite it */
	}
	__builtin_memset((void *)f + LB_FLOW_NEW_OFF, 0, sizeof(*f) - LB_FLOW_NEW_OFF);
	return lb_new_flow(ctx, hook, f);
}

/*
 * Whether this is a dry run from sluicectl trace (maps/sluice_abi.h, lb_trace): a constant
 * hook and the entry's own context, so the context reads stay valid (see lb_ifindex()). Live
 * packets cost one compare: tc marks come from netfilter or SO_MARK (scrubbed on the way
 * between network namespaces), and XDP frames off a driver carry no metadata.
 */
static __always_inline bool lb_dry_run(void *ctx, enum lb_hook hook, __u32 *nonce)
{
	if (hook == LB_HOOK_XDP) {
		struct xdp_md *x = ctx;
		struct lb_trace_meta *m = (void *)(long)x->data_meta;

		if ((void *)(m + 1) > (void *)(long)x->data || m->magic != LB_TRACE_MAGIC)
			return false;
		*nonce = m->nonce;
		return true;
	} else {
		struct __sk_buff *skb = ctx;

		if (skb->mark != LB_TRACE_MARK || skb->cb[0] != LB_TRACE_MAGIC)
			return false;
		*nonce = skb->cb[1];
		return true;
	}
}

/* A dry run's decision, for sluicectl: lb_trace_v1 on this CPU. */
static __noinline void lb_trace_write(struct lb_flow *f, int stat)
{
	const struct lb_ct_state *st = &f->st;
	const struct lb_ct_nat *nat = &f->nat;
	struct lb_trace *tr;
	__u32 zero = 0;

	tr = bpf_map_lookup_elem(&lb_trace_v1, &zero);
	if (!tr)
		return;
	__builtin_memset(tr, 0, sizeof(*tr));
	tr->nonce = f->trace_nonce;
	tr->stat = stat;
	tr->svc_id = f->out.svc_id;
	if (f->out.send) {
		tr->where = f->out.route.where == LB_WHERE_NEIGH ? LB_TRACE_OUT_NEIGH : LB_TRACE_OUT_L2;
		tr->ifindex = f->out.route.ifindex;
	}
	if (stat == LB_STAT_DSR_LEARNT) {
		/* lb_dsr_learn() fills the REPLY entry only when it would write one. */
		st = &f->rst;
		nat = &f->rnat;
		tr->ct = st->dir ? LB_TRACE_CT_NEW : LB_TRACE_CT_REPLY;
	} else if (f->trace_hit) {
		tr->ct = st->dir == LB_CT_REPLY ? LB_TRACE_CT_REPLY : LB_TRACE_CT_FORWARD;
		tr->created_ns = st->created_ns;
		tr->last_seen_ns = st->last_seen_ns;
	} else if (st->dir == LB_CT_FORWARD) {
		tr->ct = f->replace ? LB_TRACE_CT_RENEW : LB_TRACE_CT_NEW;
		tr->pick = f->b.pick;
	}
	tr->ct_dir = st->dir;
	tr->ct_flags = st->flags;
	tr->backend_id = st->backend_id;
	tr->nat_port = st->nat_port;
	tr->snat_port = st->snat_port;
	__builtin_memcpy(tr->nat_addr, nat->addr.a, 16);
	__builtin_memcpy(tr->snat_addr, nat->snat.a, 16);
}

static __always_inline int lb_run(void *ctx, enum lb_hook hook, struct lb_out *out)
{
	__u32 zero = 0;
	struct lb_flow *f = bpf_map_lookup_elem(&lb_work, &zero);
	void *data, *data_end;
	int stat;

	if (!f)
		return LB_STAT_PASS;	/* cannot happen: a one-entry per-CPU array */
	__builtin_memset(f, 0, LB_FLOW_NEW_OFF);
	f->p.ifindex = lb_ifindex(ctx, hook);
	f->p.dry_run = lb_dry_run(ctx, hook, &f->trace_nonce);
	if (f->p.dry_run)	/* lb_trace_write() reads the new-flow part on every path */
		__builtin_memset((void *)f + LB_FLOW_NEW_OFF, 0, sizeof(*f) - LB_FLOW_NEW_OFF);
	if (hook == LB_HOOK_XDP) {
		data = (void *)(long)((struct xdp_md *)ctx)->data;
		data_end = (void *)(long)((struct xdp_md *)ctx)->data_end;
	} else {
		data = (void *)(long)((struct __sk_buff *)ctx)->data;
		data_end = (void *)(long)((struct __sk_buff *)ctx)->data_end;
	}
	stat = lb_parse(ctx, hook, &f->p, data, data_end);
	if (stat == LB_CONTINUE)
		stat = lb_handle(ctx, hook, f);
	if (stat == LB_STAT_REJECT && hook != LB_HOOK_XDP && lb_reject(ctx, &f->p) < 0)
		stat = LB_STAT_DROP_ICMP_FAILED;
	else if (stat == LB_STAT_DROP_FRAG_NEEDED && hook != LB_HOOK_XDP &&
		 lb_icmp_error(ctx, &f->p, f->out.route.mtu) < 0)
		stat = LB_STAT_DROP_ICMP_FAILED;
	if (f->p.dry_run)
		lb_trace_write(f, stat);
	f->out.dry_run = f->p.dry_run;
	*out = f->out;
	return stat;
}

SEC("tc")
int lb_pod_ingress(struct __sk_buff *skb)
{
	struct lb_out out = {};
	int stat, ret;

	stat = lb_run(skb, LB_HOOK_POD, &out);
	if (stat == LB_STAT_REJECT)
		ret = bpf_redirect(skb->ifindex, 0);	/* back out to the client's veth */
	else if (stat >= LB_STAT_DROP_FIRST)
		ret = TC_ACT_SHOT;
	else if (!out.send)
		ret = TC_ACT_OK;
	else if (out.route.where == LB_WHERE_NEIGH)
		ret = bpf_redirect_neigh(out.route.ifindex, NULL, 0, 0);
	else
		ret = bpf_redirect(out.route.ifindex, 0);
	lb_count(stat, skb->len, &out);
	return ret;
}

/*
 * XDP's mark on a frame it handled and passed up: tc ingress on the same device need not look
 * again (it would find nothing to do, at the cost of a second parse and lookups, and count
 * the packet twice). Frames left for tc (LB_STAT_PASS_TO_STACK) carry no mark. The value is
 * arbitrary; another XDP program's metadata is not ours because only lb_node_xdp runs there.
 */
#define LB_XDP_DONE 0x51ce0d0e

static __always_inline void lb_xdp_mark_done(struct xdp_md *ctx)
{
	void *meta, *data;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u32)) < 0)
		return;
	meta = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if (meta + sizeof(__u32) <= data)
		*(__u32 *)meta = LB_XDP_DONE;
}

static __always_inline bool lb_xdp_done(struct __sk_buff *skb)
{
	void *meta = (void *)(long)skb->data_meta;
	void *data = (void *)(long)skb->data;

	return meta + sizeof(__u32) <= data && *(__u32 *)meta == LB_XDP_DONE;
}

SEC("xdp")
int lb_node_xdp(struct xdp_md *ctx)
{
	struct lb_out out = {};
	int stat, ret;

	stat = lb_run(ctx, LB_HOOK_XDP, &out);
	if (stat >= LB_STAT_DROP_FIRST)
		ret = XDP_DROP;
	else if (!out.send)
		ret = XDP_PASS;
	else if (out.route.ifindex == ctx->ingress_ifindex)
		ret = XDP_TX;
	else
		ret = bpf_redirect(out.route.ifindex, 0);
	if (ret == XDP_PASS && stat != LB_STAT_PASS_TO_STACK)
		lb_xdp_mark_done(ctx);
	lb_count(stat, bpf_xdp_get_buff_len(ctx), &out);
	return ret;
}

/* Native devices without XDP, and what XDP left to the stack. */
SEC("tc")
int lb_node_ingress(struct __sk_buff *skb)
{
	struct lb_out out = {};
	bool counted = lb_xdp_done(skb);
	int stat = LB_STAT_PASS, ret;

	if (!counted)
		stat = lb_run(skb, LB_HOOK_NODE_IN, &out);
	/* The refusal or "fragmentation needed" goes back out towards the packet's source. */
	if (stat == LB_STAT_REJECT || stat == LB_STAT_DROP_FRAG_NEEDED)
		ret = bpf_redirect(skb->ifindex, 0);
	else if (stat >= LB_STAT_DROP_FIRST)
		ret = TC_ACT_SHOT;
	else if (!out.send)
		ret = TC_ACT_OK;
	else if (out.route.where == LB_WHERE_NEIGH)
		ret = bpf_redirect_neigh(out.route.ifindex, NULL, 0, 0);
	else
		ret = bpf_redirect(out.route.ifindex, 0);
	if (!counted)	/* XDP counted it already */
		lb_count(stat, skb->len, &out);
	return ret;
}

/* What the node sends: replies of hostNetwork backends, ICMP errors about translated flows. */
SEC("tc")
int lb_node_egress(struct __sk_buff *skb)
{
	struct lb_out out = {};
	int stat, ret;

	stat = lb_run(skb, LB_HOOK_NODE_OUT, &out);
	ret = stat >= LB_STAT_DROP_FIRST ? TC_ACT_SHOT : TC_ACT_OK;
	lb_count(stat, skb->len, &out);
	return ret;
}

/*
 * Socket-LB (lib/sock.h), attached to --cgroup. connect() and sendmsg() fail with the errno
 * lb_sock_fwd() returns (bpf_set_retval; returning 0 alone would give EPERM); recvmsg() and
 * getpeername() must return 1. Counted per call, without bytes.
 */
static __always_inline int lb_sock_fwd_run(struct bpf_sock_addr *ctx, bool v6, bool sendmsg)
{
	struct lb_sock_out out = {};
	int err = lb_sock_fwd(ctx, v6, sendmsg, &out);
	struct lb_out counted = { .svc_id = out.svc_id };	/* a socket call: never a dry run */

	if (out.stat != LB_STAT_MAX)
		lb_count(out.stat, 0, &counted);
	if (!err)
		return 1;
	bpf_set_retval(-err);
	return 0;
}

static __always_inline int lb_sock_rev_run(struct bpf_sock_addr *ctx, bool v6)
{
	struct lb_sock_out out = {};
	struct lb_out counted = {};

	lb_sock_rev(ctx, v6, &out);
	counted.svc_id = out.svc_id;
	if (out.stat != LB_STAT_MAX)
		lb_count(out.stat, 0, &counted);
	return 1;
}

SEC("cgroup/connect4")
int lb4_connect(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd_run(ctx, false, false);
}

SEC("cgroup/connect6")
int lb6_connect(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd_run(ctx, true, false);
}

SEC("cgroup/sendmsg4")
int lb4_sendmsg(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd_run(ctx, false, true);
}

SEC("cgroup/sendmsg6")
int lb6_sendmsg(struct bpf_sock_addr *ctx)
{
	return lb_sock_fwd_run(ctx, true, true);
}

SEC("cgroup/recvmsg4")
int lb4_recvmsg(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev_run(ctx, false);
}

SEC("cgroup/recvmsg6")
int lb6_recvmsg(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev_run(ctx, true);
}

SEC("cgroup/getpeername4")
int lb4_getpeername(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev_run(ctx, false);
}

SEC("cgroup/getpeername6")
int lb6_getpeername(struct bpf_sock_addr *ctx)
{
	return lb_sock_rev_run(ctx, true);
}

/* close(): the socket's reverse entry goes (lib/sock.h). Must return 1. */
SEC("cgroup/sock_release")
int lb_sock_release(struct bpf_sock *sk)
{
	lb_sock_forget(sk);
	return 1;
}
