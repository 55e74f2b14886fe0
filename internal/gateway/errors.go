package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aibatch/aibatch/wire"
)

// apiError is an error answered in OpenAI's shape: the status, and the
// body {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	status  int
	message string
	typ     string
	param   string
	code    string
	// retryAfter, when above 0, is sent as Retry-After (whole seconds).
	retryAfter time.Duration
	// noRetry sends "x-should-retry: false", which the official SDKs obey
	// before their own rule (retry 408, 409, 429 and 5xx): a retry would
	// publish the request again and pay for it twice, or fail the same way.
	noRetry bool
	// requestID, when set, is sent as x-request-id.
	requestID string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.typ, e.message) }

// The error types and codes the gateway answers with, as OpenAI names
// them where it has a name.
const (
	typeInvalidRequest = "invalid_request_error"
	typeRateLimit      = "requests"
	typeQuota          = "insufficient_quota"
	typeServer         = "server_error"
	typeUpstream       = "upstream_error"
	typeTimeout        = "timeout"

	codeInvalidKey      = "invalid_api_key"
	codeModelNotFound   = "model_not_found"
	codeRateLimit       = "rate_limit_exceeded"
	codeQuota           = "insufficient_quota"
	codeUnsupported     = "unsupported_parameter"
	codeUnknownField    = "unknown_parameter"
	codeInvalidValue    = "invalid_value"
	codeProviderError   = "provider_error"
	codeTimeout         = "timeout"
	codeUnavailable     = "unavailable"
	codeTooLarge        = "request_too_large"
	codeNotFound        = "not_found"
	codeInvalidJSON     = "invalid_json"
	codeGatewayStopping = "gateway_stopping"
)

// badRequest is a 400 about param.
func badRequest(param, code, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: typeInvalidRequest, param: param, code: code, message: fmt.Sprintf(format, args...)}
}

// unknownField is the 400 for a field the gateway does not know.
func unknownField(param string) *apiError {
	return badRequest(param, codeUnknownField, "Unrecognized request argument supplied: %s. The aibatch gateway refuses fields it cannot carry rather than drop them (docs/gateway.md lists what it takes).", param)
}

// unsupported is the 400 for a known field whose value the gateway cannot
// carry.
func unsupported(param, why string) *apiError {
	return badRequest(param, codeUnsupported, "Unsupported value for %s: %s", param, why)
}

// errorBody is OpenAI's error JSON.
type errorBody struct {
	Error errorObject `json:"error"`
}

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// write answers e.
func (e *apiError) write(w http.ResponseWriter) {
	h := w.Header()
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	if e.noRetry {
		h.Set("X-Should-Retry", "false")
	}
	if e.requestID != "" {
		h.Set("X-Request-Id", e.requestID)
	}
	body := errorBody{Error: errorObject{Message: e.message, Type: e.typ}}
	if e.param != "" {
		body.Error.Param = &e.param
	}
	if e.code != "" {
		body.Error.Code = &e.code
	}
	writeJSON(w, e.status, body)
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"encode the answer","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// resultError is the error answered for an error result: the worker gave
// up on the request for good, so no status invites a retry. A request the
// worker refused before any call (invalid, a model outside ALLOWED_MODELS)
// is a 400 or 404, a topic over its TOPIC_BUDGETS budget a 429
// insufficient_quota, anything else (the provider refused or failed the
// request, attempts ran out) a 502.
func resultError(r wire.Result, param string) *apiError {
	msg := fmt.Sprintf("request %s failed: %s", r.ID, r.Error)
	e := &apiError{status: http.StatusBadGateway, typ: typeUpstream, code: codeProviderError, message: msg, noRetry: true, requestID: r.ID}
	switch {
	case strings.HasPrefix(r.Error, wire.ErrInvalidRequest.Error()) && strings.Contains(r.Error, "ALLOWED_MODELS"):
		e.status, e.typ, e.code, e.param = http.StatusNotFound, typeInvalidRequest, codeModelNotFound, "model"
	case strings.HasPrefix(r.Error, wire.ErrInvalidRequest.Error()):
		e.status, e.typ, e.code, e.param = http.StatusBadRequest, typeInvalidRequest, codeInvalidValue, param
	case strings.HasPrefix(r.Error, "budget exceeded"):
		e.status, e.typ, e.code = http.StatusTooManyRequests, typeQuota, codeQuota
	}
	return e
}
