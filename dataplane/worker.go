package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/sluice-net/sluice/gtpu"
)

// Role is what a port is to the UPF.
type Role uint8

const (
	// RoleN3 faces the RAN: GTP-U in and out.
	RoleN3 Role = iota
	// RoleN6 faces the data network: plain IP in and out.
	RoleN6
	// RoleN9 faces another UPF: GTP-U in and out.
	RoleN9
	// RoleProxy is a user-space TCP proxy: steered packets are
	// transmitted to it, its output is received from it (proxy.go).
	RoleProxy
)

func (r Role) String() string {
	switch r {
	case RoleN3:
		return "n3"
	case RoleN6:
		return "n6"
	case RoleN9:
		return "n9"
	case RoleProxy:
		return "proxy"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// tunnel reports whether the port carries GTP-U.
func (r Role) tunnel() bool { return r == RoleN3 || r == RoleN9 }

// PortConfig is one port queue a worker serves.
type PortConfig struct {
	Port  Port
	Queue int
	Role  Role
	// Source is the PDR source interface of packets arriving here:
	// Access for N3, Core for N6; N9 depends on the deployment.
	Source flowtable.Interface
	MAC    MAC
	// Addr4 is Sluice's IPv4 address on the port: the GTP-U endpoint and the
	// outer source address of encapsulated packets.
	Addr4     netip.Addr
	Neighbors *Neighbors
}

// WorkerConfig configures a worker.
type WorkerConfig struct {
	Table *flowtable.Table
	Ports []PortConfig
	// Egress maps a FAR's destination interface to an index in Ports, or
	// -1 when no port serves it.
	Egress [flowtable.NumInterfaces]int
	// ErrorIndicationInterval is the least time between two Error
	// Indications a worker sends for unknown TEIDs; 0 means 1 ms.
	ErrorIndicationInterval time.Duration
	// CPU pins the worker's thread when >= 0.
	CPU int
	// Nice, if not 0, is the nice value Run gives the worker's thread
	// (setpriority; a negative one needs CAP_SYS_NICE).
	Nice int
	// HandleReleases makes this worker re-inject the session buffers the
	// control plane releases; exactly one worker should.
	HandleReleases bool
	// IdlePolls is the number of empty polls before the worker sleeps on
	// its ports; 0 means the default (64).
	IdlePolls int
	// ProxyPolicies are the forwarding policies whose rules' TCP flows
	// the worker steers into its RoleProxy port, if it has one; a steered
	// packet is marked with its policy's index here (proxy.go).
	ProxyPolicies []string
	// Counters are the worker's counters in Table, taken with
	// Table.NewWorker before the sessions were installed, as upf does
	// (a rule installed after its workers gives each a chunk of meter
	// credit up front); nil: new ones.
	Counters *flowtable.WorkerCounters
}

// A burst is matched as one flowtable.Batch.
var _ = [flowtable.BatchSize - BurstSize]struct{}{}

// ErrConfig is wrapped by worker configuration errors.
var ErrConfig = errors.New("invalid worker configuration")

// Worker is one per-core packet loop. Its methods other than Stop and Stats
// readers must be called from the goroutine that runs it.
type Worker struct {
	tbl          *flowtable.Table
	ctr          *flowtable.WorkerCounters
	ports        []portState
	egress       [flowtable.NumInterfaces]int
	tunnelEgress [flowtable.NumInterfaces]int
	eiInterval   int64
	eiNext       int64
	cpu          int
	nice         int
	releases     bool
	idlePolls    int
	// nap, if set, is how long the worker sleeps after an empty poll
	// instead of polling again at once: a port's receive work runs in a
	// kernel thread that may share its CPU (KernelReceiver).
	nap time.Duration

	rx    [BurstSize]Frame
	lines [3 * BurstSize]uintptr // prefetchHeaders' addresses (128 octets span up to 3 lines)
	drops [BurstSize]Frame
	ndrop int
	batch flowtable.Batch
	pend  [BurstSize]pending // by lookup index in batch
	// heads hold what the pipeline builds for read-only frames (see
	// Frame.Head), one per frame of a burst, until the burst is flushed.
	heads [BurstSize][HeadCap]byte
	nhead int
	gtp   gtpu.Parsed
	psc   gtpu.PSC
	now   int64
	// nhAddr is scratch for the next hop of an encapsulated packet.
	nhAddr flowtable.Addr
	// proxy is the index of the RoleProxy port, or -1; proxyPolicies
	// are the policies it serves; fromProxy is set while a burst from it
	// runs (proxy.go).
	proxy         int
	proxyPort     ProxyPort
	proxyPolicies []string
	fromProxy     bool
	marks         [BurstSize]Mark

	stop atomic.Bool
	// wake is an eventfd an idle worker's sleep also waits on: Stop and
	// the table's handoffs (releases, End Markers) write it. Closed when
	// the worker is garbage.
	wake int
	// sleepMS is the timeout of the next idle sleep: it doubles while the
	// worker stays idle, up to maxSleepMS. Worker only.
	sleepMS int
	// Busy and Idle count polls that found work and polls that did not.
	Busy, Idle flowtable.Counter
	// Buffered counts packets handed to session buffers.
	Buffered flowtable.Counter
	// ErrorIndications counts Error Indications sent.
	ErrorIndications flowtable.Counter
	// EndMarkers counts End Markers sent.
	EndMarkers flowtable.Counter
}

type portState struct {
	PortConfig
	nb    neighborCache // owned by the worker
	addr4 [4]byte
	ip4   uint32 // addr4 as a big-endian word
	mac   uint64 // MAC.word
	out   [BurstSize]Frame
	nout  int
	Stats PortStats
}

// PortStats are a worker's counters for one port queue.
type PortStats struct {
	RxPackets, RxBytes, TxPackets, TxBytes flowtable.Counter
}

// NewWorker checks the configuration and registers the worker's counters
// with the table.
func NewWorker(c WorkerConfig) (*Worker, error) {
	if c.Table == nil {
		return nil, fmt.Errorf("%w: no flow table", ErrConfig)
	}
	if len(c.Ports) == 0 {
		return nil, fmt.Errorf("%w: no ports", ErrConfig)
	}
	w := &Worker{tbl: c.Table, egress: c.Egress, cpu: c.CPU, releases: c.HandleReleases,
		idlePolls: c.IdlePolls, nice: c.Nice, eiInterval: int64(c.ErrorIndicationInterval)}
	if w.eiInterval <= 0 {
		w.eiInterval = int64(time.Millisecond)
	}
	if w.idlePolls <= 0 {
		w.idlePolls = 64
	}
	// Encapsulated packets toward the core leave by the N9 port, if any.
	for i := range w.tunnelEgress {
		w.tunnelEgress[i] = -1
	}
	for i, p := range c.Ports {
		if p.Role == RoleN9 && w.tunnelEgress[flowtable.Core] < 0 {
			w.tunnelEgress[flowtable.Core] = i
		}
	}
	for i := range c.Egress {
		if e := c.Egress[i]; e >= len(c.Ports) {
			return nil, fmt.Errorf("%w: egress for %v is port %d of %d", ErrConfig, flowtable.Interface(i), e, len(c.Ports))
		}
	}
	w.ports = make([]portState, len(c.Ports))
	for i, p := range c.Ports {
		if p.Port != nil && p.Queue >= 0 && p.Queue < p.Port.Queues() && kernelReceives(p.Port, p.Queue) {
			w.nap = receiveNap
		}
		if p.Port == nil || p.Neighbors == nil {
			return nil, fmt.Errorf("%w: port %d lacks a port or neighbour table", ErrConfig, i)
		}
		if p.Queue < 0 || p.Queue >= p.Port.Queues() {
			return nil, fmt.Errorf("%w: port %s has no queue %d", ErrConfig, p.Port.Name(), p.Queue)
		}
		st := &w.ports[i]
		st.PortConfig = p
		st.mac = p.MAC.word()
		if p.Addr4.Is4() {
			st.addr4 = p.Addr4.As4()
			st.ip4 = binary.BigEndian.Uint32(st.addr4[:])
		} else if p.Role.tunnel() {
			return nil, fmt.Errorf("%w: tunnel port %s needs an IPv4 address", ErrConfig, p.Port.Name())
		}
	}
	if err := w.initProxy(&c); err != nil {
		return nil, err
	}
	w.ctr = c.Counters
	if w.ctr == nil {
		w.ctr = c.Table.NewWorker()
	}
	if err := w.openWake(); err != nil {
		return nil, err
	}
	if w.releases {
		c.Table.OnHandoff(w.kick)
	}
	return w, nil
}

// Counters returns the worker's flow table counters (drops by reason and
// per-rule counts).
func (w *Worker) Counters() *flowtable.WorkerCounters { return w.ctr }

// PortStats returns the worker's counters for its i-th port.
func (w *Worker) PortStats(i int) *PortStats { return &w.ports[i].Stats }

// Stop asks Run to return; safe from any goroutine.
func (w *Worker) Stop() {
	w.stop.Store(true)
	w.kick()
}

// Run polls the worker's ports until Stop. It locks its OS thread, pins
// it when a CPU is configured and gives it the configured nice value. A
// thread changed so is not handed back to the Go runtime for other
// goroutines: it stays locked and ends when the goroutine that called Run
// ends.
func (w *Worker) Run() error {
	runtime.LockOSThread()
	if w.cpu < 0 && w.nice == 0 && w.nap == 0 {
		defer runtime.UnlockOSThread()
	}
	if w.cpu >= 0 {
		if err := pinThread(w.cpu); err != nil {
			return fmt.Errorf("pin worker to CPU %d: %w", w.cpu, err)
		}
	}
	if w.nice != 0 {
		if err := setNice(w.nice); err != nil {
			return fmt.Errorf("set the worker's nice value to %d: %w", w.nice, err)
		}
	}
	if w.nap > 0 {
		if err := setTimerSlack(time.Microsecond); err != nil {
			return fmt.Errorf("set the worker's timer slack: %w", err)
		}
	}
	empty := 0
	w.sleepMS = minSleepMS
	busy := int64(math.MinInt64 / 2) // the clock of the last poll that found work
	for !w.stop.Load() {
		if w.Poll() > 0 {
			empty = 0
			w.sleepMS = minSleepMS
			busy = w.now
			continue
		}
		if w.nap > 0 {
			napFor(w.nap)
		}
		if empty++; empty >= w.idlePolls {
			empty = 0
			// Traffic that pauses for less than idleSpin (a peer
			// time-sliced on its core) finds the worker polling, not
			// waking from a sleep while its rings overflow.
			if w.tbl.Now()-busy < idleSpin {
				continue
			}
			w.sleep()
		}
	}
	return nil
}

// KernelReceiver is implemented by ports whose receive work for a queue
// may run in a kernel thread: an AF_XDP socket in copy mode, filled by
// its interface's NAPI, which on a shared core runs on the worker's CPU.
// A worker that polls such a queue's empty ring in a loop takes that CPU
// from the thread that would fill it. Measured on veth at 100 sessions,
// uplink, 64 octets, while the worker spun through idleSpin at nice -10:
// tens of millions of empty polls a run, the NAPI thread 0.02-0.12 of the
// CPU, 0.02-0.30 Mpps delivered, the rest dropped at the veth ring. A
// worker with such a queue sleeps receiveNap after each empty poll
// instead: about 15,000 empty polls a run, the NAPI thread 0.3 of the CPU,
// 0.17-0.51 Mpps on the same busy machine.
type KernelReceiver interface {
	KernelReceives(q int) bool
}

// kernelReceives reports whether port p, or the port it wraps (a capture
// tap's Port), receives queue q in a kernel thread.
func kernelReceives(p Port, q int) bool {
	for range 4 {
		if kr, ok := p.(KernelReceiver); ok {
			return kr.KernelReceives(q)
		}
		w, ok := p.(interface{ Port() Port })
		if !ok {
			return false
		}
		p = w.Port()
	}
	return false
}

// receiveNap is how long a worker with a KernelReceiver queue sleeps
// after an empty poll: long enough for the receive thread to fill part of
// a burst, short against the rings (4,096 frames, 4 ms at 1 Mpps).
const receiveNap = 50 * time.Microsecond

// idleSpin is how long a worker keeps polling after its last packet
// before it may sleep: a worker that slept after a fixed number of empty
// polls (microseconds) slept in every gap of bursty traffic and lost what
// arrived while it woke. A worker spins this once when traffic stops, not
// after waking with nothing to do.
const idleSpin = int64(time.Millisecond)

// Poll receives one burst from each port, processes and transmits it, and
// returns the number of frames received. Run calls it in a loop; tests and
// benchmarks call it directly.
func (w *Worker) Poll() int {
	total := 0
	span := false
	for i := range w.ports {
		in := &w.ports[i]
		n := in.Port.Receive(in.Queue, w.rx[:])
		if n == 0 {
			continue
		}
		if !span {
			w.enter()
			span = true
		}
		total += n
		var octets uint64
		lent := false
		for j := range w.rx[:n] {
			octets += uint64(w.rx[j].Len)
			lent = lent || w.rx[j].ReadOnly
		}
		in.Stats.RxPackets.Add(uint64(n))
		in.Stats.RxBytes.Add(octets)
		w.burst(i, w.rx[:n])
		w.flush()
		if lent {
			// Ports set the fields of the frames they return but need
			// not know ReadOnly: leave none set for the next port.
			for j := range w.rx[:n] {
				w.rx[j].ReadOnly = false
			}
		}
	}
	if w.releases && w.tbl.PendingReleases() {
		if !span {
			w.enter()
			span = true
		}
		total += w.reinject()
	}
	if span {
		w.ctr.Exit()
	}
	if w.releases && w.tbl.PendingEndMarkers() {
		w.sendEndMarkers()
	}
	if total > 0 {
		w.Busy.Add(1)
	} else {
		w.Idle.Add(1)
	}
	return total
}

// enter starts a poll's work: one span of the flow table (a writer that
// removes URRs waits for it to end before it reads their final usage, so
// every packet this poll counts is in their last report) and one reading
// of the clock. An idle worker spins without either.
func (w *Worker) enter() {
	w.ctr.Enter()
	w.now = w.tbl.Now()
}

// flush transmits what the burst produced and frees its drops.
func (w *Worker) flush() {
	for i := range w.ports {
		p := &w.ports[i]
		if p.nout == 0 {
			continue
		}
		var octets uint64
		for j := range p.out[:p.nout] {
			octets += uint64(p.out[j].Len)
		}
		p.Stats.TxBytes.Add(octets)
		var sent int
		if i == w.proxy {
			sent = w.flushProxy(p)
		} else {
			sent = p.Port.Transmit(p.Queue, p.out[:p.nout])
		}
		p.Stats.TxPackets.Add(uint64(sent))
		if lost := p.nout - sent; lost > 0 {
			w.ctr.Drops[DropTxFull].Add(uint64(lost))
		}
		clear(p.out[:p.nout]) // drop references to frame memory
		p.nout = 0
	}
	if w.ndrop > 0 {
		// Frames of one burst come from one port, except re-injected
		// ones, whose owner frees nothing; free each by its owner.
		start := 0
		for j := 1; j <= w.ndrop; j++ {
			if j == w.ndrop || w.drops[j].Owner != w.drops[start].Owner {
				w.drops[start].Owner.Free(w.drops[start:j])
				start = j
			}
		}
		clear(w.drops[:w.ndrop])
		w.ndrop = 0
	}
}

func (w *Worker) drop(f *Frame, r DropReason) {
	w.ctr.Drops[r].Add(1)
	w.drops[w.ndrop] = *f
	w.ndrop++
}

// heapOwner owns frames built on the Go heap (re-injected buffers).
type heapOwner struct{}

func (heapOwner) Free([]Frame) {}

// reinject runs released session buffers through the pipeline as if they
// had arrived on the first port with their source interface. It allocates:
// releasing a buffer is rare and off the forwarding path.
func (w *Worker) reinject() int {
	n := 0
	for _, rel := range w.tbl.TakeReleased() {
		in := -1
		for i := range w.ports {
			if w.ports[i].Source == rel.Source && !w.ports[i].Role.tunnel() {
				in = i
				break
			}
		}
		if in < 0 {
			w.ctr.Drops[DropNoEgress].Add(uint64(len(rel.Pkts)))
			continue
		}
		m := 0
		for _, pkt := range rel.Pkts {
			buf := make([]byte, Headroom+ethLen+len(pkt)+64)
			et := uint16(etherIPv4)
			if len(pkt) > 0 && pkt[0]>>4 == 6 {
				et = etherIPv6
			}
			putEth(buf[Headroom:], w.ports[in].MAC, MAC{}, et)
			copy(buf[Headroom+ethLen:], pkt)
			w.rx[m] = Frame{Buf: buf, Off: Headroom, Len: ethLen + len(pkt), Owner: heapOwner{}}
			if m++; m == BurstSize {
				w.burst(in, w.rx[:m])
				w.flush()
				m = 0
			}
			n++
		}
		if m > 0 {
			w.burst(in, w.rx[:m])
			w.flush()
		}
	}
	return n
}
