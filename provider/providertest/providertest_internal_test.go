package providertest

import (
	"strings"
	"testing"

	"github.com/aibatch/aibatch/provider"
)

func TestTargetValidate(t *testing.T) {
	t.Parallel()
	ok := Target{
		Name:   "p",
		Mode:   Combined,
		Answer: func(s string) string { return s },
		New:    func(*testing.T) (provider.Provider, Fake) { return nil, nil },
		Sent:   func(Fake) []Call { return nil },
	}
	tests := []struct {
		name    string
		change  func(*Target)
		wantErr string
	}{
		{"valid combined", func(*Target) {}, ""},
		{"valid single", func(tg *Target) { tg.Mode, tg.Concurrency = Single, 2 }, ""},
		{"no name", func(tg *Target) { tg.Name = "" }, "Name"},
		{"no mode", func(tg *Target) { tg.Mode = 0 }, "Mode"},
		{"per-item errors in single mode", func(tg *Target) { tg.Mode, tg.Concurrency, tg.PerItemErrors = Single, 2, true }, "PerItemErrors"},
		{"single without concurrency", func(tg *Target) { tg.Mode = Single }, "Concurrency"},
		{"no constructor", func(tg *Target) { tg.New = nil }, "New"},
		{"no record reader", func(tg *Target) { tg.Sent = nil }, "Sent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := ok
			tt.change(&tg)
			err := tg.validate()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validate() = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
	if Combined.String() != "combined" || Single.String() != "single" || Mode(9).String() != "Mode(9)" {
		t.Error("Mode.String")
	}
}

func TestAsyncTargetValidate(t *testing.T) {
	t.Parallel()
	ok := AsyncTarget{
		Name:   "p",
		Answer: func(s string) string { return s },
		New:    func(*testing.T) (provider.AsyncProvider, AsyncFake) { return nil, nil },
	}
	tests := []struct {
		name    string
		change  func(*AsyncTarget)
		wantErr string
	}{
		{"valid", func(*AsyncTarget) {}, ""},
		{"no name", func(tg *AsyncTarget) { tg.Name = "" }, "Name"},
		{"no answer", func(tg *AsyncTarget) { tg.Answer = nil }, "Answer"},
		{"no constructor", func(tg *AsyncTarget) { tg.New = nil }, "New"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := ok
			tt.change(&tg)
			err := tg.validate()
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validate() = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}
