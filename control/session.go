package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/wmnsk/go-pfcp/ie"
	"github.com/wmnsk/go-pfcp/message"
)

// session is one PFCP session. All fields are guarded by Server.mu.
type session struct {
	seid   uint64
	assoc  *association
	cpSEID uint64
	cpAddr netip.Addr // the CP F-SEID address Session Report Requests go to
	// spec is the session's rules as the SMF defined them; the table holds
	// spec plus the quota overlay (effective).
	spec  flowtable.Session
	chids []chooseID
	urrs  []*urrTrack
	// dlReport is set while a Downlink Data Report is scheduled or sent
	// and the SMF has not changed the session's FARs since.
	dlReport bool
	// reportQueued is set while the session waits in its peer's
	// reportQueue.
	reportQueued bool
	// snoozed is the Table clock until which the table does not name the
	// session for its traffic (flowtable.Table.Snooze; 0: it does).
	// Report loop and rewatch; guarded by Server.mu.
	snoozed int64
}

// message-level IEs of session requests that Sluice does not implement:
// the request is rejected with Service not supported.
var unsupportedSessionIEs = []uint16{ie.CreateTrafficEndpoint, ie.UpdateTrafficEndpoint, ie.CreateMAR,
	ie.UpdateMAR, ie.CreateSRR, ie.UpdateSRR, ie.CreateBridgeInfoForTSC, ie.ProvideATSSSControlInformation,
	ie.ProvideRDSConfigurationInformation, ie.QueryPacketRateStatusWithinSessionModificationRequest}

func checkSessionIEs(ies []*ie.IE) error {
	if t := firstUnsupported(ies, unsupportedSessionIEs); t != 0 {
		return &causeError{Cause: ie.CauseServiceNotSupported, Offending: t, Err: fmt.Errorf("IE %d: %w", t, ErrUnsupported)}
	}
	return nil
}

// reject logs a rejected session request and builds its answer.
func (s *Server) reject(a answer, err error) answer {
	ce := asCause(err)
	a.cause = ce.Cause
	a.ies = s.rejectIEs(a.typ, ce)
	s.log.Info("rejected PFCP session request", "type", MessageTypeName(a.typ-1), "cause", ce.Cause, "err", err)
	return a
}

// handleEstablishment handles a Session Establishment Request.
func (s *Server) handleEstablishment(from netip.AddrPort, h header, ies []*ie.IE, perr error) answer {
	a := answer{typ: message.MsgTypeSessionEstablishmentResponse}
	var cp fseid
	var cpErr error
	if x := find(ies, ie.FSEID); x != nil {
		cp, cpErr = decodeFSEID(x)
		a.seid = cp.seid
	} else {
		cpErr = missing(ie.FSEID)
	}
	if perr != nil {
		return s.reject(a, perr)
	}
	nid, err := nodeIDOf(ies)
	if err != nil {
		return s.reject(a, err)
	}
	if cpErr != nil {
		return s.reject(a, cpErr)
	}
	if find(ies, ie.CreatePDR) == nil {
		return s.reject(a, missing(ie.CreatePDR))
	}
	if find(ies, ie.CreateFAR) == nil {
		return s.reject(a, missing(ie.CreateFAR))
	}
	if err := checkSessionIEs(ies); err != nil {
		return s.reject(a, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	as := s.assocs[nid.key]
	if as == nil {
		return s.reject(a, fmt.Errorf("establish session for %s: %w", nid.key, ErrNoAssociation))
	}
	seid := s.newSEID()
	sess := &session{seid: seid, assoc: as, cpSEID: cp.seid, cpAddr: cpAddrFor(cp, as)}
	sess.spec = flowtable.Session{LocalSEID: seid, RemoteSEID: cp.seid}
	sizeRules(&sess.spec, ies) // exact capacities: the spec lives as long as the session
	t := &txn{s: s, spec: &sess.spec}
	if err := t.apply(ies, false); err != nil {
		t.rollback()
		return s.reject(a, err)
	}
	if err := s.checkUEPools(&sess.spec, cp.seid); err != nil {
		t.rollback()
		return s.reject(a, err)
	}
	if err := t.reserve(nil); err != nil {
		t.rollback()
		return s.reject(a, err)
	}
	if err := s.tbl.Install(&sess.spec); err != nil {
		t.rollback()
		return s.reject(a, fmt.Errorf("install session: %w", err))
	}
	sess.chids = t.chids
	s.sessions[seid] = sess
	as.sessions++
	s.commitURRs(sess, t, s.tbl.Now(), false)

	out := make([]*ie.IE, 0, 3+len(t.created))
	out = append(out, s.nodeIE, ie.NewCause(ie.CauseRequestAccepted), s.upFSEID(seid, from.Addr()))
	out = append(out, s.createdPDRs(&sess.spec, t.created)...)
	a.cause, a.ies = ie.CauseRequestAccepted, out
	return a
}

// checkUEPools refuses a PDR that would match plain downlink packets
// arriving on N6 (source interface Core or SGi-LAN, no local F-TEID) for
// a UE address outside every UE pool: the N6 port steers only the pools'
// addresses to Sluice, so such a session's downlink would never arrive.
// The answer is Cause 73 with the PDR as Failed Rule ID, and a warning
// names the address. Without UE pools nothing is checked.
func (s *Server) checkUEPools(spec *flowtable.Session, cpSEID uint64) error {
	if len(s.o.UEPools) == 0 {
		return nil
	}
	inPool := func(p netip.Prefix) bool {
		for _, pool := range s.o.UEPools {
			if pool.Prefix.Bits() <= p.Bits() && pool.Prefix.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	for i := range spec.PDRs {
		d := &spec.PDRs[i].PDI
		if d.HasLocalTEID || d.SourceInterface != flowtable.Core && d.SourceInterface != flowtable.SGiLAN {
			continue
		}
		for _, p := range []netip.Prefix{netip.PrefixFrom(d.UEAddr4, 32), d.UEPrefix6} {
			if !p.Addr().IsValid() || inPool(p) {
				continue
			}
			s.log.Warn("session refused: its UE address lies outside every UE pool, and N6 steers only the pools to Sluice",
				"ue", p, "pdr", spec.PDRs[i].ID, "cp_seid", cpSEID)
			return ruleFailure(flowtable.KindPDR, uint32(spec.PDRs[i].ID), fmt.Errorf("UE address %v: %w", p, ErrOutsidePools))
		}
	}
	return nil
}

// controlledBy reports whether a peer may change the session: it must be
// the association's peer or the session's CP F-SEID address.
func (sess *session) controlledBy(a netip.Addr) bool {
	return a == sess.assoc.addr.Addr() || a == sess.cpAddr
}

// sizeRules allocates the rule slices of a new session for the rules a
// request creates.
func sizeRules(spec *flowtable.Session, ies []*ie.IE) {
	var n [5]int
	for _, x := range ies {
		switch x.Type {
		case ie.CreatePDR:
			n[0]++
		case ie.CreateFAR:
			n[1]++
		case ie.CreateQER:
			n[2]++
		case ie.CreateURR:
			n[3]++
		case ie.CreateBAR:
			n[4]++
		}
	}
	spec.PDRs = make([]flowtable.PDR, 0, n[0])
	spec.FARs = make([]flowtable.FAR, 0, n[1])
	if n[2] > 0 {
		spec.QERs = make([]flowtable.QER, 0, n[2])
	}
	if n[3] > 0 {
		spec.URRs = make([]flowtable.URR, 0, n[3])
	}
	if n[4] > 0 {
		spec.BARs = make([]flowtable.BAR, 0, n[4])
	}
}

// cpAddrFor picks the CP F-SEID address of the association's family.
func cpAddrFor(cp fseid, as *association) netip.Addr {
	if as.addr.Addr().Is4() && cp.v4.IsValid() || !cp.v6.IsValid() {
		return cp.v4
	}
	return cp.v6
}

// newSEID returns an unused local SEID. Caller holds s.mu.
func (s *Server) newSEID() uint64 {
	for {
		id := s.nextSEID
		s.nextSEID++
		if s.nextSEID == 0 {
			s.nextSEID = 1
		}
		if _, used := s.sessions[id]; !used && id != 0 {
			return id
		}
	}
}

// upFSEID encodes Sluice's F-SEID with the N4 address of the peer's family.
func (s *Server) upFSEID(seid uint64, peer netip.Addr) *ie.IE {
	a := s.n4v4
	if !peer.Is4() && s.n4v6.IsValid() || !a.IsValid() {
		a = s.n4v6
	}
	b := make([]byte, 9, 25)
	switch {
	case a.Is4():
		b[0] = 0x02
	case a.Is6():
		b[0] = 0x01
	}
	binary.BigEndian.PutUint64(b[1:], seid)
	b = append(b, a.AsSlice()...)
	return ie.New(ie.FSEID, b)
}

// n4Addr returns a concrete local N4 address of a family: a bound address,
// or the Node ID when it is an address.
func (s *Server) n4Addr(v4 bool) netip.Addr {
	for _, c := range s.local {
		if a := c.Addr().Unmap(); a.Is4() == v4 && !a.IsUnspecified() {
			return a
		}
	}
	if a, err := netip.ParseAddr(s.o.NodeID); err == nil && a.Unmap().Is4() == v4 {
		return a.Unmap()
	}
	return netip.Addr{}
}

// createdPDRs encodes the Created PDR (or Updated PDR) IEs of the PDRs
// whose F-TEID or UE address Sluice chose.
func (s *Server) createdPDRs(spec *flowtable.Session, cs []created) []*ie.IE {
	out := make([]*ie.IE, 0, len(cs))
	for _, c := range cs {
		i := slices.IndexFunc(spec.PDRs, func(p flowtable.PDR) bool { return p.ID == c.pdr })
		if i < 0 {
			continue // removed again later in the same request
		}
		d := &spec.PDRs[i].PDI
		kids := []*ie.IE{ie.NewPDRID(c.pdr)}
		if c.teid {
			kids = append(kids, fteidIE(d))
		}
		if c.ue {
			kids = append(kids, ueIPIE(d, c.ueSrcIsDst))
		}
		t := ie.CreatedPDR
		if c.update {
			t = ie.UpdatedPDR
		}
		out = append(out, group(t, kids...))
	}
	return out
}

func fteidIE(d *flowtable.PDI) *ie.IE {
	b := make([]byte, 5, 25)
	binary.BigEndian.PutUint32(b[1:], d.LocalTEID)
	if d.LocalAddr4.IsValid() {
		b[0] |= 0x01
		b = append(b, d.LocalAddr4.AsSlice()...)
	}
	if d.LocalAddr6.IsValid() {
		b[0] |= 0x02
		b = append(b, d.LocalAddr6.AsSlice()...)
	}
	return ie.New(ie.FTEID, b)
}

func ueIPIE(d *flowtable.PDI, sd bool) *ie.IE {
	b := make([]byte, 1, 22)
	if sd {
		b[0] |= 0x04
	}
	if d.UEAddr4.IsValid() {
		b[0] |= 0x02
		b = append(b, d.UEAddr4.AsSlice()...)
	}
	if d.UEPrefix6.IsValid() {
		b[0] |= 0x01
		b = append(b, d.UEPrefix6.Addr().AsSlice()...)
		if l := d.UEPrefix6.Bits(); l != 64 {
			b[0] |= 0x40 // IP6PL
			b = append(b, byte(l))
		}
	}
	return ie.New(ie.UEIPAddress, b)
}

// apply translates the rule IEs of a request into t.spec. Removals come
// first, then creations, then updates, so an update may refer to a rule
// created in the same request.
func (t *txn) apply(ies []*ie.IE, modify bool) error {
	spec := t.spec
	if modify {
		for _, x := range ies {
			var err error
			switch x.Type {
			case ie.RemovePDR:
				var id uint16
				if id, err = pdrID(x); err == nil {
					err = removeRule(&spec.PDRs, flowtable.KindPDR, uint32(id), func(p flowtable.PDR) bool { return p.ID == id })
				}
			case ie.RemoveFAR:
				var id uint32
				if id, err = u32ID(x, ie.FARID); err == nil {
					err = removeRule(&spec.FARs, flowtable.KindFAR, id, func(f flowtable.FAR) bool { return f.ID == id })
					t.barSet = true
				}
			case ie.RemoveQER:
				var id uint32
				if id, err = u32ID(x, ie.QERID); err == nil {
					err = removeRule(&spec.QERs, flowtable.KindQER, id, func(q flowtable.QER) bool { return q.ID == id })
				}
			case ie.RemoveURR:
				var id uint32
				if id, err = u32ID(x, ie.URRID); err == nil {
					err = removeRule(&spec.URRs, flowtable.KindURR, id, func(u flowtable.URR) bool { return u.ID == id })
					t.removed = append(t.removed, id)
				}
			case ie.RemoveBAR:
				var id uint8
				if id, err = barID(x); err == nil {
					err = removeRule(&spec.BARs, flowtable.KindBAR, uint32(id), func(b flowtable.BAR) bool { return b.ID == id })
					t.barSet = true
				}
			}
			if err != nil {
				return err
			}
		}
	}
	// FARs, QERs, URRs and BARs before PDRs: PDRs refer to them, and PDR
	// translation allocates resources that a later failure must undo.
	for _, x := range ies {
		var err error
		switch x.Type {
		case ie.CreateFAR:
			var f flowtable.FAR
			if f, err = t.createFAR(x); err == nil {
				err = addRule(&spec.FARs, f, flowtable.KindFAR, f.ID, func(o flowtable.FAR) bool { return o.ID == f.ID })
				t.barSet = true
			}
		case ie.CreateQER:
			var q flowtable.QER
			if q, err = t.createQER(x); err == nil {
				err = addRule(&spec.QERs, q, flowtable.KindQER, q.ID, func(o flowtable.QER) bool { return o.ID == q.ID })
			}
		case ie.CreateURR:
			var u flowtable.URR
			if u, err = t.createURR(x); err == nil {
				err = addRule(&spec.URRs, u, flowtable.KindURR, u.ID, func(o flowtable.URR) bool { return o.ID == u.ID })
			}
		case ie.CreateBAR:
			var b flowtable.BAR
			if b, err = t.createBAR(x); err == nil {
				err = addRule(&spec.BARs, b, flowtable.KindBAR, uint32(b.ID), func(o flowtable.BAR) bool { return o.ID == b.ID })
			}
		}
		if err != nil {
			return err
		}
	}
	for _, x := range ies {
		if x.Type != ie.CreatePDR {
			continue
		}
		p, err := t.createPDR(x)
		if err == nil {
			err = addRule(&spec.PDRs, p, flowtable.KindPDR, uint32(p.ID), func(o flowtable.PDR) bool { return o.ID == p.ID })
		}
		if err != nil {
			return err
		}
	}
	if !modify {
		return nil
	}
	for _, x := range ies {
		var err error
		switch x.Type {
		case ie.UpdatePDR:
			err = t.updatePDR(x)
		case ie.UpdateFAR:
			err = t.updateFAR(x)
		case ie.UpdateQER:
			err = t.updateQER(x)
		case ie.UpdateURR:
			err = t.updateURR(x)
		case ie.UpdateBARWithinSessionModificationRequest:
			err = t.updateBAR(x)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func removeRule[T any](rules *[]T, k flowtable.RuleKind, id uint32, match func(T) bool) error {
	i := slices.IndexFunc(*rules, match)
	if i < 0 {
		return ruleFailure(k, id, fmt.Errorf("remove: %w", flowtable.ErrMissingRule))
	}
	*rules = slices.Delete(*rules, i, i+1)
	return nil
}

func addRule[T any](rules *[]T, r T, k flowtable.RuleKind, id uint32, match func(T) bool) error {
	if slices.ContainsFunc(*rules, match) {
		return ruleFailure(k, id, flowtable.ErrDuplicateRule)
	}
	*rules = append(*rules, r)
	return nil
}

// reserve marks the resources the new rules use and old did not (those the
// SMF chose: Sluice's own allocations are already taken) as used.
func (t *txn) reserve(old []resource) error {
	for _, r := range resourcesOf(t.spec) {
		if slices.Contains(t.taken, r) {
			continue
		}
		if _, had := slices.BinarySearchFunc(old, r, cmpResource); had {
			continue
		}
		if err := t.s.alloc.take(r); err != nil {
			return ruleFailure(flowtable.KindPDR, uint32(pdrUsing(t.spec, r)), err)
		}
		t.taken = append(t.taken, r)
	}
	return nil
}

// rollback returns what the transaction took.
func (t *txn) rollback() {
	for _, r := range t.taken {
		t.s.alloc.free(r)
	}
	t.taken = nil
}

// handleModification handles a Session Modification Request: the rules are
// changed on a copy, installed with one Replace, and committed only if that
// succeeds, so a rejected request leaves the session exactly as it was.
func (s *Server) handleModification(from netip.AddrPort, h header, ies []*ie.IE, perr error) answer {
	a := answer{typ: message.MsgTypeSessionModificationResponse}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[h.seid]
	if sess == nil {
		return s.reject(a, fmt.Errorf("modify session %#x: %w", h.seid, ErrSessionNotFound))
	}
	a.seid = sess.cpSEID
	if !sess.controlledBy(from.Addr()) {
		return s.reject(a, fmt.Errorf("modify session %#x from %v: %w", h.seid, from, ErrNoAssociation))
	}
	if perr != nil {
		return s.reject(a, perr)
	}
	if err := checkSessionIEs(ies); err != nil {
		return s.reject(a, err)
	}
	var newCP *fseid
	if x := find(ies, ie.FSEID); x != nil {
		f, err := decodeFSEID(x)
		if err != nil {
			return s.reject(a, err)
		}
		newCP = &f
	}
	var drobu, qaurr bool
	if x := find(ies, ie.PFCPSMReqFlags); x != nil {
		v, err := u8(x)
		if err != nil {
			return s.reject(a, err)
		}
		if v&0x02 != 0 { // SNDEM
			return s.reject(a, &causeError{Cause: ie.CauseServiceNotSupported, Offending: ie.PFCPSMReqFlags,
				Err: fmt.Errorf("sending end markers: %w", ErrUnsupported)})
		}
		drobu, qaurr = v&0x01 != 0, v&0x04 != 0
	}

	next := sess.spec // copy; the slices are cloned, their elements are replaced, never written
	next.PDRs = slices.Clone(next.PDRs)
	next.FARs = slices.Clone(next.FARs)
	next.QERs = slices.Clone(next.QERs)
	next.URRs = slices.Clone(next.URRs)
	next.BARs = slices.Clone(next.BARs)
	if newCP != nil {
		next.RemoteSEID = newCP.seid
	}
	t := &txn{s: s, spec: &next, chids: slices.Clone(sess.chids)}
	if err := t.apply(ies, true); err != nil {
		t.rollback()
		return s.reject(a, err)
	}
	var queried []uint32
	for _, x := range ies {
		if x.Type != ie.QueryURR {
			continue
		}
		id, err := u32ID(x, ie.URRID)
		if err != nil {
			t.rollback()
			return s.reject(a, err)
		}
		if !slices.ContainsFunc(next.URRs, func(u flowtable.URR) bool { return u.ID == id }) {
			t.rollback()
			return s.reject(a, ruleFailure(flowtable.KindURR, id, fmt.Errorf("query: %w", flowtable.ErrMissingRule)))
		}
		queried = append(queried, id)
	}
	if qaurr {
		queried = queried[:0]
		for _, u := range next.URRs {
			queried = append(queried, u.ID)
		}
	}
	if err := s.checkUEPools(&next, sess.cpSEID); err != nil {
		t.rollback()
		return s.reject(a, err)
	}
	oldRes := resourcesOf(&sess.spec)
	if err := t.reserve(oldRes); err != nil {
		t.rollback()
		return s.reject(a, err)
	}

	now := s.tbl.Now()
	// The table reads the final usage of removed URRs once the new rules
	// are in and no worker can count with the old ones any more.
	final, err := s.tbl.ReplaceFinal(s.effective(sess, &next, t))
	if err != nil {
		t.rollback()
		return s.reject(a, fmt.Errorf("replace session: %w", err))
	}
	var reports []*ie.IE
	if len(t.removed) > 0 {
		end := s.tbl.Now()
		for _, id := range t.removed {
			// sess.spec still has the URR, which the report describes;
			// its tracker goes in commitURRs.
			tr := sess.tracker(id)
			if tr == nil {
				continue
			}
			u, ok := final[id]
			if !ok {
				// Created again under the same ID: the table kept the counter.
				if u, err = s.tbl.URRUsage(sess.seid, id); err != nil {
					continue
				}
			}
			reports = append(reports, s.usageReport(ie.UsageReportWithinSessionModificationResponse, sess, tr, u, end, utTERMR))
		}
	}

	// Committed. Free what the old rules used and the new do not, and
	// what this request allocated but replaced again (a PDR created with
	// CHOOSE and updated in the same request).
	newRes := resourcesOf(&next)
	for _, r := range append(oldRes, t.taken...) {
		if _, still := slices.BinarySearchFunc(newRes, r, cmpResource); !still {
			s.alloc.free(r)
		}
	}
	for _, m := range t.endMarkers {
		s.tbl.SendEndMarker(m)
	}
	sess.spec = next
	sess.chids = pruneChooseIDs(t.chids, &next)
	if newCP != nil {
		sess.cpSEID, sess.cpAddr = newCP.seid, cpAddrFor(*newCP, sess.assoc)
	}
	s.commitURRs(sess, t, now, true)
	if t.barSet {
		// The SMF acted on the session's buffering: the next downlink
		// packet may be reported again.
		sess.dlReport = false
		if n := s.tbl.Notifier(sess.seid); n != nil && n.Pending() {
			n.Rearm()
		}
	}
	if drobu {
		s.tbl.DropBuffered(sess.seid)
	}
	now = s.tbl.Now()
	for _, id := range queried {
		if tr := sess.tracker(id); tr != nil {
			if u, err := s.tbl.URRUsage(sess.seid, id); err == nil {
				reports = append(reports, s.usageReport(ie.UsageReportWithinSessionModificationResponse, sess, tr, u, now, utIMMER))
			}
		}
	}
	s.stats.usage.Add(uint64(len(reports)))
	out := make([]*ie.IE, 0, 1+len(reports)+len(t.created))
	out = append(out, ie.NewCause(ie.CauseRequestAccepted))
	out = append(out, s.createdPDRs(&next, t.created)...)
	out = append(out, reports...)
	a.cause, a.ies = ie.CauseRequestAccepted, out
	return a
}

// pruneChooseIDs keeps the CHOOSE IDs whose TEID a PDR still uses.
func pruneChooseIDs(c []chooseID, spec *flowtable.Session) []chooseID {
	return slices.DeleteFunc(c, func(x chooseID) bool {
		return !slices.ContainsFunc(spec.PDRs, func(p flowtable.PDR) bool {
			return p.PDI.HasLocalTEID && p.PDI.LocalTEID == x.teid
		})
	})
}

// handleDeletion handles a Session Deletion Request: the session's rules
// leave the table and its final usage is reported in the response.
func (s *Server) handleDeletion(from netip.AddrPort, h header, ies []*ie.IE, perr error) answer {
	a := answer{typ: message.MsgTypeSessionDeletionResponse}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[h.seid]
	if sess == nil {
		return s.reject(a, fmt.Errorf("delete session %#x: %w", h.seid, ErrSessionNotFound))
	}
	a.seid = sess.cpSEID
	if !sess.controlledBy(from.Addr()) {
		return s.reject(a, fmt.Errorf("delete session %#x from %v: %w", h.seid, from, ErrNoAssociation))
	}
	usage, err := s.tbl.Remove(sess.seid)
	if err != nil && !errors.Is(err, flowtable.ErrSessionNotFound) {
		return s.reject(a, fmt.Errorf("remove session: %w", err))
	}
	now := s.tbl.Now()
	out := make([]*ie.IE, 0, 1+len(sess.urrs))
	out = append(out, ie.NewCause(ie.CauseRequestAccepted))
	for _, tr := range sess.urrs {
		if u, ok := usage[tr.id]; ok {
			out = append(out, s.usageReport(ie.UsageReportWithinSessionDeletionResponse, sess, tr, u, now, utTERMR))
		}
	}
	s.stats.usage.Add(uint64(len(out) - 1))
	s.forget(sess)
	a.cause, a.ies = ie.CauseRequestAccepted, out
	return a
}

// forget drops a session removed from the table: its resources, URR
// trackers and place in the maps. Caller holds s.mu.
func (s *Server) forget(sess *session) {
	for _, r := range resourcesOf(&sess.spec) {
		s.alloc.free(r)
	}
	for _, tr := range sess.urrs {
		s.unwatch(tr)
	}
	sess.urrs = nil
	delete(s.sessions, sess.seid)
	sess.assoc.sessions--
}

// purgeSessions deletes every session of an association, without reports
// (the peer is gone or starts afresh). Caller holds s.mu.
func (s *Server) purgeSessions(a *association) int {
	n := 0
	for _, sess := range s.sessions {
		if sess.assoc != a {
			continue
		}
		if _, err := s.tbl.Remove(sess.seid); err != nil {
			s.log.Warn("remove purged session", "seid", sess.seid, "err", err)
		}
		s.forget(sess)
		n++
	}
	return n
}

// Sessions returns the number of sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// effective returns the rules to install for a session: spec, plus a
// closed gate on the PDRs of URRs whose quota is exhausted (and not
// replenished by t).
func (s *Server) effective(sess *session, spec *flowtable.Session, t *txn) *flowtable.Session {
	var dead []uint32
	for _, tr := range sess.urrs {
		if !tr.exhausted {
			continue
		}
		if t != nil && (slices.Contains(t.removed, tr.id) ||
			slices.ContainsFunc(t.urrs, func(c urrConfig) bool { return c.id == tr.id && c.quotaSet })) {
			continue // removed or replenished by t
		}
		dead = append(dead, tr.id)
	}
	if len(dead) == 0 {
		return spec
	}
	e := *spec
	e.PDRs = slices.Clone(spec.PDRs)
	gated := false
	for i := range e.PDRs {
		p := &e.PDRs[i]
		if slices.ContainsFunc(p.URRIDs, func(id uint32) bool { return slices.Contains(dead, id) }) {
			p.QERIDs = append(slices.Clip(p.QERIDs), quotaGateQER)
			gated = true
		}
	}
	if gated {
		e.QERs = append(slices.Clip(spec.QERs), flowtable.QER{ID: quotaGateQER, GateUL: flowtable.GateClosed, GateDL: flowtable.GateClosed})
	}
	return &e
}
