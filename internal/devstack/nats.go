package devstack

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsStartTimeout bounds the embedded server's start when it reports no
// error.
const natsStartTimeout = 15 * time.Second

// startEmbeddedNATS starts a JetStream server on listen (host:port, port 0
// for a free one) storing under dir. The server's own start errors (its
// listen error, a JetStream store it cannot open) are returned at once;
// its later errors go to log.
func startEmbeddedNATS(listen, dir string, log *slog.Logger) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q (set --%s): %w", listen, FlagNATSListen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen port %q (set --%s): %w", portStr, FlagNATSListen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "dev",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	nlog := &natsLog{log: log.With("component", "nats"), fatal: make(chan string, 1)}
	ns.SetLogger(nlog, false, false)
	go ns.Start()
	deadline := time.Now().Add(natsStartTimeout)
	for !ns.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-nlog.fatal:
			ns.Shutdown()
			if strings.Contains(msg, "address already in use") {
				return nil, fmt.Errorf("listen on %s: address already in use (another process holds the port; choose another with --%s)", listen, FlagNATSListen)
			}
			return nil, fmt.Errorf("embedded nats on %s: %s", listen, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("embedded nats on %s did not start within %v", listen, natsStartTimeout)
		}
	}
	nlog.started.Store(true)
	return ns, nil
}

// natsLog is the embedded server's logger: a fatal error before the server
// is ready goes to fatal, for startEmbeddedNATS to return; its other errors
// go to the dev logger at Error, its warnings and notices at Debug.
type natsLog struct {
	log     *slog.Logger
	fatal   chan string
	started atomic.Bool // startEmbeddedNATS has returned the server
}

var _ server.Logger = (*natsLog)(nil)

func (l *natsLog) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLog) Warnf(format string, v ...any)   { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLog) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLog) Debugf(format string, v ...any)  {}
func (l *natsLog) Tracef(format string, v ...any)  {}

// Fatalf hands the first fatal error during the start to
// startEmbeddedNATS and logs the others.
func (l *natsLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if !l.started.Load() {
		select {
		case l.fatal <- msg:
			return
		default:
		}
	}
	l.log.Error(msg)
}
