package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"
)

// A child is `sharpeye bench <subcommand>` run by the bench in a process of
// its own: the simulated cameras, the viewers, or a section of `bench all`.
//
// The protocol is lines: the parent writes commands ("start", "stop") on
// the child's standard input, the child answers with one JSON value per
// line on its standard output and logs on its standard error (passed
// through). When its standard input closes (the parent closed it, or the
// parent died and the kernel closed it) the child cleans up and exits; a
// child that has not exited closeTimeout later is killed.

// closeTimeout bounds a child's exit once its standard input is closed
// (200 viewers hanging up take a few seconds on a busy machine).
const closeTimeout = 30 * time.Second

// child is a running child process, seen from the parent.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan []byte   // the child's stdout, line by line
	eof   chan struct{} // closed once stdout is exhausted
	once  sync.Once
	err   error
}

// startChild runs `<this executable> bench args...`. The child's standard
// error goes to stderr.
func startChild(ctx context.Context, stderr io.Writer, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the sharpeye executable: %w", err)
	}
	cmd := exec.Command(exe, append([]string{"bench"}, args...)...)
	cmd.Stderr = stderr
	// A child holding its stderr pipe open must not block Wait for ever.
	cmd.WaitDelay = closeTimeout
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	c := &child{name: args[0], cmd: cmd, stdin: stdin, lines: make(chan []byte, 16), eof: make(chan struct{})}
	go func() {
		defer close(c.eof)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			c.lines <- append([]byte(nil), sc.Bytes()...)
		}
		// Whatever is left (a child that wrote too long a line) is
		// drained so that it does not block on a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	// The parent's context ending (Ctrl-C) closes the child's stdin: it
	// stops as it would at the end of the bench.
	stop := context.AfterFunc(ctx, func() { _ = c.stdin.Close() })
	go func() {
		<-c.eof
		stop()
	}()
	return c, nil
}

// send writes one command line to the child.
func (c *child) send(cmd string) error {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("%s: send %q: %w", c.name, cmd, err)
	}
	return nil
}

// recv decodes the child's next line into v, waiting at most timeout.
func (c *child) recv(ctx context.Context, v any, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line := <-c.lines:
		if err := json.Unmarshal(line, v); err != nil {
			return fmt.Errorf("%s: unreadable answer %.200q: %w", c.name, line, err)
		}
		return nil
	case <-c.eof:
		// Lines sent just before the end may still be queued.
		select {
		case line := <-c.lines:
			return json.Unmarshal(line, v)
		default:
		}
		return fmt.Errorf("%s: exited without answering (see its errors above)", c.name)
	case <-t.C:
		return fmt.Errorf("%s: no answer within %v", c.name, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close closes the child's standard input, which ends it, and waits for it
// to exit, killing it if it has not within closeTimeout. It returns the
// child's failure, if any; it is safe to call more than once.
func (c *child) close() error {
	c.once.Do(func() {
		_ = c.stdin.Close()
		t := time.NewTimer(closeTimeout)
		defer t.Stop()
		for eof := false; !eof; {
			select {
			case <-c.lines: // answers nobody asked for
			case <-c.eof:
				eof = true
			case <-t.C:
				_ = c.cmd.Process.Kill()
				t.Reset(closeTimeout)
			}
		}
		if err := c.cmd.Wait(); err != nil {
			c.err = fmt.Errorf("%s: %w", c.name, err)
		}
	})
	return c.err
}

// linesUntilEOF yields the child's lines until it closes its standard
// output (when it exits, or its parent's context ends and it stops).
func (c *child) linesUntilEOF() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for {
			select {
			case line := <-c.lines:
				if !yield(line) {
					return
				}
			case <-c.eof:
				for {
					select {
					case line := <-c.lines:
						if !yield(line) {
							return
						}
					default:
						return
					}
				}
			}
		}
	}
}

// control is the child's side: it reads the parent's commands from stdin
// and returns them, and a context cancelled when stdin closes, the signal
// to stop. The child ignores Ctrl-C (the terminal sends it to the whole
// process group): its parent closes its stdin once it has measured what it
// needs.
func control(stdin io.Reader) (context.Context, <-chan string) {
	signal.Ignore(os.Interrupt)
	ctx, cancel := context.WithCancel(context.Background())
	commands := make(chan string)
	go func() {
		defer cancel()
		defer close(commands)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			commands <- sc.Text()
		}
	}()
	return ctx, commands
}

// answer writes v as one JSON line.
func answer(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// errUnknownCommand is a command line the child does not know.
var errUnknownCommand = errors.New("unknown command")
