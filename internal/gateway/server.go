package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/aibatch/aibatch/wire"
)

// Headers the gateway reads and writes besides OpenAI's.
const (
	// HeaderPriority set to "urgent" sends a request to the urgent lane.
	HeaderPriority = "X-Batch-Priority"
	// HeaderIdempotencyKey makes a retry of a request wait for the first
	// one's result instead of paying again.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderBatchID, HeaderBatchSize, HeaderBatchTrigger and
	// HeaderBatchQueuedMS say how a request was batched: the provider
	// call's id, the requests it carried, why it was sent, and the time
	// from the request's arrival in the stream to the call.
	HeaderBatchID       = "X-Batch-Id"
	HeaderBatchSize     = "X-Batch-Size"
	HeaderBatchTrigger  = "X-Batch-Trigger"
	HeaderBatchQueuedMS = "X-Batch-Queued-Ms"
)

// Causes a wait ends with, besides the caller leaving.
var (
	errTimedOut = errors.New("GATEWAY_TIMEOUT passed")
	errStopping = errors.New("the gateway is stopping")
)

// Server is the gateway: an HTTP server that answers OpenAI API requests
// through the request stream. Create it with New, start it with Start,
// give it NATS with Connect and stop it with Shutdown. Until Connect
// succeeds the API answers 503 and /readyz says why.
type Server struct {
	cfg     Config
	name    string
	handler http.Handler
	metrics *metrics
	now     func() time.Time

	broker   atomic.Pointer[broker]
	starting atomic.Pointer[string]

	stopping chan struct{} // closed when waits must end
	stopOnce sync.Once
	// unparked counts the waits on net/http's goroutines now.
	unparked atomic.Int64

	// parked are the requests whose connections the gateway took over
	// (park.go); parkWG counts the answers being written.
	parkMu     sync.Mutex
	parked     map[*parked]struct{}
	parkClosed bool
	parkWG     sync.WaitGroup

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
	// done is closed when Serve has returned.
	done chan struct{}
}

// New checks cfg and returns a server that is not listening yet. It
// registers its metrics on reg and serves gather on /metrics (nil: no
// /metrics). Errors name the setting (a non-loopback Addr without keys
// wraps ErrExposed).
func New(cfg Config, reg prometheus.Registerer, gather prometheus.Gatherer) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, name: cfg.Name, now: time.Now, stopping: make(chan struct{}), parked: map[*parked]struct{}{}}
	if s.name == "" {
		s.name = nuid.Next()
	}
	reason := "waiting for NATS"
	s.starting.Store(&reason)
	if reg != nil {
		m, err := newMetrics(reg, func() float64 {
			if b := s.broker.Load(); b != nil {
				return float64(b.unclaimed.Load())
			}
			return 0
		})
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	s.handler = s.routes(gather)
	return s, nil
}

// ReplySubject is where results of requests without an Idempotency-Key
// come back: ai.results.gateway.<name>.
func (s *Server) ReplySubject() string { return instanceSubject(s.name) }

// Handler returns the routes, keys included, for tests and for mounting
// them elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// SetStarting says what a server not yet connected waits for; /readyz
// shows it. It must hold no secret.
func (s *Server) SetStarting(reason string) { s.starting.Store(&reason) }

// Connect finds the request and result streams on nc and starts reading
// results; from then on the API is served. It fails while the workers
// have not created their streams; call it again later.
func (s *Server) Connect(ctx context.Context, nc *nats.Conn) error {
	if s.broker.Load() != nil {
		return errors.New("gateway: Connect called twice")
	}
	b, err := startBroker(ctx, nc, s.ReplySubject(), s.cfg.Log)
	if err != nil {
		return err
	}
	s.broker.Store(b)
	return nil
}

// Start listens on Addr and serves in the background until Shutdown. ctx
// bounds the listen only.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("gateway: Start called twice")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s (GATEWAY_ADDR): %w", s.cfg.Addr, err)
	}
	errLog, _ := zap.NewStdLogAt(s.cfg.Log, zap.WarnLevel)
	// No write or read timeout: a request waits up to GATEWAY_TIMEOUT.
	// The body's read has a deadline of its own (readBody).
	s.srv = &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: errLog}
	s.ln, s.done = ln, make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Log.Error("gateway server stopped", zap.Error(err))
		}
	}(s.srv, s.done)
	return nil
}

// Addr returns the address the server listens on, or "" before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting requests and lets the waiting ones be answered
// for ShutdownTimeout; then it answers those still waiting 503 with their
// request ids (their results are stored in AI_RESULTS all the same), and
// stops reading results. ctx bounds the whole: when it ends, connections
// are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	reason := "stopping"
	s.starting.Store(&reason)
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	var err error
	if srv != nil {
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(context.WithoutCancel(ctx)) }()
		grace := time.NewTimer(s.cfg.ShutdownTimeout)
		defer grace.Stop()
		select {
		case err = <-shut:
		case <-grace.C:
			s.stopOnce.Do(func() { close(s.stopping) })
			select {
			case err = <-shut:
			case <-ctx.Done():
				err = srv.Close()
			}
		case <-ctx.Done():
			err = srv.Close()
		}
		<-done
	}
	s.stopOnce.Do(func() { close(s.stopping) })
	s.stopParked()
	if b := s.broker.Swap(nil); b != nil {
		b.stop()
	}
	if err != nil {
		return fmt.Errorf("gateway: shut down: %w", err)
	}
	return nil
}

func (s *Server) routes(gather prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/chat/completions", s.api(endpointChat, s.chat))
	mux.Handle("POST /v1/embeddings", s.api(endpointEmbeddings, s.embeddings))
	mux.Handle("GET /v1/models", s.api(endpointModels, s.models))
	mux.Handle("GET /v1/models/{model}", s.api(endpointModels, s.model))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if gather != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		(&apiError{status: http.StatusNotFound, typ: typeInvalidRequest, code: codeNotFound,
			message: fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path)}).write(w)
	})
	return mux
}

// readyz answers 200 once the server reads results, 503 with what it
// waits for before.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	b := s.broker.Load()
	switch {
	case b == nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": *s.starting.Load()})
	case !b.nc.IsConnected():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": "not connected to NATS"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// call is what the API handlers get: the caller's topic and the broker.
type call struct {
	topic  string
	broker *broker
}

// handlerFunc serves one API request; an error is answered in OpenAI's
// shape.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c call) *apiError

// statusWriter records the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusClientGone is the status recorded for a caller that left before
// its answer (nginx's 499): nothing is written.
const statusClientGone = 499

// api checks the key, then runs h, and records the outcome.
func (s *Server) api(endpoint string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		sw := &statusWriter{ResponseWriter: w}
		topic, e := s.authorize(r)
		if e == nil {
			c := call{topic: topic, broker: s.broker.Load()}
			if c.broker == nil && endpoint != endpointModels {
				e = &apiError{status: http.StatusServiceUnavailable, typ: typeServer, code: codeUnavailable, retryAfter: time.Second,
					message: "The gateway is not serving yet: " + *s.starting.Load()}
			} else {
				e = h(sw, r, c)
			}
		}
		if e == errParked {
			return // answered and recorded when its results come
		}
		if e != nil {
			if e.status >= 500 {
				s.cfg.Log.Warn("request failed", zap.String("endpoint", endpoint), zap.Int("status", e.status), zap.String("error", e.message))
			}
			if e.status != statusClientGone {
				e.write(sw)
			} else {
				sw.status = statusClientGone
			}
		}
		if s.metrics != nil {
			s.metrics.observe(endpoint, sw.status, s.now().Sub(start))
		}
	})
}

// authorize returns the topic of the caller's key. Without keys every
// caller is let in, to DefaultTopic.
func (s *Server) authorize(r *http.Request) (string, *apiError) {
	if s.cfg.Keys.Len() == 0 {
		return DefaultTopic, nil
	}
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", &apiError{status: http.StatusUnauthorized, typ: typeInvalidRequest,
			message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."}
	}
	topic, ok := s.cfg.Keys.Topic(key)
	if !ok {
		return "", &apiError{status: http.StatusUnauthorized, typ: typeInvalidRequest, code: codeInvalidKey,
			message: "Incorrect API key provided. Ask the gateway's operator for a key (GATEWAY_KEYS)."}
	}
	return topic, nil
}

// bodyReadTimeout bounds reading a request body.
const bodyReadTimeout = time.Minute

// readBody reads the request body, at most MaxBodyBytes.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(s.now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	_ = rc.SetReadDeadline(time.Time{})
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, typ: typeInvalidRequest, code: codeTooLarge,
			message: fmt.Sprintf("The request body is over %d bytes.", s.cfg.MaxBodyBytes)}
	case err != nil:
		return nil, badRequest("", codeInvalidJSON, "We could not read the body of your request: %v", err)
	}
	return body, nil
}

// lane returns the request subject of topic for the X-Batch-Priority
// header: "urgent" is the urgent lane, empty or "batch" the batch lane.
func lane(r *http.Request, topic string) (string, *apiError) {
	switch p := strings.ToLower(strings.TrimSpace(r.Header.Get(HeaderPriority))); p {
	case "", "batch":
		return wire.RequestSubject(topic, false), nil
	case "urgent":
		return wire.RequestSubject(topic, true), nil
	default:
		return "", badRequest(HeaderPriority, codeInvalidValue, "Invalid value for the %s header: %q; want urgent, or batch (the default).", HeaderPriority, p)
	}
}

// prepare turns reqs into a submission on the caller's lane: it gives each
// request its id (prefix and a unique part, or with an Idempotency-Key the
// key's digest) and encodes it, refusing one over MaxRequestBytes.
func (s *Server) prepare(r *http.Request, c call, endpoint, prefix string, reqs []wire.Request, param func(i int) string) (submission, *apiError) {
	var sub submission
	var e *apiError
	if sub.subject, e = lane(r, c.topic); e != nil {
		return sub, e
	}
	base := prefix + nuid.Next()
	if key := r.Header.Get(HeaderIdempotencyKey); key != "" {
		sum := sha256.Sum256([]byte(c.topic + "\x00" + endpoint + "\x00" + key))
		sub.key = hex.EncodeToString(sum[:16])
		base = prefix + sub.key
	}
	for i := range reqs {
		id := base
		if len(reqs) > 1 {
			id += "-" + strconv.Itoa(i)
		}
		reqs[i].ID = id
		body, err := json.Marshal(reqs[i])
		if err != nil {
			return sub, badRequest(param(i), codeInvalidValue, "Could not encode the request: %v", err)
		}
		if len(body) > s.cfg.MaxRequestBytes {
			return sub, badRequest(param(i), codeTooLarge, "The request is %d bytes as the workers get it, over their MAX_REQUEST_BYTES (%d).", len(body), s.cfg.MaxRequestBytes)
		}
		sub.ids = append(sub.ids, id)
		sub.bodies = append(sub.bodies, body)
	}
	return sub, nil
}

// respondFunc answers results that all arrived.
type respondFunc func(w http.ResponseWriter, results []wire.Result) *apiError

// errParked is what a handler returns when its request was parked: it is
// answered later, on a connection the HTTP server no longer holds.
var errParked = &apiError{status: statusParked}

// statusParked marks errParked; it is never written or recorded.
const statusParked = -1

// await publishes sub, waits for its results and answers them with
// respond, or answers the error that ended the wait, as OpenAI's SDKs
// expect it (docs/gateway.md). The wait is bounded by Timeout. A wait that
// lasts ParkAfter is parked: it goes on without the goroutine and buffers
// net/http keeps for the request (see park).
func (s *Server) await(w http.ResponseWriter, r *http.Request, c call, endpoint string, sub submission, respond respondFunc) *apiError {
	start := s.now()
	ctx, cancel := context.WithTimeoutCause(r.Context(), s.cfg.Timeout, errTimedOut)
	defer cancel()
	p, err := c.broker.submit(ctx, sub)
	if err != nil {
		return s.waitError(sub, err)
	}
	sub.bodies = nil // published: a parked wait keeps only the ids
	s.waiting(endpoint, 1)
	parkAfter := s.cfg.ParkAfter
	if s.unparked.Add(1) > parkAbove {
		parkAfter = 0
	}
	park := time.NewTimer(parkAfter)
	defer park.Stop()
	for {
		select {
		case <-p.done:
		case <-ctx.Done():
			err = context.Cause(ctx)
		case <-s.stopping:
			err = errStopping
		case <-park.C:
			if s.park(w, start, endpoint, sub, p, respond) {
				s.unparked.Add(-1)
				return errParked
			}
			continue // not a connection that can be taken over: wait on
		}
		break
	}
	s.unparked.Add(-1)
	p.release()
	s.waiting(endpoint, -1)
	if err != nil {
		return s.waitError(sub, err)
	}
	return respond(w, p.results)
}

// waiting adds d to the requests waiting at endpoint.
func (s *Server) waiting(endpoint string, d float64) {
	if s.metrics != nil {
		s.metrics.waiting.WithLabelValues(endpoint).Add(d)
	}
}

// waitError is the answer to a wait for sub that ended with err.
func (s *Server) waitError(sub submission, err error) *apiError {
	id := sub.ids[0]
	ids := id
	if len(sub.ids) > 1 {
		ids = sub.ids[0] + " … " + sub.ids[len(sub.ids)-1]
	}
	keyed := sub.key != ""
	switch {
	case errors.Is(err, errStreamFull):
		return &apiError{status: http.StatusTooManyRequests, typ: typeRateLimit, code: codeRateLimit, retryAfter: RetryAfter,
			message: fmt.Sprintf("The request stream is full (%v): slow down and send the request again.", err)}
	case errors.Is(err, errNoStream):
		return &apiError{status: http.StatusServiceUnavailable, typ: typeServer, code: codeUnavailable, retryAfter: time.Second,
			message: "No stream stores the request subject: have the workers started?"}
	case errors.Is(err, errUnconfirmed):
		return &apiError{status: http.StatusServiceUnavailable, typ: typeServer, code: codeUnavailable, noRetry: !keyed, requestID: id,
			message: fmt.Sprintf("The request stream did not confirm storing request %s (%v): it may be answered all the same; its result would be stored in AI_RESULTS. Send it with an Idempotency-Key to retry it safely.", ids, err)}
	case errors.Is(err, errTimedOut):
		return &apiError{status: http.StatusGatewayTimeout, typ: typeTimeout, code: codeTimeout, noRetry: !keyed, requestID: id,
			message: fmt.Sprintf("Request %s was not answered within GATEWAY_TIMEOUT (%s). It stays queued and will be answered; its result is stored in AI_RESULTS (publisher results --id %s).", ids, s.cfg.Timeout, id)}
	case errors.Is(err, errStopping):
		return &apiError{status: http.StatusServiceUnavailable, typ: typeServer, code: codeGatewayStopping, noRetry: !keyed, requestID: id,
			message: fmt.Sprintf("The gateway is stopping. Request %s stays queued and will be answered; its result is stored in AI_RESULTS (publisher results --id %s).", ids, id)}
	}
	// The caller left: nobody reads the answer.
	return &apiError{status: statusClientGone, message: err.Error()}
}

// setBatchHeaders says how results were batched: each distinct call's id,
// size and trigger in the order of the results, comma-separated, and the
// longest queue time.
func setBatchHeaders(w http.ResponseWriter, results []wire.Result) {
	var ids, sizes, triggers []string
	seen := map[string]bool{}
	var queued int64
	for _, r := range results {
		queued = max(queued, r.QueuedMS)
		if seen[r.Batch.ID] {
			continue
		}
		seen[r.Batch.ID] = true
		ids = append(ids, r.Batch.ID)
		sizes = append(sizes, strconv.Itoa(r.Batch.Size))
		triggers = append(triggers, string(r.Batch.Trigger))
	}
	h := w.Header()
	h.Set(HeaderBatchID, strings.Join(ids, ","))
	h.Set(HeaderBatchSize, strings.Join(sizes, ","))
	h.Set(HeaderBatchTrigger, strings.Join(triggers, ","))
	h.Set(HeaderBatchQueuedMS, strconv.FormatInt(queued, 10))
}

// chat serves POST /v1/chat/completions.
func (s *Server) chat(w http.ResponseWriter, r *http.Request, c call) *apiError {
	body, e := s.readBody(w, r)
	if e != nil {
		return e
	}
	cr, e := decodeChat(body)
	if e != nil {
		return e
	}
	sub, e := s.prepare(r, c, endpointChat, "chatcmpl-", []wire.Request{cr.req}, func(int) string { return "messages" })
	if e != nil {
		return e
	}
	// What the answer needs, and no more: a parked wait keeps it.
	model, stream, includeUsage := cr.req.Model, cr.stream, cr.includeUsage
	return s.await(w, r, c, endpointChat, sub, func(w http.ResponseWriter, results []wire.Result) *apiError {
		res := results[0]
		if res.Status != wire.StatusOK {
			return resultError(res, "messages")
		}
		setBatchHeaders(w, results)
		w.Header().Set("X-Request-Id", res.ID)
		created := s.now().Unix()
		if stream {
			writeStream(w, streamChunks(res, model, created, includeUsage))
			return nil
		}
		writeJSON(w, http.StatusOK, completion(res, model, created))
		return nil
	})
}

// embeddings serves POST /v1/embeddings.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, c call) *apiError {
	body, e := s.readBody(w, r)
	if e != nil {
		return e
	}
	er, e := decodeEmbeddings(body)
	if e != nil {
		return e
	}
	n := len(er.reqs)
	param := func(i int) string {
		if n == 1 {
			return "input"
		}
		return "input[" + strconv.Itoa(i) + "]"
	}
	sub, e := s.prepare(r, c, endpointEmbeddings, "embd-", er.reqs, param)
	if e != nil {
		return e
	}
	er.reqs = nil // encoded in sub; a parked wait keeps only what the answer needs
	return s.await(w, r, c, endpointEmbeddings, sub, func(w http.ResponseWriter, results []wire.Result) *apiError {
		for i, res := range results {
			if res.Status != wire.StatusOK {
				return resultError(res, param(i))
			}
		}
		setBatchHeaders(w, results)
		w.Header().Set("X-Request-Id", strings.TrimSuffix(sub.ids[0], "-0"))
		writeJSON(w, http.StatusOK, embeddings(er, results))
		return nil
	})
}

// modelObject is OpenAI's model object.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func newModel(id string) modelObject {
	return modelObject{ID: id, Object: "model", OwnedBy: "aibatch"}
}

// models serves GET /v1/models: the models the workers are configured for.
func (s *Server) models(w http.ResponseWriter, _ *http.Request, _ call) *apiError {
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: []modelObject{}}
	for _, m := range s.cfg.Models {
		list.Data = append(list.Data, newModel(m))
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

// model serves GET /v1/models/{model}.
func (s *Server) model(w http.ResponseWriter, r *http.Request, _ call) *apiError {
	id := r.PathValue("model")
	for _, m := range s.cfg.Models {
		if m == id {
			writeJSON(w, http.StatusOK, newModel(m))
			return nil
		}
	}
	return &apiError{status: http.StatusNotFound, typ: typeInvalidRequest, param: "model", code: codeModelNotFound,
		message: fmt.Sprintf("The model '%s' does not exist or you do not have access to it.", id)}
}
