package stack

import (
	"strings"
	"testing"
)

func TestListenNamesTheFlagWhenThePortIsTaken(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", "listen")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String(), "ops-listen")
	if err == nil {
		t.Fatal("second listen on the same port succeeded")
	}
	for _, want := range []string{"address already in use", "--ops-listen", ln.Addr().String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestVersionIsNeverEmpty(t *testing.T) {
	if v := Version(); v == "" {
		t.Fatal("empty version")
	}
}
