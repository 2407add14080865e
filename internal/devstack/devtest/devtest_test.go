package devtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/altegio-integrator/integrator/internal/devstack"
)

func TestRunStopRemovesTheDataFolderItMade(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where os.MkdirTemp makes the data folder
	_, stop, err := Run(devstack.DevConfig{})
	if err != nil {
		t.Fatal(err)
	}
	locks, _ := filepath.Glob(filepath.Join(tmp, "devstack-*", devstack.LockFile))
	if len(locks) != 1 {
		t.Errorf("data folders in use under %s: %v, want one", tmp, locks)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("left under %s after stop: %v (%v), want nothing", tmp, left, err)
	}
	if err := stop(); err != nil {
		t.Errorf("stop again = %v, want nil", err)
	}
}
