package bench

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
)

// Geometry of the vhost-user plot, in SVG user units.
const (
	vplotBarW   = 18
	vplotGroupW = 64
	vplotH      = 260
	vplotLeft   = 64
	vplotTop    = 56
	vplotBottom = 110
)

// WriteVhostSVG draws the vhost-user seat's delivered rates: one panel per
// side, a group per case with the ceiling's bar and Sluice's, Sluice's
// share of the ceiling with its verdict above each group.
func (r *Results) WriteVhostSVG(w io.Writer) error {
	var sides []string
	top := 0.0
	for _, c := range r.Vhost {
		if len(sides) == 0 || sides[len(sides)-1] != c.Side {
			sides = append(sides, c.Side)
		}
		for _, p := range []*Rate{c.Ceiling, c.Sluice} {
			if measured(p) {
				top = max(top, p.DeliveredPPS/1e6)
			}
		}
	}
	step := niceStep(top)
	ymax := step * math.Max(1, math.Ceil(top/step))
	panelW := func(side string) int {
		n := 0
		for _, c := range r.Vhost {
			if c.Side == side {
				n++
			}
		}
		return max(n, 1)*vplotGroupW + 20
	}
	width := vplotLeft
	for _, s := range sides {
		width += panelW(s) + 40
	}
	height := vplotTop + vplotH + vplotBottom
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(bw, `<text x="%d" y="24" font-size="14">vhost-user seat: delivered Mpps, ceiling (testpmd io) and Sluice; ratio of ceiling</text>`+"\n", vplotLeft)
	y := func(v float64) float64 { return vplotTop + vplotH - v/ymax*vplotH }
	x0 := vplotLeft
	for _, side := range sides {
		pw := panelW(side)
		fmt.Fprintf(bw, `<text x="%d" y="%d" font-size="12">%s</text>`+"\n", x0, vplotTop-12, html.EscapeString("Sluice as "+side))
		for v := 0.0; v <= ymax+step/2; v += step {
			fmt.Fprintf(bw, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", x0, y(v), x0+pw, y(v))
			fmt.Fprintf(bw, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", x0-4, y(v)+4, v)
		}
		gx := x0 + 10
		for _, c := range r.Vhost {
			if c.Side != side {
				continue
			}
			for i, p := range []*Rate{c.Ceiling, c.Sluice} {
				if !measured(p) {
					continue
				}
				color := systemColors[AFXDPIO]
				if i == 1 {
					color = systemColors[Sluice]
				}
				v := p.DeliveredPPS / 1e6
				fmt.Fprintf(bw, `<rect class="bar" x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					gx+i*(vplotBarW+2), y(v), vplotBarW, y(0)-y(v), color, html.EscapeString(fmt.Sprintf("%s: %.3f Mpps", c, v)))
			}
			if c.CeilingRatio > 0 {
				fill := "#228833"
				if c.CeilingOK != nil && !*c.CeilingOK {
					fill = "#cc3311"
				}
				fmt.Fprintf(bw, `<text x="%d" y="%d" fill="%s" text-anchor="middle">%s</text>`+"\n", gx+vplotBarW, vplotTop-2, fill,
					html.EscapeString(verdict(c.CeilingRatio, c.CeilingTarget)))
			}
			lx, ly := gx+vplotBarW, vplotTop+vplotH+8
			fmt.Fprintf(bw, `<text transform="translate(%d,%d) rotate(60)">%s</text>`+"\n", lx, ly,
				html.EscapeString(fmt.Sprintf("%s %d B %d", c.Direction, c.Size, c.Sessions)))
			gx += vplotGroupW
		}
		x0 += pw + 40
	}
	ly := height - 14
	fmt.Fprintf(bw, `<rect x="%d" y="%d" width="12" height="10" fill="%s"/><text x="%d" y="%d">ceiling: testpmd io forwarding in the seat</text>`+"\n",
		vplotLeft, ly-9, systemColors[AFXDPIO], vplotLeft+16, ly)
	fmt.Fprintf(bw, `<rect x="%d" y="%d" width="12" height="10" fill="%s"/><text x="%d" y="%d">Sluice</text>`+"\n",
		vplotLeft+300, ly-9, systemColors[Sluice], vplotLeft+316, ly)
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}
