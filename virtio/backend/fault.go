package backend

// Fault is a reason a front-end's queue or connection was failed: what
// it wrote that breaks the rules.
type Fault int

// Faults of a queue (found by the worker walking descriptors) and of a
// connection (found by the control goroutine in a message).
const (
	FaultHead     Fault = iota // an available head outside the descriptor table
	FaultLink                  // a chain link outside the descriptor table
	FaultLoop                  // a chain longer than the ring: a loop
	FaultAddr                  // a buffer address in no region
	FaultLength                // a buffer running past the end of its mapping
	FaultFlags                 // a descriptor's flags wrong for its queue (write, indirect)
	FaultAhead                 // the available index more than a ring ahead
	FaultShort                 // a receive buffer too small for the virtio-net header
	FaultMessage               // a message of the wrong size, version or content
	FaultFDs                   // a message with the wrong number of file descriptors
	FaultRegions               // a memory table that cannot be mapped (too many regions, files too small)
	FaultRingAddr              // a ring address outside the memory table
	FaultRequest               // a request Sluice does not serve, or one out of order
	FaultFeatures              // features acknowledged that were not offered
	numFaults
)

var faultNames = [numFaults]string{
	FaultHead: "head", FaultLink: "link", FaultLoop: "loop", FaultAddr: "address",
	FaultLength: "length", FaultFlags: "flags", FaultAhead: "avail_ahead", FaultShort: "short_buffer",
	FaultMessage: "message", FaultFDs: "fds", FaultRegions: "regions", FaultRingAddr: "ring_address",
	FaultRequest: "request", FaultFeatures: "features",
}

// String names the fault, as in logs and metrics.
func (f Fault) String() string {
	if f >= 0 && f < numFaults {
		return faultNames[f]
	}
	return "unknown"
}

// Faults returns every fault, in order, for exporters.
func Faults() []Fault {
	fs := make([]Fault, numFaults)
	for i := range fs {
		fs[i] = Fault(i)
	}
	return fs
}
