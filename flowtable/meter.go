package flowtable

import "sync/atomic"

// Meter is a token bucket enforcing a maximum bit rate, implemented as the
// generic cell rate algorithm: one atomic "theoretical arrival time" that
// every worker advances with a compare-and-swap, so a QER's MBR holds
// however its packets are spread over workers. Safe for concurrent use.
type Meter struct {
	tat       atomic.Int64 // ns on the Table clock
	psPerByte int64        // picoseconds of budget one octet costs
	tolerance int64        // ns of burst allowed ahead of the rate
	rateBPS   uint64
}

// burstWindow is how far ahead of the rate a flow may run: a bucket depth of
// 10 ms of traffic, but at least a few full-size packets so low rates still
// pass ordinary packets.
const (
	burstWindowNS = 10_000_000
	minBurstBytes = 3 * 1500
)

// NewMeter returns a meter for rate bits per second.
func NewMeter(rateBPS uint64) *Meter {
	m := &Meter{rateBPS: rateBPS}
	m.psPerByte = int64(8_000_000_000_000 / rateBPS)
	if m.psPerByte == 0 {
		m.psPerByte = 1
	}
	m.tolerance = burstWindowNS
	if minTol := minBurstBytes * m.psPerByte / 1000; minTol > m.tolerance {
		m.tolerance = minTol
	}
	return m
}

// Rate returns the meter's rate in bits per second.
func (m *Meter) Rate() uint64 { return m.rateBPS }

// Allow reports whether a packet of n octets at time now conforms, and if
// so charges it. A packet that does not conform is not charged.
func (m *Meter) Allow(now int64, n int) bool {
	cost := int64(n) * m.psPerByte / 1000
	// A bounded number of tries: contention needs another worker to win
	// each round, so the loop ends; on persistent contention the packet is
	// dropped rather than spinning.
	for range 8 {
		old := m.tat.Load()
		tat := max(old, now)
		if tat+cost-now > m.tolerance {
			return false
		}
		if m.tat.CompareAndSwap(old, tat+cost) {
			return true
		}
	}
	return false
}
