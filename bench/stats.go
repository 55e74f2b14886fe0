package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// summary is the median, minimum and maximum of one figure over the runs,
// with every run's value kept for the JSON.
type summary struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// MarshalJSON writes the summary with null for a NaN figure, which JSON
// cannot hold.
func (s summary) MarshalJSON() ([]byte, error) {
	runs := make([]num, len(s.Runs))
	for i, v := range s.Runs {
		runs[i] = num(v)
	}
	return json.Marshal(struct {
		Median num   `json:"median"`
		Min    num   `json:"min"`
		Max    num   `json:"max"`
		Runs   []num `json:"runs"`
	}{num(s.Median), num(s.Min), num(s.Max), runs})
}

// num is a figure that may be NaN (nothing measured); it is written to JSON
// as null then.
type num float64

// MarshalJSON writes n, or null when it is NaN or infinite.
func (n num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// summarize returns the summary of values; NaN values (a run that produced
// no figure) are left out. With no values every field is NaN.
func summarize(values []float64) summary {
	var v []float64
	for _, x := range values {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return summary{Median: math.NaN(), Min: math.NaN(), Max: math.NaN(), Runs: values}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{Median: med, Min: s[0], Max: s[len(s)-1], Runs: values}
}

// percentileMS returns the p-th percentile (0 to 100) of sorted, in
// milliseconds, by the nearest-rank method: the smallest value with at least
// p% of the values at or below it. It returns NaN for an empty slice.
func percentileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return ms(sorted[rank-1])
}

// poisson yields the gaps between arrivals of a Poisson process with the
// given mean rate (arrivals per second): exponentially distributed, drawn
// from a seeded generator so runs are repeatable.
type poisson struct {
	rate float64
	rng  *rand.Rand
}

func newPoisson(rate float64, seed uint64) *poisson {
	return &poisson{rate: rate, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// next returns the time to the next arrival.
func (p *poisson) next() time.Duration {
	return time.Duration(p.rng.ExpFloat64() / p.rate * float64(time.Second))
}

// ms converts d to milliseconds as a float, for the table.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// processCPU is the CPU time (user and system) this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countLabel writes a request count short: 1M, 200k, 5k, 300.
func countLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// nan is a run that produced no figure.
var nan = math.NaN()
