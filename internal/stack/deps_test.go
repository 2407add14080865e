package stack

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestProductionBinariesLinkNoTestMachinery: ingest and the worker link
// neither an embedded NATS server nor the sandbox nor the dev and bench
// harnesses; those belong to cmd/dev, cmd/bench and the tests. Ingest also
// links none of the worker, its session and its budget: it asks the
// workers. (It does link internal/altegio, for the client card that loop
// prevention fingerprints; it never calls the API.)
func TestProductionBinariesLinkNoTestMachinery(t *testing.T) {
	forbidden := []string{
		"github.com/nats-io/nats-server/v2/server",
		"github.com/altegio-integrator/integrator/internal/sandbox",
		"github.com/altegio-integrator/integrator/internal/devstack",
		"github.com/altegio-integrator/integrator/internal/bench",
		"github.com/altegio-integrator/integrator/internal/testenv",
	}
	ingestOnly := []string{
		"github.com/altegio-integrator/integrator/internal/worker",
		"github.com/altegio-integrator/integrator/internal/workerstack",
		"github.com/altegio-integrator/integrator/internal/reads",
		"github.com/altegio-integrator/integrator/internal/auth",
		"github.com/altegio-integrator/integrator/internal/ratelimit",
	}
	for _, bin := range []string{"cmd/ingest", "cmd/worker"} {
		forbidden := forbidden
		if bin == "cmd/ingest" {
			forbidden = append(slices.Clone(forbidden), ingestOnly...)
		}
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
