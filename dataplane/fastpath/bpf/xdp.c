// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// Sluice's XDP program: the fast tier under the AF_XDP workers.
//
// It forwards the packets whose rules the flow table published into its
// maps (uplink: a G-PDU to a known TEID, decapsulated toward N6; downlink:
// an IPv4 packet to a known UE address, encapsulated toward the gNB), and
// steers everything else Sluice owns into the workers' AF_XDP sockets, as
// the steering program of fast_path: off does. What it does to a packet is
// octet for octet what the user-space pipeline (dataplane/pipeline.go)
// would do; differential tests hold it to that.
//
// Before it counts anything the program checks everything that could send
// the packet to user space instead (its shape, the rule's conditions, the
// next hop), so a packet is counted by one tier only.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_LEN 14
#define IP4_LEN 20
#define IP6_LEN 40
#define UDP_LEN 8
#define GTPU_PORT 2152
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86dd
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_SCTP 132

// Rule flags (fp_rule.flags).
#define FP_REMOVE 1 // remove the GTP-U/UDP/IP outer header
#define FP_ENCAP 2  // create a GTP-U/UDP/IPv4 outer header
#define FP_RQI 4    // mark RQI in the PDU Session Container
#define FP_DROP 8   // the FAR drops
#define FP_GATE 16  // with FP_DROP: a QER gate is closed
#define FP_UE4 32   // uplink: the inner source must be ue4
#define FP_GEN_SHIFT 6 // in a slot: the copy's generation, the top two bits

// Destination interfaces (flowtable.Interface).
#define IF_ACCESS 0
#define IF_CORE 1
#define NUM_IFS 8

// Per-CPU statistics of the tier (fp_stats), by index.
enum {
	ST_FWD_UL,
	ST_FWD_DL,
	ST_DROP_GATE,
	ST_DROP_FAR,
	ST_DROP_MBR,
	ST_DROP_TTL,
	ST_TO_USER, // steered into an AF_XDP socket
	ST_MAX,
};

// A token bucket as flowtable.Meter (the theoretical arrival time), kept
// in the rule that uses it: a meter the tier carries belongs to one rule
// (flowtable leaves rules that share a meter with the workers), so a
// packet finds its meters in the line of its rule instead of in an array
// of their own.
struct fp_meter {
	__s64 tat;
	__u32 ps_per_byte; // 0: no meter
	__u32 tolerance;   // ns
};

// A rule the fast tier carries: one PDR with its FAR, QERs and URRs, 64
// octets, one cache line in a slot of the direct tables (fp_slot), and the
// second line of a 128-octet hash element (48 octets of head and the key)
// in the hash maps.
struct fp_rule {
	struct fp_meter meter[2]; // the MBR meters
	__u32 pdr;      // the PDR's counter cell
	__u32 urr[2];   // the cells of the URR halves it counts; ~0: none
	__u32 teid;     // outer header creation: TEID
	__u32 peer;     // outer header creation: IPv4 peer, network order
	__u32 ue4;      // with FP_UE4: the UE address, network order
	// flags, qfi_match, qfi and dest are one word, the last the writer
	// stores: in a slot, it publishes the copy (FP_GEN).
	__u8 flags;
	__u8 qfi_match; // the QFI the packet must carry; 0: any
	__u8 qfi;       // the QFI to mark; 0: no PDU Session Container
	__u8 dest;      // the destination interface
	__u32 key;      // in a slot: the key (TEID; UE address, network order); 0: none
};

// A slot of a direct table: the rule of the key whose low bits are the
// slot's index, in two copies. The current copy is the one whose
// generation (flags, FP_GEN) is one ahead of the other's, modulo 4: the
// writer fills the other copy and publishes it by storing its flags word
// last, and it overwrites a copy only after every run of the program that
// could have chosen it has ended (the spans, Tier.Quiesce). So a packet
// sees one rule whole, the old or the new. Keys whose slot another key
// holds are in the hash maps.
struct fp_slot {
	struct fp_rule r[2];
};

// A counter cell: as the workers' cells (flowtable.PDRCount): packets and
// octets; or, for the second cell of a URR half, first and last time.
struct cell {
	__u64 a, b;
};

// Where packets to a destination interface leave.
struct egress {
	__u32 ifindex; // 0: none, the workers forward
	__u32 src4;    // the interface's IPv4 address (outer source), network order
	__u8 mac[6];
	__u8 gw[6];    // the gateway's address, with has_gw
	__u8 has_gw;
	__u8 pad[3];
};

struct neigh_key {
	__u32 ifindex;
	__u32 addr; // network order
};

struct neigh {
	__u8 mac[6];
	__u8 pad[2];
};

struct stat {
	__u64 packets, bytes;
};

struct lpm4 {
	__u32 prefixlen;
	__u32 addr;
};

struct lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

// The port's own maps: sockets by queue and the steered destinations.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(key_size, 4);
	__uint(value_size, 4);
	__uint(max_entries, 1);
} sluice_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm4);
	__type(value, __u8);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sluice_dst4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm6);
	__type(value, __u8);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} sluice_dst6 SEC(".maps");

// The tier's maps, shared by every port's program.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); // TEID
	__type(value, struct fp_rule);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fp_ul SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32); // UE IPv4 address, network order
	__type(value, struct fp_rule);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fp_dl SEC(".maps");

// The direct tables, indexed by the key's low bits (direct_mask): one
// cache-line pair a packet, where a hash lookup reads a bucket and then
// its element, in other pages.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_slot);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
} fp_ul_direct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fp_slot);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
} fp_dl_direct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct cell);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
} fp_cells SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
} fp_spans SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct egress);
	__uint(max_entries, NUM_IFS);
} fp_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct neigh_key);
	__type(value, struct neigh);
	__uint(max_entries, 1);
} fp_neigh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct stat);
	__uint(max_entries, ST_MAX);
} fp_stats SEC(".maps");

// Set at load time.
volatile const __u32 role_n3 = 0;       // 1: an N3 port, 0: an N6 port
volatile const __u32 fast = 0;          // 1: forward what the tier carries
volatile const __u32 cells_per_cpu = 0; // fp_cells entries of one CPU
// The layout of a CPU's cells: chunks of the workers' counter memory
// (flowtable's counterChunk), each 1<<slot_shift counter cells followed,
// when marks_cell is not 0, by the marks of the lines whose URR counters
// moved, at cell marks_cell of the chunk, 64 lines a word.
volatile const __u32 chunk_cells = 0;
volatile const __u32 slot_shift = 0;
volatile const __u32 marks_cell = 0;
volatile const __s64 clock_offset = 0;  // CLOCK_MONOTONIC minus the Table clock
volatile const __u32 steer_action = 0;  // tests: return this instead of redirecting
volatile const __u32 direct_mask = 0;   // the direct tables' entries minus 1

static __always_inline void stat_add(__u32 i, __u64 bytes)
{
	struct stat *s = bpf_map_lookup_elem(&fp_stats, &i);
	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

// cell_index is the index in a CPU's cells of a counter slot.
static __always_inline __u32 cell_index(__u32 slot)
{
	return (slot >> slot_shift) * chunk_cells + (slot & ((1U << slot_shift) - 1));
}

static __always_inline struct cell *cell_at(__u32 base, __u32 slot)
{
	__u32 i = cell_index(slot);
	if (i >= cells_per_cpu)
		return 0;
	i += base;
	return bpf_map_lookup_elem(&fp_cells, &i);
}

// mark notes that a URR counter at slot moved, as a worker's mark does.
static __always_inline void mark(__u32 base, __u32 slot)
{
	if (!marks_cell)
		return;
	__u32 line = (slot & ((1U << slot_shift) - 1)) / 4;
	__u32 word = line / 64;
	__u32 i = (slot >> slot_shift) * chunk_cells + marks_cell + word / 2;
	if (i >= cells_per_cpu)
		return;
	i += base;
	struct cell *c = bpf_map_lookup_elem(&fp_cells, &i);
	if (!c)
		return;
	__u64 bit = 1ULL << (line & 63);
	__u64 *w = word & 1 ? &c->b : &c->a;
	if (!(*w & bit))
		*w |= bit;
}

static __always_inline void count_pdr(__u32 base, const struct fp_rule *r, __u64 n)
{
	struct cell *c = cell_at(base, r->pdr);
	if (c) {
		c->a++;
		c->b += n;
	}
}

static __always_inline void count_urr(__u32 base, __u32 slot, __u64 n, __s64 now)
{
	if (slot == ~0U)
		return;
	struct cell *c = cell_at(base, slot);
	struct cell *t = cell_at(base, slot + 1);
	if (!c || !t)
		return;
	c->a++;
	c->b += n;
	if (t->a == 0)
		t->a = now;
	t->b = now;
	mark(base, slot);
}

// find returns the rule of key: from its slot in the direct table when
// the slot's current copy is the key's, else from the hash map. index is
// the key's low bits in host order.
static __always_inline struct fp_rule *find(void *direct, void *hash, __u32 key, __u32 index)
{
	__u32 i = index & direct_mask;
	struct fp_slot *s = bpf_map_lookup_elem(direct, &i);
	if (s) {
		__u8 g0 = *(volatile __u8 *)&s->r[0].flags >> FP_GEN_SHIFT;
		__u8 g1 = *(volatile __u8 *)&s->r[1].flags >> FP_GEN_SHIFT;
		asm volatile("" ::: "memory"); // the copy's fields after its flags
		struct fp_rule *r = ((g1 - g0) & 3) == 1 ? &s->r[1] : &s->r[0];
		if (r->key == key && key)
			return r;
	}
	return bpf_map_lookup_elem(hash, &key);
}

// meter_allow is flowtable.Meter.Allow.
static __always_inline int meter_allow(struct fp_meter *m, __s64 now, __u64 n)
{
	__s64 cost = (__s64)((n * (__u64)m->ps_per_byte) / 1000);
	__s64 tol = (__s64)m->tolerance;
#pragma unroll
	for (int k = 0; k < 8; k++) {
		__s64 old = *(volatile __s64 *)&m->tat;
		__s64 tat = old > now ? old : now;
		if (tat + cost - now > tol)
			return 0;
		if (__sync_val_compare_and_swap(&m->tat, old, tat + cost) == old)
			return 1;
	}
	return 0;
}

// dec_ttl is dataplane's decTTL: RFC 1624 HC' = ~(~HC + ~m + m').
static __always_inline void dec_ttl(__u8 *ip)
{
	__u16 old = ((__u16)ip[8] << 8) | ip[9];
	__u16 nw = old - 0x100;
	__u16 hc = ((__u16)ip[10] << 8) | ip[11];
	__u32 sum = (__u32)(__u16)~hc + (__u32)(__u16)~old + (__u32)nw;
	sum = (sum >> 16) + (sum & 0xffff);
	sum += sum >> 16;
	__u16 c = ~(__u16)sum;
	ip[8] = nw >> 8;
	ip[10] = c >> 8;
	ip[11] = c;
}

static __always_inline __u16 fold(__u64 sum)
{
	sum = (sum >> 32) + (sum & 0xffffffff);
	sum = (sum >> 16) + (sum & 0xffff);
	sum = (sum >> 16) + (sum & 0xffff);
	sum = (sum >> 16) + (sum & 0xffff);
	return sum;
}

// next_hop finds the link-layer address of a next hop on egress e, as the
// workers' neighbour table would: a host entry, else the gateway.
static __always_inline int next_hop(const struct egress *e, __u32 addr, __u8 *mac)
{
	struct neigh_key k = {.ifindex = e->ifindex, .addr = addr};
	struct neigh *n = bpf_map_lookup_elem(&fp_neigh, &k);
	if (n) {
		__builtin_memcpy(mac, n->mac, 6);
		return 1;
	}
	if (e->has_gw) {
		__builtin_memcpy(mac, e->gw, 6);
		return 1;
	}
	return 0;
}

static __always_inline void put_eth(__u8 *p, const __u8 *dst, const __u8 *src)
{
	__builtin_memcpy(p, dst, 6);
	__builtin_memcpy(p + 6, src, 6);
	p[12] = ETH_P_IP >> 8;
	p[13] = ETH_P_IP & 0xff;
}

static __always_inline int out(struct xdp_md *ctx, const struct egress *e)
{
	if (e->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(e->ifindex, 0);
}

// trim makes the frame len octets long.
static __always_inline int trim(struct xdp_md *ctx, __u32 len)
{
	int have = (int)(ctx->data_end - ctx->data);
	if (have == (int)len)
		return 0;
	return bpf_xdp_adjust_tail(ctx, (int)len - have);
}

// clock_now is the Table clock. A rule with meters reads the precise
// clock; for URR time stamps alone the clock of the last tick does (a few
// milliseconds behind at most), which costs a fraction: in a VM the
// precise clock is a paravirtual clock read, a sizeable part of the
// program's time.
static __always_inline __s64 clock_now(const struct fp_rule *r)
{
	if (r->meter[0].ps_per_byte | r->meter[1].ps_per_byte)
		return (__s64)bpf_ktime_get_ns() - clock_offset;
	__s64 now = (__s64)bpf_ktime_get_coarse_ns() - clock_offset;
	return now > 0 ? now : 1; // 0 is "no packet yet"
}

// commit counts a matched packet of n octets and applies its gate and
// meters, as the workers do (pipeline apply and applyActions). It returns
// -1 to go on, else the XDP action for a dropped packet.
static __always_inline int commit(__u32 base, struct fp_rule *r, __u64 n, __s64 now)
{
	count_pdr(base, r, n);
	if (r->flags & FP_DROP) {
		stat_add(r->flags & FP_GATE ? ST_DROP_GATE : ST_DROP_FAR, n);
		return XDP_DROP;
	}
	if (r->meter[0].ps_per_byte && !meter_allow(&r->meter[0], now, n)) {
		stat_add(ST_DROP_MBR, n);
		return XDP_DROP;
	}
	if (r->meter[1].ps_per_byte && !meter_allow(&r->meter[1], now, n)) {
		stat_add(ST_DROP_MBR, n);
		return XDP_DROP;
	}
	return -1;
}

// uplink forwards a G-PDU on an N3 port: -1 when the workers are to have it.
static __always_inline int uplink(struct xdp_md *ctx, __u32 base)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *ip = data + ETH_LEN;
	if ((void *)(ip + IP4_LEN + UDP_LEN + 16) > end)
		return -1;
	if (ip[0] != 0x45 || ip[9] != PROTO_UDP || (ip[6] & 0x3f) || ip[7])
		return -1;
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	if (tot < IP4_LEN + UDP_LEN || (void *)ip + tot > end)
		return -1;
	__u8 *udp = ip + IP4_LEN;
	if (udp[2] != (GTPU_PORT >> 8) || udp[3] != (GTPU_PORT & 0xff))
		return -1;
	__u32 ulen = ((__u32)udp[4] << 8) | udp[5];
	if (ulen < UDP_LEN || ulen > tot - IP4_LEN)
		return -1;
	__u8 *g = udp + UDP_LEN;
	__u32 glen = ulen - UDP_LEN;
	if (glen < 8 || g[1] != 0xff)
		return -1;
	__u32 length = ((__u32)g[2] << 8) | g[3];
	if (length > glen - 8)
		return -1;
	__u32 teid = ((__u32)g[4] << 24) | ((__u32)g[5] << 16) | ((__u32)g[6] << 8) | g[7];
	__u32 hl, pl;
	__u8 qfi = 0;
	if (g[0] == 0x30) {
		hl = 8;
		pl = length;
	} else if (g[0] == 0x34) {
		if (glen < 16 || length < 8)
			return -1;
		if (g[11] != 0x85 || g[12] != 1 || g[13] != 0x10 || (g[14] & 0xc0) || g[15])
			return -1;
		hl = 16;
		pl = length - 8;
		qfi = g[14];
	} else {
		return -1;
	}
	__u8 *in = g + hl;
	if ((void *)(in + IP4_LEN) > end)
		return -1;
	if (in[0] != 0x45)
		return -1;
	__u32 n = ((__u32)in[2] << 8) | in[3];
	if (n < IP4_LEN || n > pl || n > 1500)
		return -1;
	if ((void *)in + n > end)
		return -1;

	struct fp_rule *r = find(&fp_ul_direct, &fp_ul, teid, teid);
	if (!r)
		return -1;
	if (r->qfi_match && r->qfi_match != qfi)
		return -1;
	__u32 src = *(__u32 *)(in + 12), dst = *(__u32 *)(in + 16);
	if ((r->flags & FP_UE4) && src != r->ue4)
		return -1;
	__u8 mac[6];
	struct egress *e = 0;
	if (!(r->flags & FP_DROP)) {
		if ((r->flags & (FP_REMOVE | FP_ENCAP)) != FP_REMOVE)
			return -1;
		__u32 d = r->dest;
		e = bpf_map_lookup_elem(&fp_egress, &d);
		if (!e || !e->ifindex || !next_hop(e, dst, mac))
			return -1;
	}

	__s64 now = clock_now(r);
	int rc = commit(base, r, n, now);
	if (rc >= 0)
		return rc;
	if (!e)
		return XDP_DROP;
	if (in[8] <= 1) {
		stat_add(ST_DROP_TTL, n);
		return XDP_DROP;
	}
	dec_ttl(in);
	count_urr(base, r->urr[0], n, now);
	count_urr(base, r->urr[1], n, now);
	stat_add(ST_FWD_UL, n);

	__u32 off = (__u32)(in - (__u8 *)data) - ETH_LEN;
	if (bpf_xdp_adjust_head(ctx, (int)off))
		return XDP_ABORTED;
	if (trim(ctx, ETH_LEN + n))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + ETH_LEN > end)
		return XDP_ABORTED;
	put_eth(data, mac, e->mac);
	return out(ctx, e);
}

// downlink encapsulates an IPv4 packet on an N6 port: -1 when the workers
// are to have it.
static __always_inline int downlink(struct xdp_md *ctx, __u32 base)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *ip = data + ETH_LEN;
	if ((void *)(ip + IP4_LEN + 4) > end)
		return -1;
	if (ip[0] != 0x45)
		return -1;
	__u32 n = ((__u32)ip[2] << 8) | ip[3];
	if (n < IP4_LEN || n > 1500 || (void *)ip + n > end)
		return -1;
	__u32 dst = *(__u32 *)(ip + 16);
	struct fp_rule *r = find(&fp_dl_direct, &fp_dl, dst, bpf_ntohl(dst));
	if (!r || r->qfi_match)
		return -1;
	__u8 mac[6];
	struct egress *e = 0;
	if (!(r->flags & FP_DROP)) {
		if ((r->flags & (FP_REMOVE | FP_ENCAP)) != FP_ENCAP)
			return -1;
		__u32 d = r->dest;
		e = bpf_map_lookup_elem(&fp_egress, &d);
		if (!e || !e->ifindex || !e->src4 || !next_hop(e, r->peer, mac))
			return -1;
	}

	__s64 now = clock_now(r);
	int rc = commit(base, r, n, now);
	if (rc >= 0)
		return rc;
	if (!e)
		return XDP_DROP;
	if (ip[8] <= 1) {
		stat_add(ST_DROP_TTL, n);
		return XDP_DROP;
	}
	dec_ttl(ip);
	count_urr(base, r->urr[0], n, now);
	count_urr(base, r->urr[1], n, now);
	stat_add(ST_FWD_DL, n);

	// The outer UDP source port: dataplane's sourcePort of the flow.
	__u8 proto = ip[9];
	__u32 ports = 0;
	if ((proto == PROTO_TCP || proto == PROTO_UDP || proto == PROTO_SCTP) &&
	    !(((ip[6] & 0x1f) << 8) | ip[7]) && n >= IP4_LEN + 4)
		ports = ((__u32)ip[20] << 24) | ((__u32)ip[21] << 16) | ((__u32)ip[22] << 8) | ip[23];
	__u32 h = bpf_ntohl(*(__u32 *)(ip + 12)) ^ bpf_ntohl(dst) ^ ports ^ proto;
	h *= 0x9e3779b1;
	__u16 sport = 0xc000 | (__u16)(h >> 18);
	__u8 tos = ip[1];

	__u32 gl = r->qfi ? 16 : 8;
	__u32 hdr = IP4_LEN + UDP_LEN + gl;
	if (bpf_xdp_adjust_head(ctx, -(int)hdr))
		return XDP_ABORTED;
	if (trim(ctx, ETH_LEN + hdr + n))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + ETH_LEN + IP4_LEN + UDP_LEN + 16 > end)
		return XDP_ABORTED;
	__u8 *p = data;
	put_eth(p, mac, e->mac);
	__u8 *o = p + ETH_LEN;
	__u32 olen = hdr + n;
	__u32 s = bpf_ntohl(e->src4), d = bpf_ntohl(r->peer);
	__u64 w0 = (__u64)0x45 << 56 | (__u64)tos << 48 | (__u64)(olen & 0xffff) << 32 | 0x4000;
	__u64 w1 = (__u64)64 << 56 | (__u64)PROTO_UDP << 48 | s;
	__u16 csum = ~fold((w0 >> 32) + (w0 & 0xffffffff) + (w1 >> 32) + s + d);
	o[0] = 0x45;
	o[1] = tos;
	o[2] = olen >> 8;
	o[3] = olen;
	o[4] = 0;
	o[5] = 0;
	o[6] = 0x40;
	o[7] = 0;
	o[8] = 64;
	o[9] = PROTO_UDP;
	o[10] = csum >> 8;
	o[11] = csum;
	*(__u32 *)(o + 12) = e->src4;
	*(__u32 *)(o + 16) = r->peer;
	__u8 *u = o + IP4_LEN;
	__u32 ul = UDP_LEN + gl + n;
	u[0] = sport >> 8;
	u[1] = sport;
	u[2] = GTPU_PORT >> 8;
	u[3] = GTPU_PORT & 0xff;
	u[4] = ul >> 8;
	u[5] = ul;
	u[6] = 0;
	u[7] = 0;
	__u8 *g = u + UDP_LEN;
	__u32 glen = gl - 8 + n;
	g[0] = r->qfi ? 0x34 : 0x30;
	g[1] = 0xff;
	g[2] = glen >> 8;
	g[3] = glen;
	g[4] = r->teid >> 24;
	g[5] = r->teid >> 16;
	g[6] = r->teid >> 8;
	g[7] = r->teid;
	if (r->qfi) {
		g[8] = 0;
		g[9] = 0;
		g[10] = 0;
		g[11] = 0x85;
		g[12] = 1;
		g[13] = 0; // DL PDU SESSION INFORMATION
		g[14] = (r->qfi & 0x3f) | (r->flags & FP_RQI ? 0x40 : 0);
		g[15] = 0;
	}
	return out(ctx, e);
}

// owned reports whether a packet is Sluice's: on an N3 port, UDP to
// port 2152 of a steered address (not a fragment); on an N6 port, to a
// steered prefix. The rest goes to the kernel. These are the steering
// program's rules.
static __always_inline int owned(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + ETH_LEN > end)
		return 0;
	__u8 *eth = data;
	__u16 et = ((__u16)eth[12] << 8) | eth[13];
	__u8 *ip = data + ETH_LEN;
	if (et == ETH_P_IP) {
		if ((void *)(ip + IP4_LEN) > end || ip[0] >> 4 != 4)
			return 0;
		if (role_n3) {
			if (ip[9] != PROTO_UDP || (ip[6] & 0x3f) || ip[7])
				return 0;
			__u32 ihl = (ip[0] & 0x0f) * 4;
			if (ihl < IP4_LEN)
				return 0;
			__u8 *udp = ip + ihl;
			if ((void *)(udp + UDP_LEN) > end)
				return 0;
			if (udp[2] != (GTPU_PORT >> 8) || udp[3] != (GTPU_PORT & 0xff))
				return 0;
		}
		struct lpm4 k = {.prefixlen = 32, .addr = *(__u32 *)(ip + 16)};
		return bpf_map_lookup_elem(&sluice_dst4, &k) != 0;
	}
	if (et == ETH_P_IPV6) {
		if ((void *)(ip + IP6_LEN) > end || ip[0] >> 4 != 6)
			return 0;
		if (role_n3) {
			if (ip[6] != PROTO_UDP)
				return 0;
			__u8 *udp = ip + IP6_LEN;
			if ((void *)(udp + UDP_LEN) > end)
				return 0;
			if (udp[2] != (GTPU_PORT >> 8) || udp[3] != (GTPU_PORT & 0xff))
				return 0;
		}
		struct lpm6 k = {.prefixlen = 128};
		__builtin_memcpy(k.addr, ip + 24, 16);
		return bpf_map_lookup_elem(&sluice_dst6, &k) != 0;
	}
	return 0;
}

SEC("xdp")
int sluice_xdp(struct xdp_md *ctx)
{
	if (!owned(ctx))
		return XDP_PASS;
	if (fast) {
		// A span, as a worker's (flowtable WorkerCounters.Enter): odd
		// while the program may count with rules it looked up. The
		// locked add is a full barrier.
		__u32 cpu = bpf_get_smp_processor_id();
		__u64 *span = bpf_map_lookup_elem(&fp_spans, &cpu);
		if (span) {
			__sync_fetch_and_add(span, 1);
			__u32 base = cpu * cells_per_cpu;
			int rc = role_n3 ? uplink(ctx, base) : downlink(ctx, base);
			__sync_fetch_and_add(span, 1);
			if (rc >= 0)
				return rc;
		}
	}
	stat_add(ST_TO_USER, ctx->data_end - ctx->data);
	if (steer_action)
		return steer_action;
	return bpf_redirect_map(&sluice_xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
