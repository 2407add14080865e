package stack

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Errors that stem from a setting name the flag and variable to change, so
// that a user who reads one knows what to set.

// FlagHint adds to err which flag or variable sets the value it is about.
func FlagHint(err error, flagName, env string) error {
	return fmt.Errorf("%w (set --%s or $%s)", err, flagName, env)
}

// NATSFlags name the flags and variables that set one NATS connection.
type NATSFlags struct{ URL, URLEnv, Creds, CredsEnv string }

// MainNATSFlags are the flags of every binary's main NATS connection.
var MainNATSFlags = NATSFlags{URL: "nats-url", URLEnv: "NATS_URL", Creds: "nats-creds", CredsEnv: "NATS_CREDS"}

// ExplainNATSError names the flag of f to change for an error of
// ConnectNATS, and never shows a password or token of the URL.
func ExplainNATSError(err error, f NATSFlags) error {
	var ue *url.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &ue): // the message of a url.Error holds the URL, and so any password in it
		return FlagHint(fmt.Errorf("NATS URL: %w", ue.Err), f.URL, f.URLEnv)
	case errors.As(err, &pe):
		return FlagHint(fmt.Errorf("NATS credentials file: %w", pe), f.Creds, f.CredsEnv)
	}
	return FlagHint(err, f.URL, f.URLEnv)
}

// WaitConnected waits until nc is connected, at most wait: ConnectNATS
// retries without end, so an unreachable server would otherwise show only as
// a later timeout. The error names the URLs (without credentials), says why
// the connection is not up as far as that can be told, and which flag of f
// to change; it is ctx's error when ctx ends first.
func WaitConnected(ctx context.Context, nc *nats.Conn, wait time.Duration, urls string, f NATSFlags) error {
	ch := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(ch)
	if nc.IsConnected() {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	err := fmt.Errorf("not connected after %v", wait)
	if last := nc.LastError(); last != nil {
		err = fmt.Errorf("not connected after %v: %w", wait, last)
	} else if u := firstHost(nc.Servers()); u != "" {
		// nats.go keeps no error while it retries a server that refuses
		// TCP; one dial of the first server tells the reason (refused, no
		// such host).
		if conn, derr := net.DialTimeout("tcp", u, time.Second); derr != nil {
			err = fmt.Errorf("not connected after %v: %w", wait, derr)
		} else {
			conn.Close()
		}
	}
	return fmt.Errorf("connect to NATS at %s: %w (set --%s or $%s; --nats-connect-timeout waits longer)", RedactURLs(urls), err, f.URL, f.URLEnv)
}

// firstHost returns host:port of the first server URL, or "".
func firstHost(servers []string) string {
	if len(servers) == 0 {
		return ""
	}
	u, err := url.Parse(servers[0])
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "4222")
	}
	return u.Host
}

// RedactURLs returns the comma-separated NATS URLs with any password or
// token replaced by xxxxx.
func RedactURLs(urls string) string {
	var out []string
	for _, s := range strings.Split(urls, ",") {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, err := url.Parse(s)
		if err != nil {
			out = append(out, "(a URL that does not parse)")
			continue
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx") // a token
			}
		}
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}
