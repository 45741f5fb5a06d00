package flowtable

import (
	"runtime"
	"time"
)

// Rules leave the table RCU-style: a writer unpublishes them (the lookup
// table stops leading to them) and the garbage collector frees them once
// no worker holds them. A worker that matched a packet before the change
// still counts it afterwards, into the old rule's counters: its verdicts
// live until it has forwarded the burst. Usage read right after the change
// would miss those counts, and nothing would read them later.
//
// So a worker brackets the work in which it matches and counts with Enter
// and Exit, a span, and a writer that reads the final usage of URRs it
// removes (Remove, ReplaceFinal) first waits, after unpublishing them, for
// every worker that is inside a span to leave it. A span that starts after
// the writer looked sees the change and cannot reach the old rules; one
// that was under way has made all its counts when it ends. Spans are
// short (one poll of the worker's ports), so is the wait; a worker outside
// a span, idle or stopped, is not waited for.

// Enter starts a span: until Exit, the worker may match packets against
// the table (MatchBatch with w, MatchTEID, MatchUE) and count them with w.
// Verdicts and rules must not be counted outside the span they were matched
// in, and the worker must not wait for the Table's writer (Install,
// Replace, Remove, ...) inside a span. Spans do not nest. Owning worker
// only.
//
// Enter is an atomic read-modify-write, a full barrier: the lookups after
// it see every change published before a writer found the worker outside
// a span.
func (w *WorkerCounters) Enter() { w.span.Add(1) }

// Exit ends the span Enter started; a writer that sees it ended sees every
// count made in it. Owning worker only.
func (w *WorkerCounters) Exit() { w.span.Add(1) }

// quiesce waits until every worker that is inside a span when quiesce
// looks at it has left that span: after it, no worker counts through
// rules unpublished before the call, and no run of the fast tier's
// program either. Caller holds t.mu.
func (t *Table) quiesce() {
	if t.fast != nil {
		t.fast.tier.Quiesce()
	}
	for _, w := range t.workers {
		s := w.span.Load()
		if s&1 == 0 {
			continue
		}
		for spins := 0; w.span.Load() == s; spins++ {
			if spins < 64 {
				runtime.Gosched()
			} else {
				time.Sleep(20 * time.Microsecond)
			}
		}
	}
}
