// Package validate holds the checks the SDK providers (provider/openai and
// provider/anthropic) share: of Config fields, and of a batch before a job
// is submitted. A Config check's error names the field; the provider wraps
// it as "<name>: config: ...".
package validate

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/wire"
)

// First returns the first of errs that is not nil, or nil. Pass it the
// checks of a Config in the order they are to be reported.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Required reports an error when v, the value of field name, is empty.
func Required(name, v string) error {
	if v == "" {
		return fmt.Errorf("%s is required", name)
	}
	return nil
}

// Mode reports an error unless m is empty or one of valid, e.g.
// `Mode "x" must be "combined", "single" or "async"`.
func Mode[M ~string](m M, valid ...M) error {
	if m == "" {
		return nil
	}
	quoted := make([]string, len(valid))
	for i, v := range valid {
		if m == v {
			return nil
		}
		quoted[i] = fmt.Sprintf("%q", v)
	}
	list := quoted[len(quoted)-1]
	if len(quoted) > 1 {
		list = strings.Join(quoted[:len(quoted)-1], ", ") + " or " + list
	}
	return fmt.Errorf("Mode %q must be %s", m, list)
}

// NotNegative reports an error when v, the value of field name, is
// negative.
func NotNegative(name string, v int) error {
	if v < 0 {
		return fmt.Errorf("%s %d must not be negative", name, v)
	}
	return nil
}

// BaseURL reports an error unless raw, the value of the field BaseURL, is
// empty or an absolute http or https URL.
func BaseURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("BaseURL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("BaseURL %q must be an absolute http or https URL", raw)
	}
	return nil
}

// Batch reports the permanent error of a batch that cannot be sent as a
// Batch API job: one with no requests or no model, an embedding batch (the
// jobs carry chat requests; embeddings are batched natively by Complete),
// or a request with provider options (a job line has no place for them).
func Batch(b provider.Batch) error {
	switch {
	case len(b.Requests) == 0:
		return provider.Permanent(errors.New("batch has no requests"))
	case b.Model == "":
		return provider.Permanent(errors.New("batch has no model"))
	case b.Kind == wire.KindEmbedding:
		return provider.Permanent(errors.New("a Batch API job carries chat requests, not embeddings"))
	}
	for _, r := range b.Requests {
		if len(r.Options) > 0 {
			return provider.Permanent(fmt.Errorf("request %q has provider options: it is sent alone, not in a job", r.Key))
		}
	}
	return nil
}
