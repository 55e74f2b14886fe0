package combined_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aibatch/aibatch/provider"
	"github.com/aibatch/aibatch/provider/internal/combined"
)

func TestResults(t *testing.T) {
	t.Parallel()
	b := provider.Batch{Model: "m", Requests: []provider.Request{{Key: "0", Input: "a"}, {Key: "1", Input: "b"}, {Key: "2", Input: "c"}}}
	tests := []struct {
		name    string
		data    string
		want    string // the results as key=output, in order
		wantErr error  // nil, combined.ErrNoResults, or errAny for a JSON error
	}{
		{"answer order kept", `{"results":[{"id":"2","output":"C"},{"id":"0","output":"A"},{"id":"1","output":"B"}]}`, "[2=C 0=A 1=B]", nil},
		{"left out stays out", `{"results":[{"id":"1","output":"B"}]}`, "[1=B]", nil},
		{"unknown ids ignored", `{"results":[{"id":"9","output":"X"},{"id":"0","output":"A"}]}`, "[0=A]", nil},
		{"first answer to an id wins", `{"results":[{"id":"0","output":"A"},{"id":"0","output":"again"}]}`, "[0=A]", nil},
		{"no output ignored", `{"results":[{"id":"0","output":null},{"id":"1"},{"id":"0","output":"late"}]}`, "[0=late]", nil},
		{"empty output kept", `{"results":[{"id":"0","output":""}]}`, "[0=]", nil},
		{"empty results", `{"results":[]}`, "[]", nil},
		{"no results", `{"answers":[]}`, "", combined.ErrNoResults},
		{"null results", `{"results":null}`, "", combined.ErrNoResults},
		{"not JSON", `{"results":[`, "", errAny},
		{"wrong shape", `{"results":"all"}`, "", errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			results, err := combined.Results(b, []byte(tt.data))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantErr == errAny && (err == nil || errors.Is(err, combined.ErrNoResults)):
				t.Fatalf("error %v, want a JSON error", err)
			case tt.wantErr == combined.ErrNoResults && !errors.Is(err, combined.ErrNoResults):
				t.Fatalf("error %v, want ErrNoResults", err)
			}
			if tt.wantErr != nil {
				if results != nil {
					t.Errorf("results %+v with an error", results)
				}
				return
			}
			got := make([]string, len(results))
			for i, r := range results {
				if r.Err != nil || r.Usage != (provider.Usage{}) {
					t.Errorf("result %+v carries an error or usage", r)
				}
				got[i] = r.Key + "=" + r.Output
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("results %v, want %s", got, tt.want)
			}
		})
	}
}

// errAny stands for any JSON decoding error in TestResults.
var errAny = errors.New("any JSON error")
