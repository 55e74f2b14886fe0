package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// barRefresh is how often the terminal progress bar is redrawn.
const barRefresh = 100 * time.Millisecond

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// startProgress reports progress on stderr until the returned stop is
// called: a progress bar when stderr is a terminal, otherwise a plain line
// every interval (so logs stay readable). An interval of 0 reports nothing.
func (a *app) startProgress(every time.Duration, tr *tracker, wait bool) (stop func()) {
	if every <= 0 {
		return func() {}
	}
	if a.stderrTTY {
		return a.startBar(tr, wait)
	}
	return a.tick(every, func() { fmt.Fprintln(a.stderr, progressLine(tr.progress(), wait)) }, nil)
}

// progressLine is the plain progress line.
func progressLine(p progress, wait bool) string {
	line := fmt.Sprintf("sent %d/%d, acked %d", p.published, p.total, p.acked)
	if p.failed > 0 {
		line += fmt.Sprintf(", publish failed %d", p.failed)
	}
	if wait {
		line += fmt.Sprintf(", results %d", p.results)
	}
	return line
}

// startBar draws a bar of results (with wait) or PubAcks (without) out of
// all requests, described by what was sent.
func (a *app) startBar(tr *tracker, wait bool) (stop func()) {
	unit := "acked"
	if wait {
		unit = "results"
	}
	bar := progressbar.NewOptions(tr.progress().total,
		progressbar.OptionSetWriter(a.stderr),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true),
	)
	update := func() {
		p := tr.progress()
		desc := fmt.Sprintf("sent %d", p.published)
		if p.failed > 0 {
			desc += fmt.Sprintf(", %d failed", p.failed)
		}
		bar.Describe(desc)
		n := p.acked
		if wait {
			n = p.results
		}
		_ = bar.Set(n)
	}
	// The last update shows the final state; the newline ends the bar's line
	// before the summary.
	return a.tick(barRefresh, update, func() { update(); fmt.Fprintln(a.stderr) })
}

// tick calls each every interval until the returned stop is called, which
// then calls last (if not nil) once.
func (a *app) tick(every time.Duration, each, last func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				each()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		if last != nil {
			last()
		}
	}
}
