package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
)

// defaultStatsURL is the worker's batch-stats on its default ADMIN_ADDR
// (admin.DefaultAddr; the publisher does not link the worker's packages).
const defaultStatsURL = "http://127.0.0.1:8080/admin/batch-stats"

// The part of batch-stats' worker.shadow (shadowReport) the report
// reads.
type (
	shadowFigures struct {
		Samples   int64   `json:"samples"`
		Agreed    int64   `json:"agreed"`
		Agreement float64 `json:"agreement"`
		MeanScore float64 `json:"mean_score"`
	}
	shadowBucket struct {
		From int    `json:"from"`
		To   int    `json:"to"`
		Name string `json:"name"`
		shadowFigures
	}
	shadowGroup struct {
		Model        string `json:"model"`
		Topic        string `json:"topic,omitempty"`
		Instructions string `json:"instructions,omitempty"`
		shadowFigures
		Recent     shadowFigures  `json:"recent"`
		Limit      int            `json:"limit"`
		BySize     []shadowBucket `json:"by_batch_size"`
		ByPosition []shadowBucket `json:"by_position"`
	}
	shadowReport struct {
		Rate         float64       `json:"rate"`
		AgreeAt      float64       `json:"agree_at"`
		QualityFloor float64       `json:"quality_floor"`
		Window       int           `json:"window"`
		Picked       int64         `json:"picked"`
		Calls        int64         `json:"calls"`
		Samples      int64         `json:"samples"`
		Dropped      int64         `json:"dropped"`
		Failed       int64         `json:"failed"`
		Groups       []shadowGroup `json:"groups"`
	}
)

// qualityConfig is the parsed command line of quality.
type qualityConfig struct {
	statsURL string
	token    string
	target   float64
	json     bool
}

func qualityFlags(cfg *qualityConfig, getenv func(string) string) *flag.FlagSet {
	fs := flag.NewFlagSet("quality", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.statsURL, "stats-url", defaultStatsURL, "the worker's stats `URL` (/admin/batch-stats)")
	fs.StringVar(&cfg.token, "token", getenv("ADMIN_TOKEN"), "bearer `token` for the admin API (default $ADMIN_TOKEN; never printed)")
	fs.Float64Var(&cfg.target, "target", 0.9, "the agreement `share` a batch size or position must keep to count as keeping answers")
	fs.BoolVar(&cfg.json, "json", false, "print the worker's shadow figures as JSON instead of tables")
	return fs
}

func parseQuality(args []string, getenv func(string) string) (*qualityConfig, error) {
	cfg := &qualityConfig{}
	if err := parseCommand(qualityFlags(cfg, getenv), args); err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.statsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--stats-url %q is not an http(s) URL", cfg.statsURL)
	}
	if !(cfg.target > 0 && cfg.target <= 1) {
		return nil, fmt.Errorf("--target %g: want a share above 0 up to 1, such as 0.9", cfg.target)
	}
	return cfg, nil
}

func (a *app) qualityUsage(w io.Writer) {
	printUsage(w, `Usage: publisher quality [flags]

Print what the worker's shadow sampling (SHADOW_RATE) measured: for each
group of requests (model, instructions, topic), how often an answer from a
combined call agreed with the same request's answer alone, overall, over the
last SHADOW_WINDOW samples, by the combined call's size and by the request's
position in it. The last line of a group names the last position in a call
up to which agreement keeps to --target: the largest batch size that keeps
answers as they would be alone.

Exit codes: 0 printed, 2 usage error or the stats could not be read.

Flags:
`, qualityFlags(&qualityConfig{}, a.getenv))
}

// quality is the quality command.
func (a *app) quality(ctx context.Context, args []string) int {
	cfg, err := parseQuality(args, a.getenv)
	if err != nil {
		return a.badUsage("quality", err, a.qualityUsage)
	}
	st, err := fetchShadowStats(ctx, http.DefaultClient, cfg.statsURL, cfg.token)
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher quality: %v\n", err)
		return exitUsage
	}
	if cfg.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(st)
	} else {
		err = writeQuality(a.stdout, st, cfg.target)
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "publisher quality: write: %v\n", err)
		return exitUsage
	}
	return exitOK
}

// fetchShadowStats GETs url, with token as a bearer token when set, and
// reads worker.shadow from its JSON body.
func fetchShadowStats(ctx context.Context, client *http.Client, url, token string) (shadowReport, error) {
	ctx, cancel := context.WithTimeout(ctx, workerStatsTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return shadowReport{}, fmt.Errorf("worker stats: build request: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return shadowReport{}, fmt.Errorf("worker stats: get %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return shadowReport{}, fmt.Errorf("worker stats: get %s: status %s: pass the worker's ADMIN_TOKEN with --token", url, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return shadowReport{}, fmt.Errorf("worker stats: get %s: status %s", url, resp.Status)
	}
	var body struct {
		Worker *struct {
			Shadow *shadowReport `json:"shadow"`
		} `json:"worker"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&body); err != nil {
		return shadowReport{}, fmt.Errorf("worker stats: decode %s: %w", url, err)
	}
	if body.Worker == nil || body.Worker.Shadow == nil {
		return shadowReport{}, errors.New("worker stats: " + url + " has no worker.shadow: the worker predates shadow sampling")
	}
	return *body.Worker.Shadow, nil
}

// writeQuality prints st as tables, one per group.
func writeQuality(w io.Writer, st shadowReport, target float64) error {
	if st.Rate == 0 {
		_, err := fmt.Fprintln(w, "shadow sampling is off on this worker (SHADOW_RATE=0): nothing measured")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	guard := "off"
	if st.QualityFloor > 0 {
		guard = fmt.Sprintf("floor %g over %d samples", st.QualityFloor, st.Window)
	}
	fmt.Fprintf(tw, "shadow sampling: rate %g, agree at score %g, quality guard %s\n", st.Rate, st.AgreeAt, guard)
	fmt.Fprintf(tw, "picked %d, shadow calls %d, samples %d, dropped %d, failed %d\n", st.Picked, st.Calls, st.Samples, st.Dropped, st.Failed)
	if len(st.Groups) == 0 {
		fmt.Fprintln(tw, "no samples yet")
	}
	for _, g := range st.Groups {
		fmt.Fprintf(tw, "\ngroup: model %s, instructions %s, topic %s\n", g.Model, orDash(g.Instructions), orDash(g.Topic))
		limit := "none"
		if g.Limit > 0 {
			limit = fmt.Sprint(g.Limit)
		}
		fmt.Fprintf(tw, "samples %d, agreement %.2f, mean score %.2f; last %d: agreement %.2f; guard's limit %s\n",
			g.Samples, g.Agreement, g.MeanScore, g.Recent.Samples, g.Recent.Agreement, limit)
		writeBuckets(tw, "BATCH SIZE", g.BySize)
		writeBuckets(tw, "POSITION", g.ByPosition)
		fmt.Fprintf(tw, "agreement of at least %g: %s\n", target, keeps(g, target))
	}
	return tw.Flush()
}

func writeBuckets(tw *tabwriter.Writer, name string, bs []shadowBucket) {
	fmt.Fprintf(tw, "%s\tSAMPLES\tAGREEMENT\tMEAN SCORE\n", name)
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\n", b.Name, b.Samples, b.Agreement, b.MeanScore)
	}
}

// keeps says up to which position in a call the agreement keeps to
// target: the largest call that keeps answers as they would be alone.
func keeps(g shadowGroup, target float64) string {
	switch pos, all := keptUpTo(g.ByPosition, target); {
	case pos == "":
		return "not even the first position of a call keeps to it"
	case all:
		return fmt.Sprintf("every position measured keeps to it (up to %s)", pos)
	default:
		return fmt.Sprintf("positions up to %s keep to it: calls of at most %s requests keep answers as they would be alone", pos, pos)
	}
}

// keptUpTo is the upper end of the last bucket such that it and every one
// before it keep to target ("" when the first does not), and whether
// every bucket does.
func keptUpTo(bs []shadowBucket, target float64) (string, bool) {
	last := ""
	for _, b := range bs {
		if b.Agreement < target {
			return last, false
		}
		last = fmt.Sprint(b.To)
		if b.To == 0 { // the open bucket past the last bound
			last = b.Name
		}
	}
	return last, true
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
