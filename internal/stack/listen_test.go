package stack

import (
	"runtime/debug"
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

func TestVersion(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"go install …@version", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"a checkout", debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs.revision", "0123456789abcdef0123", "vcs.time", "2026-12-07T10:00:00Z", "vcs.modified", "true")},
			"devel 0123456789ab+dirty 2026-12-07T10:00:00Z go1.26.0"},
		{"a clean checkout", debug.BuildInfo{GoVersion: "go1.26.0", Settings: vcs("vcs.revision", "abc")}, "devel abc go1.26.0"},
		{"no version control (go run, -buildvcs=false)", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	}
	for _, tc := range tests {
		if got := version(&tc.info); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
