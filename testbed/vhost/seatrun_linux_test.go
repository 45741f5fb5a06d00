package vhost

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestRunUPFSeatDownlink runs the seat the downlink way with the real upf
// for a moment: IP packets replayed into N6 must come out of N3 (upf
// drops what matches no session, so nothing out of N3 means the seat or
// its sessions are wired wrong), and never more than went in.
func TestRunUPFSeatDownlink(t *testing.T) {
	needTestpmd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := UPFSeatRun{Dir: t.TempDir(), Bin: upfBinary(t), Prefix: fmt.Sprintf("sluicedl%d", os.Getpid()),
		Sessions: 4, Size: 64, Downlink: true, Settle: 200 * time.Millisecond, D: 500 * time.Millisecond}
	tp, err := RunUPFSeat(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Offered == 0 || tp.Delivered == 0 || tp.Delivered > tp.Offered {
		t.Fatalf("switch offered %d packets into N6 and counted %d out of N3, want some out, at most as many as in", tp.Offered, tp.Delivered)
	}
	t.Logf("downlink: %d into N6, %d out of N3 in %v", tp.Offered, tp.Delivered, tp.Elapsed)
}

// TestSeatWindows runs two windows in one seat with upf as the back-end:
// each counts only its own packets (a short window after a long one
// counts fewer, where counts carried over would count more), and each
// delivers.
func TestSeatWindows(t *testing.T) {
	needTestpmd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var got []Throughput
	r := UPFSeatRun{Dir: t.TempDir(), Bin: upfBinary(t), Prefix: fmt.Sprintf("sluicewin%d", os.Getpid()),
		Sessions: 4, Size: 64, Backend: true, Settle: 200 * time.Millisecond, D: time.Second,
		Measure: func(s *Seat) error {
			for _, d := range []time.Duration{1200 * time.Millisecond, 300 * time.Millisecond} {
				tp, err := s.Window(d)
				if err != nil {
					return err
				}
				got = append(got, tp)
			}
			return nil
		}}
	if _, err := RunUPFSeat(ctx, r); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d windows measured, want 2", len(got))
	}
	for i, tp := range got {
		if tp.Offered == 0 || tp.Delivered == 0 || tp.Delivered > tp.Offered {
			t.Errorf("window %d: %d offered, %d delivered; want some delivered, at most as many as offered", i, tp.Offered, tp.Delivered)
		}
	}
	if got[1].Offered >= got[0].Offered {
		t.Errorf("the 300 ms window counted %d offered packets, the 1.2 s one before it %d: counts carried over", got[1].Offered, got[0].Offered)
	}
}

// TestAlternatingSeats keeps Sluice's seat and a paused ceiling's seat up
// at once and alternates their windows, as the benchmark does, with upf
// as the front-end and as the back-end: each window delivers, and between
// its windows the paused ceiling leaves the unit's CPU to Sluice (a
// testpmd that kept forwarding would spin on it and halve what Sluice's
// windows measure).
func TestAlternatingSeats(t *testing.T) {
	needTestpmd(t)
	for _, backend := range []bool{false, true} {
		t.Run(map[bool]string{false: "frontend", true: "backend"}[backend], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			dir, cdir := t.TempDir(), t.TempDir()
			var got []Throughput
			var pausedCPU float64
			r := UPFSeatRun{Dir: dir, Bin: upfBinary(t), Prefix: fmt.Sprintf("sluicealt%d", os.Getpid()),
				Sessions: 4, Size: 64, Backend: backend, Settle: 200 * time.Millisecond, D: time.Second}
			r.Measure = func(sl *Seat) error {
				_, err := RunCeilingSeat(ctx, CeilingSeatRun{Dir: cdir, Pcap: r.PcapPath(), Prefix: fmt.Sprintf("sluicealtc%d", os.Getpid()),
					Ring: 256, Backend: backend, Settle: 200 * time.Millisecond, D: time.Second, Frames: 4, Paused: true,
					Measure: func(ce *Seat) error {
						for _, s := range []*Seat{sl, ce, ce, sl} {
							tp, err := s.Window(500 * time.Millisecond)
							if err != nil {
								return err
							}
							got = append(got, tp)
						}
						var err error
						pausedCPU, err = CPUShare(ce.Unit, 500*time.Millisecond)
						return err
					}})
				return err
			}
			if _, err := RunUPFSeat(ctx, r); err != nil {
				t.Fatal(err)
			}
			if len(got) != 4 {
				t.Fatalf("%d windows measured, want 4", len(got))
			}
			for i, tp := range got {
				if tp.Offered == 0 || tp.Delivered == 0 || tp.Delivered > tp.Offered {
					t.Errorf("window %d (Sluice, ceiling, ceiling, Sluice): %d offered, %d delivered; want some delivered, at most as many as offered", i, tp.Offered, tp.Delivered)
				}
			}
			if pausedCPU > 0.3 {
				t.Errorf("the paused ceiling used %.2f of a core between its windows, want next to none", pausedCPU)
			}
		})
	}
}
