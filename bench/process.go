package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aibatch/aibatch/jetstream"
)

// Processes of their own: a NATS server (the harness re-executed as
// server-child), the worker binary built from cmd/worker, and the drain
// children (memory.go). Their CPU time is read from /proc/<pid>/stat, or
// from the rusage of a child that has ended.

// serverCommand is the subcommand the harness re-executes itself with to
// run an embedded JetStream server in a process of its own.
const serverCommand = "server-child"

// serverMain runs a server storing in -store until SIGTERM or SIGINT. It
// prints the URL clients connect to as its first line on stdout.
func serverMain(args []string) int {
	fs := flag.NewFlagSet(serverCommand, flag.ContinueOnError)
	store := fs.String("store", "", "JetStream store directory")
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file from start to SIGUSR2")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *profile != "" {
		stopProfile, err := profileUntilSIGUSR2(*profile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", serverCommand, err)
			return 1
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ns, err := jetstream.RunServer(jetstream.ServerConfig{Port: -1, StoreDir: *store})
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", serverCommand, err)
		return 1
	}
	fmt.Println(ns.ClientURL())
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}

// profileUntilSIGUSR2 writes a CPU profile of this process to path until
// SIGUSR2 (then it creates path.done) or until the returned function is
// called.
func profileUntilSIGUSR2(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
			_ = os.WriteFile(path+".done", nil, 0o644)
		})
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR2)
	go func() {
		<-sig
		stop()
	}()
	return stop, nil
}

// waitProfileDone waits until a process profiling with profileUntilSIGUSR2
// (or the worker's hook) has written path, after SIGUSR2.
func waitProfileDone(p *os.Process, path string) error {
	if err := p.Signal(syscall.SIGUSR2); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path + ".done"); err == nil {
			_ = os.Remove(path + ".done")
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no CPU profile in %s after 10s", path)
}

// serverProcess is a server-child.
type serverProcess struct {
	cmd     *exec.Cmd
	url     string
	done    chan struct{}
	profile string
}

// startServerProcess starts a server-child storing in dir and waits until
// it listens. With profile set it writes a CPU profile there until
// stopProfile.
func startServerProcess(dir, profile string) (*serverProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(exe, serverCommand, "-store", dir, "-cpuprofile", profile)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server process: %w", err)
	}
	s := &serverProcess{cmd: cmd, done: make(chan struct{}), profile: profile}
	lines := make(chan string, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		for sc.Scan() {
		}
	}()
	go func() {
		<-readDone // Wait closes stdout: read it to the end first
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case url, ok := <-lines:
		if !ok || url == "" {
			s.stop()
			return nil, errors.New("server process: it printed no URL")
		}
		s.url = url
		return s, nil
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, errors.New("server process: no URL after 30s")
	}
}

// cpu is the server process's CPU time so far.
func (s *serverProcess) cpu() (time.Duration, error) { return procCPU(s.cmd.Process.Pid) }

// stopProfile makes a profiling server write its CPU profile.
func (s *serverProcess) stopProfile() error {
	if s.profile == "" {
		return nil
	}
	return waitProfileDone(s.cmd.Process, s.profile)
}

// stop ends the server and waits for it.
func (s *serverProcess) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// clockTicks is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// every Linux the Go runtime supports).
const clockTicks = 100

// procCPU reads the user and system CPU time of process pid, all its
// threads, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	return parseProcStat(string(b))
}

// parseProcStat returns utime + stime of a /proc/<pid>/stat line. The
// command name, field 2, is in parentheses and may hold spaces; fields are
// counted after its closing parenthesis.
func parseProcStat(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("read /proc stat: no command name in %q", line)
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("read /proc stat: %d fields after the name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read /proc stat: %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// buildWorker builds cmd/worker into dir and returns the binary's path.
// With hook set, the build adds bench/testdata/workerprofile.go to the
// worker's package through go build -overlay (the source tree is not
// touched): the binary then writes a CPU profile to
// $AIBATCH_BENCH_CPUPROFILE from start until SIGUSR2.
func buildWorker(ctx context.Context, dir string, hook bool) (string, error) {
	bin := filepath.Join(dir, "aibatch-worker")
	args := []string{"build", "-o", bin}
	if hook {
		out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil {
			return "", fmt.Errorf("find the module: %w", err)
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		overlay := filepath.Join(dir, "worker-overlay.json")
		spec := fmt.Sprintf(`{"Replace":{%q:%q}}`,
			filepath.Join(root, "cmd", "worker", "zz_bench_cpuprofile.go"),
			filepath.Join(root, "bench", "testdata", "workerprofile.go"))
		if err := os.WriteFile(overlay, []byte(spec), 0o644); err != nil {
			return "", err
		}
		args = append(args, "-overlay", overlay)
	}
	args = append(args, "github.com/aibatch/aibatch/cmd/worker")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the worker: %w", err)
	}
	return bin, nil
}

// workerProcess is the worker binary running.
type workerProcess struct {
	cmd     *exec.Cmd
	log     *os.File
	started time.Time
	done    chan struct{}
	profile string
}

// startWorkerProcess runs bin in dir with env (and PATH and HOME),
// writing its log to logPath. With profile set (a hooked binary) it writes
// a CPU profile there.
func startWorkerProcess(bin, dir string, env map[string]string, logPath, profile string) (*workerProcess, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir // no stray .env file
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if profile != "" {
		cmd.Env = append(cmd.Env, "AIBATCH_BENCH_CPUPROFILE="+profile)
	}
	slices.Sort(cmd.Env)
	cmd.Stdout, cmd.Stderr = log, log
	w := &workerProcess{cmd: cmd, log: log, done: make(chan struct{}), profile: profile}
	w.started = time.Now()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start worker: %w", err)
	}
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// cpu is the worker's CPU time so far.
func (w *workerProcess) cpu() (time.Duration, error) { return procCPU(w.cmd.Process.Pid) }

// exited reports whether the worker has ended.
func (w *workerProcess) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// stopProfile makes a hooked worker write its CPU profile, and waits until
// it has.
func (w *workerProcess) stopProfile() error {
	if w.profile == "" {
		return nil
	}
	return waitProfileDone(w.cmd.Process, w.profile)
}

// stop sends SIGTERM and waits for the worker to end (SIGKILL after 30s).
// It reports an exit other than 0.
func (w *workerProcess) stop() error {
	defer w.log.Close()
	if !w.exited() {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
		return fmt.Errorf("worker %d did not stop within 30s of SIGTERM (killed); log %s", w.cmd.Process.Pid, w.log.Name())
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("worker %d exited %d; log %s", w.cmd.Process.Pid, code, w.log.Name())
	}
	return nil
}
