package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/altegio-integrator/integrator/internal/altegio"
	"github.com/altegio-integrator/integrator/internal/auth"
	"github.com/altegio-integrator/integrator/internal/envflag"
	"github.com/altegio-integrator/integrator/internal/workerstack"
)

const webhooksUsage = `Usage: worker webhooks <command> --location N [flags]

Subscribe this integrator to a location's client webhooks (Altegio's
hooks_settings). The settings are location-wide and every write replaces
them all, so register and unregister read them, change only the given URL
and write them back: other systems' URLs and the event flags are kept.

Commands:
  list                   print the location's webhook settings
  register --url URL     add URL and turn client events on (active, client)
  unregister --url URL   remove URL (inactive when no URL is left)

Run "worker webhooks <command> --help" for its flags. The API is called
with the workers' accounts, session and budget: the ALTEGIO_* variables and
the API flags of "worker run".

Exit codes: 0 ok (also when nothing had to change), 1 error, 2 usage.
`

// runWebhooks dispatches the webhooks subcommands.
func runWebhooks(ctx context.Context, args []string, c cli) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, webhooksUsage)
		return &exitError{exitUsage, errors.New("webhooks: missing command")}
	}
	switch args[0] {
	case "list":
		return webhooksList(ctx, args[1:], c)
	case "register":
		return webhooksChange(ctx, "register", args[1:], c)
	case "unregister":
		return webhooksChange(ctx, "unregister", args[1:], c)
	}
	if isHelp(args[0]) {
		fmt.Fprint(c.stdout, webhooksUsage)
		return flag.ErrHelp
	}
	fmt.Fprint(c.stderr, webhooksUsage)
	return &exitError{exitUsage, fmt.Errorf("webhooks: unknown command %q", args[0])}
}

// webhookFlags are the flags of every webhooks subcommand.
type webhookFlags struct {
	opFlags
	api         apiFlags
	location    int64
	url         string
	selfSending string
}

func (w *webhookFlags) define(fs *envflag.Set, cmd string) {
	w.opFlags.define(fs)
	w.api.define(fs)
	fs.Int64Var(&w.location, "location", 0, "Altegio location id (required)")
	if cmd != "list" {
		fs.StringVar(&w.url, "url", "", "the webhook URL, absolute http or https (required)")
	}
	if cmd == "register" {
		fs.StringVar(&w.selfSending, "self-sending", "keep", "self_sending: keep (a location without settings gets on), on (this integrator's own changes are sent too, so it can recognise them) or off")
	}
}

// webhookDescriptions are the one-line descriptions of the commands' --help.
var webhookDescriptions = map[string]string{
	"list":       "Print a location's webhook settings.",
	"register":   "Add --url to a location's webhooks and turn client events on, keeping other URLs.",
	"unregister": "Remove --url from a location's webhooks, keeping other URLs.",
}

// parseWebhookFlags parses the flags of cmd and checks them (usage errors).
func parseWebhookFlags(cmd, synopsis string, args []string, c cli) (webhookFlags, error) {
	var f webhookFlags
	fs := newFlagSet("webhooks "+cmd, synopsis, webhookDescriptions[cmd], c)
	f.define(fs, cmd)
	pos, err := parse(fs, args)
	if err != nil {
		return f, err
	}
	switch {
	case len(pos) > 0:
		return f, usageErr("webhooks %s: unexpected argument %q", cmd, pos[0])
	case f.location <= 0:
		return f, usageErr("webhooks %s: --location is required (a positive id)", cmd)
	case cmd != "list" && f.url == "":
		return f, usageErr("webhooks %s: --url is required", cmd)
	}
	if cmd != "list" {
		if err := (altegio.HookSettings{URLs: []string{f.url}}).Validate(); err != nil {
			return f, usageErr("webhooks %s: --url: %v", cmd, err)
		}
	}
	if cmd == "register" {
		if _, err := parseSelfSending(f.selfSending); err != nil {
			return f, usageErr("webhooks register: %v", err)
		}
	}
	return f, nil
}

// parseSelfSending reads --self-sending: nil keeps the setting.
func parseSelfSending(s string) (*bool, error) {
	switch s {
	case "keep":
		return nil, nil
	case "on", "off":
		on := s == "on"
		return &on, nil
	}
	return nil, fmt.Errorf("--self-sending %q: want keep, on or off", s)
}

// connectAPI builds the API client the workers use (workerstack.NewAPI) on a
// new NATS connection. The returned function closes both.
func connectAPI(ctx context.Context, f webhookFlags, c cli) (*altegio.Client, func(), error) {
	var cfg workerstack.WorkerConfig
	if err := f.api.apply(&cfg); err != nil {
		return nil, nil, usageErr("webhooks: %v", err)
	}
	accounts, err := auth.AccountsFromEnv(c.getenv)
	if err != nil {
		return nil, nil, err
	}
	log, nc, js, err := cliConnect(ctx, f.common, c)
	if err != nil {
		return nil, nil, err
	}
	cfg.Accounts, cfg.Logger = accounts, log
	api, closeAPI, err := workerstack.NewAPI(ctx, js, cfg)
	if err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			err = fmt.Errorf("%w (the topology is applied when a worker starts: start one first)", err)
		}
		return nil, nil, err
	}
	return api, func() {
		closeAPI()
		drainAndWait(nc)
	}, nil
}

// webhooksList implements "worker webhooks list".
func webhooksList(ctx context.Context, args []string, c cli) error {
	f, err := parseWebhookFlags("list", "--location N [--json]", args, c)
	if err != nil {
		return err
	}
	api, closeAPI, err := connectAPI(ctx, f, c)
	if err != nil {
		return err
	}
	defer closeAPI()
	s, err := api.GetHookSettings(ctx, f.location)
	if err != nil {
		return fmt.Errorf("read webhook settings of location %d: %w", f.location, err)
	}
	if f.json {
		return writeJSON(c.stdout, hooksView{LocationID: f.location, Settings: s})
	}
	printHooks(c.stdout, f.location, s)
	return nil
}

// hooksView is the --json output.
type hooksView struct {
	LocationID int64                `json:"location_id"`
	Changed    *bool                `json:"changed,omitempty"`
	Settings   altegio.HookSettings `json:"settings"`
}

// webhooksChange implements "worker webhooks register" and "unregister":
// read the settings, change only the URL (and, for register, the flags
// this integrator needs), write them back unless nothing changed.
func webhooksChange(ctx context.Context, cmd string, args []string, c cli) error {
	synopsis := "--location N --url URL [--self-sending keep|on|off] [--json]"
	if cmd == "unregister" {
		synopsis = "--location N --url URL [--json]"
	}
	f, err := parseWebhookFlags(cmd, synopsis, args, c)
	if err != nil {
		return err
	}
	api, closeAPI, err := connectAPI(ctx, f, c)
	if err != nil {
		return err
	}
	defer closeAPI()
	cur, next, err := api.ChangeHookSettings(ctx, f.location, func(s altegio.HookSettings) (altegio.HookSettings, error) {
		if cmd == "register" {
			mode, _ := parseSelfSending(f.selfSending) // checked by parseWebhookFlags
			return s.WithURL(f.url, mode)
		}
		return s.WithoutURL(f.url), nil
	})
	if err != nil {
		return fmt.Errorf("change the webhook settings of location %d: %w", f.location, err)
	}
	changed := !reflect.DeepEqual(cur, next)
	if f.json {
		return writeJSON(c.stdout, hooksView{LocationID: f.location, Changed: &changed, Settings: next})
	}
	switch {
	case !changed && cmd == "register":
		fmt.Fprintf(c.stdout, "nothing to change: %s is registered for location %d with client events on\n", f.url, f.location)
	case !changed:
		fmt.Fprintf(c.stdout, "nothing to change: %s is not registered for location %d\n", f.url, f.location)
	case cmd == "register":
		fmt.Fprintf(c.stdout, "registered %s for location %d\n", f.url, f.location)
		if others := len(next.URLs) - 1; !cur.Client && others > 0 {
			fmt.Fprintf(c.stderr, "note: the event flags are location-wide: client events now also go to the %d other %s\n",
				others, plural(others, "URL", "URLs"))
		}
	default:
		fmt.Fprintf(c.stdout, "unregistered %s from location %d\n", f.url, f.location)
	}
	printHooks(c.stdout, f.location, next)
	return nil
}

// printHooks prints settings as a block of rows.
func printHooks(w io.Writer, location int64, s altegio.HookSettings) {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	fmt.Fprintf(w, "webhook settings of location %d\n", location)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  active\t%s\n", yes(s.Active))
	events := s.Events()
	fmt.Fprintf(tw, "  events\t%s\n", orDash(strings.Join(events, ", ")))
	fmt.Fprintf(tw, "  self sending\t%s\n", yes(s.SelfSending))
	if len(s.URLs) == 0 {
		fmt.Fprintf(tw, "  urls\t-\n")
	}
	for i, u := range s.URLs {
		k := ""
		if i == 0 {
			k = fmt.Sprintf("urls (%d of %d)", len(s.URLs), altegio.MaxHookURLs)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", k, u)
	}
	_ = tw.Flush()
}
