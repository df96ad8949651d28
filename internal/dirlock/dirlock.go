// Package dirlock gives one process at a time a directory of state: an
// exclusive advisory lock (flock(2)) on a lock file inside it, holding the
// owner's PID. The kernel drops the lock when its holder exits, however it
// exits, so the lock of a process that died (SIGKILL, power loss on a local
// disk) is taken over by the next process, which says so; a live holder
// makes Acquire fail at once with an error naming the directory and the
// holder's PID.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FileName is the lock file inside a locked directory.
const FileName = ".fleetscan.lock"

// HeldError is returned when another process holds the lock.
type HeldError struct {
	Dir string
	// PID is the holder's process ID (0 when the lock file names none).
	PID int
	// Command and Since describe the holder, when it recorded them.
	Command string
	Since   time.Time
}

func (e *HeldError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = fmt.Sprintf("process %d", e.PID)
		if e.Command != "" {
			who += " (" + e.Command + ")"
		}
	}
	msg := fmt.Sprintf("%s is in use by %s", e.Dir, who)
	if !e.Since.IsZero() {
		msg += " since " + e.Since.Format(time.RFC3339)
	}
	return msg + "; one process at a time owns this state: wait for it to finish or stop it"
}

// ErrHeld matches a HeldError with errors.Is.
var ErrHeld = errors.New("directory locked by another process")

// Is makes errors.Is(err, ErrHeld) true for a HeldError.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Lock is a held directory lock. Release it when done; the kernel releases
// it when the process exits.
type Lock struct {
	f   *os.File
	dir string
	// Previous is the PID recorded by a holder that is gone (its lock was
	// taken over), or 0.
	Previous int
}

// Dir is the locked directory.
func (l *Lock) Dir() string { return l.dir }

// Acquire creates dir if needed and takes its lock without waiting. The
// same directory is never locked twice, not even by one process through two
// calls.
func Acquire(dir, command string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(abs, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := tryLock(f); err != nil {
		held := holder(f)
		_ = f.Close()
		if errors.Is(err, errWouldBlock) {
			held.Dir = abs
			return nil, held
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	prev := holder(f)
	l := &Lock{f: f, dir: abs}
	if prev.PID > 0 && prev.PID != os.Getpid() {
		l.Previous = prev.PID
	}
	if err := l.record(command); err != nil {
		_ = l.Release()
		return nil, fmt.Errorf("write lock file %s: %w", path, err)
	}
	return l, nil
}

// record writes this process's PID, command and start time.
func (l *Lock) record(command string) error {
	if err := l.f.Truncate(0); err != nil {
		return err
	}
	line := fmt.Sprintf("%d\n%s\n%s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339), strings.ReplaceAll(command, "\n", " "))
	if _, err := l.f.WriteAt([]byte(line), 0); err != nil {
		return err
	}
	return l.f.Sync()
}

// holder reads what the lock file says about its holder.
func holder(f *os.File) *HeldError {
	buf := make([]byte, 512)
	n, _ := f.ReadAt(buf, 0)
	lines := strings.SplitN(string(buf[:n]), "\n", 4)
	h := &HeldError{}
	if len(lines) > 0 {
		h.PID, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	}
	if len(lines) > 1 {
		h.Since, _ = time.Parse(time.RFC3339, strings.TrimSpace(lines[1]))
	}
	if len(lines) > 2 {
		h.Command = strings.TrimSpace(lines[2])
	}
	return h
}

// Release drops the lock. The lock file stays (removing it would race with
// a process opening it); its PID is cleared.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
