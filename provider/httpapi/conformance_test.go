package httpapi_test

import (
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/httpapi"
	"github.com/aibatch/aibatch/provider/httpapitest"
	"github.com/aibatch/aibatch/provider/providertest"
)

var _ providertest.Fake = (*httpapitest.Server)(nil)

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, providertest.Target{
		Name:          "http",
		Mode:          providertest.Combined,
		PerItemErrors: true, // {"id","error","retryable"} results
		Embeddings:    true,
		Secret:        testToken,
		Answer:        httpapitest.Answer,
		New: func(t *testing.T) (provider.Provider, providertest.Fake) {
			srv := httpapitest.NewServer(httpapitest.WithToken(testToken))
			t.Cleanup(srv.Close)
			p, err := httpapi.New(httpapi.Config{URL: srv.URL, Token: testToken})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return p, srv
		},
		Sent: func(f providertest.Fake) []providertest.Call {
			var calls []providertest.Call
			for _, r := range f.(*httpapitest.Server).Requests() {
				// A lone item's own cap is its call's limit.
				limit := r.MaxOutputTokens
				if len(r.Items) == 1 && r.Items[0].MaxOutputTokens > 0 {
					limit = r.Items[0].MaxOutputTokens
				}
				calls = append(calls, providertest.Call{MaxOutputTokens: limit})
			}
			return calls
		},
	})
}
