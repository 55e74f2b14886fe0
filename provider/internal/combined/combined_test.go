package combined_test

import (
	"errors"
	"fmt"
	"slices"
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

func TestCompleted(t *testing.T) {
	t.Parallel()
	b := provider.Batch{Requests: []provider.Request{{Key: "0"}, {Key: "1"}, {Key: "2"}}}
	tests := []struct {
		name string
		data string
		want []string // keys answered
	}{
		{"cut inside the third output", `{"results":[{"id":"0","output":"a"},{"id":"1","output":"b"},{"id":"2","output":"c is lo`, []string{"0", "1"}},
		{"cut between entries", `{"results":[{"id":"0","output":"a"},`, []string{"0"}},
		{"cut inside the first entry", `{"results":[{"id":"0","outp`, nil},
		{"cut before the array", `{"resu`, nil},
		{"empty", ``, nil},
		{"another member first", `{"note":{"x":[1,2]},"results":[{"id":"1","output":"b"},{"id"`, []string{"1"}},
		{"whole answer", `{"results":[{"id":"0","output":"a"},{"id":"2","output":"c"}]}`, []string{"0", "2"}},
		{"unknown and repeated ids are dropped", `{"results":[{"id":"9","output":"x"},{"id":"0","output":"a"},{"id":"0","output":"again"},{"id":"1"`, []string{"0"}},
		{"not an object", `["results"]`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, r := range combined.Completed(b, []byte(tt.data)) {
				got = append(got, r.Key)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Completed(%q) answered %v, want %v", tt.data, got, tt.want)
			}
		})
	}
}

func TestCompletedParsedDropsTheLastEntry(t *testing.T) {
	t.Parallel()
	b := provider.Batch{Requests: []provider.Request{{Key: "0"}, {Key: "1"}, {Key: "2"}}}
	// Parsed as far as it goes: the last output may be cut short.
	got := combined.CompletedParsed(b, []byte(`{"results":[{"id":"0","output":"a"},{"id":"1","output":"b is cut sh"}]}`))
	if len(got) != 1 || got[0].Key != "0" {
		t.Fatalf("CompletedParsed = %+v, want only the first result", got)
	}
	// Raw text cut off is read as Completed reads it.
	got = combined.CompletedParsed(b, []byte(`{"results":[{"id":"0","output":"a"},{"id":"1","out`))
	if len(got) != 1 || got[0].Key != "0" {
		t.Fatalf("CompletedParsed of raw text = %+v, want the first result", got)
	}
}
