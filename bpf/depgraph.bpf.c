// SPDX-License-Identifier: GPL-2.0
/* Traces TCP connections and aggregates them per edge in the kernel, so the
 * cost per connection is a few map operations and no event to user space. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "depgraph.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define EEXIST 17
#define ECONNREFUSED 111

char LICENSE[] SEC("license") = "GPL";

/* 0 traces every network namespace; otherwise only this netns inode. */
const volatile __u32 filter_netns_ino = 0;
/* The length of a jiffy, set by the agent (clock_getres of the coarse clock):
 * lifetimes are counted in jiffies and so are exact to one tick (1-10 ms),
 * which averages out over many connections. */
const volatile __u64 ns_per_jiffy = 0;
/* 1 from load until the agent has seeded the connections of its start-up
 * dumps: only then does it look for sockets in the slots by cookie, or for
 * the cookies of closed ones in `socks` (note_closed_while_seeding), so only
 * then is a socket's cookie (a helper call and an atomic) worth making. */
volatile __u32 seeding = 0;

/* Edge counters are double-buffered: programs write to the map that
 * edge_maps[0] points at; the agent points it at the other one and then
 * drains the first. Updating a map-in-map waits for running programs
 * (synchronize_rcu), so nothing writes to the map being drained and no
 * increment is lost between read and delete. */
/* Per-CPU: the connections of one busy edge arrive on every CPU, and shared
 * counters would bounce their cache line between CPUs on each connection;
 * the agent sums the CPUs' values when it drains. */
struct edge_map {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dg_edge_key);
	__type(value, struct dg_edge_counters);
} edges_a SEC(".maps"), edges_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct edge_map);
} edge_maps SEC(".maps") = {
	.values = { &edges_a },
};

struct edge_cache {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DG_EDGE_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct dg_edge_cache_entry);
} edge_cache_a SEC(".maps"), edge_cache_b SEC(".maps");

/* Switched with edge_maps, after it: see Tracer::drain. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct edge_cache);
} cache_maps SEC(".maps") = {
	.values = { &edge_cache_a },
};

/* Per-socket state behind sock_slots (see depgraph.h). Keyed by socket
 * cookie: stable for the socket's life and reported by inet_diag too, unlike
 * the socket's address which the slab reuses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dg_sock_info);
} socks SEC(".maps");

/* Mappable: the agent counts the open sockets in it at every flush, and
 * scanning it in place spares copying its 6 MiB through a system call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, DG_SOCK_SLOTS);
	__type(key, __u32);
	__type(value, struct dg_sock_slot);
} sock_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, struct dg_listener_key);
	__type(value, struct dg_listener);
} listeners SEC(".maps");

/* The processes (tgid) that own a listener: an exec() by any other, nearly
 * every exec, costs one lookup here and no walk of the listeners. A process
 * leaves it when its last thread exits (sched_process_exit). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, __u8);
} listener_owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DG_LOSS_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

static __always_inline void count_losses(__u32 which, __u64 lost)
{
	__u64 *n = bpf_map_lookup_elem(&losses, &which);

	if (n)
		*n += lost;
}

static __always_inline void count_loss(__u32 which)
{
	count_losses(which, 1);
}

static __always_inline void current_process(struct dg_process *p)
{
	struct task_struct *task = bpf_get_current_task_btf();

	/* Two direct loads, not a string copy helper: the kernel zero-pads comm
	 * (set_task_comm), so the bytes after the name are zero. */
	__builtin_memcpy(p->comm, task->group_leader->comm, sizeof(p->comm));
	p->cgroup_id = bpf_get_current_cgroup_id();
}

static __always_inline int is_v4_mapped(const __u8 *a)
{
	for (int i = 0; i < 10; i++)
		if (a[i])
			return 0;
	return a[10] == 0xff && a[11] == 0xff;
}

/* Fills addresses, family and netns from the socket. Returns 0 when the
 * socket is not one we trace (not TCP over IP, or another namespace). */
static __always_inline int edge_from_sock(const struct sock *sk, struct dg_edge_key *key)
{
	__u16 family = sk->__sk_common.skc_family;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	key->netns_ino = sk->__sk_common.skc_net.net->ns.inum;
	if (filter_netns_ino && key->netns_ino != filter_netns_ino)
		return 0;

	if (family == AF_INET) {
		__builtin_memcpy(key->local_addr, &sk->__sk_common.skc_rcv_saddr, 4);
		__builtin_memcpy(key->remote_addr, &sk->__sk_common.skc_daddr, 4);
		key->family = DG_AF_INET;
		return 1;
	}
	if (family != AF_INET6)
		return 0;

	__u8 local[16], remote[16];

	bpf_probe_read_kernel(local, 16, &sk->__sk_common.skc_v6_rcv_saddr);
	bpf_probe_read_kernel(remote, 16, &sk->__sk_common.skc_v6_daddr);
	/* A dual-stack socket talking to an IPv4 peer: store it as IPv4, or one
	 * edge splits in two. */
	if (is_v4_mapped(remote)) {
		__builtin_memcpy(key->local_addr, &local[12], 4);
		__builtin_memcpy(key->remote_addr, &remote[12], 4);
		key->family = DG_AF_INET;
	} else {
		__builtin_memcpy(key->local_addr, local, 16);
		__builtin_memcpy(key->remote_addr, remote, 16);
		key->family = DG_AF_INET6;
	}
	return 1;
}

/* Adds an evicted cache entry's counters to its edge in the hash. */
static __always_inline void spill(const struct dg_edge_key *key, const struct dg_edge_counters *from)
{
	static const struct dg_edge_counters zero;
	__u32 active = 0;
	void *edges = bpf_map_lookup_elem(&edge_maps, &active);

	if (!edges)
		return;
	struct dg_edge_counters *c = bpf_map_lookup_elem(edges, key);

	if (!c) {
		long err = bpf_map_update_elem(edges, key, &zero, BPF_NOEXIST);

		/* Counted in what the entry held, not as one failure: one entry
		 * can hold thousands of connections, or a single close. */
		if (err && err != -EEXIST) {
			count_losses(DG_LOSS_EDGE_MAP_FULL, from->connects + from->failed + from->accepts);
			count_losses(DG_LOSS_EDGE_MAP_FULL_CLOSES, from->closes);
			return;
		}
		c = bpf_map_lookup_elem(edges, key);
		if (!c)
			return;
	}
	dg_add_counters(c, from);
}

static __always_inline int same_edge(const struct dg_edge_key *a, const struct dg_edge_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	for (int i = 0; i < sizeof(*a) / 8; i++)
		if (x[i] != y[i])
			return 0;
	return 1;
}

/* This CPU's counters for the edge: its cache entry, made for it if need be.
 * Programs run with preemption off and never nest on one CPU (the kernel
 * skips a nested run), so nothing else touches this CPU's entries meanwhile. */
static __always_inline struct dg_edge_counters *edge_counters(const struct dg_edge_key *key)
{
	__u32 active = 0;
	void *cache = bpf_map_lookup_elem(&cache_maps, &active);

	if (!cache)
		return 0;
	/* The two sides of a loopback edge differ in direction; a service's
	 * clients in their address. */
	__u32 index = (key->service_port ^ key->direction ^ key->remote_addr[3] ^ key->local_addr[3]) &
		      (DG_EDGE_CACHE_SLOTS - 1);
	struct dg_edge_cache_entry *e = bpf_map_lookup_elem(cache, &index);

	if (!e)
		return 0;
	if (e->used && same_edge(&e->key, key))
		return &e->counters;
	if (e->used)
		spill(&e->key, &e->counters);
	e->key = *key;
	__builtin_memset(&e->counters, 0, sizeof(e->counters));
	e->used = 1;
	return &e->counters;
}

/* The verifier lets a program turn a kernel pointer into a number only as
 * the difference of two pointers: the base is a map's own address, fixed
 * while the programs are loaded, as the slots are. */
static __always_inline __u64 sock_id(const struct sock *sk)
{
	return (__u64)sk - (__u64)&sock_slots;
}

static __always_inline struct dg_sock_slot *sock_slot(__u64 id)
{
	/* Multiplicative hashing: the product's high bits depend on every bit
	 * of the address, whose low bits are the same for all sockets. */
	__u32 index = (id * 0x9E3779B97F4A7C15ULL) >> (64 - DG_SOCK_SLOT_BITS);

	return bpf_map_lookup_elem(&sock_slots, &index);
}

static __always_inline __u64 sock_cookie(const struct sock *sk)
{
	return bpf_get_socket_cookie((void *)sk);
}

/* One socket's transitions are serialized by the kernel, so once a slot
 * holds our address nothing else writes it until we free it. */
static __always_inline struct dg_sock_info *find_sock(const struct sock *sk)
{
	__u64 id = sock_id(sk);
	struct dg_sock_slot *slot = sock_slot(id);

	if (slot && slot->sk == id)
		return &slot->info;
	__u64 cookie = sock_cookie(sk);

	return bpf_map_lookup_elem(&socks, &cookie);
}

/* For a socket just opened (or first seen): a slot naming its address is its
 * own to take, whoever held it. */
static __always_inline void remember_sock(const struct sock *sk, const struct dg_sock_info *info)
{
	__u64 id = sock_id(sk);
	struct dg_sock_slot *slot = sock_slot(id);

	if (slot && (slot->sk == id || __sync_val_compare_and_swap(&slot->sk, 0, id) == 0)) {
		slot->cookie = seeding ? sock_cookie(sk) : 0;
		slot->info = *info;
		return;
	}
	__u64 cookie = sock_cookie(sk);

	if (bpf_map_update_elem(&socks, &cookie, info, BPF_ANY))
		count_loss(DG_LOSS_SOCK_MAP_FULL);
}

/* Call only after the last read of the socket's info: a freed slot is
 * another socket's to claim. */
static __always_inline void forget_sock(const struct sock *sk)
{
	__u64 id = sock_id(sk);
	struct dg_sock_slot *slot = sock_slot(id);

	if (slot && slot->sk == id) {
		__sync_lock_test_and_set(&slot->sk, 0);
	} else {
		__u64 cookie = sock_cookie(sk);

		bpf_map_delete_elem(&socks, &cookie);
	}
}

/* The agent seeds a connection from a sock_diag dump some time after the
 * dump: one that closed in between would be seeded after its close and stay
 * open forever. While it seeds, a close leaves the socket's cookie behind in
 * `socks`, so that the agent's insert (BPF_NOEXIST) finds it taken; the agent
 * removes what is left once seeding is over (Tracer::drain). */
static __always_inline void note_closed_while_seeding(const struct sock *sk)
{
	static const struct dg_sock_info closed = { .state = DG_SOCK_CLOSED };
	__u64 cookie;

	if (!seeding)
		return;
	cookie = sock_cookie(sk);
	if (bpf_map_update_elem(&socks, &cookie, &closed, BPF_ANY))
		count_loss(DG_LOSS_SOCK_MAP_FULL);
}

/* A listener's key. Its remote address is all zero, so edge_from_sock keeps
 * a dual-stack socket's ::ffff:a.b.c.d as IPv6: such a listener takes IPv4
 * only, and is keyed as IPv4, as sock_diag's snapshot has it. */
static __always_inline int listener_from_sock(const struct sock *sk, struct dg_listener_key *lk)
{
	struct dg_edge_key key = {};

	if (!edge_from_sock(sk, &key))
		return 0;
	lk->netns_ino = key.netns_ino;
	lk->port = sk->__sk_common.skc_num;
	if (key.family == DG_AF_INET6 && is_v4_mapped(key.local_addr)) {
		lk->family = DG_AF_INET;
		__builtin_memcpy(lk->addr, &key.local_addr[12], 4);
	} else {
		lk->family = key.family;
		__builtin_memcpy(lk->addr, key.local_addr, 16);
	}
	return 1;
}

/* The owner of the listener an accepted connection came through: the one on
 * its local address, else the one on the wildcard; an IPv4 connection can
 * also come through a dual-stack listener on ::. */
static __always_inline struct dg_process *listener_of(const struct dg_edge_key *edge)
{
	struct dg_listener_key lk = {};
	struct dg_listener *l;

	lk.netns_ino = edge->netns_ino;
	lk.port = edge->service_port;
	lk.family = edge->family;
	__builtin_memcpy(lk.addr, edge->local_addr, 16);
	l = bpf_map_lookup_elem(&listeners, &lk);
	if (!l) {
		__builtin_memset(lk.addr, 0, 16);
		l = bpf_map_lookup_elem(&listeners, &lk);
	}
	if (!l && lk.family == DG_AF_INET) {
		lk.family = DG_AF_INET6;
		l = bpf_map_lookup_elem(&listeners, &lk);
	}
	return l ? &l->owner : 0;
}

static __always_inline void on_listen(const struct sock *sk)
{
	static const __u8 owns = 1;
	struct dg_listener_key lk = {};
	struct dg_listener l = {};

	if (!listener_from_sock(sk, &lk))
		return;
	current_process(&l.owner);
	l.tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_update_elem(&listeners, &lk, &l, BPF_ANY) ||
	    bpf_map_update_elem(&listener_owners, &l.tgid, &owns, BPF_ANY))
		count_loss(DG_LOSS_LISTENER_MAP_FULL);
}

static __always_inline void on_listen_close(const struct sock *sk)
{
	struct dg_listener_key lk = {};

	if (!listener_from_sock(sk, &lk))
		return;
	bpf_map_delete_elem(&listeners, &lk);
}

/* CLOSE -> SYN_SENT runs in the connect() caller: the one moment the owner is current. */
static __always_inline void on_connect(const struct sock *sk)
{
	struct dg_sock_info info = {};

	if (!edge_from_sock(sk, &info.edge))
		return;
	info.edge.direction = DG_DIR_OUT;
	current_process(&info.edge.process);
	info.start = bpf_jiffies64();
	info.state = DG_SOCK_CONNECTING;
	remember_sock(sk, &info);
}

static __always_inline void on_connected(const struct sock *sk)
{
	struct dg_sock_info fresh = {};
	struct dg_sock_info *info = find_sock(sk);

	/* Unknown: connect() began before tracing; no owner, start from now. */
	if (!info) {
		fresh.start = bpf_jiffies64();
		info = &fresh;
	}
	/* Addresses are final only now (the source may be chosen late). The
	 * owner and start time from SYN_SENT stay; the entry changes in place. */
	if (!edge_from_sock(sk, &info->edge))
		return;
	info->edge.direction = DG_DIR_OUT;
	info->edge.service_port = bpf_ntohs(sk->__sk_common.skc_dport);
	info->state = DG_SOCK_OPEN;

	struct dg_edge_counters *c = edge_counters(&info->edge);

	if (c)
		c->connects++;
	if (info == &fresh)
		remember_sock(sk, &fresh);
}

static __always_inline void on_connect_failed(const struct sock *sk)
{
	struct dg_sock_info *info = find_sock(sk);
	struct dg_edge_key key;

	if (!info)
		return;
	key = info->edge;
	/* The kernel sets the socket's error before it closes it: a RST (or an
	 * ICMP port unreachable) is ECONNREFUSED, giving up is ETIMEDOUT. */
	__u8 refused = sk->sk_err == ECONNREFUSED;

	forget_sock(sk);
	if (!edge_from_sock(sk, &key))
		return;
	key.service_port = bpf_ntohs(sk->__sk_common.skc_dport);

	struct dg_edge_counters *c = edge_counters(&key);

	if (!c)
		return;
	c->failed++;
	if (refused)
		c->refused++;
}

/* SYN_RECV -> ESTABLISHED runs in softirq: attribute to the listener's owner. */
static __always_inline void on_accepted(const struct sock *sk)
{
	struct dg_sock_info info = {};

	if (!edge_from_sock(sk, &info.edge))
		return;
	info.edge.direction = DG_DIR_IN;
	info.edge.service_port = sk->__sk_common.skc_num;

	struct dg_process *owner = listener_of(&info.edge);

	/* Unknown (a listener from before tracing, not yet seeded): the comm
	 * stays empty and the agent names it from its sock_diag listener table. */
	if (owner)
		info.edge.process = *owner;
	info.start = bpf_jiffies64();
	info.state = DG_SOCK_OPEN;

	struct dg_edge_counters *c = edge_counters(&info.edge);

	if (c)
		c->accepts++;
	remember_sock(sk, &info);
}

static __always_inline void on_closed(const struct sock *sk, int oldstate)
{
	struct dg_sock_info *info = find_sock(sk);

	if (!info) {
		struct dg_edge_key key = {};

		/* An established connection we never saw open nor were told
		 * about: count it, so a reader knows closes went missing. */
		if (oldstate != TCP_SYN_RECV && edge_from_sock(sk, &key)) {
			count_loss(DG_LOSS_CLOSE_UNKNOWN_SOCK);
			note_closed_while_seeding(sk);
		}
		return;
	}
	if (info->state != DG_SOCK_OPEN) {
		forget_sock(sk);
		return;
	}
	struct dg_edge_key key = info->edge;
	__u64 lifetime_ns = info->seeded ? bpf_ktime_get_ns() - info->start
					 : (bpf_jiffies64() - info->start) * ns_per_jiffy;
	const struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	forget_sock(sk);
	note_closed_while_seeding(sk);

	struct dg_edge_counters *c = edge_counters(&key);

	if (!c)
		return;
	c->closes++;
	c->lifetime_ns += lifetime_ns;
	if (tp) {
		c->bytes_sent += tp->bytes_acked;
		c->bytes_received += tp->bytes_received;
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_LISTEN)
		on_listen(sk);
	else if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE)
		on_listen_close(sk);
	else if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT)
		on_connect(sk);
	else if (oldstate == TCP_SYN_SENT && newstate == TCP_ESTABLISHED)
		on_connected(sk);
	else if (oldstate == TCP_SYN_SENT && newstate == TCP_CLOSE)
		on_connect_failed(sk);
	else if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED)
		on_accepted(sk);
	else if (newstate == TCP_CLOSE)
		on_closed(sk, oldstate);
	/* Other transitions (FIN_WAIT, CLOSE_WAIT, ...) carry nothing we count. */
	return 0;
}

struct exec_rename {
	__u32 tgid;
	char comm[DG_COMM_LEN];
};

static long rename_listener(struct bpf_map *map, const struct dg_listener_key *key, struct dg_listener *l,
			    struct exec_rename *exec)
{
	if (l->tgid == exec->tgid)
		__builtin_memcpy(l->owner.comm, exec->comm, DG_COMM_LEN);
	return 0;
}

/* Defined after inet_sock_set_state, so attached after it: connections are
 * traced from the agent's first link on.
 *
 * A process that listens and then runs another program keeps its listeners
 * under its new name, as /proc (and so the start-up snapshot) shows it. The
 * new name is set by the time this runs. A walk over the listeners, only for
 * a process that owns one. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct exec_rename exec = { .tgid = p->tgid };

	if (!bpf_map_lookup_elem(&listener_owners, &exec.tgid))
		return 0;
	__builtin_memcpy(exec.comm, p->comm, DG_COMM_LEN);
	bpf_for_each_map_elem(&listeners, rename_listener, &exec, 0);
	return 0;
}

/* The last thread of a process that owned a listener is gone: its pid may
 * be re-used by one that does not. Its listeners go with their sockets. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *p)
{
	__u32 tgid = p->tgid;

	if (p->signal->live.counter == 0)
		bpf_map_delete_elem(&listener_owners, &tgid);
	return 0;
}
