// Package tcpproxy terminates the TCP connections of UEs in user space and
// relays them over a second connection to the server (split TCP), on
// gVisor's TCP/IP stack.
//
// A Proxy belongs to one dataplane worker and is its RoleProxy port: the
// worker steers the TCP packets of rules whose FAR names a forwarding
// policy into it (Steer), and receives its output (Receive). For each
// policy the proxy serves (a Profile) it runs two stacks, one per leg:
// the UE's stack accepts any connection a UE opens, with the server's
// address and port, and the data network's stack opens the connection to
// the server from the UE's address and port, so the server sees the UE.
// The UE's SYN is answered only once the server has accepted; a refused
// or unreachable server gives the UE a RST. Each leg negotiates its own
// MSS, window scale, SACK and timestamps and runs its own congestion
// control and buffers; FIN (half-close) and RST pass from one leg to the
// other.
//
// Limits: at most MaxConns relayed connections, and no more than
// MaxMemory of buffers, per Proxy; a flow beyond them is passed through
// unproxied (counted), as are connections a server opens toward a UE. At
// most MaxHalfOpen SYNs wait for their server at a time; beyond them SYNs
// are dropped (the UE retransmits), so a SYN flood exhausts neither
// goroutines nor connection slots.
//
// Goroutines: Steer, Receive, Free and PollFD are called by the worker
// that owns the proxy; each relayed connection has two goroutines copying
// between its legs; gVisor runs its own. Stats and Close are safe from any
// goroutine.
package tcpproxy
