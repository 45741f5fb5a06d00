package control

import (
	"errors"
	"fmt"

	"github.com/sluice-net/sluice/flowtable"
	"github.com/wmnsk/go-pfcp/ie"
)

// Sentinel errors. Handlers wrap them in a *causeError that carries the PFCP
// Cause (and Offending IE or Failed Rule ID) of the answer.
var (
	ErrMissingIE       = errors.New("mandatory IE missing")
	ErrConditionalIE   = errors.New("conditional IE missing")
	ErrInvalidIE       = errors.New("IE incorrect")
	ErrInvalidLength   = errors.New("invalid length")
	ErrUnsupported     = errors.New("not supported by Sluice")
	ErrNoAssociation   = errors.New("no PFCP association with the peer")
	ErrSessionNotFound = errors.New("session context not found")
	ErrNoResources     = errors.New("no resources available")
	ErrTEIDExhausted   = fmt.Errorf("%w: TEID space exhausted", ErrNoResources)
	ErrPoolExhausted   = fmt.Errorf("%w: UE address pool exhausted", ErrNoResources)
	ErrNoPool          = fmt.Errorf("%w: no UE address pool for the network instance", ErrNoResources)
	ErrFTEIDOption     = errors.New("invalid F-TEID allocation option")
	ErrOutsidePools    = errors.New("outside every UE pool: N6 does not steer it to Sluice")
	ErrRule            = errors.New("rule creation/modification failure")
	ErrTimeout         = errors.New("request timed out")
	ErrClosed          = errors.New("server closed")
	ErrRejected        = errors.New("request rejected by peer")
)

// causeError is the error a request handler returns to answer with a
// rejection. Cause is the PFCP cause value; Offending is the IE type to put
// in an Offending IE (0: none); Rule names the rule for a Failed Rule ID.
type causeError struct {
	Cause     uint8
	Offending uint16
	RuleKind  flowtable.RuleKind // 0: no Failed Rule ID
	RuleID    uint32
	Err       error
}

func (e *causeError) Error() string {
	s := fmt.Sprintf("cause %d", e.Cause)
	if e.Offending != 0 {
		s += fmt.Sprintf(" (offending IE %d)", e.Offending)
	}
	if e.RuleKind != 0 {
		s += fmt.Sprintf(" (failed %v %d)", e.RuleKind, e.RuleID)
	}
	return s + ": " + e.Err.Error()
}

func (e *causeError) Unwrap() error { return e.Err }

// missing reports a mandatory IE that is absent.
func missing(t uint16) error {
	return &causeError{Cause: ie.CauseMandatoryIEMissing, Offending: t, Err: fmt.Errorf("IE %d: %w", t, ErrMissingIE)}
}

// condMissing reports a conditional IE that is absent.
func condMissing(t uint16) error {
	return &causeError{Cause: ie.CauseConditionalIEMissing, Offending: t, Err: fmt.Errorf("IE %d: %w", t, ErrConditionalIE)}
}

// incorrect reports an IE whose value cannot be decoded.
func incorrect(t uint16, why string) error {
	return &causeError{Cause: ie.CauseMandatoryIEIncorrect, Offending: t, Err: fmt.Errorf("IE %d: %w: %s", t, ErrInvalidIE, why)}
}

// ruleFailure reports a rule that cannot be created or modified.
func ruleFailure(k flowtable.RuleKind, id uint32, err error) error {
	return &causeError{Cause: ie.CauseRuleCreationModificationFailure, RuleKind: k, RuleID: id,
		Err: fmt.Errorf("%w: %v %d: %w", ErrRule, k, id, err)}
}

// unsupported reports a rule that uses an IE Sluice cannot honour.
func unsupported(k flowtable.RuleKind, id uint32, t uint16) error {
	return ruleFailure(k, id, fmt.Errorf("IE %d: %w", t, ErrUnsupported))
}

// asCause turns any handler error into a causeError: table rule errors
// become Rule creation/modification failure with their Failed Rule ID, pool
// exhaustion No resources available, anything else System failure.
func asCause(err error) *causeError {
	var ce *causeError
	if errors.As(err, &ce) {
		return ce
	}
	var re *flowtable.RuleError
	if errors.As(err, &re) {
		return &causeError{Cause: ie.CauseRuleCreationModificationFailure, RuleKind: re.Kind, RuleID: re.ID, Err: err}
	}
	switch {
	case errors.Is(err, ErrNoResources):
		return &causeError{Cause: ie.CauseNoResourcesAvailable, Err: err}
	case errors.Is(err, ErrSessionNotFound), errors.Is(err, flowtable.ErrSessionNotFound):
		return &causeError{Cause: ie.CauseSessionContextNotFound, Err: err}
	case errors.Is(err, ErrNoAssociation):
		return &causeError{Cause: ie.CauseNoEstablishedPFCPAssociation, Err: err}
	}
	return &causeError{Cause: ie.CauseSystemFailure, Err: err}
}

// failedRuleIE encodes the Failed Rule ID of a rule error.
func failedRuleIE(k flowtable.RuleKind, id uint32) *ie.IE {
	switch k {
	case flowtable.KindPDR:
		return ie.NewFailedRuleID(ie.RuleIDTypePDR, id)
	case flowtable.KindFAR:
		return ie.NewFailedRuleID(ie.RuleIDTypeFAR, id)
	case flowtable.KindQER:
		return ie.NewFailedRuleID(ie.RuleIDTypeQER, id)
	case flowtable.KindURR:
		return ie.NewFailedRuleID(ie.RuleIDTypeURR, id)
	case flowtable.KindBAR:
		return ie.NewFailedRuleID(ie.RuleIDTypeBAR, id)
	}
	return nil
}

// rejectIEs returns the Cause IE and the diagnostic IEs of a rejection.
func (e *causeError) ies() []*ie.IE {
	out := []*ie.IE{ie.NewCause(e.Cause)}
	if e.Offending != 0 {
		out = append(out, ie.NewOffendingIE(e.Offending))
	}
	if e.RuleKind != 0 && e.Cause == ie.CauseRuleCreationModificationFailure {
		out = append(out, failedRuleIE(e.RuleKind, e.RuleID))
	}
	return out
}
