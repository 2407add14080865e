package main

// Errors that stem from a setting name the flag and variable to change.
// waitConnected, firstURL and redactURLs are cmd/worker's (connect.go);
// they belong with stack.ConnectNATS.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/stack"
)

// flagHint adds to err which flag or variable sets the value it is about.
func flagHint(err error, flagName, env string) error {
	return fmt.Errorf("%w (set --%s or $%s)", err, flagName, env)
}

// newLogger is stack.NewLogger with errors that name the flag to change.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	if _, err := stack.NewLogger(level, "json", io.Discard); err != nil {
		return nil, flagHint(err, "log-level", "LOG_LEVEL")
	}
	log, err := stack.NewLogger(level, format, w)
	if err != nil {
		return nil, flagHint(err, "log-format", "LOG_FORMAT")
	}
	return log, nil
}

// natsFlags name the flags and variables of one NATS connection.
type natsFlags struct{ url, urlEnv, creds, credsEnv string }

var (
	mainNATS     = natsFlags{"nats-url", "NATS_URL", "nats-creds", "NATS_CREDS"}
	operatorNATS = natsFlags{"operator-nats-url", "INGEST_OPERATOR_NATS_URL", "operator-nats-creds", "INGEST_OPERATOR_NATS_CREDS"}
)

// connectNATS is stack.ConnectNATS with errors that name the flags f of
// the URL or the credentials and never show credentials.
func connectNATS(cfg stack.NATSConfig, f natsFlags, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := stack.ConnectNATS(cfg, log)
	if err == nil {
		return nc, js, nil
	}
	var ue *url.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &ue): // the message of a url.Error holds the URL, and so any password in it
		return nil, nil, flagHint(fmt.Errorf("NATS URL: %w", ue.Err), f.url, f.urlEnv)
	case errors.As(err, &pe):
		return nil, nil, flagHint(fmt.Errorf("NATS credentials file: %w", pe), f.creds, f.credsEnv)
	}
	return nil, nil, flagHint(err, f.url, f.urlEnv)
}

// waitConnected waits until nc is connected, at most wait: stack.ConnectNATS
// retries without end. The error says why it is not, as far as that can be
// told.
func waitConnected(ctx context.Context, nc *nats.Conn, wait time.Duration) error {
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
	if err := nc.LastError(); err != nil {
		return fmt.Errorf("not connected after %v: %w", wait, err)
	}
	// nats.go keeps no error while it retries a server that refuses TCP;
	// one dial of the first server tells the reason (refused, no such host).
	if u := firstURL(nc.Servers()); u != "" {
		conn, err := net.DialTimeout("tcp", u, time.Second)
		if err != nil {
			return fmt.Errorf("not connected after %v: %w", wait, err)
		}
		conn.Close()
	}
	return fmt.Errorf("not connected after %v", wait)
}

// firstURL returns host:port of the first server URL, or "".
func firstURL(servers []string) string {
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

// redactURLs returns the comma-separated NATS URLs with any password or
// token replaced by xxxxx.
func redactURLs(urls string) string {
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
