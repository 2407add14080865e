// Command nats-producer publishes commands straight to the integrator's
// COMMANDS stream in NATS JetStream with producer: it creates a client,
// adds a comment to it and prints the PubAcks. Its defaults match the dev
// stack (go run ./cmd/dev); against deploy/nats, connect as the "producer"
// user, whose PubAcks arrive on _INBOX_producer:
//
//	go run ./examples/nats-producer
//	NATS_PASSWORD=… go run ./examples/nats-producer -nats-url nats://nats:4222 -nats-user producer -location 123 -ref crm-42
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/examples/internal/defaults"
	"github.com/altegio-integrator/integrator/producer"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "nats-producer:", err)
		os.Exit(1)
	}
}

// run parses args, publishes the two commands and reports to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("nats-producer", flag.ContinueOnError)
	fs.SetOutput(out)
	url := fs.String("nats-url", defaults.Env("NATS_URL", nats.DefaultURL), "NATS server URLs, comma-separated (env NATS_URL)")
	user := fs.String("nats-user", os.Getenv("NATS_USER"), "NATS user, if the server wants one (env NATS_USER; password in env NATS_PASSWORD)")
	inbox := fs.String("inbox-prefix", "_INBOX_producer", "prefix of the inboxes the PubAcks arrive on")
	location := fs.Int64("location", 1, "Altegio location id")
	ref := fs.String("ref", "", "your reference for the client (default: a new one per run)")
	name := fs.String("name", "Ada", "the client's name")
	phone := fs.String("phone", "", "the client's phone (default: a new one per run, +1555…)")
	text := fs.String("comment", "Created by examples/nats-producer", "the comment to add")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the PubAcks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ref == "" {
		*ref = defaults.Ref()
	}
	if *phone == "" {
		// The sandbox, like the API, refuses a second client with a phone.
		*phone = defaults.Phone()
	}

	opts := []nats.Option{nats.Name("nats-producer example"), nats.CustomInboxPrefix(*inbox)}
	if *user != "" {
		opts = append(opts, nats.UserInfo(*user, os.Getenv("NATS_PASSWORD")))
	}
	nc, err := nats.Connect(*url, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", *url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	p, err := producer.NewNATS(js)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cmds := []producer.Command{
		producer.CreateClient(*location, *ref, producer.Client{Name: *name, Phone: *phone}),
		producer.AddComment(*location, producer.ByRef(*ref), *text),
	}
	receipts, err := p.Send(ctx, cmds...)
	for i, r := range receipts {
		fmt.Fprintf(out, "published %-20s id=%s stream_seq=%d duplicate=%t\n", cmds[i].Type, r.ID, r.StreamSeq, r.Duplicate())
	}
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nc.Drain()
}
