package bench

import "time"

// probeInterval is how often a run samples the placement of the
// generator's CPU and the unit under test's (placement_linux.go).
const probeInterval = 500 * time.Millisecond

// placementFactor is how far, either way, a round trip between the two
// CPUs must be from the run's usual one to count as taken in another
// placement. The testbed's two placements are 2 to 4 times apart; within
// one, samples stay within about 1.3 times of each other.
const placementFactor = 1.6

// placementShare is the share of a run's samples that, taken in another
// placement, make the run one taken in it.
const placementShare = 0.25

// movedShare returns the share of samples (round trips, ns) more than
// placementFactor away from ref, either way; 0 for none.
func movedShare(samples []float64, ref float64) float64 {
	if len(samples) == 0 || ref <= 0 {
		return 0
	}
	return float64(len(offPlacement(samples, ref))) / float64(len(samples))
}

// offPlacement returns the samples more than placementFactor away from
// ref, either way.
func offPlacement(samples []float64, ref float64) []float64 {
	var off []float64
	for _, s := range samples {
		if s*placementFactor < ref || s > ref*placementFactor {
			off = append(off, s)
		}
	}
	return off
}
