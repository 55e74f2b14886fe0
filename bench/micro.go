package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
)

// microBench is one Go benchmark's figures over its -count runs, by unit
// (ns/op, B/op, allocs/op and the benchmark's own per-request metrics).
type microBench struct {
	Pkg     string               `json:"pkg"`
	Name    string               `json:"name"`
	Metrics map[string][]float64 `json:"metrics"`
}

// parseMicro reads `go test -bench` output. Benchmarks keep the order they
// first appear in; repeated lines of one benchmark (-count) are runs.
func parseMicro(r io.Reader) ([]*microBench, error) {
	var out []*microBench
	byKey := make(map[string]*microBench)
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(rest)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i] // the GOMAXPROCS suffix
			}
		}
		key := pkg + " " + name
		b := byKey[key]
		if b == nil {
			b = &microBench{Pkg: pkg, Name: name, Metrics: make(map[string][]float64)}
			byKey[key] = b
			out = append(out, b)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark %s: value %q: %w", f[0], f[i], err)
			}
			b.Metrics[f[i+1]] = append(b.Metrics[f[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	return out, nil
}

// scenarioMicro is scenario 6: the figures of the Go micro-benchmarks that
// `make bench` ran just before, read from their output.
func scenarioMicro(file string, r *report) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("open micro-benchmark output: %w", err)
	}
	defer f.Close()
	benches, err := parseMicro(f)
	if err != nil {
		return err
	}
	const sc = "6 micro"
	for _, b := range benches {
		label := path.Base(b.Pkg) + " " + b.Name
		for _, pair := range [][2]string{{"ns/req", "ns/op"}, {"allocs/req", "allocs/op"}} {
			unit := pair[0]
			v, ok := b.Metrics[unit]
			if !ok {
				unit = pair[1]
				v, ok = b.Metrics[unit]
			}
			if ok {
				r.add(row{Scenario: sc, Measure: label, Unit: unit, summary: summarize(v)})
			}
		}
	}
	r.detail("micro", benches)
	return nil
}
