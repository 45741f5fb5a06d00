package tcpproxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// Group is shared by the proxies of one UPF's workers. A connection
// belongs to the proxy of the worker that steered the UE's SYN; the
// server's packets of it may reach another worker (N6 spreads flows over
// queues by its own hash), whose proxy hands them to the owner's stack.
// Flows passed through unproxied are remembered here too, so every worker
// passes their packets. Safe for concurrent use.
type Group struct {
	members atomic.Int32
	npassed atomic.Int64 // len(passed), read without the lock

	mu        sync.RWMutex
	owners    map[flowKey]*Proxy        // relayed connections' flows
	passed    map[flowKey]*atomic.Int64 // passed flows, last seen (unix ns)
	nextSweep int64
}

// NewGroup returns an empty group; give it to the Options of every proxy
// of one UPF.
func NewGroup() *Group {
	return &Group{owners: map[flowKey]*Proxy{}, passed: map[flowKey]*atomic.Int64{}}
}

// owner returns the proxy that relays flow k, or nil.
func (g *Group) owner(k flowKey) *Proxy {
	g.mu.RLock()
	p := g.owners[k]
	g.mu.RUnlock()
	return p
}

func (g *Group) own(k flowKey, p *Proxy) {
	g.mu.Lock()
	g.owners[k] = p
	g.mu.Unlock()
}

func (g *Group) disown(k flowKey, p *Proxy) {
	g.mu.Lock()
	if g.owners[k] == p {
		delete(g.owners, k)
	}
	g.mu.Unlock()
}

// isPassed reports whether flow k is passed through, and notes it was
// seen at now.
func (g *Group) isPassed(k flowKey, now int64) bool {
	if g.npassed.Load() == 0 {
		return false
	}
	g.mu.RLock()
	t := g.passed[k]
	g.mu.RUnlock()
	if t == nil {
		return false
	}
	t.Store(now)
	return true
}

// pass remembers flow k as passed through, unless the group already
// remembers maxPassed flows.
func (g *Group) pass(k flowKey, now int64) {
	g.mu.Lock()
	if _, ok := g.passed[k]; !ok && len(g.passed) < maxPassed {
		t := new(atomic.Int64)
		t.Store(now)
		g.passed[k] = t
		g.npassed.Store(int64(len(g.passed)))
	}
	g.mu.Unlock()
}

// unpass forgets flow k (it was reset).
func (g *Group) unpass(k flowKey) {
	g.mu.Lock()
	delete(g.passed, k)
	g.npassed.Store(int64(len(g.passed)))
	g.mu.Unlock()
}

// sweep forgets passed flows idle for passIdle, at most every
// passSweepEvery.
func (g *Group) sweep(now time.Time) {
	n := now.UnixNano()
	g.mu.Lock()
	defer g.mu.Unlock()
	if n < g.nextSweep {
		return
	}
	g.nextSweep = n + passSweepEvery
	for k, t := range g.passed {
		if n-t.Load() > passIdle {
			delete(g.passed, k)
		}
	}
	g.npassed.Store(int64(len(g.passed)))
}
