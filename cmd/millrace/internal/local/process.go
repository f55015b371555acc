package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Container names, as in an executor pod.
const (
	ContainerFunction = "function"
	ContainerIO       = "io"
	ContainerState    = "state"
)

// Process is one container of one replica, run as a local process and restarted when it exits,
// as the kubelet restarts a container.
type Process struct {
	Entity    string
	Ordinal   int
	Container string

	argv    []string
	env     []string
	logPath string
	// metricsURL is the I/O sidecar's /metrics, "" for other containers.
	metricsURL string

	mu       sync.Mutex
	cmd      *exec.Cmd
	restarts int
	running  bool
	lastErr  error
	stopping bool
	wake     chan struct{}
	done     chan struct{}

	// counters keeps the I/O sidecar's counters across restarts of the process.
	counters counters
}

func (p *Process) String() string { return fmt.Sprintf("%s-%d/%s", p.Entity, p.Ordinal, p.Container) }

// PID is the process id of the current incarnation, 0 when not running.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || !p.running {
		return 0
	}
	return p.cmd.Process.Pid
}

// Restarts is how many times the process exited and was started again.
func (p *Process) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Running reports whether the process is up.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// Signal sends sig to the current incarnation (tests kill processes with it).
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || !p.running {
		return fmt.Errorf("%s is not running", p)
	}
	return p.cmd.Process.Signal(sig)
}

// start runs the supervision loop in the background.
func (p *Process) start(onExit func(p *Process, err error)) error {
	p.wake = make(chan struct{}, 1)
	p.done = make(chan struct{})
	if err := p.spawn(); err != nil {
		close(p.done)
		return err
	}
	go p.supervise(onExit)
	return nil
}

func (p *Process) spawn() error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log of %s: %w", p, err)
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Their own process group keeps a terminal's Ctrl-C away from the children: millrace stops
	// them itself, in order (the I/O sidecar drains and commits first). Pdeathsig stops them
	// should millrace itself be killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s (%s): %w", p, p.argv[0], err)
	}
	logFile.Close()
	p.mu.Lock()
	p.cmd, p.running = cmd, true
	p.mu.Unlock()
	return nil
}

func (p *Process) supervise(onExit func(p *Process, err error)) {
	defer close(p.done)
	backoff := time.Second
	for {
		p.mu.Lock()
		cmd := p.cmd
		p.mu.Unlock()
		started := time.Now()
		err := cmd.Wait()
		p.mu.Lock()
		p.running = false
		p.lastErr = err
		stopping := p.stopping
		p.mu.Unlock()
		if stopping {
			return
		}
		if onExit != nil {
			onExit(p, err)
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-time.After(backoff):
		case <-p.wake:
		}
		backoff = min(2*backoff, 10*time.Second)
		p.mu.Lock()
		if p.stopping {
			p.mu.Unlock()
			return
		}
		p.restarts++
		p.mu.Unlock()
		if err := p.spawn(); err != nil {
			if onExit != nil {
				onExit(p, err)
			}
			return
		}
	}
}

// stop sends SIGTERM and waits up to grace for the process to exit, then kills it.
func (p *Process) stop(grace time.Duration) error {
	p.mu.Lock()
	p.stopping = true
	cmd, running := p.cmd, p.running
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	if running && cmd.Process != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-p.done
		return fmt.Errorf("%s did not stop within %v and was killed", p, grace)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var exit *exec.ExitError
	// A process that ends on the SIGTERM it was sent has stopped as asked.
	if errors.As(p.lastErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	if p.lastErr != nil {
		return fmt.Errorf("%s: %w", p, p.lastErr)
	}
	return nil
}
