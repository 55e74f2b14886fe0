package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/httpapi"
)

// A minimal endpoint that keeps the contract: it upper-cases each input,
// refuses empty-looking inputs for good and asks for "busy" ones to be
// retried.
func Example_endpoint() {
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Items []struct {
				ID    string `json:"id"`
				Input string `json:"input"`
			} `json:"items"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":"bad JSON"}`, http.StatusBadRequest)
			return
		}
		type result struct {
			ID        string `json:"id"`
			Output    string `json:"output,omitempty"`
			Error     string `json:"error,omitempty"`
			Retryable bool   `json:"retryable,omitempty"`
		}
		var results []result
		for _, it := range req.Items {
			switch strings.TrimSpace(it.Input) {
			case "-":
				results = append(results, result{ID: it.ID, Error: "nothing to answer"})
			case "busy":
				results = append(results, result{ID: it.ID, Error: "try later", Retryable: true})
			default:
				results = append(results, result{ID: it.ID, Output: strings.ToUpper(it.Input)})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"results": results})
	}))
	defer endpoint.Close()

	p, err := httpapi.New(httpapi.Config{URL: endpoint.URL})
	if err != nil {
		fmt.Println(err)
		return
	}
	results, err := p.Complete(context.Background(), provider.Batch{
		Model: "any",
		Requests: []provider.Request{
			{Key: "a", Input: "hello"}, {Key: "b", Input: "-"}, {Key: "c", Input: "busy"},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	slices.SortFunc(results, func(x, y provider.Result) int { return strings.Compare(x.Key, y.Key) })
	for _, r := range results {
		switch {
		case r.Err == nil:
			fmt.Printf("%s: %s\n", r.Key, r.Output)
		case provider.IsPermanent(r.Err):
			fmt.Printf("%s: failed for good: %v\n", r.Key, r.Err)
		default:
			fmt.Printf("%s: retried later: %v\n", r.Key, r.Err)
		}
	}
	// Output:
	// a: HELLO
	// b: failed for good: httpapi: item "b": permanent provider error: endpoint refused it: nothing to answer
	// c: retried later: httpapi: item "c": transient provider error: endpoint refused it: try later
}
