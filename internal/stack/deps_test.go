package stack

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductionBinariesLinkNoTestMachinery: ingest and the worker link
// neither an embedded NATS server nor the sandbox nor the dev and bench
// harnesses; those belong to cmd/dev, cmd/bench and the tests.
func TestProductionBinariesLinkNoTestMachinery(t *testing.T) {
	forbidden := []string{
		"github.com/nats-io/nats-server/v2/server",
		"github.com/altegio-integrator/integrator/internal/sandbox",
		"github.com/altegio-integrator/integrator/internal/devstack",
		"github.com/altegio-integrator/integrator/internal/bench",
		"github.com/altegio-integrator/integrator/internal/testenv",
	}
	for _, bin := range []string{"cmd/ingest", "cmd/worker"} {
		out, err := exec.Command("go", "list", "-deps", "github.com/altegio-integrator/integrator/"+bin).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", bin, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed %d packages", bin, len(deps))
		}
		for _, dep := range deps {
			for _, f := range forbidden {
				if dep == f {
					t.Errorf("%s links %s", bin, f)
				}
			}
		}
	}
}
