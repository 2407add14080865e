// Package envflag defines command-line flags whose defaults come from
// environment variables, so that every setting of a binary can be given
// either way and `--help` lists both with the default in force.
//
// A flag given on the command line wins over its variable; a variable wins
// over the built-in default. A variable that does not parse is reported by
// Parse, with the variable's name and never its value.
package envflag

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Set is a flag.FlagSet with environment fallbacks. It is not safe for
// concurrent use; build it once at start.
type Set struct {
	*flag.FlagSet
	getenv func(string) string
	errs   []error
}

// New returns a Set named name that reads variables through getenv (os.Getenv
// in production, a map in tests) and prints usage to output.
func New(name string, getenv func(string) string, output io.Writer) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	return &Set{FlagSet: fs, getenv: getenv}
}

// Parse parses args and reports every unparsable variable. Positional
// arguments are left in Args. It returns flag.ErrHelp for -h.
func (s *Set) Parse(args []string) error {
	if err := s.FlagSet.Parse(args); err != nil {
		return err
	}
	return errors.Join(s.errs...)
}

// ParseNoArgs is Parse for commands that take no positional arguments: any
// left over is an error.
func (s *Set) ParseNoArgs(args []string) error {
	if err := s.Parse(args); err != nil {
		return err
	}
	if s.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", s.Args())
	}
	return nil
}

// SetUsage makes --help (and a flag that does not parse) print one help
// format, the same for every binary, on the set's output:
//
//	Usage: <name> <synopsis>
//
//	<description>
//
//	Flags:
//	  --<flag> <type>
//	        <usage> ($<VARIABLE>) (default <value>)
//	  …
//
//	<each of more, a paragraph of its own>
//
// An empty synopsis is "[flags]". The flags are listed in name order with
// two dashes (Go accepts one or two), each with its variable (the Set's
// flag methods add it to the usage) and its default when that is not the
// type's zero value, the default in force: a variable that is set shows
// as the default. A binary adopts it with one line after New:
//
//	fs := envflag.New("altegio-sandbox", getenv, out)
//	fs.SetUsage("", "Run the Altegio API sandbox; the API is under /api/v1.")
func (s *Set) SetUsage(synopsis, description string, more ...string) {
	if synopsis == "" {
		synopsis = "[flags]"
	}
	s.Usage = func() {
		w := s.Output()
		fmt.Fprintf(w, "Usage: %s %s\n\n", s.Name(), synopsis)
		if description != "" {
			fmt.Fprintf(w, "%s\n\n", description)
		}
		fmt.Fprintln(w, "Flags:")
		s.printFlags(w)
		for _, p := range more {
			fmt.Fprintf(w, "\n%s\n", strings.TrimRight(p, "\n"))
		}
	}
}

// printFlags is flag's PrintDefaults (which knows the zero values and
// quotes strings) with two dashes and an indent of spaces, not a tab.
func (s *Set) printFlags(w io.Writer) {
	var b bytes.Buffer
	out := s.Output()
	s.SetOutput(&b)
	s.PrintDefaults()
	s.SetOutput(out)
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			line = "  --" + line[len("  -"):]
		case strings.HasPrefix(line, "    \t"):
			line = "        " + line[len("    \t"):]
		}
		io.WriteString(w, line)
	}
}

func lookup[T any](s *Set, env string, def T, parse func(string) (T, error)) T {
	v := s.getenv(env)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("$%s: not a valid value", env))
		return def
	}
	return x
}

func usage(u, env string) string { return u + " ($" + env + ")" }

// String defines a string flag with a default from env.
func (s *Set) String(p *string, name, env, def, u string) {
	s.StringVar(p, name, lookup(s, env, def, func(v string) (string, error) { return v, nil }), usage(u, env))
}

// Bool defines a bool flag with a default from env.
func (s *Set) Bool(p *bool, name, env string, def bool, u string) {
	s.BoolVar(p, name, lookup(s, env, def, strconv.ParseBool), usage(u, env))
}

// Int defines an int flag with a default from env.
func (s *Set) Int(p *int, name, env string, def int, u string) {
	s.IntVar(p, name, lookup(s, env, def, strconv.Atoi), usage(u, env))
}

// Int64 defines an int64 flag with a default from env.
func (s *Set) Int64(p *int64, name, env string, def int64, u string) {
	s.Int64Var(p, name, lookup(s, env, def, func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }), usage(u, env))
}

// Float64 defines a float64 flag with a default from env.
func (s *Set) Float64(p *float64, name, env string, def float64, u string) {
	s.Float64Var(p, name, lookup(s, env, def, func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }), usage(u, env))
}

// Duration defines a duration flag with a default from env.
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, u string) {
	s.DurationVar(p, name, lookup(s, env, def, time.ParseDuration), usage(u, env))
}
