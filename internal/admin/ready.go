package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"
)

// ReadyResponse is the body of GET /readyz.
type ReadyResponse struct {
	// Status is "ready" or "unavailable".
	Status string `json:"status"`
	// Failed names the first check that failed: nats, stream, consumer or
	// provider.
	Failed string `json:"failed,omitempty"`
	// Error says why it failed.
	Error string `json:"error,omitempty"`
	// Passed lists the checks that passed, in order.
	Passed []string `json:"passed"`
}

// The checks /readyz runs, in order.
const (
	CheckNATS     = "nats"
	CheckStream   = "stream"
	CheckConsumer = "consumer"
	CheckProvider = "provider"
)

// ready runs the readiness checks in order and stops at the first failure.
// A worker that is starting fails the check it waits for.
func (s *Server) ready(ctx context.Context) ReadyResponse {
	v := s.view.Load()
	rd := v.cfg.Ready
	resp := ReadyResponse{Status: "ready", Passed: []string{}}
	fail := func(check string, err error) ReadyResponse {
		resp.Status, resp.Failed, resp.Error = "unavailable", check, err.Error()
		return resp
	}
	if !v.attached() {
		return fail(v.startingCheck, errors.New(v.starting))
	}
	if rd.NATS == nil || !rd.NATS.IsConnected() {
		return fail(CheckNATS, errors.New("not connected to NATS"))
	}
	resp.Passed = append(resp.Passed, CheckNATS)
	for _, c := range rd.Consumers {
		cctx, cancel := context.WithTimeout(ctx, rd.Timeout)
		info, err := c.Info(cctx)
		cancel()
		switch {
		case err != nil && !rd.NATS.IsConnected():
			// The connection dropped during the check: that is the cause.
			return fail(CheckNATS, fmt.Errorf("lost the NATS connection: %w", err))
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return fail(CheckStream, fmt.Errorf("request stream not found: %w", err))
		case err != nil:
			return fail(CheckConsumer, fmt.Errorf("read consumer: %w", err))
		case info == nil:
			return fail(CheckConsumer, errors.New("read consumer: no answer"))
		}
	}
	if len(rd.Consumers) > 0 {
		resp.Passed = append(resp.Passed, CheckStream, CheckConsumer)
	}
	if rd.Provider == "" {
		return fail(CheckProvider, errors.New("no AI provider configured"))
	}
	if rd.ProviderHealth != nil {
		if err := rd.ProviderHealth(); err != nil {
			return fail(CheckProvider, err)
		}
	}
	resp.Passed = append(resp.Passed, CheckProvider)
	return resp
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	resp := s.ready(r.Context())
	status := http.StatusOK
	if resp.Failed != "" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, resp)
}
