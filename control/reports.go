package control

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// Usage reporting. The table counts each URR's traffic (cumulative since
// the URR was created); control keeps, per URR, the cumulative values at
// its last report, so each report covers the usage since the previous one
// (TS 29.244 5.2.2). A report loop ticking every Options.ReportInterval
// evaluates only the URRs that need it (the watch list: URRs with volume,
// time, periodic, start/stop, quota holding or validity triggers, or a
// duration measurement); the others report only when queried, removed or
// deleted. Of the watch list, the loop reads in a round only the hot
// URRs: those whose session counted traffic in this round or the one
// before (flowtable.Table.SweepMoved names the sessions; a second read
// catches counts that were not yet visible at the first), those active
// (traffic within the inactivity time, so that its end is seen), and those
// with something on the clock (duration metering, quota holding or
// validity time). An idle URR with volume triggers costs nothing. URRs
// with a periodic trigger wait in a heap by deadline as well, and are
// read when their period ends; those whose only such trigger is periodic
// are not in the watch list at all, and the loop sleeps until the next
// deadline when nothing is watched. For those, Time of First Packet in a period after the
// first with traffic is accurate to the period rather than the tick.
//
// Time is metered at the loop's granularity: a URR accrues the elapsed
// time of a tick when a packet arrived during it, or when its previous
// packet is within its Inactivity Detection Time (with none, time runs on
// from the first packet). Time of First Packet is exact for the first
// report of a URR and accurate to one tick afterwards.

// Usage Report Trigger bits (TS 29.244 8.2.41), octet 5 in the low byte.
const (
	utPERIO = 1 << 0
	utVOLTH = 1 << 1
	utTIMTH = 1 << 2
	utQUHTI = 1 << 3
	utSTART = 1 << 4
	utSTOPT = 1 << 5
	utIMMER = 1 << 7
	utVOLQU = 1 << 8
	utTIMQU = 1 << 9
	utTERMR = 1 << 11
	utQUVTI = 1 << 19
)

// urrTrack is a URR's reporting state. Guarded by Server.mu.
type urrTrack struct {
	sess *session
	id   uint32
	seq  uint32 // UR-SEQN of the next report

	mnop, quvti bool
	validity    time.Duration

	base  flowtable.Usage // cumulative usage at the last report
	start int64           // table clock of the last report (or creation)
	first int64           // first packet of the current period; 0: none yet
	dur   time.Duration   // time metered since the last report

	qbase  flowtable.Usage // cumulative usage when the quota was provisioned
	qstart int64
	qdur   time.Duration

	lastTick  int64 // last accrual
	lastPkt   int64 // Last of the usage at the last accrual
	nextPerio int64
	active    bool // traffic flowing (start/stop of traffic)
	exhausted bool // volume or time quota used up: the PDRs are gated
	held      bool // quota holding time reported; re-armed by traffic
	vfired    bool // validity time reported

	// What the URR needs read, set by rewatch: volume triggers (VOLTH,
	// VOLQU); edges, the start or end of its traffic (START, STOPT, or
	// duration metered with an inactivity time); a duration measurement
	// (with its inactivity time, and whether a time trigger or quota
	// reads it); a periodic trigger; the quota holding time (0: none).
	volume, edges, duration, timed, periodic bool
	inact, holding                           int64
	// ceiling bounds the URR's traffic: the sum over the PDRs that
	// count into it of their lowest MBR, in octets per ns (0: some PDR
	// has none), and burst the octets the meters let through ahead of
	// it. notBefore is the table clock before which its volume triggers
	// cannot fire, from its usage at the last read (0: now).
	ceiling, burst float64
	notBefore      int64

	hotIdx   int    // index in Server.hot; -1 when not in it
	hotUntil uint64 // keep it hot while Server.rounds is at most this
	watchIdx int    // index in Server.watch; -1 when not watched
	perioIdx int    // index in Server.perio; -1 when not in it
	phase    int64  // offset of its periodic deadlines in ReportInterval
	deadline int64  // table clock of its next periodic evaluation (in Server.perio)

	// due are the Usage Report Trigger bits of a report waiting for the
	// peer's window (the session is in its reportQueue); triggers that
	// fire meanwhile join them, so a slow SMF gets fewer, larger reports.
	due uint32
	// carry is the usage of reports the SMF never answered (abandoned
	// after N1 retransmissions): the next report of the URR adds it, so
	// the SMF's totals stay exact. carryStart is the earliest abandoned
	// period's start (0: nothing carried).
	carry      flowtable.Usage
	carryDur   time.Duration
	carryStart int64
}

// reported is what one usage report in a Session Report Request covered,
// for carrying it over if the request is abandoned.
type reported struct {
	urr   uint32
	usage flowtable.Usage
	dur   time.Duration
	start int64
}

// tracker returns a session's URR tracker by URR ID.
func (sess *session) tracker(id uint32) *urrTrack {
	for _, tr := range sess.urrs {
		if tr.id == id {
			return tr
		}
	}
	return nil
}

// urr returns a URR of the session's spec.
func (sess *session) urr(id uint32) *flowtable.URR {
	for i := range sess.spec.URRs {
		if sess.spec.URRs[i].ID == id {
			return &sess.spec.URRs[i]
		}
	}
	return nil
}

// trackerOf returns the tracker of an installed session's URR, or nil.
// Caller holds s.mu.
func (s *Server) trackerOf(seid uint64, id uint32) *urrTrack {
	if sess := s.sessions[seid]; sess != nil {
		return sess.tracker(id)
	}
	return nil
}

// commitURRs brings the trackers in line with a committed request: removed
// URRs lose theirs, new URRs get one, re-provisioned quotas restart.
// modify is false for an establishment, whose URRs all start from zero.
// Caller holds s.mu.
func (s *Server) commitURRs(sess *session, t *txn, now int64, modify bool) {
	for _, id := range t.removed {
		if tr := sess.tracker(id); tr != nil {
			s.unwatch(tr)
			sess.urrs = slices.DeleteFunc(sess.urrs, func(x *urrTrack) bool { return x == tr })
		}
	}
	for _, c := range t.urrs {
		tr := sess.tracker(c.id)
		switch {
		case tr == nil:
			tr = &urrTrack{sess: sess, id: c.id, watchIdx: -1, perioIdx: -1, hotIdx: -1, start: now, lastTick: now, qstart: now}
			sess.urrs = append(sess.urrs, tr)
			if modify {
				// A URR re-created under an ID the session used keeps
				// its table counter: start from where it is.
				if u, err := s.tbl.URRUsage(sess.seid, c.id); err == nil {
					tr.base, tr.qbase, tr.lastPkt = u, u, int64(u.Last)
				}
			}
		case c.quotaSet:
			if u, err := s.tbl.URRUsage(sess.seid, c.id); err == nil {
				tr.qbase = u
			}
			// effective() left the quota gate out of the installed rules.
			tr.qstart, tr.qdur, tr.held, tr.vfired, tr.exhausted = now, 0, false, false, false
		}
		tr.mnop, tr.validity, tr.quvti = c.mnop, c.validity, c.quvti
		s.rewatch(tr)
	}
	// Any change (a QER's MBR, the QERs or URRs of a PDR) may raise what
	// a URR can count: its bound is taken again, and the session woken.
	for _, tr := range sess.urrs {
		tr.ceiling, tr.burst = ceilingOf(&sess.spec, tr.id)
		tr.notBefore = 0
	}
	if sess.snoozed != 0 {
		sess.snoozed = 0
		s.tbl.Snooze(sess.seid, 0)
	}
}

// rewatch puts a tracker where its URR needs it: in the watch list (and
// hot for the next round) when some trigger or measurement needs the
// usage every ReportInterval, in the periodic heap when it has a
// Measurement Period (whose deadlines it is read at), or in neither.
func (s *Server) rewatch(tr *urrTrack) {
	u := tr.sess.urr(tr.id)
	polled := u != nil && (u.Method&flowtable.MeasureDuration != 0 || tr.quvti ||
		u.Triggers&(flowtable.TriggerVolumeThreshold|flowtable.TriggerVolumeQuota|
			flowtable.TriggerTimeThreshold|flowtable.TriggerTimeQuota|flowtable.TriggerStartOfTraffic|
			flowtable.TriggerStopOfTraffic|flowtable.TriggerQuotaHoldingTime) != 0)
	periodic := u != nil && u.Triggers&flowtable.TriggerPeriodic != 0 && u.MeasurementPeriod > 0
	if periodic && tr.nextPerio == 0 {
		tr.nextPerio = tr.start + int64(u.MeasurementPeriod)
	}
	if u != nil {
		tr.periodic = periodic
		tr.volume = u.Triggers&(flowtable.TriggerVolumeThreshold|flowtable.TriggerVolumeQuota) != 0
		tr.duration = u.Method&flowtable.MeasureDuration != 0
		tr.timed = u.Triggers&(flowtable.TriggerTimeThreshold|flowtable.TriggerTimeQuota) != 0
		tr.inact, tr.holding = int64(u.InactivityTime), 0
		tr.edges = u.Triggers&(flowtable.TriggerStartOfTraffic|flowtable.TriggerStopOfTraffic) != 0 ||
			tr.duration && tr.inact > 0
		if u.Triggers&flowtable.TriggerQuotaHoldingTime != 0 {
			tr.holding = int64(u.QuotaHoldingTime)
		}
	}
	switch {
	case polled:
		if tr.watchIdx < 0 {
			tr.watchIdx = len(s.watch)
			s.watch = append(s.watch, tr)
			if len(s.watch) == 1 {
				s.wake()
			}
		}
		s.heat(tr)
	default:
		s.unwatch(tr)
	}
	if periodic {
		s.queuePerio(tr)
	} else {
		s.unqueuePerio(tr)
	}
}

// unwatch removes a tracker from the watch list (swap with the last), from
// the hot list, and from the periodic heap.
func (s *Server) unwatch(tr *urrTrack) {
	s.unqueuePerio(tr)
	s.unheat(tr)
	i := tr.watchIdx
	if i < 0 {
		return
	}
	last := len(s.watch) - 1
	s.watch[i] = s.watch[last]
	s.watch[i].watchIdx = i
	s.watch[last] = nil
	s.watch = s.watch[:last]
	tr.watchIdx = -1
}

// heat makes a watched tracker hot for the rest of this round and the
// next: it is read in this round if its place in the hot list is not
// passed yet, else in the next.
func (s *Server) heat(tr *urrTrack) {
	tr.hotUntil = s.rounds + 1
	if tr.hotIdx >= 0 {
		return
	}
	tr.hotIdx = len(s.hot)
	s.hot = append(s.hot, tr)
}

// unheat takes a tracker out of the hot list. The list stays split into
// the URRs read this round (hot[:hotPos]) and the rest.
func (s *Server) unheat(tr *urrTrack) {
	i := tr.hotIdx
	if i < 0 {
		return
	}
	move := func(from, to int) {
		s.hot[to] = s.hot[from]
		s.hot[to].hotIdx = to
	}
	if i < s.hotPos {
		s.hotPos--
		move(s.hotPos, i)
		i = s.hotPos
	}
	last := len(s.hot) - 1
	if i != last {
		move(last, i)
	}
	s.hot[last] = nil
	s.hot = s.hot[:last]
	tr.hotIdx = -1
}

// wakeSession is told that a session's counters moved. Its watched URRs
// that must see traffic at once turn hot: those with edges (the start and
// end of traffic) and those whose volume triggers may fire by now. The
// others (volume triggers that cannot fire before notBefore, duration
// without an inactivity time, which accrues at any read, periodic
// triggers, read at their deadlines) note only that traffic came within
// the last round, for the time of its first packet. Report loop only;
// caller holds s.mu.
func (s *Server) wakeSession(seid uint64) {
	sess := s.sessions[seid]
	if sess == nil {
		return
	}
	now := s.tbl.Now()
	for _, tr := range sess.urrs {
		if tr.watchIdx < 0 {
			continue
		}
		if tr.hotIdx < 0 && (!tr.duration || tr.inact > 0) {
			// A cold URR last accrued a round ago at the latest.
			tr.lastTick = max(tr.lastTick, now-int64(s.o.ReportInterval))
		}
		if tr.edges || tr.volume && now >= tr.notBefore {
			s.heat(tr)
		}
	}
}

// snooze tells the table not to name a session for its traffic before
// its watched URRs need it: the earliest time a volume trigger may fire,
// or at once when one has edges, a quota holding time (re-armed by
// traffic), or a time trigger waiting for the first packet to start its
// clock. Its other watched URRs are read at their deadlines. Report loop
// only; caller holds s.mu.
func (s *Server) snooze(sess *session) {
	until := int64(math.MaxInt64)
	for _, tr := range sess.urrs {
		switch {
		case tr.watchIdx < 0:
		case tr.edges, tr.holding > 0, tr.timed && tr.lastPkt == 0:
			until = 0
		case tr.volume:
			until = min(until, tr.notBefore)
		}
	}
	if until != sess.snoozed {
		sess.snoozed = until
		s.tbl.Snooze(sess.seid, until)
	}
}

// ceilingOf returns the most traffic URR id of a session can count: the
// sum over the PDRs that count into it of their lowest MBR (in octets per
// ns; 0 when one has none, or no PDR counts into it), and the octets the
// meters let through ahead of those rates.
func ceilingOf(spec *flowtable.Session, id uint32) (ceiling, burst float64) {
	for i := range spec.PDRs {
		p := &spec.PDRs[i]
		if !slices.Contains(p.URRIDs, id) {
			continue
		}
		uplink := p.PDI.SourceInterface == flowtable.Access
		var lowest uint64 // bits per second; 0: none
		for _, q := range spec.QERs {
			if !slices.Contains(p.QERIDs, q.ID) {
				continue
			}
			mbr := q.MBRDL
			if uplink {
				mbr = q.MBRUL
			}
			if mbr != 0 && (lowest == 0 || mbr < lowest) {
				lowest = mbr
			}
		}
		if lowest == 0 {
			return 0, 0
		}
		r := float64(lowest) / 8e9
		ceiling += r
		burst += r*float64(meterBurst) + 2*maxPacket
	}
	return ceiling, burst
}

// meterBurst and maxPacket bound what a meter lets through ahead of its
// rate, with room to spare: its bucket holds 10 ms of traffic (or a few
// packets at low rates), and a change of rules or of tier may start a
// new, full one.
const (
	meterBurst = 4 * 10 * time.Millisecond
	maxPacket  = 3 * 9216
)

// volumeDeadline returns the table clock before which no volume trigger
// of a URR can fire, given its cumulative usage cur read at now: the time
// its ceiling needs to fill what is left below the nearest threshold or
// quota, taken at one and a half times its rate. It returns now when
// that is not known or within a ReportInterval.
func (s *Server) volumeDeadline(tr *urrTrack, u *flowtable.URR, cur flowtable.Usage, now int64) int64 {
	if tr.ceiling == 0 || !tr.volume {
		return now
	}
	left := uint64(math.MaxUint64)
	if u.Triggers&flowtable.TriggerVolumeThreshold != 0 {
		left = min(left, room(sub(cur, tr.base), u.VolumeThreshold))
	}
	if u.Triggers&flowtable.TriggerVolumeQuota != 0 && !tr.exhausted {
		left = min(left, room(sub(cur, tr.qbase), u.VolumeQuota))
	}
	t := (float64(left) - tr.burst) / (1.5 * tr.ceiling)
	if t < float64(s.o.ReportInterval) {
		return now
	}
	return now + int64(min(t, float64(time.Hour)))
}

// room returns the octets a usage may grow by before it meets a volume
// limit that is set (MaxUint64 when none is).
func room(d flowtable.Usage, v flowtable.Volume) uint64 {
	left := uint64(math.MaxUint64)
	for _, c := range [...]struct{ limit, used uint64 }{{v.Total, d.TotalBytes()}, {v.Uplink, d.ULBytes}, {v.Downlink, d.DLBytes}} {
		if c.limit > 0 {
			left = min(left, c.limit-min(c.limit, c.used))
		}
	}
	return left
}

// newRound starts a round of the hot list: the URRs that stay hot are
// kept (those woken in the round that ends, active ones, and those with
// something on the clock), the others go cold until their session counts
// again or a deadline of theirs comes. Report loop only; caller holds
// s.mu.
func (s *Server) newRound(now int64) {
	s.rounds++
	s.round = s.swept + 1
	kept := s.hot[:0]
	for _, tr := range s.hot {
		if s.staysHot(tr, now) {
			tr.hotIdx = len(kept)
			kept = append(kept, tr)
		} else {
			tr.hotIdx = -1
		}
	}
	clear(s.hot[len(kept):])
	s.hot, s.hotPos = kept, 0
}

// staysHot reports whether a hot URR is read in the new round: it was
// woken in the round that ends; it is active and has edges; or something of it runs on
// the clock: a duration measurement with traffic seen, while time accrues
// (within the inactivity time, or always without one when a time trigger
// or quota needs it); a quota holding time or validity time not yet
// reported.
func (s *Server) staysHot(tr *urrTrack, now int64) bool {
	switch {
	case tr.hotUntil >= s.rounds, tr.active && tr.edges:
		return true
	case tr.duration && tr.lastPkt != 0:
		if tr.inact > 0 {
			return now-tr.lastPkt <= tr.inact+int64(s.o.ReportInterval)
		}
		return tr.timed
	case tr.holding > 0 && !tr.held, tr.quvti && tr.validity > 0 && !tr.vfired:
		return true
	}
	return false
}

// queuePerio puts a periodic-only tracker in the periodic heap, or moves
// it there, at its next deadline. A tracker's deadline is its nextPerio
// rounded up to its phase (a point of the ReportInterval given to it on
// entry, round robin over the slots), so that the periodic reports of
// sessions set up together go out spread over an interval, as with the
// watch list's slots, and each goes at most one ReportInterval late.
func (s *Server) queuePerio(tr *urrTrack) {
	if tr.perioIdx < 0 {
		slots := s.reportSlots()
		step := int64(s.o.ReportInterval) / int64(slots)
		tr.phase = s.phaseSeq % int64(slots) * step
		s.phaseSeq++
	}
	tr.deadline = roundUp(tr.nextPerio, tr.phase, int64(s.o.ReportInterval))
	if tr.perioIdx < 0 {
		heap.Push(&s.perio, tr)
	} else {
		heap.Fix(&s.perio, tr.perioIdx)
	}
	if tr.perioIdx == 0 {
		s.wake()
	}
}

// unqueuePerio takes a tracker out of the periodic heap.
func (s *Server) unqueuePerio(tr *urrTrack) {
	if tr.perioIdx >= 0 {
		heap.Remove(&s.perio, tr.perioIdx)
	}
}

// roundUp returns the first time at or after t that is phase past a
// multiple of every.
func roundUp(t, phase, every int64) int64 {
	off := t - phase
	if off <= 0 {
		return phase
	}
	return phase + (off+every-1)/every*every
}

// wake tells the report loop that its next deadline may have moved
// earlier. Caller holds s.mu.
func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// perioHeap is a min-heap of trackers by deadline (container/heap);
// each tracker's perioIdx is its index. Guarded by Server.mu.
type perioHeap []*urrTrack

func (h perioHeap) Len() int           { return len(h) }
func (h perioHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h perioHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].perioIdx, h[j].perioIdx = i, j
}
func (h *perioHeap) Push(x any) {
	tr := x.(*urrTrack)
	tr.perioIdx = len(*h)
	*h = append(*h, tr)
}
func (h *perioHeap) Pop() any {
	old := *h
	tr := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	tr.perioIdx = -1
	return tr
}

// accrue meters time and notes new packets up to now.
func (tr *urrTrack) accrue(u *flowtable.URR, cur flowtable.Usage, now int64) (newPkts bool) {
	last := int64(cur.Last)
	newPkts = last > tr.lastPkt
	if newPkts && tr.first == 0 {
		if f := int64(cur.First); f > tr.base.Last.Nanoseconds() && f >= tr.start || tr.base.Last == 0 && f != 0 {
			tr.first = f
		} else {
			tr.first = max(tr.lastTick, tr.start)
		}
	}
	if u != nil && u.Method&flowtable.MeasureDuration != 0 && now > tr.lastTick {
		on := newPkts || tr.lastPkt != 0 && (u.InactivityTime == 0 || now-tr.lastPkt <= int64(u.InactivityTime))
		if on {
			d := time.Duration(now - tr.lastTick)
			if newPkts && tr.lastPkt == 0 && tr.first > tr.lastTick {
				d = time.Duration(now - tr.first) // the very first packet
			}
			tr.dur += d
			tr.qdur += d
		}
	}
	tr.lastTick = now
	if newPkts {
		tr.lastPkt = last
	}
	return newPkts
}

// evaluate checks a watched URR's triggers and returns the Usage Report
// Trigger bits that fire (0: none) and the usage read.
func (s *Server) evaluate(tr *urrTrack, now int64) (uint32, flowtable.Usage) {
	u := tr.sess.urr(tr.id)
	if u == nil {
		return 0, flowtable.Usage{}
	}
	cur, err := s.tbl.URRUsage(tr.sess.seid, tr.id)
	if err != nil {
		return 0, cur
	}
	newPkts := tr.accrue(u, cur, now)
	var trig uint32
	tg := u.Triggers
	d := sub(cur, tr.base)
	if tg&flowtable.TriggerVolumeThreshold != 0 && reached(d, u.VolumeThreshold) {
		trig |= utVOLTH
	}
	if tg&flowtable.TriggerTimeThreshold != 0 && u.TimeThreshold > 0 && tr.dur >= u.TimeThreshold {
		trig |= utTIMTH
	}
	if !tr.exhausted {
		if tg&flowtable.TriggerVolumeQuota != 0 && reached(sub(cur, tr.qbase), u.VolumeQuota) {
			trig |= utVOLQU
			tr.exhausted = true
		}
		if tg&flowtable.TriggerTimeQuota != 0 && u.TimeQuota > 0 && tr.qdur >= u.TimeQuota {
			trig |= utTIMQU
			tr.exhausted = true
		}
	}
	if tg&flowtable.TriggerPeriodic != 0 && u.MeasurementPeriod > 0 && tr.nextPerio != 0 && now >= tr.nextPerio {
		trig |= utPERIO
		for tr.nextPerio <= now {
			tr.nextPerio += int64(u.MeasurementPeriod)
		}
	}
	inact := int64(u.InactivityTime)
	if inact == 0 {
		inact = int64(DefaultInactivity)
	}
	switch {
	case newPkts && !tr.active:
		tr.active = true
		if tg&flowtable.TriggerStartOfTraffic != 0 {
			trig |= utSTART
		}
	case !newPkts && tr.active && now-tr.lastPkt > inact:
		tr.active = false
		if tg&flowtable.TriggerStopOfTraffic != 0 {
			trig |= utSTOPT
		}
	}
	if newPkts {
		tr.held = false
	} else if tg&flowtable.TriggerQuotaHoldingTime != 0 && u.QuotaHoldingTime > 0 && !tr.held &&
		now-max(tr.lastPkt, tr.qstart) >= int64(u.QuotaHoldingTime) {
		trig |= utQUHTI
		tr.held = true
	}
	if tr.quvti && tr.validity > 0 && !tr.vfired && now-tr.qstart >= int64(tr.validity) {
		trig |= utQUVTI
		tr.vfired = true
	}
	return trig, cur
}

// reached reports whether a usage meets any volume limit that is set.
func reached(d flowtable.Usage, v flowtable.Volume) bool {
	return v.Total > 0 && d.TotalBytes() >= v.Total || v.Uplink > 0 && d.ULBytes >= v.Uplink ||
		v.Downlink > 0 && d.DLBytes >= v.Downlink
}

func add(a, b flowtable.Usage) flowtable.Usage {
	a.ULPackets += b.ULPackets
	a.ULBytes += b.ULBytes
	a.DLPackets += b.DLPackets
	a.DLBytes += b.DLBytes
	return a
}

func sub(a, b flowtable.Usage) flowtable.Usage {
	a.ULPackets -= b.ULPackets
	a.ULBytes -= b.ULBytes
	a.DLPackets -= b.DLPackets
	a.DLBytes -= b.DLBytes
	return a
}

// usageReport builds a Usage Report IE of type typ (within a Modification
// Response, Deletion Response or Report Request) covering the usage since
// the URR's last report plus any carried over from abandoned reports, and
// starts a new period. cur is the URR's cumulative usage now.
func (s *Server) usageReport(typ uint16, sess *session, tr *urrTrack, cur flowtable.Usage, now int64, trig uint32) *ie.IE {
	x, _ := s.usageReportOf(typ, sess, tr, cur, now, trig)
	return x
}

// usageReportOf is usageReport, also returning what the report covers.
func (s *Server) usageReportOf(typ uint16, sess *session, tr *urrTrack, cur flowtable.Usage, now int64, trig uint32) (*ie.IE, reported) {
	u := sess.urr(tr.id)
	tr.accrue(u, cur, now)
	d := add(sub(cur, tr.base), tr.carry)
	dur, start := tr.dur+tr.carryDur, tr.start
	if tr.carryStart != 0 && tr.carryStart < start {
		start = tr.carryStart
	}
	kids := make([]*ie.IE, 0, 9)
	kids = append(kids, ie.NewURRID(tr.id), ie.NewURSEQN(tr.seq),
		ie.New(ie.UsageReportTrigger, []byte{byte(trig), byte(trig >> 8), byte(trig >> 16)}),
		timestampIE(ie.StartTime, s.wall(start)), timestampIE(ie.EndTime, s.wall(now)))
	if u == nil || u.Method&flowtable.MeasureVolume != 0 {
		kids = append(kids, volumeIE(d, tr.mnop))
	}
	if u != nil && u.Method&flowtable.MeasureDuration != 0 {
		kids = append(kids, ie.NewUint32IE(ie.DurationMeasurement, uint32(dur/time.Second)))
	}
	if d.ULPackets+d.DLPackets > 0 && tr.first != 0 {
		kids = append(kids, timestampIE(ie.TimeOfFirstPacket, s.wall(tr.first)),
			timestampIE(ie.TimeOfLastPacket, s.wall(int64(cur.Last))))
	}
	tr.seq++
	tr.base, tr.start, tr.first, tr.dur = cur, now, 0, 0
	tr.carry, tr.carryDur, tr.carryStart = flowtable.Usage{}, 0, 0
	return group(typ, kids...), reported{urr: tr.id, usage: d, dur: dur, start: start}
}

// carryOver adds the usage of an abandoned report to the URR's next one.
// Caller holds s.mu.
func (tr *urrTrack) carryOver(r reported) {
	tr.carry = add(tr.carry, r.usage)
	tr.carryDur += r.dur
	if tr.carryStart == 0 || r.start < tr.carryStart {
		tr.carryStart = r.start
	}
}

// volumeIE encodes a Volume Measurement; packet counts when mnop.
func volumeIE(d flowtable.Usage, mnop bool) *ie.IE {
	b := make([]byte, 1, 49)
	b[0] = 0x07 // TOVOL, ULVOL, DLVOL
	b = binary.BigEndian.AppendUint64(b, d.TotalBytes())
	b = binary.BigEndian.AppendUint64(b, d.ULBytes)
	b = binary.BigEndian.AppendUint64(b, d.DLBytes)
	if mnop {
		b[0] |= 0x38 // TONOP, ULNOP, DLNOP
		b = binary.BigEndian.AppendUint64(b, d.ULPackets+d.DLPackets)
		b = binary.BigEndian.AppendUint64(b, d.ULPackets)
		b = binary.BigEndian.AppendUint64(b, d.DLPackets)
	}
	return ie.New(ie.VolumeMeasurement, b)
}

// reportSlot is the step of the report loop: each ReportInterval is cut
// into slots, and each slot evaluates its share of the watch list, so
// that the URRs are each evaluated once per interval but not all at the
// same instant — periodic reports of sessions set up together go out
// spread over their period, not in one burst.
const reportSlot = 10 * time.Millisecond

// reportSlots is how many slots a ReportInterval is cut into.
func (s *Server) reportSlots() int {
	return max(1, min(100, int(s.o.ReportInterval/reportSlot)))
}

// reportLoop sweeps the table for sessions whose counters moved,
// evaluates the hot URRs, a slice of the hot list per slot, the whole list
// once every ReportInterval, and the periodic URRs at their deadlines.
// Slots whose tick came late (a busy machine drops ticks) are caught up at
// the next one, so every hot URR is still evaluated once per round. It sleeps until the next slot when the
// watch list is not empty, else until the first periodic deadline, else
// until a URR is added (Server.kick). It sweeps ten times a
// ReportInterval, and with nothing hot it wakes for the sweeps only.
func (s *Server) reportLoop() {
	defer s.wg.Done()
	slots := s.reportSlots()
	step := s.o.ReportInterval / time.Duration(slots)
	t := time.NewTimer(step)
	defer t.Stop()
	start, done := time.Now(), 0 // slots evaluated since start
	// Sweeps come ten times a round: at saturation a sweep visits every
	// counter line.
	sweepEvery := s.o.ReportInterval / 10
	var swept time.Time
	for {
		select {
		case <-s.closing:
			return
		case <-s.kick:
		case <-t.C:
		}
		due := int(time.Since(start) / step)
		s.evaluatePeriodic()
		s.mu.Lock()
		watched := len(s.watch) > 0
		if watched && time.Since(swept) >= sweepEvery {
			s.swept = s.tbl.SweepMoved(s.round, s.wakeSession)
			swept = time.Now()
		}
		s.mu.Unlock()
		if !watched {
			done = due // nothing to evaluate in the slots passed
		}
		if due-done > slots {
			done = due - slots // more than a round behind: one round
		}
		for ; done < due; done++ {
			if done%slots == 0 {
				s.mu.Lock()
				s.newRound(s.tbl.Now())
				s.mu.Unlock()
			}
			s.evaluateSlot(done%slots, slots)
		}
		select {
		case <-s.kick: // its own re-queued deadlines; the state is read below
		default:
		}
		next := time.Duration(-1)
		s.mu.Lock()
		if len(s.watch) > 0 {
			next = max(0, time.Until(start.Add(time.Duration(done+1)*step)))
			if len(s.hot) == 0 {
				next = max(next, time.Until(swept.Add(sweepEvery))) // only the sweeps are due
			}
		}
		if len(s.perio) > 0 {
			if d := max(0, time.Duration(s.perio[0].deadline-s.tbl.Now())); next < 0 || d < next {
				next = d
			}
		}
		s.mu.Unlock()
		if next < 0 {
			t.Stop() // nothing due: wait for a kick
			continue
		}
		t.Reset(next)
	}
}

// evaluatePeriodic evaluates the periodic-only URRs whose deadline has
// come, in batches, and queues their reports; watched URRs whose deadline
// has come are made hot, to be read in the round's slots.
func (s *Server) evaluatePeriodic() {
	const batch = 2048
	for more := true; more; {
		s.mu.Lock()
		now := s.tbl.Now()
		for n := 0; n < batch && len(s.perio) > 0 && s.perio[0].deadline <= now; n++ {
			tr := s.perio[0]
			u := tr.sess.urr(tr.id)
			if u == nil || u.MeasurementPeriod <= 0 {
				heap.Pop(&s.perio)
				continue
			}
			if tr.watchIdx >= 0 {
				// Watched: read in the hot list, where its volume
				// triggers are checked too; it goes back in the heap
				// when read.
				heap.Pop(&s.perio)
				s.heat(tr)
				continue
			}
			s.stats.urrReads.Add(1)
			if trig, _ := s.evaluate(tr, now); trig != 0 {
				tr.due |= trig
				s.queueReport(tr.sess)
			}
			for tr.nextPerio <= now {
				tr.nextPerio += int64(u.MeasurementPeriod) // the usage was not readable
			}
			s.queuePerio(tr)
		}
		more = len(s.perio) > 0 && s.perio[0].deadline <= now
		sends := s.pumpReports()
		s.mu.Unlock()
		s.sendReports(sends)
	}
}

// evaluateSlot evaluates slot i of n of the hot list, in batches, so
// that requests are not held up long at scale; the last slot evaluates
// what is left, URRs made hot during the round included. URRs whose
// triggers fire queue their session for a Session Report Request
// (reportQueue).
func (s *Server) evaluateSlot(i, n int) {
	const batch = 2048
	for more := true; more; {
		s.mu.Lock()
		hi := len(s.hot) * (i + 1) / n
		if i == n-1 {
			hi = len(s.hot)
		}
		lo := s.hotPos
		hi = min(hi, lo+batch)
		s.hotPos = max(lo, hi)
		more = hi-lo == batch
		now := s.tbl.Now()
		var gate []*session
		for _, tr := range s.hot[lo:max(lo, hi)] {
			s.stats.urrReads.Add(1)
			wasExhausted := tr.exhausted
			trig, cur := s.evaluate(tr, now)
			if u := tr.sess.urr(tr.id); u != nil {
				tr.notBefore = s.volumeDeadline(tr, u, cur, now)
				s.snooze(tr.sess)
			}
			if tr.periodic && tr.perioIdx < 0 {
				s.queuePerio(tr) // at the deadline after the one just read
			}
			if trig == 0 {
				continue
			}
			if tr.exhausted && !wasExhausted {
				gate = append(gate, tr.sess)
			}
			tr.due |= trig
			s.queueReport(tr.sess)
		}
		for _, sess := range gate {
			if err := s.tbl.Replace(s.effective(sess, &sess.spec, nil)); err != nil {
				s.log.Error("gate session with exhausted quota", "seid", sess.seid, "err", err)
			} else {
				s.log.Info("quota exhausted: session traffic gated", "seid", sess.seid)
			}
		}
		sends := s.pumpReports()
		s.mu.Unlock()
		s.sendReports(sends)
	}
}

// reportQueue paces the usage reports to one SMF address: at most
// Options.ReportWindow Session Report Requests are outstanding, the next
// goes when an answer (or a timeout) frees a place, and sessions whose
// URRs fired meanwhile wait in order. Guarded by Server.mu.
type reportQueue struct {
	to          netip.AddrPort
	waiting     []*session // each at most once (session.reportQueued)
	outstanding int
}

// queueReport puts a session with due URR reports in its peer's queue.
// Caller holds s.mu.
func (s *Server) queueReport(sess *session) {
	if sess.reportQueued {
		return
	}
	to := s.reportDest(sess)
	q := s.reportQs[to]
	if q == nil {
		q = &reportQueue{to: to}
		s.reportQs[to] = q
	}
	sess.reportQueued = true
	q.waiting = append(q.waiting, sess)
}

// reportSend is a Session Report Request ready to go.
type reportSend struct {
	q        *reportQueue
	seid, cp uint64
	ies      []*ie.IE
	covers   []reported
}

// pumpReports builds the Session Report Requests that the peers' windows
// allow, from the usage now: a session waiting in the queue reports
// everything since its URRs' last reports. Caller holds s.mu.
func (s *Server) pumpReports() []reportSend {
	var out []reportSend
	for to, q := range s.reportQs {
		for q.outstanding < s.o.ReportWindow && len(q.waiting) > 0 {
			sess := q.waiting[0]
			q.waiting[0] = nil
			q.waiting = q.waiting[1:]
			sess.reportQueued = false
			if s.sessions[sess.seid] != sess {
				continue // deleted: its deletion report covered the usage
			}
			now := s.tbl.Now()
			x := reportSend{q: q, seid: sess.seid, cp: sess.cpSEID, ies: []*ie.IE{ie.New(ie.ReportType, []byte{0x02})}} // USAR
			for _, tr := range sess.urrs {
				if tr.due == 0 {
					continue
				}
				trig := tr.due
				tr.due = 0
				cur, err := s.tbl.URRUsage(sess.seid, tr.id)
				if err != nil {
					continue
				}
				r, c := s.usageReportOf(ie.UsageReportWithinSessionReportRequest, sess, tr, cur, now, trig)
				x.ies = append(x.ies, r)
				x.covers = append(x.covers, c)
			}
			if len(x.covers) == 0 {
				continue
			}
			q.outstanding++
			out = append(out, x)
		}
		if len(q.waiting) == 0 {
			q.waiting = nil // give a burst's backlog back
			if q.outstanding == 0 {
				delete(s.reportQs, to)
			}
		}
	}
	return out
}

// sendReports sends Session Report Requests built by pumpReports. Called
// without s.mu.
func (s *Server) sendReports(sends []reportSend) {
	for _, x := range sends {
		s.stats.usage.Add(uint64(len(x.covers)))
		start := time.Now()
		s.request(x.q.to, message.MsgTypeSessionReportRequest, func(seq uint32) []byte {
			return encode(message.MsgTypeSessionReportRequest, true, x.cp, seq, x.ies)
		}, func(r *response, err error) {
			s.stats.reportLatency.observe(x.q.to.Addr(), start, r, err)
			s.usageReportDone(x, r, err)
		})
	}
}

// usageReportDone frees the request's place in its peer's window, carries
// the usage of an abandoned report over to the URRs' next reports, handles
// the answer, and sends what the window now allows.
func (s *Server) usageReportDone(x reportSend, r *response, err error) {
	s.mu.Lock()
	x.q.outstanding--
	if s.reportQs[x.q.to] == nil {
		s.reportQs[x.q.to] = x.q // dropped while this was outstanding
	}
	if errors.Is(err, ErrTimeout) {
		s.stats.abandon(x.q.to.Addr())
		kept := 0
		if sess := s.sessions[x.seid]; sess != nil {
			for _, c := range x.covers {
				if tr := sess.tracker(c.urr); tr != nil {
					tr.carryOver(c)
					kept++
				}
			}
		}
		s.log.Warn("session report abandoned after N1 retransmissions; its usage goes into the next report",
			"seid", x.seid, "smf", x.q.to, "urrs", len(x.covers), "carried", kept)
	}
	var sends []reportSend
	if !s.closed() {
		sends = s.pumpReports()
	}
	s.mu.Unlock()
	if !errors.Is(err, ErrTimeout) {
		s.reportDone(x.seid, r, err)
	}
	s.sendReports(sends)
}

// reportDest is where a session's Session Report Requests go: the CP
// F-SEID's address when it differs from the association's, else the
// association's address. Caller holds s.mu.
func (s *Server) reportDest(sess *session) netip.AddrPort {
	if sess.cpAddr.IsValid() && sess.cpAddr != sess.assoc.addr.Addr() {
		return netip.AddrPortFrom(sess.cpAddr, DefaultPort)
	}
	return sess.assoc.addr
}

// sessionReport sends a Session Report Request and handles the answer.
func (s *Server) sessionReport(to netip.AddrPort, seid, cpSEID uint64, ies []*ie.IE) {
	start := time.Now()
	s.request(to, message.MsgTypeSessionReportRequest, func(seq uint32) []byte {
		return encode(message.MsgTypeSessionReportRequest, true, cpSEID, seq, ies)
	}, func(r *response, err error) {
		s.stats.reportLatency.observe(to.Addr(), start, r, err)
		s.reportDone(seid, r, err)
	})
}

// reportDone handles a Session Report Response. Context not found means
// the SMF no longer knows the session: Sluice deletes it too.
func (s *Server) reportDone(seid uint64, r *response, err error) {
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			s.log.Warn("session report not answered", "seid", seid, "err", err)
		}
		return
	}
	switch c := r.cause(); c {
	case ie.CauseRequestAccepted:
	case ie.CauseSessionContextNotFound:
		s.mu.Lock()
		if sess := s.sessions[seid]; sess != nil {
			s.tbl.Remove(seid)
			s.forget(sess)
			s.log.Warn("SMF does not know the session: deleted", "seid", seid)
		}
		s.mu.Unlock()
		return
	default:
		s.log.Warn("session report rejected", "seid", seid, "cause", c)
		return
	}
	s.applyReportResponse(seid, r.ies)
}

// applyReportResponse applies what a Session Report Response may carry:
// the DROBU flag and an Update BAR.
func (s *Server) applyReportResponse(seid uint64, ies []*ie.IE) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[seid]
	if sess == nil {
		return
	}
	if x := find(ies, ie.PFCPSRRspFlags); x != nil && len(x.Payload) > 0 && x.Payload[0]&0x01 != 0 {
		s.tbl.DropBuffered(seid)
	}
	x := find(ies, ie.UpdateBARWithinSessionReportResponse)
	if x == nil {
		return
	}
	next := sess.spec
	next.BARs = slices.Clone(next.BARs)
	t := &txn{s: s, spec: &next}
	if err := t.updateBAR(x); err != nil {
		s.log.Warn("Update BAR in session report response", "seid", seid, "err", err)
		return
	}
	if err := s.tbl.Replace(s.effective(sess, &next, nil)); err != nil {
		s.log.Warn("Update BAR in session report response", "seid", seid, "err", fmt.Errorf("replace session: %w", err))
		return
	}
	sess.spec = next
}

// ReportLatencyBuckets are the upper bounds, in seconds, of the buckets
// of Stats.ReportLatency: from well under a millisecond (an SMF on the
// same host) to past the default T1 × (N1+1).
var ReportLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// LatencyHistogram is the distribution of report latencies toward one
// SMF peer: the time from sending a Session Report Request to receiving
// its response, retransmissions included. Requests given up on are not in
// it (Stats counts them as timeouts).
type LatencyHistogram struct {
	// Buckets[i] counts latencies of at most ReportLatencyBuckets[i]
	// seconds and more than the bound before (not cumulative); latencies
	// past the last bound are only in Count.
	Buckets []uint64
	// Count and Sum are the number of responses and their total latency.
	Count uint64
	Sum   time.Duration
}

// observe adds the latency of a report since start to the histogram of
// peer a, when the report was answered (a malformed answer is an answer).
func (h *reportLatency) observe(a netip.Addr, start time.Time, r *response, err error) {
	if err != nil || r == nil {
		return
	}
	d := time.Since(start)
	i, _ := slices.BinarySearch(ReportLatencyBuckets, d.Seconds())
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.peers == nil {
		h.peers = make(map[netip.Addr]*LatencyHistogram)
	}
	p := h.peers[a]
	if p == nil {
		if len(h.peers) >= maxPeerStats {
			a = netip.Addr{}
		}
		if p = h.peers[a]; p == nil {
			p = &LatencyHistogram{Buckets: make([]uint64, len(ReportLatencyBuckets))}
			h.peers[a] = p
		}
	}
	if i < len(p.Buckets) {
		p.Buckets[i]++
	}
	p.Count++
	p.Sum += d
}

// reportLatency holds the report latencies per peer (past maxPeerStats
// peers, the rest share the zero address). Safe for concurrent use.
type reportLatency struct {
	mu    sync.Mutex
	peers map[netip.Addr]*LatencyHistogram // guarded by mu
}

// snapshot returns a copy of the histograms.
func (h *reportLatency) snapshot() map[netip.Addr]LatencyHistogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[netip.Addr]LatencyHistogram, len(h.peers))
	for a, p := range h.peers {
		c := *p
		c.Buckets = slices.Clone(p.Buckets)
		out[a] = c
	}
	return out
}
