package chaos

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what Run injected and found.
type Report struct {
	// Seed is the seed every random choice came from; run again with it to
	// repeat the choices (timing still differs).
	Seed uint64
	// Scenarios holds one report per scenario that started (all of them
	// unless ctx ended), in the order they were configured.
	Scenarios []ScenarioReport
	// Wall is the time Run took, the worker's build included.
	Wall time.Duration
	// Dir is where the logs and stores were kept; "" when they were removed.
	Dir string
}

// Problems returns the breaches of the invariant over every scenario:
// duplicates, lost requests and other violations. It must be 0.
func (r Report) Problems() int {
	n := 0
	for _, s := range r.Scenarios {
		n += s.Problems()
	}
	return n
}

// ScenarioReport is one scenario's figures. Counts of requests come from the
// streams the checker read back, not from the workers.
type ScenarioReport struct {
	// Name and Faults name the scenario and what it injects.
	Name   string
	Faults string
	// Cluster is true when it ran on the three-node cluster.
	Cluster bool

	// Sent is the requests published; Accepted got a PubAck, Unconfirmed
	// never did (they may or may not have a result, never two).
	Sent, Accepted, Unconfirmed int
	// PublishRetries counts publishes repeated for want of a PubAck.
	PublishRetries int
	// Poison and Urgent are accepted poison requests and accepted requests
	// on the urgent lane.
	Poison, Urgent int
	// ResultsOK and Errors count requests by the status of their result;
	// DeadLetters counts the dead letters stored.
	ResultsOK, Errors, DeadLetters int
	// Duplicates counts results and dead letters beyond the first for a
	// request; must be 0.
	Duplicates int
	// Lost counts accepted requests with no result and error results with
	// no dead letter; must be 0.
	Lost int
	// Phantoms counts results and dead letters for ids never sent, and
	// WrongOutputs ok results whose output or metadata belongs to another
	// request; both must be 0.
	Phantoms, WrongOutputs int
	// Innocent counts innocent dead letters: requests the harness did not
	// make poison that ended as an error result or have a dead letter,
	// whatever the error (attempts used up, expired, refused); must be 0.
	Innocent int
	// Violations counts every other breach (a poison request ending ok, a
	// dead letter whose body changed, requests left in the stream, a data
	// race, a panic or the API key in a worker's log); must be 0.
	Violations int
	// Evidence holds examples of each breach found.
	Evidence []string

	// MaxQueuedBatch and MaxQueuedUrgent are the longest a request of each
	// lane waited in the stream before the call that answered it (the
	// results' queued_ms, as the workers measured it).
	MaxQueuedBatch, MaxQueuedUrgent time.Duration

	// ProviderCalls is the chat completion calls workers made (through the
	// proxy); ProviderFaults counts them by the fault injected.
	ProviderCalls  int64
	ProviderFaults map[string]int64
	// Periods are the provider outages and key rejections injected.
	Periods []PeriodReport
	// WorkerKills counts SIGKILLs by moment: "mid-call", "after-answer",
	// "random".
	WorkerKills map[string]int
	// WorkerRestarts counts worker starts after the first in a slot;
	// WorkerExits lists exits the harness did not cause.
	WorkerRestarts int
	WorkerExits    []string
	// ShadowSamples counts the shadow samples the workers compared, as the
	// ones that stopped cleanly logged them (a SIGKILLed worker's are not
	// counted).
	ShadowSamples int64
	// ServerRestarts counts NATS nodes shut down and started again;
	// LeaderMoves describes each loss of the AI_REQUESTS leader.
	ServerRestarts int
	LeaderMoves    []string
	// FaultPhase is how long traffic was published and faults injected;
	// Drain how long the request stream then took to empty; Wall the whole
	// scenario, set-up and check included.
	FaultPhase, Drain, Wall time.Duration
	// Err is set when the harness itself failed (a server would not start);
	// the figures are then incomplete.
	Err error
}

// PeriodReport is one provider period as the proxy saw it.
type PeriodReport struct {
	// Kind is PeriodOutage or PeriodKeyRejected; Statuses are the HTTP
	// statuses it answered, in turn.
	Kind     string
	Statuses []int
	// At is when it began, from the scenario's start; For how long it
	// lasted.
	At, For time.Duration
	// Failed counts the calls it failed, ByStatus by status.
	Failed   int64
	ByStatus map[int]int64
	// Recovery is the time from its end to the first chat completion call
	// answered HTTP 200 (the workers' probes finding the provider back);
	// -1 when no call was answered after it.
	Recovery time.Duration
}

// String describes the period in one line.
func (p PeriodReport) String() string {
	what := "provider outage"
	if p.Kind == PeriodKeyRejected {
		what = "API key rejected"
	}
	by := make(map[string]int64, len(p.ByStatus))
	for st, n := range p.ByStatus {
		by["HTTP "+strconv.Itoa(st)] = n
	}
	out := fmt.Sprintf("%s (HTTP %s) from %s for %s: %d calls failed (%s); ", what, statusList(p.Statuses),
		p.At.Round(100*time.Millisecond), p.For.Round(100*time.Millisecond), p.Failed, countsText(by, "none"))
	if p.Recovery < 0 {
		return out + "no call answered after it"
	}
	return out + fmt.Sprintf("first call answered %s after it ended", p.Recovery.Round(10*time.Millisecond))
}

// Problems returns the scenario's breaches of the invariant, plus one if
// the harness failed.
func (s ScenarioReport) Problems() int {
	n := s.Duplicates + s.Lost + s.Innocent + s.Phantoms + s.WrongOutputs + s.Violations
	if s.Err != nil {
		n++
	}
	return n
}

// kills returns the total SIGKILLs.
func (s ScenarioReport) kills() int {
	n := 0
	for _, k := range s.WorkerKills {
		n += k
	}
	return n
}

// Write prints a table per scenario, then a summary table, to w.
func (r Report) Write(w io.Writer) error {
	var b strings.Builder
	for _, s := range r.Scenarios {
		s.write(&b)
		b.WriteString("\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsent\tok\terrors\tdead\tduplicates\tlost\tinnocent dead\tviolations\tcalls\tworker restarts\tserver restarts\twall\t")
	var total ScenarioReport
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", s.Name, s.Sent, s.ResultsOK, s.Errors, s.DeadLetters,
			s.Duplicates, s.Lost, s.Innocent, s.Phantoms+s.WrongOutputs+s.Violations, s.ProviderCalls, s.WorkerRestarts, s.ServerRestarts, s.Wall.Round(100*time.Millisecond))
		total.Sent += s.Sent
		total.ResultsOK += s.ResultsOK
		total.Errors += s.Errors
		total.DeadLetters += s.DeadLetters
		total.Duplicates += s.Duplicates
		total.Lost += s.Lost
		total.Innocent += s.Innocent
		total.Violations += s.Phantoms + s.WrongOutputs + s.Violations
		total.ProviderCalls += s.ProviderCalls
		total.WorkerRestarts += s.WorkerRestarts
		total.ServerRestarts += s.ServerRestarts
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", total.Sent, total.ResultsOK, total.Errors, total.DeadLetters,
		total.Duplicates, total.Lost, total.Innocent, total.Violations, total.ProviderCalls, total.WorkerRestarts, total.ServerRestarts, r.Wall.Round(100*time.Millisecond))
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "PASS: every accepted request ended exactly once, and only poison as an error"
	if p := r.Problems(); p > 0 {
		verdict = fmt.Sprintf("FAIL: %d breaches of the invariant", p)
	}
	fmt.Fprintf(&b, "%s (seed %d", verdict, r.Seed)
	if r.Dir != "" {
		fmt.Fprintf(&b, ", logs in %s", r.Dir)
	}
	b.WriteString(")\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// write prints one scenario's table.
func (s ScenarioReport) write(b *strings.Builder) {
	broker := "one server"
	if s.Cluster {
		broker = "3-node cluster, 3 replicas"
	}
	fmt.Fprintf(b, "== %s (%s): %s\n", s.Name, broker, s.Faults)
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	row := func(name, value string) { fmt.Fprintf(tw, "  %s\t%s\n", name, value) }
	row("requests sent", fmt.Sprintf("%d (accepted %d, unconfirmed %d, publish retries %d; poison %d, urgent %d)",
		s.Sent, s.Accepted, s.Unconfirmed, s.PublishRetries, s.Poison, s.Urgent))
	row("results ok", fmt.Sprint(s.ResultsOK))
	row("errors", fmt.Sprint(s.Errors))
	row("dead letters", fmt.Sprint(s.DeadLetters))
	row("duplicates found", fmt.Sprintf("%d (must be 0)", s.Duplicates))
	row("lost", fmt.Sprintf("%d (must be 0)", s.Lost))
	row("innocent dead", fmt.Sprintf("%d (requests not made poison that ended as errors or dead letters; must be 0)", s.Innocent))
	row("other violations", fmt.Sprintf("%d (phantoms %d, wrong outputs %d, other %d; must be 0)",
		s.Phantoms+s.WrongOutputs+s.Violations, s.Phantoms, s.WrongOutputs, s.Violations))
	row("longest queued", fmt.Sprintf("batch lane %s, urgent lane %s", s.MaxQueuedBatch, s.MaxQueuedUrgent))
	row("provider calls", fmt.Sprintf("%d (%s)", s.ProviderCalls, countsText(s.ProviderFaults, "no faults")))
	for _, p := range s.Periods {
		row("provider period", p.String())
	}
	row("worker kills", fmt.Sprintf("%d (%s)", s.kills(), countsText(s.WorkerKills, "none")))
	row("worker restarts", fmt.Sprintf("%d (exits the harness did not cause: %d)", s.WorkerRestarts, len(s.WorkerExits)))
	row("server restarts", fmt.Sprint(s.ServerRestarts))
	if s.ShadowSamples > 0 {
		row("shadow samples", fmt.Sprintf("%d (compared by workers that stopped cleanly)", s.ShadowSamples))
	}
	for _, m := range s.LeaderMoves {
		row("leader lost", m)
	}
	row("fault phase", s.FaultPhase.Round(10*time.Millisecond).String())
	row("drain", s.Drain.Round(10*time.Millisecond).String())
	row("wall time", s.Wall.Round(10*time.Millisecond).String())
	_ = tw.Flush()
	if s.Err != nil {
		fmt.Fprintf(b, "  HARNESS ERROR: %v\n", s.Err)
	}
	for _, e := range s.WorkerExits {
		fmt.Fprintf(b, "  worker exit: %s\n", e)
	}
	for _, e := range s.Evidence {
		fmt.Fprintf(b, "  evidence: %s\n", e)
	}
}

// countsText prints counts as "a 1, b 2", sorted by name.
func countsText[V int | int64](m map[string]V, none string) string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return none
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
