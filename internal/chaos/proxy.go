package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Names of what the proxy did to a call, as ProxyStats.Faults counts them.
const (
	// FaultServerError: HTTP 500 with OpenAI's error JSON.
	FaultServerError = "http_500"
	// FaultRateLimit: HTTP 429 with OpenAI's error JSON and Retry-After.
	FaultRateLimit = "http_429"
	// FaultTimeout: no answer until the client gave up.
	FaultTimeout = "timeout"
	// FaultDropItem: a successful batch answer lost one of its results.
	FaultDropItem = "drop_item"
	// FaultMalformed: a successful answer's content was cut in half.
	FaultMalformed = "malformed_json"
	// FaultUnknownID: a successful batch answer got a result for an id the
	// call did not ask for.
	FaultUnknownID = "unknown_id"
	// FaultHeld: the call was held open so its worker could be killed in
	// the middle of it.
	FaultHeld = "held_for_kill"
	// FaultOutage: the call came during an outage (StartOutage) and was
	// answered HTTP 500, 503 or 529 with OpenAI's error JSON.
	FaultOutage = "outage"
	// FaultKeyRejected: the call came while the key was rejected
	// (StartKeyRejection) and was answered HTTP 401 invalid_api_key.
	FaultKeyRejected = "key_rejected"
)

// Kinds of Period.
const (
	// PeriodOutage: every call is answered with a 5xx status.
	PeriodOutage = "outage"
	// PeriodKeyRejected: every call is answered HTTP 401 invalid_api_key.
	PeriodKeyRejected = "key_rejected"
)

// OutageStatuses are the statuses an outage answers by default, in turn:
// OpenAI's 500 and 503, and 529 (overloaded) as Anthropic sends it.
func OutageStatuses() []int { return []int{500, 503, 529} }

// Period is a stretch of time during which the proxy answered every call,
// whatever its path, with one failure: an outage or a rejected key. It is
// injected besides the per-call faults of FaultRates, and takes precedence
// over them (a call held for a kill excepted).
type Period struct {
	// Kind is PeriodOutage or PeriodKeyRejected.
	Kind string
	// Statuses are the HTTP statuses answered, in turn.
	Statuses []int
	// Start and End bound the period. A period that has failed no call by
	// its planned end lasts until it fails one, so that it always tests
	// something; End is then that call's arrival.
	Start, End time.Time
	// Failed counts the calls answered with the period's failure, and
	// ByStatus the same calls by status.
	Failed   int64
	ByStatus map[int]int64
	// Recovered is when the first chat completion call after End was
	// answered HTTP 200; zero when none was yet.
	Recovered time.Time
}

// FaultRates are the chances, from 0 to 1, that one provider call gets each
// fault. A call gets at most one fault; the rates must add up to at most 1.
// The zero value injects nothing.
type FaultRates struct {
	// ServerError answers HTTP 500 with OpenAI's error JSON.
	ServerError float64
	// RateLimit answers HTTP 429 with OpenAI's error JSON and a Retry-After
	// header (ProxyConfig.RetryAfter).
	RateLimit float64
	// Timeout holds the call unanswered until the client gives up.
	Timeout float64
	// DropItem removes one result from a successful batch answer (its
	// choices[0].message.content).
	DropItem float64
	// Malformed cuts a successful answer's content in half: not JSON.
	Malformed float64
	// UnknownID adds to a successful batch answer a result for an id the
	// call did not ask for.
	UnknownID float64
}

// IssueFaultRates are the rates the reliability issue asks for: 10% HTTP
// 500, 5% 429 with Retry-After, 5% timeouts, 5% answers missing an item, 2%
// malformed JSON, 1% answers with an unknown id.
func IssueFaultRates() FaultRates {
	return FaultRates{ServerError: 0.10, RateLimit: 0.05, Timeout: 0.05, DropItem: 0.05, Malformed: 0.02, UnknownID: 0.01}
}

func (f FaultRates) validate() error {
	rates := []float64{f.ServerError, f.RateLimit, f.Timeout, f.DropItem, f.Malformed, f.UnknownID}
	var sum float64
	for _, r := range rates {
		if r < 0 || r > 1 {
			return fmt.Errorf("chaos: fault rate %v: want 0 to 1", r)
		}
		sum += r
	}
	if sum > 1 {
		return fmt.Errorf("chaos: fault rates add up to %v: want at most 1", sum)
	}
	return nil
}

// pick returns the fault for a uniform draw u in [0,1), or "".
func (f FaultRates) pick(u float64) string {
	for _, c := range []struct {
		rate float64
		name string
	}{
		{f.ServerError, FaultServerError}, {f.RateLimit, FaultRateLimit}, {f.Timeout, FaultTimeout},
		{f.DropItem, FaultDropItem}, {f.Malformed, FaultMalformed}, {f.UnknownID, FaultUnknownID},
	} {
		if u < c.rate {
			return c.name
		}
		u -= c.rate
	}
	return ""
}

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// Upstream is the OpenAI-compatible base URL calls are forwarded to,
	// such as an openaitest.Server's URL ("http://127.0.0.1:1234/v1");
	// required. Request paths are forwarded unchanged.
	Upstream string
	// Slots is the number of listeners, one per worker slot, so the proxy
	// knows which worker made a call. Default 1.
	Slots int
	// Rates are the faults injected into chat completion calls.
	Rates FaultRates
	// RetryAfter is the Retry-After header of an injected 429. Default 1s
	// (whole seconds are sent).
	RetryAfter time.Duration
	// MaxHang bounds how long a call is held for a timeout or a kill when
	// the client does not give up. Default 2m.
	MaxHang time.Duration
	// Seed seeds the fault choices.
	Seed uint64
}

// ProxyStats counts what the proxy did.
type ProxyStats struct {
	// Calls is every chat completion call a worker made through the proxy.
	Calls int64
	// Forwarded is the calls passed to the upstream server.
	Forwarded int64
	// Faults counts the calls by the fault injected (Fault* names).
	Faults map[string]int64
	// Periods are the outages and key rejections started, oldest first.
	Periods []Period
}

// Proxy is a reverse proxy in front of an OpenAI-compatible server that
// injects faults in the real wire format: error statuses with OpenAI's error
// JSON and Retry-After headers, calls that hang until the client times out,
// and successful answers whose choices[0].message.content is rewritten. It
// listens on one loopback port per worker slot. Its methods are safe for
// concurrent use.
type Proxy struct {
	upstream   *url.URL
	client     *http.Client
	retryAfter string
	maxHang    time.Duration
	now        func() time.Time // the clock of periods
	closing    chan struct{}
	servers    []*http.Server
	urls       []string
	wg         sync.WaitGroup

	mu        sync.Mutex
	rates     FaultRates
	rng       *rand.Rand
	calls     int64
	forwarded int64
	faults    map[string]int64
	holds     map[int]chan struct{}
	answers   map[int]chan struct{}
	periods   []*Period
	closeOnce sync.Once
}

// NewProxy starts a Proxy listening on cfg.Slots loopback ports. Stop it
// with Close.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	up, err := url.Parse(cfg.Upstream)
	if err != nil || up.Scheme == "" || up.Host == "" {
		return nil, fmt.Errorf("chaos: proxy upstream %q: want a URL such as http://127.0.0.1:1234/v1", cfg.Upstream)
	}
	if err := cfg.Rates.validate(); err != nil {
		return nil, err
	}
	if cfg.Slots <= 0 {
		cfg.Slots = 1
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.MaxHang <= 0 {
		cfg.MaxHang = 2 * time.Minute
	}
	p := &Proxy{
		upstream:   &url.URL{Scheme: up.Scheme, Host: up.Host},
		client:     &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}},
		retryAfter: strconv.Itoa(max(1, int(cfg.RetryAfter.Round(time.Second)/time.Second))),
		maxHang:    cfg.MaxHang,
		now:        time.Now,
		closing:    make(chan struct{}),
		rates:      cfg.Rates,
		rng:        rand.New(rand.NewPCG(cfg.Seed, 0x70726f7879)),
		faults:     map[string]int64{},
		holds:      map[int]chan struct{}{},
		answers:    map[int]chan struct{}{},
	}
	for slot := range cfg.Slots {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("chaos: proxy listen for slot %d: %w", slot, err)
		}
		srv := &http.Server{
			Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(slot, w, r) }),
			ReadHeaderTimeout: 10 * time.Second,
		}
		p.servers = append(p.servers, srv)
		p.urls = append(p.urls, "http://"+l.Addr().String()+strings.TrimSuffix(up.Path, "/"))
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = srv.Serve(l) // ends with Close
		}()
	}
	return p, nil
}

// URL returns the base URL a worker in slot uses as OPENAI_BASE_URL.
func (p *Proxy) URL(slot int) string { return p.urls[slot] }

// Stats returns what the proxy has done so far.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProxyStats{Calls: p.calls, Forwarded: p.forwarded, Faults: make(map[string]int64, len(p.faults))}
	for k, v := range p.faults {
		s.Faults[k] = v
	}
	for _, pd := range p.periods {
		c := *pd
		c.Statuses = append([]int(nil), pd.Statuses...)
		c.ByStatus = make(map[int]int64, len(pd.ByStatus))
		for k, v := range pd.ByStatus {
			c.ByStatus[k] = v
		}
		s.Periods = append(s.Periods, c)
	}
	return s
}

// StartOutage makes the proxy answer every call, from now until d has
// passed and at least one call was failed (see Period), with OpenAI's error JSON and the statuses in turn (default
// OutageStatuses): the provider is down for everyone. It fails for a
// status that is not 5xx or a d that is not positive.
func (p *Proxy) StartOutage(d time.Duration, statuses ...int) error {
	if len(statuses) == 0 {
		statuses = OutageStatuses()
	}
	for _, st := range statuses {
		if st < 500 || st > 599 {
			return fmt.Errorf("chaos: outage status %d: want 5xx", st)
		}
	}
	return p.startPeriod(PeriodOutage, d, statuses)
}

// StartKeyRejection makes the proxy answer every call, from now until d has
// passed, HTTP 401 with OpenAI's error JSON for a wrong key (code
// invalid_api_key, the presented key masked in the message), as when the
// key was revoked or rotated. It fails for a d that is not positive.
func (p *Proxy) StartKeyRejection(d time.Duration) error {
	return p.startPeriod(PeriodKeyRejected, d, []int{http.StatusUnauthorized})
}

func (p *Proxy) startPeriod(kind string, d time.Duration, statuses []int) error {
	if d <= 0 {
		return fmt.Errorf("chaos: %s period of %s: want a positive duration", kind, d)
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.periods = append(p.periods, &Period{Kind: kind, Statuses: append([]int(nil), statuses...), Start: now, End: now.Add(d), ByStatus: map[int]int64{}})
	return nil
}

// answeredOK records a chat completion answered HTTP 200 at now: the first
// after a period's end is its recovery.
func (p *Proxy) answeredOK(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pd := range p.periods {
		if pd.Recovered.IsZero() && !now.Before(pd.End) {
			pd.Recovered = now
		}
	}
}

// HoldNext makes the proxy hold the next chat completion call from slot's
// worker open, unanswered, until the client goes away: held is closed when
// that call has arrived. disarm cancels the hold if no call arrived yet and
// reports whether it did cancel it.
func (p *Proxy) HoldNext(slot int) (held <-chan struct{}, disarm func() bool) {
	return p.arm(p.holds, slot)
}

// AnswerNext closes answered once the next successful (HTTP 200) answer to
// slot's worker has been written and flushed. disarm cancels it if that has
// not happened yet and reports whether it did cancel it.
func (p *Proxy) AnswerNext(slot int) (answered <-chan struct{}, disarm func() bool) {
	return p.arm(p.answers, slot)
}

func (p *Proxy) arm(m map[int]chan struct{}, slot int) (<-chan struct{}, func() bool) {
	ch := make(chan struct{})
	p.mu.Lock()
	m[slot] = ch
	p.mu.Unlock()
	return ch, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if m[slot] == ch {
			delete(m, slot)
			return true
		}
		return false
	}
}

// fire closes and removes the channel armed for slot in m, if any.
func (p *Proxy) fire(m map[int]chan struct{}, slot int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, ok := m[slot]
	if ok {
		delete(m, slot)
		close(ch)
	}
	return ok
}

// Close stops the listeners and ends held calls.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		close(p.closing)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range p.servers {
			_ = s.Shutdown(ctx)
		}
		p.wg.Wait()
		p.client.CloseIdleConnections()
	})
}

// decide picks what happens to a call arriving at now, and counts it. A
// chat completion call (completion) is held for a kill when one is armed for
// its slot; otherwise any call gets a running period's failure
// (FaultOutage or FaultKeyRejected, with the status to answer); otherwise a
// chat completion call gets a random fault of the rates, or none.
func (p *Proxy) decide(slot int, completion bool, now time.Time) (fault string, status int) {
	p.mu.Lock()
	if completion {
		p.calls++
		if ch, hold := p.holds[slot]; hold {
			delete(p.holds, slot)
			p.faults[FaultHeld]++
			p.mu.Unlock()
			close(ch)
			return FaultHeld, 0
		}
	}
	defer p.mu.Unlock()
	if fault, status := p.periodFault(now); fault != "" {
		return fault, status
	}
	if !completion {
		return "", 0
	}
	fault = p.rates.pick(p.rng.Float64())
	switch fault {
	case FaultServerError, FaultRateLimit, FaultTimeout:
		p.faults[fault]++
	}
	return fault, 0
}

// periodFault returns the fault and status a call arriving at now gets from
// a running period, or "", and counts it. A key rejection comes before an
// outage: the key is checked first. The caller holds p.mu.
func (p *Proxy) periodFault(now time.Time) (fault string, status int) {
	var in *Period
	for _, pd := range p.periods {
		if now.Before(pd.Start) || (!now.Before(pd.End) && pd.Failed > 0) {
			continue
		}
		if in == nil || pd.Kind == PeriodKeyRejected {
			in = pd
		}
	}
	if in == nil {
		return "", 0
	}
	if !now.Before(in.End) {
		// No call came while the period lasted (workers starting on a busy
		// machine): it ends with the first call it fails instead.
		in.End = now
	}
	status = in.Statuses[in.Failed%int64(len(in.Statuses))]
	in.Failed++
	in.ByStatus[status]++
	fault = FaultOutage
	if in.Kind == PeriodKeyRejected {
		fault = FaultKeyRejected
	}
	p.faults[fault]++
	return fault, status
}

func (p *Proxy) count(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[name]++
}

func (p *Proxy) serve(slot int, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 32<<20))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "We could not read the body of your request.", "invalid_request_error", "")
		return
	}
	completion := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/chat/completions")
	fault, status := p.decide(slot, completion, p.now())
	switch fault {
	case FaultOutage, FaultKeyRejected:
		writePeriodError(w, r, fault, status)
		return
	case FaultHeld, FaultTimeout:
		p.hang(r)
		return
	case FaultServerError:
		writeAPIError(w, http.StatusInternalServerError, "The server had an error while processing your request. Sorry about that!", "server_error", "")
		return
	case FaultRateLimit:
		w.Header().Set("Retry-After", p.retryAfter)
		writeAPIError(w, http.StatusTooManyRequests, "Rate limit reached for requests. Please try again in "+p.retryAfter+"s.", "requests", "rate_limit_exceeded")
		return
	}

	status, header, answer, err := p.forward(r, body)
	if err != nil {
		if r.Context().Err() == nil {
			writeAPIError(w, http.StatusBadGateway, "chaos proxy: upstream unreachable", "server_error", "")
		}
		return
	}
	if status == http.StatusOK && fault != "" {
		p.mu.Lock()
		seed := p.rng.Uint64()
		p.mu.Unlock()
		if rewritten, ok := rewriteAnswer(answer, fault, seed); ok {
			answer = rewritten
			p.count(fault)
		}
	}
	for k, vs := range header {
		if k == "Content-Length" || k == "Connection" || k == "Transfer-Encoding" {
			continue
		}
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(status)
	_, _ = w.Write(answer)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if status == http.StatusOK && completion {
		p.answeredOK(p.now())
		p.fire(p.answers, slot)
	}
}

// hang waits until the client goes away, the proxy closes or MaxHang passes.
func (p *Proxy) hang(r *http.Request) {
	t := time.NewTimer(p.maxHang)
	defer t.Stop()
	select {
	case <-r.Context().Done():
	case <-p.closing:
	case <-t.C:
	}
}

// forward sends the call upstream and returns its answer.
func (p *Proxy) forward(r *http.Request, body []byte) (int, http.Header, []byte, error) {
	target := *p.upstream
	target.Path, target.RawQuery = r.URL.Path, r.URL.RawQuery
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("chaos: proxy request: %w", err)
	}
	req.Header = r.Header.Clone()
	req.Header.Del("Connection")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("chaos: proxy forward: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("chaos: proxy read answer: %w", err)
	}
	p.mu.Lock()
	p.forwarded++
	p.mu.Unlock()
	return resp.StatusCode, resp.Header, answer, nil
}

// rewriteAnswer applies a content fault to a chat.completion body. It
// reports false, leaving the body alone, when the answer has no batch
// content to rewrite.
func rewriteAnswer(body []byte, fault string, seed uint64) ([]byte, bool) {
	var completion map[string]json.RawMessage
	if json.Unmarshal(body, &completion) != nil {
		return nil, false
	}
	var choices []map[string]json.RawMessage
	if json.Unmarshal(completion["choices"], &choices) != nil || len(choices) == 0 {
		return nil, false
	}
	var message map[string]json.RawMessage
	if json.Unmarshal(choices[0]["message"], &message) != nil {
		return nil, false
	}
	var content *string
	if json.Unmarshal(message["content"], &content) != nil || content == nil {
		return nil, false
	}
	edited, ok := rewriteContent(*content, fault, rand.New(rand.NewPCG(seed, 1)))
	if !ok {
		return nil, false
	}
	raw, err := json.Marshal(edited)
	if err != nil {
		return nil, false
	}
	message["content"] = raw
	if choices[0]["message"], err = json.Marshal(message); err != nil {
		return nil, false
	}
	if completion["choices"], err = json.Marshal(choices); err != nil {
		return nil, false
	}
	out, err := json.Marshal(completion)
	return out, err == nil
}

// rewriteContent applies a content fault to a batch answer's content,
// {"results":[{"id","output"}]}. A plain (one-request) answer's text is left
// alone: cutting it would make a wrong answer no client could tell from a
// right one, which no real provider's fault looks like.
func rewriteContent(content, fault string, rng *rand.Rand) (string, bool) {
	var answer struct {
		Results []json.RawMessage `json:"results"`
	}
	if json.Unmarshal([]byte(content), &answer) != nil || answer.Results == nil {
		return "", false
	}
	if fault == FaultMalformed {
		return content[:len(content)/2], true
	}
	switch fault {
	case FaultDropItem:
		if len(answer.Results) == 0 {
			return "", false
		}
		i := rng.IntN(len(answer.Results))
		answer.Results = append(answer.Results[:i], answer.Results[i+1:]...)
	case FaultUnknownID:
		// The engine keys a call's items "0", "1", ...: an id just past
		// them looks like a key and must still be ignored.
		id := strconv.Itoa(len(answer.Results) + rng.IntN(3))
		extra, err := json.Marshal(map[string]string{"id": id, "output": "chaos: an answer to a question nobody asked"})
		if err != nil {
			return "", false
		}
		at := rng.IntN(len(answer.Results) + 1)
		answer.Results = append(answer.Results[:at], append([]json.RawMessage{extra}, answer.Results[at:]...)...)
	default:
		return "", false
	}
	out, err := json.Marshal(answer)
	if err != nil {
		return "", false
	}
	return string(out), true
}

// writePeriodError answers a call that came during a period with the
// period's fault (FaultOutage or FaultKeyRejected) and status.
func writePeriodError(w http.ResponseWriter, r *http.Request, fault string, status int) {
	if fault == FaultKeyRejected {
		key, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		writeAPIError(w, status, "Incorrect API key provided: "+maskKey(key)+". You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key")
		return
	}
	switch status {
	case http.StatusServiceUnavailable:
		writeAPIError(w, status, "The engine is currently overloaded, please try again later.", "server_error", "")
	case 529:
		writeAPIError(w, status, "Overloaded", "overloaded_error", "")
	default:
		writeAPIError(w, status, "The server had an error while processing your request. Sorry about that!", "server_error", "")
	}
}

// maskKey hides most of key as OpenAI does when it quotes a wrong key: its
// first 3 and last 4 characters around asterisks.
func maskKey(key string) string {
	if len(key) <= 8 {
		return strings.Repeat("*", len(key))
	}
	return key[:3] + strings.Repeat("*", len(key)-7) + key[len(key)-4:]
}

// writeAPIError answers with OpenAI's error JSON; an empty code is null.
func writeAPIError(w http.ResponseWriter, status int, msg, typ, code string) {
	type apiError struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	e := apiError{Message: msg, Type: typ}
	if code != "" {
		e.Code = &code
	}
	body, _ := json.Marshal(map[string]apiError{"error": e}) // strings only: cannot fail
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
