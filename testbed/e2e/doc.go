// Package e2e runs Sluice for real on the namespace testbed: it brings up
// the topology (ue, gnb, upf, dn), starts the upf binary in the upf
// namespace, associates and establishes sessions over PFCP from the gnb
// namespace, and puts the gNB emulator in front of the UEs, so that
// ordinary traffic flows ue -> gNB -> N3 -> Sluice -> N6 -> dn and back.
//
// The harness is shared by the demo command (testbed/cmd/demo) and the
// end-to-end tests; its upf start-up (UPFConfig, SendCompleteChecksums,
// LaunchUPF, OpenSMF, Associate) and Process by the benchmark
// (testbed/bench) too. Everything it starts it stops in Close, also after
// a failure half-way through Up. It needs root.
package e2e
