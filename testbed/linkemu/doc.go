// Package linkemu emulates links in user space for the testbed, where the
// kernel has no netem: a Line delays the packets of one direction (a
// fixed delay with jitter), drops some at random, reorders some, and
// limits the rate with a bounded queue, all from a seed so runs repeat.
// The gNB emulator puts one on each direction of its radio leg; a Bridge
// forwards Ethernet frames between two interfaces of a namespace through
// a Line each way (the Internet leg between Sluice and the servers).
package linkemu
