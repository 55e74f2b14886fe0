package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WorkerPackage is the import path of the worker command BuildWorker builds.
const WorkerPackage = "github.com/aibatch/aibatch/cmd/worker"

// BuildWorker builds the worker command (WorkerPackage) into dir with
// `go build` and returns the binary's path. It must run inside the aibatch
// module. race adds the race detector, so a data race in a worker ends it
// with exit code 66.
func BuildWorker(ctx context.Context, dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "worker")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, WorkerPackage)
	out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("chaos: build the worker (go %s): %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// raceExitCode is the exit code of a race-enabled binary that found a race.
const raceExitCode = 66

// workerPool runs worker processes, one per slot, restarting any that exits
// without the harness having killed it.
type workerPool struct {
	bin    string
	dir    string
	env    []string
	urlFor func(slot int) string
	logf   func(format string, args ...any)
	slots  []*workerSlot

	mu       sync.Mutex
	stopping bool
	restarts int      // starts after the first, for any reason
	exits    []string // exits the harness did not cause, with evidence
	wg       sync.WaitGroup
}

// workerSlot is one worker position; proc is its current process.
type workerSlot struct {
	idx  int
	mu   sync.Mutex
	proc *workerProc
	gen  int
}

// workerProc is one worker process.
type workerProc struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when it has exited
	log    *os.File
	killed bool // set under the slot's lock before the harness ends it
	code   int
}

// unexpectedRestarts bounds how often a slot is restarted after exits the
// harness did not cause, so a worker that cannot start does not loop for
// ever.
const unexpectedRestarts = 20

func newWorkerPool(bin, dir string, env map[string]string, n int, urlFor func(int) string, logf func(string, ...any)) *workerPool {
	full := map[string]string{"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME")}
	for k, v := range env {
		full[k] = v
	}
	p := &workerPool{bin: bin, dir: dir, urlFor: urlFor, logf: logf}
	for k, v := range full {
		p.env = append(p.env, k+"="+v)
	}
	slices.Sort(p.env)
	for i := range n {
		p.slots = append(p.slots, &workerSlot{idx: i})
	}
	return p
}

// logPath is where slot's processes write their output, one after another.
func (p *workerPool) logPath(slot int) string {
	return filepath.Join(p.dir, "worker-"+strconv.Itoa(slot)+".log")
}

// start starts a process in slot i if none runs there.
func (p *workerPool) start(i int) error {
	s := p.slots[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		select {
		case <-s.proc.done:
		default:
			return nil // still running
		}
	}
	p.mu.Lock()
	stopping := p.stopping
	if s.gen > 0 && !stopping {
		p.restarts++
	}
	p.mu.Unlock()
	if stopping {
		return nil
	}
	s.gen++
	log, err := os.OpenFile(p.logPath(i), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("chaos: open worker log: %w", err)
	}
	fmt.Fprintf(log, "=== chaos: slot %d, start %d at %s\n", i, s.gen, time.Now().Format(time.RFC3339Nano))
	workDir := filepath.Join(p.dir, "worker-"+strconv.Itoa(i))
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		_ = log.Close()
		return fmt.Errorf("chaos: worker directory: %w", err)
	}
	cmd := exec.Command(p.bin)
	cmd.Dir = workDir // no stray .env
	cmd.Env = append(slices.Clone(p.env), "OPENAI_BASE_URL="+p.urlFor(i))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("chaos: start worker in slot %d: %w", i, err)
	}
	proc := &workerProc{cmd: cmd, done: make(chan struct{}), log: log}
	s.proc = proc
	p.wg.Add(1)
	go p.watch(s, proc)
	return nil
}

// watch waits for proc to exit, records an exit the harness did not cause
// and restarts the slot after it.
func (p *workerPool) watch(s *workerSlot, proc *workerProc) {
	defer p.wg.Done()
	_ = proc.cmd.Wait()
	code := proc.cmd.ProcessState.ExitCode()
	fmt.Fprintf(proc.log, "=== chaos: exited with code %d (%s)\n", code, proc.cmd.ProcessState)
	_ = proc.log.Close()
	s.mu.Lock()
	proc.code = code
	killed := proc.killed
	close(proc.done)
	s.mu.Unlock()

	p.mu.Lock()
	stopping := p.stopping
	if !killed && !stopping {
		p.exits = append(p.exits, fmt.Sprintf("worker slot %d (pid %d) exited by itself with code %d; its output is in %s",
			s.idx, proc.cmd.Process.Pid, code, p.logPath(s.idx)))
	}
	unexpected := len(p.exits)
	p.mu.Unlock()
	if killed || stopping || unexpected > unexpectedRestarts*len(p.slots) {
		return
	}
	p.logf("worker slot %d exited by itself (code %d); restarting it", s.idx, code)
	pause(250 * time.Millisecond)
	if err := p.start(s.idx); err != nil {
		p.logf("restart worker slot %d: %v", s.idx, err)
	}
}

// kill ends slot i's process with SIGKILL and waits until it has exited.
func (p *workerPool) kill(i int) error {
	s := p.slots[i]
	s.mu.Lock()
	proc := s.proc
	if proc == nil {
		s.mu.Unlock()
		return nil
	}
	proc.killed = true
	s.mu.Unlock()
	if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("chaos: SIGKILL worker slot %d: %w", i, err)
	}
	select {
	case <-proc.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("chaos: worker slot %d still running 10s after SIGKILL", i)
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitStarted waits until slot's log shows that a worker finished its
// set-up ("worker started"), or ctx ends.
func (p *workerPool) waitStarted(ctx context.Context, slot int) error {
	err := poll(ctx, 20*time.Millisecond, func() bool {
		data, err := os.ReadFile(p.logPath(slot))
		return err == nil && bytes.Contains(data, []byte(`"msg":"worker started"`))
	})
	if err != nil {
		return fmt.Errorf("chaos: worker slot %d did not finish its set-up (see %s): %w", slot, p.logPath(slot), err)
	}
	return nil
}

// stopAll sends SIGTERM to every process and waits up to timeout for them
// to exit, then kills what still runs. It returns the exit codes other than
// 0 (by slot) of the processes SIGTERM stopped.
func (p *workerPool) stopAll(timeout time.Duration) []string {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	var procs []*workerProc
	for _, s := range p.slots {
		s.mu.Lock()
		if s.proc != nil && !isDone(s.proc.done) {
			procs = append(procs, s.proc)
			_ = s.proc.cmd.Process.Signal(syscall.SIGTERM)
		}
		s.mu.Unlock()
	}
	deadline := time.After(timeout)
	var problems []string
	for _, proc := range procs {
		select {
		case <-proc.done:
			if proc.code != 0 {
				problems = append(problems, fmt.Sprintf("worker pid %d exited with code %d after SIGTERM", proc.cmd.Process.Pid, proc.code))
			}
		case <-deadline:
			_ = proc.cmd.Process.Kill()
			<-proc.done
			problems = append(problems, fmt.Sprintf("worker pid %d still running %s after SIGTERM", proc.cmd.Process.Pid, timeout))
		}
	}
	p.wg.Wait()
	return problems
}

// stats returns the restarts and the unexpected exits so far.
func (p *workerPool) stats() (restarts int, exits []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts, slices.Clone(p.exits)
}

// scanLogs reads every slot's output and reports what must never be there:
// a data race, a panic, or the API key.
func (p *workerPool) scanLogs(secret string) []string {
	var found []string
	for i := range p.slots {
		data, err := os.ReadFile(p.logPath(i))
		if err != nil {
			found = append(found, fmt.Sprintf("read worker log %s: %v", p.logPath(i), err))
			continue
		}
		for _, bad := range []struct{ needle, what string }{
			{"WARNING: DATA RACE", "a data race"},
			{"panic: ", "a panic"},
			{secret, "the API key"},
		} {
			if at := bytes.Index(data, []byte(bad.needle)); at >= 0 {
				line := string(data[at:min(len(data), at+200)])
				if bad.needle == secret {
					line = "(not shown)"
				}
				found = append(found, fmt.Sprintf("worker log %s shows %s: %s", p.logPath(i), bad.what, firstLine(line)))
			}
		}
	}
	return found
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// shadowSamples adds up the shadow samples the workers compared, from the
// line each logs when it stops ("shadow sampling stopped"); a worker
// killed with SIGKILL logs none.
func (p *workerPool) shadowSamples() int64 {
	var n int64
	for i := range p.slots {
		data, err := os.ReadFile(p.logPath(i))
		if err != nil {
			continue
		}
		for line := range bytes.Lines(data) {
			var entry struct {
				Msg     string `json:"msg"`
				Samples int64  `json:"samples"`
			}
			if json.Unmarshal(line, &entry) == nil && entry.Msg == "shadow sampling stopped" {
				n += entry.Samples
			}
		}
	}
	return n
}
