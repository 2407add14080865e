//go:build !linux

package bench

import (
	"errors"
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup stops only the process itself where process groups are not
// set up.
func signalGroup(p *os.Process, kill bool) {
	if kill {
		_ = p.Kill()
		return
	}
	_ = p.Signal(os.Interrupt)
}

// readRSS is not available without /proc: memory figures stay at zero.
func readRSS(int) (int64, error) {
	return 0, errors.New("resident memory is read from /proc, Linux only")
}

// readCPU is not available without /proc: CPU figures stay at zero.
func readCPU(int) (float64, error) {
	return 0, errors.New("CPU time is read from /proc, Linux only")
}
