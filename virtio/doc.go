// Package virtio holds what both of Sluice's vhost-user roles share about
// virtio networking: the feature bits (VIRTIO 1.2, sections 5.1.3 and 6)
// and the virtio-net header that precedes every packet on a virtqueue.
//
// The split virtqueue itself is in virtio/vring; the vhost-user control
// protocol is in virtio/vhostuser; the frontend port (Sluice driving the
// rings on its own memory, attached to a vswitch's socket) is in
// virtio/frontend.
package virtio
