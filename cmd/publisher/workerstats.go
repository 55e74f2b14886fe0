package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// workerStatsTimeout bounds one GET of --stats-url.
const workerStatsTimeout = 5 * time.Second

// workerCalls is one reading of the API-call counters in the worker's
// /admin/batch-stats JSON, and of its cost estimate; a figure the JSON
// lacks (or has as null) is nil.
type workerCalls struct {
	fleet, worker *int64
	cost, saving  *float64
}

// fetchWorkerCalls GETs url and reads fleet.api_calls and worker.api_calls
// from its JSON body. It fails if neither is there.
func fetchWorkerCalls(ctx context.Context, client *http.Client, url string) (workerCalls, error) {
	ctx, cancel := context.WithTimeout(ctx, workerStatsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return workerCalls{}, fmt.Errorf("worker stats: build request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return workerCalls{}, fmt.Errorf("worker stats: get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return workerCalls{}, fmt.Errorf("worker stats: get %s: status %s", url, resp.Status)
	}
	type counters struct {
		APICalls *int64 `json:"api_calls"`
	}
	var body struct {
		Fleet  *counters `json:"fleet"`
		Worker *counters `json:"worker"`
		Cost   *float64  `json:"estimated_cost"`
		Saving *float64  `json:"estimated_saving"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&body); err != nil {
		return workerCalls{}, fmt.Errorf("worker stats: decode %s: %w", url, err)
	}
	c := workerCalls{cost: body.Cost, saving: body.Saving}
	if body.Fleet != nil {
		c.fleet = body.Fleet.APICalls
	}
	if body.Worker != nil {
		c.worker = body.Worker.APICalls
	}
	if c.fleet == nil && c.worker == nil {
		return c, fmt.Errorf("worker stats: %s has neither fleet.api_calls nor worker.api_calls", url)
	}
	return c, nil
}

// setWorkerCalls records the API calls made during the run: after minus
// before, of fleet.api_calls or worker.api_calls, whichever grew more. The
// fleet's totals cover every worker but are updated every few seconds
// (STATS_INTERVAL), so right after a run they may not include it yet; the
// worker's own counter is current but misses other workers' calls. The
// larger of the two is the better count either way (on a tie, the fleet's).
// When the reading before the run failed, it records the totals since the
// worker started and says so.
func (s *Summary) setWorkerCalls(before workerCalls, beforeErr error, after workerCalls) error {
	var best *int64
	source := ""
	for _, c := range []struct {
		name string
		b, a *int64
	}{{"fleet.api_calls", before.fleet, after.fleet}, {"worker.api_calls", before.worker, after.worker}} {
		if c.a == nil || (beforeErr == nil && c.b == nil) {
			continue
		}
		calls := *c.a
		if beforeErr == nil {
			calls -= *c.b
		}
		if best == nil || calls > *best {
			best, source = &calls, c.name
		}
	}
	if best == nil {
		return errors.New("worker stats: no api_calls counter in both readings")
	}
	if beforeErr != nil {
		source += " since the worker started"
	}
	s.APICalls, s.APICallsSource = best, source
	s.setCost(before, beforeErr, after)
	return nil
}

// setCost records the worker's estimated cost and saving of the run: after
// minus before (before counts as 0 when the worker had no estimate yet). It
// records nothing when the reading before failed, or the worker reports no
// estimate (PRICES unset).
func (s *Summary) setCost(before workerCalls, beforeErr error, after workerCalls) {
	if beforeErr != nil || after.cost == nil || after.saving == nil {
		return
	}
	c, sv := *after.cost, *after.saving
	if before.cost != nil && before.saving != nil {
		c, sv = c-*before.cost, sv-*before.saving
	}
	s.EstimatedCost, s.EstimatedSaving = &c, &sv
}
