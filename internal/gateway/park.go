package gateway

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Parking. A request that waits for a batch may wait for minutes, and
// thousands may wait at once. While net/http serves a request it holds a
// goroutine (two, with the one watching for the caller leaving) and about
// 10 KiB of buffers for its connection, 20-30 KiB in all. A wait that lasts
// ParkAfter is handed off instead: the gateway takes the connection over
// (http.Hijacker), which ends net/http's goroutines and frees its buffers,
// and keeps only the connection, the result collector and a timer. When the
// results come, the timeout fires or the gateway stops, a goroutine writes
// the answer on the connection and closes it ("Connection: close": the
// caller's SDK opens a new connection for its next request, which costs
// nothing next to the wait). A caller that leaves a parked request is not
// noticed until the answer is written; its request is answered and stored
// all the same. Short waits (the urgent lane) are never parked and keep
// their connection alive, unless parkAbove waits are unparked already.

// DefaultParkAfter is Config.ParkAfter's default: far above an urgent
// request's milliseconds with a fast provider, even on a loaded machine
// (where parking short waits would add new connections to the load),
// and far below the seconds to minutes a batch waits.
const DefaultParkAfter = time.Second

// parkAbove is how many waits may hold net/http's goroutines and buffers
// at once: a wait that starts with more waiting unparked is parked at
// once, so a burst of callers costs what parked waits cost, not 20-30 KiB
// each until ParkAfter.
const parkAbove = 1000

// parkWriteTimeout bounds writing a parked request's answer.
const parkWriteTimeout = 10 * time.Second

// parked is a request whose connection the gateway took over.
type parked struct {
	s        *Server
	conn     net.Conn
	start    time.Time
	endpoint string
	sub      submission
	p        *pending
	respond  respondFunc
	once     sync.Once

	mu    sync.Mutex // guards timer, set after the timer may have fired
	timer *time.Timer
}

// park takes r's connection over and answers it later. It returns false,
// having changed nothing, when the connection cannot be taken over (HTTP/2,
// or a connection with a further request already read).
func (s *Server) park(w http.ResponseWriter, start time.Time, endpoint string, sub submission, p *pending, respond respondFunc) bool {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	if rw.Reader.Buffered() > 0 {
		// A pipelined request follows, which the gateway will not serve:
		// the caller gets this answer, then the connection closes.
		s.cfg.Log.Debug("parked a connection with a pipelined request", zap.String("id", sub.ids[0]))
	}
	pr := &parked{s: s, conn: conn, start: start, endpoint: endpoint, sub: sub, p: p, respond: respond}
	s.parkMu.Lock()
	if s.parkClosed {
		s.parkMu.Unlock()
		pr.finish(errStopping)
		return true
	}
	s.parked[pr] = struct{}{}
	s.parkMu.Unlock()
	if s.metrics != nil {
		s.metrics.parked.WithLabelValues(endpoint).Inc()
	}
	left := s.cfg.Timeout - s.now().Sub(start)
	pr.mu.Lock()
	pr.timer = time.AfterFunc(max(left, 0), func() { pr.finish(errTimedOut) })
	pr.mu.Unlock()
	p.whenDone(func() { pr.finish(nil) })
	return true
}

// finish answers the parked request once: its results when err is nil,
// else the error that ended the wait.
func (pr *parked) finish(err error) {
	pr.once.Do(func() {
		s := pr.s
		pr.mu.Lock()
		if pr.timer != nil {
			pr.timer.Stop()
		}
		pr.mu.Unlock()
		pr.p.release()
		s.waiting(pr.endpoint, -1)
		s.parkMu.Lock()
		delete(s.parked, pr)
		s.parkWG.Add(1)
		s.parkMu.Unlock()
		go func() {
			defer s.parkWG.Done()
			rw := &rawWriter{header: http.Header{}}
			var e *apiError
			if err != nil {
				e = s.waitError(pr.sub, err)
			} else {
				e = pr.respond(rw, pr.p.results)
			}
			if e != nil {
				e.write(rw)
			}
			_ = pr.conn.SetWriteDeadline(time.Now().Add(parkWriteTimeout))
			if _, werr := pr.conn.Write(rw.bytes()); werr != nil {
				rw.status = statusClientGone
			}
			_ = pr.conn.Close()
			if s.metrics != nil {
				s.metrics.observe(pr.endpoint, rw.status, s.now().Sub(pr.start))
			}
		}()
	})
}

// stopParked answers every parked request 503 (the gateway is stopping)
// and waits until the answers are written.
func (s *Server) stopParked() {
	s.parkMu.Lock()
	s.parkClosed = true
	all := make([]*parked, 0, len(s.parked))
	for pr := range s.parked {
		all = append(all, pr)
	}
	s.parkMu.Unlock()
	for _, pr := range all {
		pr.finish(errStopping)
	}
	s.parkWG.Wait()
}

// rawWriter is an http.ResponseWriter that builds a whole HTTP/1.1 answer
// in memory, for a connection the gateway took over.
type rawWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *rawWriter) Header() http.Header { return w.header }

func (w *rawWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *rawWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Flush does nothing: the answer is written whole.
func (w *rawWriter) Flush() {}

// bytes is the answer: status line, headers (with Content-Length and
// Connection: close), body.
func (w *rawWriter) bytes() []byte {
	w.WriteHeader(http.StatusOK)
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %03d %s\r\n", w.status, http.StatusText(w.status))
	w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	w.header.Set("Connection", "close")
	w.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	_ = w.header.Write(&out) // sanitises values: no header can be injected
	out.WriteString("\r\n")
	out.Write(w.body.Bytes())
	return out.Bytes()
}

var _ http.Flusher = (*rawWriter)(nil)
