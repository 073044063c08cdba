/* The ABI between the BPF programs (depgraph.bpf.c) and the agent.
 * Only fixed-size types and explicit padding: agent/edge_abi.hpp pins every
 * size and offset with static_assert, so drift fails to compile. */
#ifndef DEPGRAPH_BPF_ABI_H
#define DEPGRAPH_BPF_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define DG_COMM_LEN 16

enum dg_direction {
	DG_DIR_OUT = 0, /* this host connected (active open) */
	DG_DIR_IN = 1,  /* this host accepted (passive open) */
};

/* Address families after normalisation: an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is stored as DG_AF_INET, so a dual-stack peer is one edge. */
enum dg_family {
	DG_AF_INET = 2,
	DG_AF_INET6 = 10,
};

/* Who owns a socket: the thread-group leader's name (worker threads must not
 * split a service) and its cgroup v2 id. Never a pid: prefork workers collapse. */
struct dg_process {
	char comm[DG_COMM_LEN];
	__u64 cgroup_id;
};

/* One edge: the ephemeral port is gone, the service port stays. */
struct dg_edge_key {
	__u8 local_addr[16];  /* network order; IPv4 in the first 4 bytes, rest zero */
	__u8 remote_addr[16]; /* network order; same layout */
	__u32 netns_ino;      /* inode of the socket's network namespace */
	__u16 service_port;   /* host order: the listening side's port */
	__u8 direction;       /* enum dg_direction */
	__u8 family;          /* enum dg_family */
	struct dg_process process;
};

/* Counters since the last drain; the agent deletes entries as it reads them. */
struct dg_edge_counters {
	__u64 connects;       /* SYN_SENT -> ESTABLISHED */
	__u64 failed;         /* SYN_SENT -> CLOSE (refused or timed out) */
	__u64 refused;        /* of failed: a RST arrived in SYN_SENT */
	__u64 accepts;        /* SYN_RECV -> ESTABLISHED */
	__u64 closes;         /* an established connection reached CLOSE */
	__u64 bytes_sent;     /* tcp_sock.bytes_acked at close */
	__u64 bytes_received; /* tcp_sock.bytes_received at close */
	__u64 lifetime_ns;    /* sum over closes of (close - open) */
};

/* The one sum of counters: the programs' cache spills with it, the agent sums
 * CPUs and drains with it (operator+= in agent/edge_abi.hpp). */
static inline void dg_add_counters(struct dg_edge_counters *to, const struct dg_edge_counters *from)
{
	to->connects += from->connects;
	to->failed += from->failed;
	to->refused += from->refused;
	to->accepts += from->accepts;
	to->closes += from->closes;
	to->bytes_sent += from->bytes_sent;
	to->bytes_received += from->bytes_received;
	to->lifetime_ns += from->lifetime_ns;
}

/* Each CPU keeps the counters of its few busiest edges in a small direct-mapped
 * cache in front of the edge hash: a connection updates its edge twice on each
 * side, and a 64-byte key hashed and compared each time was a fifth of the
 * programs' cost. An entry goes to the hash when another edge needs its place;
 * the agent drains the caches with the maps. */
#define DG_EDGE_CACHE_SLOTS 8

struct dg_edge_cache_entry {
	struct dg_edge_key key;
	struct dg_edge_counters counters;
	__u64 used; /* 0: empty */
};

/* What the kernel side remembers per socket, keyed by the socket cookie
 * (the same cookie inet_diag reports, so the agent can seed entries for
 * connections that were open before it started). */
struct dg_sock_info {
	struct dg_edge_key edge;
	/* When it opened (SYN_SENT / ESTABLISHED): jiffies, which cost the
	 * programs almost nothing to read, where the precise clock cost about
	 * 75 ns a read, a quarter of their cost per connection. A connection the
	 * agent seeds at start-up carries CLOCK_MONOTONIC ns instead (`seeded`). */
	__u64 start;
	__u8 state;       /* enum dg_sock_phase */
	__u8 seeded;      /* 1: start is CLOCK_MONOTONIC ns */
	__u8 pad[6];
};

/* The first place a socket's state goes: a slot of a plain array, chosen by
 * the socket's address and claimed by writing that address into an empty slot
 * (compare and swap). An array slot costs no hashing, locking or allocation; a
 * hash insert and delete took about half of the per-connection cost. The slab
 * hands a freed socket's memory to the next socket, so churn keeps using a few
 * slots that stay in cache (cookies, which only grow, walked the whole array).
 * While a socket lives no other has its address, so a slot holding that
 * address at open was left by a socket whose close was missed, and is taken
 * over. A socket whose slot is held by another goes to the `socks` hash
 * (keyed by cookie) instead, as do the connections the agent seeds at
 * start-up. */
#define DG_SOCK_SLOT_BITS 16
#define DG_SOCK_SLOTS (1 << DG_SOCK_SLOT_BITS)

struct dg_sock_slot {
	__u64 sk;     /* the socket's address (as an offset, see sock_id); 0: free */
	__u64 cookie; /* while the agent seeds (see `seeding`): the cookie it knows sockets by */
	struct dg_sock_info info;
};

enum dg_sock_phase {
	DG_SOCK_CONNECTING = 1, /* SYN_SENT: owner known, addresses not final */
	DG_SOCK_OPEN = 2,       /* ESTABLISHED: counted as connect or accept */
	DG_SOCK_CLOSED = 3,     /* closed while the agent seeded (only in `socks`, keyed by cookie) */
};

/* A listener, keyed by (netns, address, port): passive opens run in softirq,
 * where the current task is whoever was on the CPU, so they are attributed
 * through it. Two processes can listen on one port on different addresses
 * (a sidecar on 127.0.0.1, the application on the host's address): an accept
 * goes to the listener on its local address, else to the one on the wildcard. */
struct dg_listener_key {
	__u8 addr[16];    /* network order, as in dg_edge_key; all zero: 0.0.0.0 or :: */
	__u32 netns_ino;
	__u16 port;       /* host order */
	__u8 family;      /* enum dg_family: one on ::ffff:a.b.c.d is DG_AF_INET */
	__u8 pad;
};

/* Who listens: the accepts' owner. Its process id, so that an exec() of the
 * process (a server that listens and then runs another program) renames it. */
struct dg_listener {
	struct dg_process owner;
	__u32 tgid;
	__u32 pad;
};

/* Indexes into the loss counter array: every bounded map counts what it
 * could not hold, so nothing is dropped silently. */
enum dg_loss {
	/* Connections whose opening (connect, failed connect or accept) a full
	 * edge map dropped, counted once per end traced: a loopback connection
	 * seen from both ends counts two. */
	DG_LOSS_EDGE_MAP_FULL = 0,
	DG_LOSS_SOCK_MAP_FULL = 1,
	DG_LOSS_LISTENER_MAP_FULL = 2,
	DG_LOSS_CLOSE_UNKNOWN_SOCK = 3, /* a close of a socket opened before tracing and not seeded */
	/* Not counted by the programs: the kernel's count of runs it skipped
	 * because the program was already running on that CPU (a transition in
	 * an interrupt that arrived during a run). The agent reads it. */
	DG_LOSS_SKIPPED_NESTED = 4,
	/* Closes (and their bytes and lifetimes) a full edge map dropped, in the
	 * same unit as DG_LOSS_EDGE_MAP_FULL. */
	DG_LOSS_EDGE_MAP_FULL_CLOSES = 5,
	DG_LOSS_COUNT = 6,
};

#endif
