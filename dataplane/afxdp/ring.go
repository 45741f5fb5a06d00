package afxdp

import "sync/atomic"

// desc is an rx or tx ring descriptor, laid out as the kernel's struct
// xdp_desc (checked against unix.XDPDesc in socket_linux.go).
type desc struct {
	addr    uint64 // UMEM offset of the packet's first octet
	len     uint32
	options uint32
}

// ringNeedWakeup is XDP_RING_NEED_WAKEUP: the kernel sets it in a ring's
// flags word when it will not look at the ring again until woken.
const ringNeedWakeup = 1

// ring is one side of a single-producer single-consumer ring shared with the
// kernel: Sluice is the producer of the fill and tx rings and the consumer of
// the rx and completion rings.
//
// The producer and consumer words live in shared memory and are only touched
// through sync/atomic, once per burst: the producer publishes entries with a
// store after writing them (release) and the consumer reads entries only
// after loading the producer index (acquire); symmetrically for giving
// entries back. Between bursts Sluice works on cached copies of both
// indices, so the common path does no other atomic operation.
//
// A ring is owned by one goroutine (the worker serving its queue) and is not
// safe for concurrent use.
type ring[T any] struct {
	producer *uint32 // shared with the kernel
	consumer *uint32 // shared with the kernel
	flags    *uint32 // shared with the kernel; read only
	entries  []T     // len is a power of two
	mask     uint32

	// For a ring Sluice produces: the next index to write, and the kernel's
	// consumer index plus the ring size (so free = cachedCons-cachedProd).
	// For a ring Sluice consumes: the kernel's producer index as last seen,
	// and the next index to read.
	cachedProd uint32
	cachedCons uint32
}

// newProdRing returns the producer side of a ring over shared memory:
// Sluice writes entries and advances producer.
func newProdRing[T any](producer, consumer, flags *uint32, entries []T) ring[T] {
	r := newRing(producer, consumer, flags, entries)
	r.cachedCons += uint32(len(entries))
	return r
}

// newConsRing returns the consumer side of a ring over shared memory:
// the kernel writes entries and Sluice advances consumer.
func newConsRing[T any](producer, consumer, flags *uint32, entries []T) ring[T] {
	return newRing(producer, consumer, flags, entries)
}

func newRing[T any](producer, consumer, flags *uint32, entries []T) ring[T] {
	if n := len(entries); n == 0 || n&(n-1) != 0 {
		panic("afxdp: ring size is not a power of two")
	}
	return ring[T]{
		producer:   producer,
		consumer:   consumer,
		flags:      flags,
		entries:    entries,
		mask:       uint32(len(entries) - 1),
		cachedProd: atomic.LoadUint32(producer),
		cachedCons: atomic.LoadUint32(consumer),
	}
}

// size is the number of entries the ring holds.
func (r *ring[T]) size() uint32 { return uint32(len(r.entries)) }

// free returns how many of n entries can be produced now. It loads the
// kernel's consumer index only when the cached one does not show n free.
func (r *ring[T]) free(n uint32) uint32 {
	free := r.cachedCons - r.cachedProd
	if free >= n {
		return n
	}
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size()
	return min(r.cachedCons-r.cachedProd, n)
}

// prodEntry returns the i-th entry after the producer index; i must be
// below what free returned.
func (r *ring[T]) prodEntry(i uint32) *T {
	return &r.entries[(r.cachedProd+i)&r.mask]
}

// submit publishes n written entries to the kernel.
func (r *ring[T]) submit(n uint32) {
	r.cachedProd += n
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// available returns how many of n entries can be consumed now. It loads the
// kernel's producer index only when the cached one does not show n ready.
func (r *ring[T]) available(n uint32) uint32 {
	avail := r.cachedProd - r.cachedCons
	if avail >= n {
		return n
	}
	r.cachedProd = atomic.LoadUint32(r.producer)
	return min(r.cachedProd-r.cachedCons, n)
}

// consEntry returns the i-th entry after the consumer index; i must be
// below what available returned.
func (r *ring[T]) consEntry(i uint32) *T {
	return &r.entries[(r.cachedCons+i)&r.mask]
}

// release gives n consumed entries back to the kernel.
func (r *ring[T]) release(n uint32) {
	r.cachedCons += n
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// needWakeup reports whether the kernel asked to be woken for this ring.
func (r *ring[T]) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&ringNeedWakeup != 0
}
