package stack

import (
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"syscall"
)

// Listen listens on the TCP address addr, which the flag named flagName
// sets. It fails at once, and says which flag chooses another address,
// when the port is taken ("address already in use") or the address is not
// one this machine has.
func Listen(addr, flagName string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: address already in use (another process holds the port; choose another with --%s)", addr, flagName)
	}
	return nil, fmt.Errorf("listen on %s: %w (set --%s)", addr, err, flagName)
}

// Version returns the version of the running binary from its build
// information: the module version for `go install …@version`, else the VCS
// revision (with "+dirty" for a modified tree) and its time, else "devel".
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return version(info)
}

// version is Version for the build information info.
func version(info *debug.BuildInfo) string {
	v := info.Main.Version
	if v != "" && v != "(devel)" {
		return v
	}
	var rev, at, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	out := "devel " + rev + dirty
	if at != "" {
		out += " " + at
	}
	return out + " " + info.GoVersion
}
