package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/dataplane/capture"
)

// Capture bounds: a capture always ends, by count or by time.
const (
	defaultCaptureCount    = 1000
	maxCaptureCount        = 10_000_000
	defaultCaptureDuration = 60 * time.Second
	maxCaptureDuration     = time.Hour
)

// tapPort returns the port the workers use for interfaces[i]: p behind a
// capture tap, the same one for every worker. Called by start only.
func (u *upf) tapPort(i int, p dataplane.Port, role string) dataplane.Port {
	if u.taps == nil {
		u.taps = make([]tapped, len(u.cfg.ifaces))
	}
	if u.taps[i].tap == nil {
		u.taps[i].port, u.taps[i].tap = capture.Wrap(p, role != "n6")
	}
	return u.taps[i].port
}

// tapped is an interface's port behind its capture tap.
type tapped struct {
	port dataplane.Port
	tap  *capture.Tap
}

// findTap returns the tap of the interface whose device name or role is
// name.
func (u *upf) findTap(name string) (*capture.Tap, bool) {
	for i, in := range u.cfg.ifaces {
		if (in.Device == name || in.Role == name) && i < len(u.taps) && u.taps[i].tap != nil {
			return u.taps[i].tap, true
		}
	}
	return nil, false
}

// Trailers of a capture answer.
const (
	trailerWritten = "Sluice-Capture-Written"
	trailerMatched = "Sluice-Capture-Matched"
	trailerMissed  = "Sluice-Capture-Missed"
	trailerError   = "Sluice-Capture-Error"
)

// captureRequest reads the query of GET /v1/capture.
func captureRequest(q url.Values) (port string, count uint64, d time.Duration, o capture.Options, err error) {
	var errs []error
	port = q.Get("port")
	if port == "" {
		errs = append(errs, errors.New("port: missing (a device name or a role: n3, n6, n9)"))
	}
	count = defaultCaptureCount
	if s := q.Get("count"); s != "" {
		count, err = strconv.ParseUint(s, 10, 64)
		if err != nil || count == 0 || count > maxCaptureCount {
			errs = append(errs, fmt.Errorf("count %q: want 1 to %d frames", s, maxCaptureCount))
		}
	}
	d = defaultCaptureDuration
	if s := q.Get("duration"); s != "" {
		d, err = time.ParseDuration(s)
		if err != nil || d <= 0 || d > maxCaptureDuration {
			errs = append(errs, fmt.Errorf("duration %q: want more than 0 and at most %v, like 10s", s, maxCaptureDuration))
		}
	}
	if o.Filter, err = capture.ParseFilter(q.Get("filter")); err != nil {
		errs = append(errs, err)
	}
	if s := q.Get("snaplen"); s != "" {
		o.Snaplen, err = strconv.Atoi(s)
		if err != nil || o.Snaplen < 64 || o.Snaplen > 65535 {
			errs = append(errs, fmt.Errorf("snaplen %q: want 64 to 65535", s))
		}
	}
	return port, count, d, o, errors.Join(errs...)
}

// capture serves GET /v1/capture: a pcapng stream of the port's frames,
// with the counts in trailers.
func (a *adminServer) capture(w http.ResponseWriter, r *http.Request) {
	port, count, d, o, err := captureRequest(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "%v", err)
		return
	}
	tap, ok := a.u.findTap(port)
	if !ok {
		writeError(w, http.StatusNotFound, "port %q: no such interface (give a device name or n3, n6, n9)", port)
		return
	}
	if o.Filter.HasTEID && !tap.Tunnel() {
		writeError(w, http.StatusBadRequest, "filter %v on %s: it carries no GTP-U; filter by ue= instead", o.Filter, port)
		return
	}
	c, err := tap.Start(o)
	if err != nil {
		writeError(w, http.StatusConflict, "port %s: %v", port, err)
		return
	}
	defer c.Stop()
	w.Header().Set("Content-Type", "application/x-pcapng")
	w.Header().Set("Trailer", trailerWritten+", "+trailerMatched+", "+trailerMissed+", "+trailerError)
	w.WriteHeader(http.StatusOK)
	flush := func() {}
	if f, ok := w.(http.Flusher); ok {
		flush = f.Flush
	}
	a.u.log.Info("capture started", "port", tap.Name(), "count", count, "duration", d, "filter", o.Filter.String())
	pw, err := capture.NewWriter(w, tap.Name(), c.Snaplen())
	var res capture.Result
	if err == nil {
		res, err = capture.Copy(r.Context().Done(), c, pw, count, d, flush)
	}
	w.Header().Set(trailerWritten, strconv.FormatUint(res.Written, 10))
	w.Header().Set(trailerMatched, strconv.FormatUint(res.Matched, 10))
	w.Header().Set(trailerMissed, strconv.FormatUint(res.Missed, 10))
	if err != nil {
		w.Header().Set(trailerError, err.Error())
	}
	a.u.log.Info("capture ended", "port", tap.Name(), "written", res.Written, "matched", res.Matched, "missed", res.Missed, "err", err)
}

const captureUsage = `usage: upf capture [--socket PATH] --port PORT [--count N] [--duration D] [--filter teid=T|ue=ADDR] -w FILE
Writes the frames a running upf receives and sends on PORT (a device name,
or n3, n6, n9) to FILE as pcapng (- for standard output): GTP-U on N3, IP
on N6. It ends after N frames (default 1000) or D (default 60s), whichever
comes first. A capture that cannot keep up samples, and says how many
frames it missed.
`

// runCapture is "upf capture".
func runCapture(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("upf capture", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, captureUsage); fs.PrintDefaults() }
	socket := fs.String("socket", DefaultAdminSocket, "the running upf's admin socket (admin in upf.yaml)")
	port := fs.String("port", "", "the port: a device name, or n3, n6, n9")
	count := fs.Uint64("count", defaultCaptureCount, "stop after this many frames")
	dur := fs.Duration("duration", defaultCaptureDuration, "stop after this long")
	filter := fs.String("filter", "", "teid=T (GTP-U tunnel) or ue=ADDR (UE address)")
	snaplen := fs.Int("snaplen", 0, "octets kept of each frame (default 2048)")
	out := fs.String("w", "", "the pcapng file to write, - for standard output")
	if pos, err := parseInterspersed(fs, args); err != nil {
		return 2
	} else if len(pos) > 0 {
		fmt.Fprintf(stderr, "upf capture: unexpected %q\n", pos)
		fs.Usage()
		return 2
	}
	if *port == "" || *out == "" {
		fmt.Fprintln(stderr, "upf capture: --port and -w are needed")
		fs.Usage()
		return 2
	}
	if _, err := capture.ParseFilter(*filter); err != nil {
		fmt.Fprintf(stderr, "upf capture: %v\n", err)
		return 2
	}
	q := url.Values{"port": {*port}, "count": {strconv.FormatUint(*count, 10)}, "duration": {dur.String()}}
	if *filter != "" {
		q.Set("filter", *filter)
	}
	if *snaplen != 0 {
		q.Set("snaplen", strconv.Itoa(*snaplen))
	}
	resp, err := newAdminClient(*socket).get("/v1/capture?" + q.Encode())
	if err != nil {
		fmt.Fprintf(stderr, "upf capture: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	dst, name := io.Writer(stdout), "standard output"
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintf(stderr, "upf capture: %v\n", err)
			return 1
		}
		defer f.Close()
		dst, name = f, *out
	}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		fmt.Fprintf(stderr, "upf capture: %s: %v\n", name, err)
		return 1
	}
	tr := resp.Trailer
	if e := tr.Get(trailerError); e != "" {
		fmt.Fprintf(stderr, "upf capture: upf: %s\n", e)
		return 1
	}
	if tr.Get(trailerWritten) == "" {
		fmt.Fprintln(stderr, "upf capture: the capture ended early (did upf stop?); the file may be cut short")
		return 1
	}
	fmt.Fprintf(stderr, "upf capture: %s frames written to %s (%s matched on %s, %s missed)\n",
		tr.Get(trailerWritten), name, tr.Get(trailerMatched), *port, tr.Get(trailerMissed))
	if m, _ := strconv.ParseUint(tr.Get(trailerMissed), 10, 64); m > 0 {
		fmt.Fprintf(stderr, "upf capture: %d frames were missed: the capture could not keep up and sampled; narrow it with --filter\n", m)
	}
	return 0
}
