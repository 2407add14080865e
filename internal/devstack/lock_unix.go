//go:build unix

package devstack

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive lock on the file lockPath (flock, so the
// system releases it when the process ends, however it ends) and writes
// this process's id into it. It fails at once with a *DataDirLockedError
// when another process, or another RunDev in this one, holds it. release
// gives the lock up; the file stays.
func lockDataDir(dir, lockPath string) (release func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock the data folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &DataDirLockedError{Dir: dir, Lock: lockPath, PID: lockHolder(lockPath)}
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	// The holder's pid, for the message another dev prints; best effort.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// lockHolder reads the pid the holder of lockPath wrote; 0 when unknown.
func lockHolder(lockPath string) int {
	b, err := os.ReadFile(lockPath)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
