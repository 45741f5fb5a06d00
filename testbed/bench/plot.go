package bench

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"slices"
)

// Plot geometry, in SVG user units.
const (
	plotPanelW = 440
	plotPanelH = 300
	plotLeft   = 64  // room for the y labels
	plotTop    = 56  // room for the title
	plotGap    = 40  // between panels
	plotBottom = 116 // room for the x labels and the legend
)

var systemColors = map[System]string{Kernel: "#4477aa", AFXDPIO: "#228833", Sluice: "#dd5544", SluiceFast: "#aa3377"}

// systemLabels name the systems in the legend.
var systemLabels = map[System]string{
	Kernel:  "kernel forwarding",
	AFXDPIO: "AF_XDP ceiling (testpmd io)",
	Sluice:  "Sluice",
	// SluiceFast: Sluice with its XDP fast path on.
	SluiceFast: "Sluice, fast path",
}

// plotLegendW is the room of one legend entry.
const plotLegendW = 320

// sessionDashes tells session counts apart, in the order of the sorted
// counts.
var sessionDashes = []string{"", "6 4", "2 3", "10 3 2 3"}

// WriteSVG draws the delivered rate by packet size: one panel per
// direction, one line per system and session count, with a shared y axis.
func (r *Results) WriteSVG(w io.Writer) error {
	var dirs []Direction
	var sizes, sessions []int
	top := 0.0
	for _, c := range r.Cases {
		if !slices.Contains(dirs, c.Direction) {
			dirs = append(dirs, c.Direction)
		}
		sizes, sessions = append(sizes, c.Size), append(sessions, c.Sessions)
		for _, p := range []*Point{c.Kernel, c.AFXDPIO, c.Sluice, c.SluiceFast} {
			if p != nil {
				top = max(top, p.DeliveredPPS/1e6)
			}
		}
	}
	sizes, sessions = sortedUnique(sizes), sortedUnique(sessions)
	if len(dirs) == 0 {
		dirs = []Direction{Uplink}
	}
	step := niceStep(top)
	ymax := step * math.Max(1, math.Ceil(top/step))

	width := plotLeft + len(dirs)*(plotPanelW+plotGap)
	// The legend: an entry per system measured and session count, as
	// many to a row as fit, and a row for hollow markers if there are any.
	var shown []System
	anyHollow := false
	for _, sys := range systems {
		if r.measured(sys) {
			shown = append(shown, sys)
		}
		for _, c := range r.Cases {
			if p := c.point(sys); p != nil && len(p.Runs) > 0 && p.Disturbed == len(p.Runs) {
				anyHollow = true
			}
		}
	}
	anyCeiling := false
	for _, c := range r.Cases {
		anyCeiling = anyCeiling || c.CeilingRatio > 0
	}
	perRow := max(1, (width-plotLeft)/plotLegendW)
	rows := (len(shown)*len(sessions) + perRow - 1) / perRow
	if anyHollow {
		rows++
	}
	if anyCeiling {
		rows++
	}
	height := plotTop + plotPanelH + plotBottom + max(0, rows-3)*18
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	title := fmt.Sprintf("Delivered rate by packet size (median of %d × %.0f s", r.Config.Repeats, r.Config.Duration)
	if r.Config.Rate > 0 {
		title += fmt.Sprintf(", offered %.2f Mpps)", r.Config.Rate/1e6)
	} else {
		title += ", at saturation)"
	}
	fmt.Fprintf(b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", plotLeft, esc(title))

	xOf := func(i int) float64 {
		if len(sizes) == 1 {
			return plotPanelW / 2
		}
		return 40 + float64(i)*(plotPanelW-80)/float64(len(sizes)-1)
	}
	yOf := func(v float64) float64 { return plotPanelH - v/ymax*plotPanelH }

	for d, dir := range dirs {
		ox := plotLeft + d*(plotPanelW+plotGap)
		fmt.Fprintf(b, `<g transform="translate(%d,%d)">`+"\n", ox, plotTop)
		fmt.Fprintf(b, `<text x="%d" y="-8" font-weight="bold">%s</text>`+"\n", plotPanelW/2-30, esc(string(dir)))
		for v := 0.0; v <= ymax+step/2; v += step {
			y := yOf(v)
			fmt.Fprintf(b, `<line x1="0" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", plotPanelW, y, y)
			if d == 0 {
				fmt.Fprintf(b, `<text x="-8" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", y, trimFloat(v))
			}
		}
		fmt.Fprintf(b, `<rect width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", plotPanelW, plotPanelH)
		for i, s := range sizes {
			fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d B</text>`+"\n", xOf(i), plotPanelH+18, s)
		}
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">user IP packet size</text>`+"\n", plotPanelW/2, plotPanelH+36)
		if d == 0 {
			fmt.Fprintf(b, `<text transform="translate(-46,%d) rotate(-90)" text-anchor="middle">delivered Mpps</text>`+"\n", plotPanelH/2)
		}
		for _, sys := range systems {
			for si, n := range sessions {
				var pts [][2]float64
				var hollow []bool     // every run of the point was disturbed
				var ceiling []float64 // Sluice's points: Case.CeilingRatio
				for i, size := range sizes {
					for _, c := range r.Cases {
						if c.Direction != dir || c.Size != size || c.Sessions != n {
							continue
						}
						if p := c.point(sys); p != nil && len(p.Runs) > 0 {
							pts = append(pts, [2]float64{xOf(i), yOf(p.DeliveredPPS / 1e6)})
							hollow = append(hollow, p.Disturbed == len(p.Runs))
							ceiling = append(ceiling, c.CeilingRatio)
						}
					}
				}
				if len(pts) == 0 {
					continue
				}
				dash := ""
				if dd := sessionDashes[si%len(sessionDashes)]; dd != "" {
					dash = fmt.Sprintf(` stroke-dasharray="%s"`, dd)
				}
				fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="`, systemColors[sys], dash)
				for _, p := range pts {
					fmt.Fprintf(b, "%.1f,%.1f ", p[0], p[1])
				}
				fmt.Fprintln(b, `"/>`)
				for i, p := range pts {
					fill := systemColors[sys]
					if hollow[i] {
						fill = "white"
					}
					fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s" stroke="%s" stroke-width="1.5"/>`+"\n", p[0], p[1], fill, systemColors[sys])
					if sys == Sluice && ceiling[i] > 0 {
						anyCeiling = true
						fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10" fill="%s">%.2f</text>`+"\n", p[0]+7, p[1]+12, systemColors[sys], ceiling[i])
					}
				}
			}
		}
		fmt.Fprintln(b, `</g>`)
	}

	lx, ly := plotLeft, plotTop+plotPanelH+58
	for _, sys := range shown {
		for si, n := range sessions {
			dash := ""
			if dd := sessionDashes[si%len(sessionDashes)]; dd != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, dd)
			}
			fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", lx, lx+28, ly, ly, systemColors[sys], dash)
			label := fmt.Sprintf("%s, %d sessions", systemLabels[sys], n)
			fmt.Fprintf(b, `<text x="%d" y="%d" dominant-baseline="middle">%s</text>`+"\n", lx+34, ly, esc(label))
			lx += plotLegendW
			if lx+plotLegendW > width {
				lx, ly = plotLeft, ly+18
			}
		}
	}
	if anyHollow {
		if lx != plotLeft {
			lx, ly = plotLeft, ly+18
		}
		fmt.Fprintf(b, `<circle cx="%d" cy="%d" r="3.5" fill="white" stroke="#333" stroke-width="1.5"/>`+"\n", lx+14, ly)
		fmt.Fprintf(b, `<text x="%d" y="%d" dominant-baseline="middle">every run disturbed (other work on the CPU under test, or the CPUs moved): median of those runs</text>`+"\n", lx+34, ly)
	}
	if anyCeiling {
		if lx != plotLeft || anyHollow {
			lx, ly = plotLeft, ly+18
		}
		fmt.Fprintf(b, `<text x="%d" y="%d" font-size="10" fill="%s" dominant-baseline="middle">0.00</text>`+"\n", lx+6, ly, systemColors[Sluice])
		fmt.Fprintf(b, `<text x="%d" y="%d" dominant-baseline="middle">beside Sluice's points: Sluice's delivered rate over the AF_XDP ceiling's</text>`+"\n", lx+34, ly)
	}
	fmt.Fprintln(b, `</svg>`)
	return b.Flush()
}

// measured reports whether any case has a point of sys.
func (r *Results) measured(sys System) bool {
	for _, c := range r.Cases {
		if c.point(sys) != nil {
			return true
		}
	}
	return false
}

// niceStep returns a grid step of 1, 2 or 5 times a power of ten that
// cuts [0, top] into about five intervals.
func niceStep(top float64) float64 {
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		return 0.2
	}
	raw := top / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

func esc(s string) string { return html.EscapeString(s) }
