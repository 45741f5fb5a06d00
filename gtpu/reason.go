package gtpu

// Reason says why a packet was rejected; ReasonNone means it was accepted.
// Reasons are small consecutive integers so that per-worker drop counters can
// be plain arrays of NumReasons entries.
type Reason uint8

// Reasons, in the order the checks run.
const (
	// ReasonNone: accepted.
	ReasonNone Reason = iota
	// ReasonTruncated: the packet ends before the header does (under 8 octets,
	// or under 12 when the S, PN or E flag announces the optional octets).
	ReasonTruncated
	// ReasonVersion: the version field is not 1.
	ReasonVersion
	// ReasonProtocolType: PT is 0 (GTP', not GTP).
	ReasonProtocolType
	// ReasonLength: the length field claims more octets than the packet has, or
	// too few to hold the optional octets its flags announce.
	ReasonLength
	// ReasonExtLenZero: an extension header has a length of zero.
	ReasonExtLenZero
	// ReasonExtTruncated: the extension header chain runs past the end of the
	// message.
	ReasonExtTruncated
	// ReasonUnknownExtRequired: an extension header of a type Sluice does not
	// know, whose type bits say the receiving endpoint must comprehend it.
	// Parsed.UnknownExt holds the type.
	ReasonUnknownExtRequired
	// ReasonBadPSC: a malformed PDU Session Container: a PDU type other than
	// DL (0) or UL (1), flags announcing fields that the container has no room
	// for, or a second container in the same chain.
	ReasonBadPSC
	// ReasonMessageType: the message is not of the type the parser expects
	// (returned by the signalling parsers, never by Parse).
	ReasonMessageType
	// ReasonMissingIE: a mandatory information element is absent.
	ReasonMissingIE
	// ReasonBadIE: an information element is truncated, has a wrong length, or
	// is of an unknown TV type that cannot be stepped over.
	ReasonBadIE

	// NumReasons is the number of Reason values, for sizing counter arrays.
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonNone:               "none",
	ReasonTruncated:          "truncated",
	ReasonVersion:            "version",
	ReasonProtocolType:       "protocol_type",
	ReasonLength:             "length",
	ReasonExtLenZero:         "ext_len_zero",
	ReasonExtTruncated:       "ext_truncated",
	ReasonUnknownExtRequired: "unknown_ext_required",
	ReasonBadPSC:             "bad_psc",
	ReasonMessageType:        "message_type",
	ReasonMissingIE:          "missing_ie",
	ReasonBadIE:              "bad_ie",
}

// String returns a short snake_case label, usable as a metrics label value.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}
