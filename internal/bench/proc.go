package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Binary names in a binaries folder (see Build).
const (
	binNATS    = "nats-server"
	binSandbox = "altegio-sandbox"
	binIngest  = "ingest"
	binWorker  = "worker"
	binBench   = "bench"
)

// natsServerPackage is the main package of nats-server, at its module root.
const natsServerPackage = "github.com/nats-io/nats-server/v2"

// Build compiles the binaries a run needs into dir, without the race
// detector: nats-server (from the module's own requirement) and, from this
// module, cmd/altegio-sandbox, cmd/ingest, cmd/worker and cmd/bench. It runs
// the go command found in PATH in the module root, located with `go env
// GOMOD` from the current directory, with -race removed from GOFLAGS, and
// returns the compiler's output on failure.
func Build(ctx context.Context, dir string) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return errors.New("build: not inside the integrator module (go env GOMOD is empty)")
	}
	root := filepath.Dir(gomod)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"build", "-o", filepath.Join(dir, binNATS), natsServerPackage},
		{"build", "-o", dir + string(filepath.Separator), "./cmd/altegio-sandbox", "./cmd/ingest", "./cmd/worker", "./cmd/bench"},
	} {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		cmd.Env = withoutRace(os.Environ())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// withoutRace drops -race from GOFLAGS in env, so that `go test -race`
// (or GOFLAGS=-race) does not slow down the processes under measurement.
func withoutRace(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if f != "-race" && f != "--race" && f != "-race=true" {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		out = append(out, kv)
	}
	return out
}

// proc is one child process. It runs in its own process group, so that
// stop reaches anything it started, and its output goes to a log file.
// Its resident memory is sampled until it exits.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done
	maxRSS  atomic.Int64  // bytes, the largest VmRSS seen
}

// procSpec says how to start a proc.
type procSpec struct {
	name   string
	path   string
	args   []string
	env    []string  // the whole environment of the child
	logDir string    // output goes to <logDir>/<name>.log
	stdout io.Writer // when set, standard output goes here instead
}

// startProc starts spec's process.
func startProc(spec procSpec) (*proc, error) {
	logPath := filepath.Join(spec.logDir, spec.name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.path, spec.args...)
	cmd.Env = spec.env
	cmd.Stdout, cmd.Stderr = f, f
	if spec.stdout != nil {
		cmd.Stdout = spec.stdout
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p := &proc{name: spec.name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	go p.sampleRSS(100 * time.Millisecond)
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after grace. It
// returns once the process has been reaped, or after a further 5 s.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	signalGroup(p.cmd.Process, false)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	signalGroup(p.cmd.Process, true)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// kill ends the process group with SIGKILL at once, as a crash would, and
// waits until the process has been reaped (at most 5 s).
func (p *proc) kill() {
	signalGroup(p.cmd.Process, true)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// sampleRSS records the largest resident set size until the process exits.
func (p *proc) sampleRSS(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if rss, err := readRSS(p.pid()); err == nil && rss > p.maxRSS.Load() {
			p.maxRSS.Store(rss)
		}
		select {
		case <-p.done:
			return
		case <-t.C:
		}
	}
}

// logTail is the end of the process's output, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(bytes.TrimSpace(b))
}

// exitError describes how the process ended, with the end of its output.
func (p *proc) exitError() error {
	return fmt.Errorf("%s exited (%v): %s", p.name, p.waitErr, p.logTail())
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a
// /proc/<pid>/stat file, in seconds. The command name (field 2) may hold
// spaces, so fields are counted after its closing parenthesis.
func parseStatCPU(stat []byte) (float64, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("stat without a command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("stat with %d fields after the name", len(f))
	}
	var ticks int64
	for _, v := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat time %q: %w", v, err)
		}
		ticks += n
	}
	return float64(ticks) / clockTicks, nil
}

// cpu is the CPU time the process has used so far, in seconds (0 when it
// cannot be read).
func (p *proc) cpu() float64 {
	s, _ := readCPU(p.pid())
	return s
}

// parseVmRSS reads the VmRSS line of a /proc/<pid>/status file, in bytes.
func parseVmRSS(status []byte) (int64, error) {
	for line := range strings.SplitSeq(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", line, err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// childEnv is the environment of every child: enough to run (PATH, HOME,
// TMPDIR) and the Go runtime settings the caller chose, plus extra. The
// caller's ALTEGIO_*, NATS_* and INGEST_* variables are deliberately left
// out, so the bench's own settings are the only ones in force.
func childEnv(extra ...string) []string {
	var env []string
	// WORKER_CPU_PROFILE and INGEST_CPU_PROFILE let a bench run profile its
	// worker or ingest (one worker: several would write the same file).
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG", "WORKER_CPU_PROFILE", "INGEST_CPU_PROFILE"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// waitHTTP polls url until it answers 200, p exits, or timeout passes.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %v (%w)", p.name, url, last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
