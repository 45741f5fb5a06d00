// Package gtpu implements the GTP-U version 1 wire format (3GPP TS 29.281) and the
// PDU Session Container extension header (3GPP TS 38.415) for Sluice's dataplane.
//
// The package is built for the per-packet fast path:
//
//   - Zero copy. Parse reads the header where it lies and reports offsets; the
//     T-PDU is a subslice of the frame. Header is a typed view over the frame's
//     own bytes, and the Put* builders write into a caller-provided buffer, so
//     encapsulation prepends in place into a frame's headroom (see Encap) and
//     decapsulation is a reslice (see Decap).
//   - No allocation. Parse, Decap, the Put* builders and the signalling parsers
//     never allocate; the tests assert it with testing.AllocsPerRun.
//   - No panics on input. Every parser accepts any byte slice, however short or
//     hostile, and answers with a Reason instead of an error value, so the caller
//     counts drops per Reason without building errors per packet.
//   - Stateless. Nothing in the package keeps state, so every function is safe for
//     concurrent use, provided that goroutines do not write the same buffer.
//
// Parse applies the rules of a receiving GTP-U endpoint (Sluice terminates its
// N3 and N9 tunnels): it checks the version, protocol type and length fields,
// walks the extension header chain, decodes a PDU Session Container and the UDP
// Port extension header, skips unknown extension headers whose type says
// comprehension is not required, and rejects those that the endpoint is
// required to comprehend (TS 29.281 clause 5.2.1). It does not judge the message
// type: dispatching on Parsed.Type, and dropping types it does not handle, is the
// caller's job.
//
// Echo Request/Response, Error Indication, End Marker and Supported Extension
// Headers Notification messages have builders (PutEchoRequest, ...) and
// allocation-free parsers for their information elements (ParseEchoResponse,
// ParseErrorIndication, ParseSupportedExtHeadersNotification, NextIE).
package gtpu
