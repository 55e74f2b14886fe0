package fake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

type result struct{ ID, Output string }

// Counted handlers count every call and the most running at once.
func TestCounted(t *testing.T) {
	t.Parallel()
	const n = 4
	var c fake.Controls[result]
	var arrived atomic.Int64
	all := make(chan struct{}) // closed once n calls are in the handler
	srv := httptest.NewServer(c.Counted(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	get := func() {
		res, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Error(err)
			return
		}
		res.Body.Close()
	}
	var wg sync.WaitGroup
	for range n {
		wg.Go(get)
	}
	wg.Wait()
	get() // alone, after the others
	if c.Calls() != n+1 || c.MaxConcurrent() != n {
		t.Errorf("Calls %d, MaxConcurrent %d; want %d and %d", c.Calls(), c.MaxConcurrent(), n+1, n)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name  string
		delay time.Duration
		ctx   context.Context
		want  bool
	}{
		{"no delay", 0, t.Context(), true},
		{"no delay, client gone", 0, ended, true},
		{"short delay", time.Millisecond, t.Context(), true},
		{"client gone during the delay", time.Hour, ended, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c fake.Controls[result]
			c.SetDelay(tt.delay)
			if got := c.Wait(httptest.NewRequestWithContext(tt.ctx, http.MethodGet, "/", nil)); got != tt.want {
				t.Errorf("Wait = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  func(c *fake.Controls[result])
		want []int
	}{
		{"none", func(*fake.Controls[result]) {}, []int{0, 0}},
		{"two", func(c *fake.Controls[result]) { c.FailNext(2, 503) }, []int{503, 503, 0}},
		{"replaced", func(c *fake.Controls[result]) { c.FailNext(3, 503); c.FailNext(1, 429) }, []int{429, 0}},
		{"cancelled", func(c *fake.Controls[result]) { c.FailNext(3, 503); c.FailNext(-1, 429) }, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c fake.Controls[result]
			tt.set(&c)
			var got []int
			for range tt.want {
				got = append(got, c.TakeFailure())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("TakeFailure gave %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCountdown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  []int
		want int // how many Takes succeed
	}{
		{"zero value", nil, 0},
		{"two", []int{2}, 2},
		{"replaced", []int{5, 1}, 1},
		{"negative is none", []int{3, -2}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c fake.Countdown
			for _, n := range tt.set {
				c.Set(n)
			}
			var taken atomic.Int64
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					if c.Take() {
						taken.Add(1)
					}
				})
			}
			wg.Wait()
			if taken.Load() != int64(tt.want) {
				t.Errorf("%d Takes succeeded, want %d", taken.Load(), tt.want)
			}
		})
	}
}

// SetMalformedNext is a Countdown of its own.
func TestMalformedNext(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	c.SetMalformedNext(1)
	if got := []bool{c.TakeMalformed(), c.TakeMalformed()}; !slices.Equal(got, []bool{true, false}) {
		t.Errorf("TakeMalformed gave %v, want [true false]", got)
	}
}

// Behaviour reads every steady control, and what it returns is a copy.
func TestBehaviour(t *testing.T) {
	t.Parallel()
	var c fake.Controls[result]
	if b := c.Behaviour(); b.Drop != 0 || b.Shuffle || b.RepeatIDs || b.Transform != nil || len(b.Omit) != 0 || len(b.Reject) != 0 {
		t.Errorf("zero Controls give %+v", b)
	}
	c.DropItems(2)
	c.Shuffle(true)
	c.RepeatIDs(true)
	c.SetResultsFunc(func(rs []result) []result { return rs[:0] })
	c.OmitInput("o")
	c.RejectInput("r", true)
	c.RejectInput("p", false)
	b := c.Behaviour()
	if b.Drop != 2 || !b.Shuffle || !b.RepeatIDs || b.Transform == nil {
		t.Errorf("Behaviour = %+v, want every control set", b)
	}
	if fmt.Sprint(b.Omit, b.Reject) != "map[o:true] map[p:false r:true]" {
		t.Errorf("Omit %v, Reject %v", b.Omit, b.Reject)
	}
	b.Omit["x"], b.Reject["y"] = true, true
	if c.Omitted("x") || !c.Omitted("o") {
		t.Error("Omitted does not report OmitInput alone")
	}
	if rejected, _ := c.Rejected("y"); rejected {
		t.Error("changing a Behaviour changed the controls")
	}
	if rejected, retryable := c.Rejected("r"); !rejected || !retryable {
		t.Errorf("Rejected(r) = %v, %v; want true, true", rejected, retryable)
	}
	if !c.Shuffling() {
		t.Error("Shuffling = false after Shuffle(true)")
	}
	for in, want := range map[string]bool{"o": true, "r": true, "p": true, "a": false} {
		if b.LeftOut(in) != want {
			t.Errorf("LeftOut(%q) = %v, want %v", in, !want, want)
		}
	}
	for n, want := range map[int]int{0: 0, 1: 0, 2: 0, 5: 3} {
		if got := b.Kept(n); got != want {
			t.Errorf("Kept(%d) = %d, want %d", n, got, want)
		}
	}
	c.DropItems(-1)
	c.SetResultsFunc(nil)
	if b := c.Behaviour(); b.Drop != 0 || b.Transform != nil {
		t.Errorf("Behaviour = %+v after resetting", b)
	}
}

func TestFinish(t *testing.T) {
	t.Parallel()
	same := func(x, y result) bool { return x == y }
	repeat := func(first result) (result, result) {
		return result{"not-asked", "n"}, result{first.ID, "repeated: " + first.Output}
	}
	abc := func() []result { return []result{{"a", "A"}, {"b", "B"}, {"c", "C"}} }
	tests := []struct {
		name    string
		b       fake.Behaviour[result]
		results []result
		check   func(t *testing.T, got []result)
	}{
		{"nothing set", fake.Behaviour[result]{}, abc(), want(abc())},
		{"nil becomes empty", fake.Behaviour[result]{RepeatIDs: true}, nil, want([]result{})},
		{"repeat", fake.Behaviour[result]{RepeatIDs: true}, abc(), want([]result{{"not-asked", "n"}, {"a", "A"}, {"b", "B"}, {"c", "C"}, {"a", "repeated: A"}})},
		{"transform before repeat", fake.Behaviour[result]{RepeatIDs: true, Transform: func(rs []result) []result { return rs[1:] }}, abc(),
			want([]result{{"not-asked", "n"}, {"b", "B"}, {"c", "C"}, {"b", "repeated: B"}})},
		{"transform to nothing", fake.Behaviour[result]{RepeatIDs: true, Transform: func([]result) []result { return nil }}, abc(), want([]result{})},
		{"shuffle changes the order", fake.Behaviour[result]{Shuffle: true}, abc(), func(t *testing.T, got []result) {
			if slices.Equal(got, abc()) {
				t.Errorf("order unchanged: %v", got)
			}
			slices.SortFunc(got, func(x, y result) int { return strings.Compare(x.ID, y.ID) })
			if !slices.Equal(got, abc()) {
				t.Errorf("shuffled results %v are not a, b, c", got)
			}
		}},
		{"shuffle of look-alikes", fake.Behaviour[result]{Shuffle: true}, []result{{"a", "A"}, {"a", "A"}}, want([]result{{"a", "A"}, {"a", "A"}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 20 { // the shuffle is random
				tt.check(t, tt.b.Finish(slices.Clone(tt.results), same, repeat))
			}
		})
	}
}

func want(w []result) func(*testing.T, []result) {
	return func(t *testing.T, got []result) {
		t.Helper()
		if got == nil || !slices.Equal(got, w) {
			t.Errorf("Finish = %#v, want %#v", got, w)
		}
	}
}

func TestPerInput(t *testing.T) {
	t.Parallel()
	var p fake.PerInput[int]
	if p.Get("a") != 0 {
		t.Error("zero PerInput holds a value")
	}
	p.Set(503, "a", "b")
	p.Set(400, "b")
	p.Set(0, "a")
	if got := []int{p.Get("a"), p.Get("b"), p.Get("c")}; !slices.Equal(got, []int{0, 400, 0}) {
		t.Errorf("Get a, b, c = %v, want [0 400 0]", got)
	}
}

func TestLog(t *testing.T) {
	t.Parallel()
	var l fake.Log[string]
	if l.All() != nil {
		t.Error("empty Log gives a non-nil slice")
	}
	l.Add("a")
	l.Add("b")
	got := l.All()
	got[0] = "changed"
	if all := l.All(); !slices.Equal(all, []string{"a", "b"}) {
		t.Errorf("All = %v, want [a b]", all)
	}
}

func TestMarshalJSON(t *testing.T) {
	t.Parallel()
	v := map[string]string{"output": "<b> & </b>"}
	if got := string(fake.MarshalJSON(v)); got != `{"output":"<b> & </b>"}` {
		t.Errorf("MarshalJSON = %s", got)
	}
	lines := []map[string]int{{"n": 1}, {"n": 2}, {"n": 3}}
	if got := string(fake.JSONL(slices.Clone(lines), false)); got != "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n" {
		t.Errorf("JSONL = %q", got)
	}
	if got := fake.JSONL([]int(nil), true); len(got) != 0 {
		t.Errorf("JSONL of nothing = %q", got)
	}
	shuffled := fake.JSONL(slices.Clone(lines), true)
	var ns []int
	for _, l := range bytes.Split(bytes.TrimSuffix(shuffled, []byte("\n")), []byte("\n")) {
		var m map[string]int
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ns = append(ns, m["n"])
	}
	slices.Sort(ns)
	if !slices.Equal(ns, []int{1, 2, 3}) {
		t.Errorf("shuffled JSONL %q does not hold each line once", shuffled)
	}
}

func TestWriteJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		v          any
		wantStatus int
		wantType   string
	}{
		{"encodes", map[string]int{"a": 1}, http.StatusTeapot, "application/json"},
		{"cannot encode", func() {}, http.StatusInternalServerError, "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			fake.WriteJSON(rec, http.StatusTeapot, tt.v)
			if rec.Code != tt.wantStatus || rec.Header().Get("Content-Type") != tt.wantType {
				t.Errorf("answer %d %q, want %d %q", rec.Code, rec.Header().Get("Content-Type"), tt.wantStatus, tt.wantType)
			}
			if tt.wantStatus == http.StatusTeapot && rec.Body.String() != `{"a":1}` {
				t.Errorf("body %q", rec.Body)
			}
		})
	}
}

func TestWriteAnswer(t *testing.T) {
	t.Parallel()
	v := map[string]string{"output": "some answer"}
	whole, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []bool{false, true} {
		rec := httptest.NewRecorder()
		fake.WriteAnswer(rec, v, cut)
		body := rec.Body.Bytes()
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("cut %v: answer %d %q", cut, rec.Code, rec.Header().Get("Content-Type"))
		}
		if json.Valid(body) == cut || !bytes.HasPrefix(whole, body) {
			t.Errorf("cut %v: body %q, want %q cut: %v", cut, body, whole, cut)
		}
	}
}

func TestSleepAndTokens(t *testing.T) {
	t.Parallel()
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if fake.Sleep(httptest.NewRequestWithContext(ended, http.MethodGet, "/", nil), time.Hour) {
		t.Error("Sleep outlived the request's context")
	}
	if !fake.Sleep(httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil), time.Millisecond) {
		t.Error("Sleep cut short with a live context")
	}
	for n, want := range map[int]int64{0: 0, 1: 1, 4: 1, 5: 2, 8: 2} {
		if got := fake.Tokens(n); got != want {
			t.Errorf("Tokens(%d) = %d, want %d", n, got, want)
		}
	}
}
