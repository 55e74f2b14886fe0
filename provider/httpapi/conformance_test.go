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
	})
}
