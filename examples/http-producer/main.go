// Command http-producer sends commands to the Altegio integrator over HTTP
// with producer: it creates a client, adds a comment to it, prints the
// receipts and waits for the outcomes. Its defaults match the dev stack
// (go run ./cmd/dev):
//
//	go run ./examples/http-producer
//	go run ./examples/http-producer -url https://ingest.example.com -key "$PRODUCER_KEY" -location 123 -ref crm-42
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
		fmt.Fprintln(os.Stderr, "http-producer:", err)
		os.Exit(1)
	}
}

// run parses args, sends the two commands and reports to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("http-producer", flag.ContinueOnError)
	fs.SetOutput(out)
	url := fs.String("url", defaults.Env("INGEST_URL", "http://127.0.0.1:8080"), "ingest base URL (env INGEST_URL)")
	key := fs.String("key", defaults.Env("PRODUCER_KEY", "dev-producer-key"), "producer key, sent as Authorization: Bearer (env PRODUCER_KEY)")
	location := fs.Int64("location", 1, "Altegio location id")
	ref := fs.String("ref", "", "your reference for the client (default: a new one per run)")
	name := fs.String("name", "James", "the client's name")
	phone := fs.String("phone", "", "the client's phone (default: a new one per run, +1555…)")
	text := fs.String("comment", "Created by examples/http-producer", "the comment to add")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the outcomes (0: do not wait)")
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

	p, err := producer.NewHTTP(*url, *key)
	if err != nil {
		return err
	}
	create := producer.CreateClient(*location, *ref, producer.Client{Name: *name, Phone: *phone})
	note := producer.AddComment(*location, producer.ByRef(*ref), *text)
	cmds := []producer.Command{create, note}
	receipts, err := p.Send(ctx, cmds...)
	for i, r := range receipts {
		fmt.Fprintf(out, "sent %-20s id=%s status=%s stream_seq=%d\n", cmds[i].Type, r.ID, r.Status, r.StreamSeq)
	}
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if *wait <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, *wait)
	defer cancel()
	failed := 0
	for _, c := range cmds {
		st, err := p.Wait(ctx, c.ID)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("done %-20s id=%s %s", c.Type, c.ID, st.State)
		if res := st.Result; res != nil {
			if res.ClientID != 0 {
				line += fmt.Sprintf(" client_id=%d", res.ClientID)
			}
			if res.APIMessage != "" {
				line += fmt.Sprintf(" (%s)", res.APIMessage)
			}
		}
		fmt.Fprintln(out, line)
		if st.State != producer.StateSucceeded {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d commands did not succeed", failed, len(cmds))
	}
	return nil
}
