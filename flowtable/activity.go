package flowtable

import (
	"math/bits"
	"sync/atomic"
)

// Activity: which sessions counted URR traffic lately. A control plane
// that watches many URRs for volume triggers need not read them all every
// interval: a worker that counts into a URR marks the URR's counter line
// (one bit per line, in the worker's own counter memory), and a sweep
// takes the marks and names the sessions that own the marked lines. The
// cost of a sweep is a scan of the mark words (one bit per line of
// counters) plus the marked lines: an idle table costs almost nothing.
//
// A mark can become visible a moment before the counts it stands for (a
// worker's stores leave its store buffer in order, but a sweep may take
// the mark between a count's stores). A reader that, having learnt of a
// session, reads its URRs once in the round of the sweep and once more in
// the next round sees every count.

// sweeper is the sweeping goroutine's state (SweepMoved): it owns it.
type sweeper struct {
	n       uint32
	at      []uint32 // sweep that last named line i; 0: none
	lines   []uint32 // lines this sweep found marked, for the first time since the round began
	seids   []uint64
	workers []*WorkerCounters
}

// SweepMoved takes the marks the workers made since the previous sweep
// and calls visit with the SEID of each session whose URR counters moved
// and were not yet named in a sweep numbered since or later (a round of
// sweeps names a session once; since 0 names every marked one), unless
// the session is snoozed (Snooze). It
// returns this sweep's number, from 1. One goroutine sweeps; visit runs on
// it, without the Table's lock. A SEID may name a session removed since.
// It allocates only when the table has grown.
func (t *Table) SweepMoved(since uint32, visit func(seid uint64)) uint32 {
	sw := &t.sweep
	t.mu.Lock()
	lines := int(t.cells.next)
	sw.workers = append(sw.workers[:0], t.workers...)
	t.mu.Unlock()
	sw.n++
	if sw.n == 0 {
		clear(sw.at) // wrapped
		sw.n = 1
	}
	if len(sw.at) < lines {
		sw.at = append(sw.at, make([]uint32, lines-len(sw.at))...)
	}
	now := t.Now()
	sw.lines = sw.lines[:0]
	words := (lines + 63) / 64
	for _, w := range sw.workers {
		for ci := 0; ci*chunkLines/64 < words; ci++ {
			c := w.chunks[ci].Load()
			if c == nil {
				break
			}
			base := ci * chunkLines
			n := min(len(c.moved), words-ci*chunkLines/64)
			for i := range c.moved[:n] {
				if atomic.LoadUint64(&c.moved[i]) == 0 {
					continue
				}
				m := atomic.SwapUint64(&c.moved[i], 0)
				for ; m != 0; m &= m - 1 {
					l := base + i*64 + bits.TrailingZeros64(m)
					if l >= len(sw.at) {
						continue
					}
					if prev := sw.at[l]; prev == sw.n || prev >= since && since != 0 || t.snoozeOf(uint32(l)).Load() > now {
						continue // named already, or snoozed
					}
					sw.at[l] = sw.n
					sw.lines = append(sw.lines, uint32(l))
				}
			}
		}
	}
	if len(sw.lines) == 0 {
		return sw.n
	}
	sw.seids = sw.seids[:0]
	t.mu.Lock()
	for _, l := range sw.lines {
		if s := t.cells.owner[l]; len(sw.seids) == 0 || sw.seids[len(sw.seids)-1] != s {
			sw.seids = append(sw.seids, s)
		}
	}
	t.mu.Unlock()
	for _, s := range sw.seids {
		visit(s)
	}
	return sw.n
}

// snoozeChunk holds the Snooze times of a chunk of counter lines. The
// Table writer allocates it and zeroes the times of lines it hands out;
// Snooze sets them; sweeps read them.
type snoozeChunk [chunkLines]atomic.Int64

func (t *Table) snoozeOf(l uint32) *atomic.Int64 {
	return &t.snooze[l>>chunkLineBits].Load()[l&(chunkLines-1)]
}

// Snooze keeps SweepMoved from naming session seid for counts before
// until (Table clock): its reader knows it has nothing to do before then.
// Lines the session gets later (a Replace) are not snoozed. Safe for
// concurrent use.
func (t *Table) Snooze(seid uint64, until int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.sessions[seid]
	if !ok {
		return
	}
	for _, u := range st.urrs {
		for _, h := range u.half {
			if h != noSlot {
				t.snoozeOf(h / lineCells).Store(until)
			}
		}
	}
}
