package anthropic

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/anthropics/anthropic-sdk-go"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/httpcall"
)

// ErrNotAsync is the cause of the permanent error SubmitJob, PollJob and
// CancelJob return when the Provider was not built with Mode ModeAsync.
// Check it with errors.Is.
var ErrNotAsync = errors.New("the provider was not built with Mode async")

// callError classifies the error of a Messages call. raw is the HTTP
// response when there was one. 5xx, including Anthropic's 529 overloaded,
// is transient.
func callError(ctx context.Context, err error, raw *http.Response) *provider.Error {
	if pe := httpcall.Interrupted(ctx, err); pe != nil {
		return pe
	}
	var status int
	var header http.Header
	var apiErr *anthropic.Error
	switch {
	case errors.As(err, &apiErr):
		status = apiErr.StatusCode
		if apiErr.Response != nil {
			header = apiErr.Response.Header
		}
		if t := apiErr.Type(); t != "" {
			err = fmt.Errorf("%w (type %s)", err, t)
		}
	case raw != nil && raw.StatusCode >= 400:
		status, header = raw.StatusCode, raw.Header
	}
	return httpcall.StatusError(status, header, err)
}
