// Package vring is the split virtqueue (VIRTIO 1.2, section 2.7): the
// descriptor table, the available ring the driver produces and the used
// ring the device produces, with free-running 16-bit indices, and both
// sides of it. Sluice's frontend drives rings as the driver (Driver); its
// backend serves them as the device (Device); tests pair the two over
// ordinary memory.
//
// Memory ordering: each side publishes its ring index with a release store
// after writing the entries it covers, and reads the other side's index
// with an acquire load before reading the entries it covers; descriptors
// and ring entries themselves are plain accesses. The notification fields
// (used_event, avail_event and the flags words) go through the same
// helpers, and the decision to notify reads them only after a
// sequentially consistent store of the index: the full barrier the
// notification protocol needs there (without it each side can miss the
// other's update, and one sleeps on published work). Either side may
// instead publish with a release store and decide later, after a barrier
// of its own, for all it published since it last decided
// (Device.PublishUsedLater and CallAfterFence, Driver.PublishLater and
// KickAfterFence, with Fence between). Go has no 16-bit
// atomics: on amd64 the stores are a plain MOV (release) and an XCHG
// (sequentially consistent) in assembly; elsewhere a compare-and-swap on
// the aligned 32-bit word holding the field (order_unsafe.go).
//
// Hot path: a side works on shadow copies of its own index and cached
// copies of the other's, fills or drains a whole burst and then publishes
// its index once; it reloads the other side's index only when its cache
// shows nothing to do, so an empty poll costs one load and no store. With
// EVENT_IDX negotiated, a busy driver leaves used_event where it was (the
// device then stops calling) and arms it only before sleeping.
//
// A Driver or Device is owned by one goroutine and is not safe for
// concurrent use; the two sides of a ring run concurrently.
package vring
