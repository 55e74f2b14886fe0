package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// target is the goal a row is checked against: its median, or with worst
// set, its worst run (a bound that must hold every time).
type target struct {
	op    string // ">=", "<", "<=" or "="
	value float64
	worst bool
}

func atLeast(v float64) *target { return &target{op: ">=", value: v} }
func below(v float64) *target   { return &target{op: "<", value: v} }

// exactly is a count every run must hit.
func exactly(v float64) *target { return &target{op: "=", value: v, worst: true} }

// never is a bound no run may exceed.
func never(above float64) *target { return &target{op: "<=", value: above, worst: true} }

// met reports whether s meets the target.
func (t *target) met(s summary) bool {
	v := s.Median
	if t.worst {
		v = s.Max
		if t.op == ">=" {
			v = s.Min
		}
	}
	if math.IsNaN(v) {
		return false
	}
	if t.op == "=" {
		if t.worst {
			return s.Min == t.value && s.Max == t.value
		}
		return v == t.value
	}
	switch t.op {
	case ">=":
		return v >= t.value
	case "<":
		return v < t.value
	}
	return v <= t.value
}

func (t *target) text(unit string) string {
	s := t.op + " " + formatValue(t.value, unit)
	if t.worst {
		s += " (every run)"
	}
	return s
}

// row is one line of the table: a figure's median, min and max over the
// runs, and the target its median is checked against.
type row struct {
	Scenario string `json:"scenario"`
	Measure  string `json:"measure"`
	Unit     string `json:"unit"`
	summary
	Target *target
	// TargetText and Met are Target as written in the table.
	TargetText string
	Met        *bool
}

// MarshalJSON writes the row flat, with null for a NaN figure. (Without it
// the embedded summary's MarshalJSON would stand for the whole row.)
func (rw row) MarshalJSON() ([]byte, error) {
	runs := make([]num, len(rw.Runs))
	for i, v := range rw.Runs {
		runs[i] = num(v)
	}
	return json.Marshal(struct {
		Scenario string `json:"scenario"`
		Measure  string `json:"measure"`
		Unit     string `json:"unit"`
		Median   num    `json:"median"`
		Min      num    `json:"min"`
		Max      num    `json:"max"`
		Runs     []num  `json:"runs"`
		Target   string `json:"target,omitempty"`
		Met      *bool  `json:"met,omitempty"`
	}{rw.Scenario, rw.Measure, rw.Unit, num(rw.Median), num(rw.Min), num(rw.Max), runs, rw.TargetText, rw.Met})
}

// meta describes the machine and the run, so figures can be judged.
type meta struct {
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"`
	Go          string    `json:"go"`
	OS          string    `json:"os"`
	Arch        string    `json:"arch"`
	CPUs        int       `json:"cpus"`
	Commit      string    `json:"commit,omitempty"`
	LoadBefore  string    `json:"loadavg_before"`
	LoadAfter   string    `json:"loadavg_after"`
	Command     string    `json:"command"`
	Options     *options  `json:"options"`
	FailedSteps []string  `json:"failed,omitempty"`
}

// report collects the rows and details of every scenario.
type report struct {
	mu      sync.Mutex
	log     io.Writer
	Meta    meta           `json:"meta"`
	Rows    []row          `json:"rows"`
	Details map[string]any `json:"details"`
}

func newReport(o *options, log io.Writer) *report {
	return &report{
		log:     log,
		Details: make(map[string]any),
		Meta: meta{
			Started: time.Now(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
			CPUs: runtime.NumCPU(), Commit: gitCommit(), LoadBefore: loadavg(),
			Command: "go run ./bench " + strings.Join(os.Args[1:], " "), Options: o,
		},
	}
}

// progress writes a progress line to the log.
func (r *report) progress(format string, args ...any) {
	fmt.Fprintf(r.log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// add appends a row, checking its target.
func (r *report) add(rw row) {
	if rw.Target != nil {
		rw.TargetText = rw.Target.text(rw.Unit)
		met := rw.Target.met(rw.summary)
		rw.Met = &met
	}
	r.mu.Lock()
	r.Rows = append(r.Rows, rw)
	r.mu.Unlock()
}

// detail stores a scenario's raw figures in the JSON.
func (r *report) detail(name string, v any) {
	r.mu.Lock()
	r.Details[name] = v
	r.mu.Unlock()
}

// failed records a scenario that could not finish.
func (r *report) failed(name string, err error) {
	r.mu.Lock()
	r.Meta.FailedSteps = append(r.Meta.FailedSteps, fmt.Sprintf("%s: %v", name, err))
	r.mu.Unlock()
}

// finish fills in what is known only at the end.
func (r *report) finish() {
	r.Meta.Seconds = time.Since(r.Meta.Started).Seconds()
	r.Meta.LoadAfter = loadavg()
}

// writeTable prints the table.
func (r *report) writeTable(w io.Writer) error {
	m := r.Meta
	fmt.Fprintf(w, "aibatch benchmarks: %s %s/%s, %d CPUs, load %s -> %s, %d run(s), %.0fs\n",
		m.Go, m.OS, m.Arch, m.CPUs, m.LoadBefore, m.LoadAfter, m.Options.Runs, m.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmeasure\tunit\tmedian\tmin\tmax\ttarget\tstatus\t")
	for _, rw := range r.Rows {
		status := ""
		if rw.Met != nil {
			status = "met"
			if !*rw.Met {
				status = "MISSED"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", rw.Scenario, rw.Measure, rw.Unit,
			formatValue(rw.Median, rw.Unit), formatValue(rw.Min, rw.Unit), formatValue(rw.Max, rw.Unit),
			rw.TargetText, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range m.FailedSteps {
		fmt.Fprintf(w, "FAILED %s\n", f)
	}
	return nil
}

// writeJSON writes the report to path.
func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// formatValue prints v with the precision its unit needs.
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch unit {
	case "req/s", "ns/req", "ns/op", "B/op", "B/req", "count":
		return thousands(v)
	case "calls/1k req":
		return fmt.Sprintf("%.1f", v)
	case "ratio":
		return fmt.Sprintf("%.2f", v)
	case "calls/req":
		return fmt.Sprintf("%.4f", v)
	case "%":
		return fmt.Sprintf("%.1f%%", v)
	case "ms", "MiB", "us", "allocs/req", "allocs/op":
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// thousands prints v rounded, with thousands separators.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// loadavg is the first three fields of /proc/loadavg, or "?".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// gitCommit is the short commit of the working tree, or "".
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
