package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-net/sluice/testbed/smf"
)

// scriptRecovery is the Recovery Time Stamp of the single-shot commands:
// fixed, so that one invocation's Association Setup does not tell the UPF
// that the SMF restarted and purge the sessions another one established.
var scriptRecovery = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// associateCmd sets up (or refreshes) the association and exits.
func associateCmd(ctx context.Context, g *globals, p *printer) error {
	c, err := g.client(scriptRecovery)
	if err != nil {
		return err
	}
	defer c.Close()
	return associate(ctx, c, g.upfAddr, g, p)
}

// establishCmd establishes one session under an existing association.
func establishCmd(ctx context.Context, g *globals, pl *plan, cpSEID uint64, p *printer) error {
	if err := pl.check(1); err != nil {
		return err
	}
	c, err := g.client(scriptRecovery)
	if err != nil {
		return err
	}
	defer c.Close()
	sp, rec := pl.params(0)
	sp.CPSEID = cpSEID
	if sp.CPSEID == 0 {
		// Random, so that sessions of separate invocations are told apart
		// in the UPF's reports.
		sp.CPSEID = uint64(rand.Uint32()) + 1
	}
	s, resp, err := c.Establish(ctx, sp)
	if err != nil {
		p.failure("establish", -1, sessionRef{CPSEID: sp.CPSEID}, err, rejectionOf(err, resp))
		return fmt.Errorf("establish: %w", errFailed)
	}
	rec.Session, rec.c, rec.upfAddr = s, c, g.upfAddr
	p.sessions([]*record{rec})
	return nil
}

// parseSEIDs parses a comma-separated list of SEIDs (decimal or 0x hex).
func parseSEIDs(s string) ([]uint64, error) {
	if s == "" {
		return nil, usageErr("--up-seid is required")
	}
	var out []uint64
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseUint(f, 0, 64)
		if err != nil || v == 0 {
			return nil, usageErr("--up-seid %q: want SEIDs, decimal or 0x hex, not 0", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// modifyCmd modifies sessions by their UP SEIDs.
func modifyCmd(ctx context.Context, g *globals, seids []uint64, acts []string, pl *plan, dlTEID uint64, p *printer) error {
	c, err := g.client(scriptRecovery)
	if err != nil {
		return err
	}
	defer c.Close()
	return eachSEID(seids, "modifications", func(seid uint64) (bool, bool) {
		s := &smf.Session{UPSEID: seid}
		return modifyOne(ctx, c, s, sessionRef{UPSEID: seid}, acts, pl.gnbAddr, uint32(dlTEID), p)
	})
}

// deleteCmd deletes sessions by their UP SEIDs.
func deleteCmd(ctx context.Context, g *globals, seids []uint64, p *printer) error {
	c, err := g.client(scriptRecovery)
	if err != nil {
		return err
	}
	defer c.Close()
	return eachSEID(seids, "deletions", func(seid uint64) (bool, bool) {
		return deleteOne(ctx, c, &smf.Session{UPSEID: seid}, sessionRef{UPSEID: seid}, p)
	})
}

// eachSEID runs f on each session in turn until f asks to stop, and
// returns errFailed when f failed on some or some were not attempted
// (what names the requests).
func eachSEID(seids []uint64, what string, f func(seid uint64) (ok, stop bool)) error {
	failed := 0
	for i, seid := range seids {
		ok, stop := f(seid)
		if !ok {
			failed++
		}
		if stop {
			failed += len(seids) - i - 1
			break
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d %s: %w", failed, len(seids), what, errFailed)
	}
	return nil
}

// releaseCmd releases the association (the UPF deletes its sessions).
func releaseCmd(ctx context.Context, g *globals, p *printer) error {
	c, err := g.client(scriptRecovery)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Release(ctx); err != nil {
		p.failure("release", -1, sessionRef{}, err, rejectionOf(err, nil))
		return fmt.Errorf("release: %w", errFailed)
	}
	p.released(g.nodeID(), g.upfAddr)
	return nil
}
