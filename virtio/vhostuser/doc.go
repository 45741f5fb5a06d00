// Package vhostuser is the vhost-user control protocol (QEMU's
// docs/interop/vhost-user.rst): its messages, their encoding, and the
// frontend's side of setting a device up over a Unix socket, with memory
// and eventfd file descriptors passed as SCM_RIGHTS.
//
// Everything read from the peer is checked before it is used: a message
// header with the wrong version or a payload larger than any message's,
// a reply to another request, a payload of the wrong size, all end in an
// error, never a panic.
package vhostuser
