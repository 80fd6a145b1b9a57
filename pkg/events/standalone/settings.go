package standalone

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/events/elect"
)

// Settings are the configuration entries of one binary. Each entry is an
// RM_* environment variable and a flag of the same name, which wins; an empty
// variable means the default.
type Settings struct {
	fs     *flag.FlagSet
	getenv func(string) string
	list   []entry
	errs   []error
}

type entry struct{ flag, env, def, usage string }

func newSettings(name string, getenv func(string) string) *Settings {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &Settings{fs: fs, getenv: getenv}
}

// initial is the value before flags: the variable if set, else def.
func (s *Settings) initial(flagName, env, def, usage string) string {
	s.list = append(s.list, entry{flagName, env, def, usage})
	if v := s.getenv(env); v != "" {
		return v
	}
	return def
}

func (s *Settings) fail(env, v, want string) {
	s.errs = append(s.errs, fmt.Errorf("%s=%q: want %s", env, v, want))
}

// String declares a string setting.
func (s *Settings) String(p *string, flagName, env, def, usage string) {
	s.fs.StringVar(p, flagName, s.initial(flagName, env, def, usage), usage)
}

// Duration declares a duration setting; negative values are refused.
func (s *Settings) Duration(p *time.Duration, flagName, env, def, usage string) {
	v := s.initial(flagName, env, def, usage)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		s.fail(env, v, "a duration such as 30s, not negative")
	}
	s.fs.Var(&nonNegDuration{p}, flagName, usage)
	*p = d
}

// Int declares an integer setting; negative values are refused.
func (s *Settings) Int(p *int, flagName, env, def, usage string) {
	v := s.initial(flagName, env, def, usage)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		s.fail(env, v, "a non-negative integer")
	}
	*p = n
	s.fs.Var(&nonNegInt{p}, flagName, usage)
}

// Int64 declares a 64-bit integer setting; negative values are refused.
func (s *Settings) Int64(p *int64, flagName, env, def, usage string) {
	v := s.initial(flagName, env, def, usage)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		s.fail(env, v, "a non-negative integer")
	}
	*p = n
	s.fs.Var(&nonNegInt64{p}, flagName, usage)
}

// Bool declares a boolean setting (true, false, 1, 0).
func (s *Settings) Bool(p *bool, flagName, env, def, usage string) {
	v := s.initial(flagName, env, def, usage)
	b, err := strconv.ParseBool(v)
	if err != nil {
		s.fail(env, v, "true or false")
	}
	s.fs.BoolVar(p, flagName, b, usage)
}

// parse applies the flags after the variables. It returns flag.ErrHelp for
// -h or --help.
func (s *Settings) parse(args []string) error {
	if err := errors.Join(s.errs...); err != nil {
		return err
	}
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	if s.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (settings are flags or RM_* variables; --help lists them)", s.fs.Arg(0))
	}
	return nil
}

// table is entries as a Markdown table: environment, flag, default and
// meaning, in the order they were declared.
func table(entries []entry) string {
	var b strings.Builder
	b.WriteString("| Environment | Flag | Default | Meaning |\n|---|---|---|---|\n")
	for _, e := range entries {
		def := e.def
		if def == "" {
			def = "—"
		}
		fmt.Fprintf(&b, "| `%s` | `--%s` | `%s` | %s |\n", e.env, e.flag, def, e.usage)
	}
	return b.String()
}

type nonNegDuration struct{ p *time.Duration }

func (d *nonNegDuration) String() string {
	if d.p == nil {
		return "0s"
	}
	return d.p.String()
}
func (d *nonNegDuration) Set(v string) error {
	x, err := time.ParseDuration(v)
	if err != nil || x < 0 {
		return fmt.Errorf("want a duration such as 30s, not negative")
	}
	*d.p = x
	return nil
}

type nonNegInt64 struct{ p *int64 }

func (n *nonNegInt64) String() string {
	if n.p == nil {
		return "0"
	}
	return strconv.FormatInt(*n.p, 10)
}
func (n *nonNegInt64) Set(v string) error {
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil || x < 0 {
		return fmt.Errorf("want a non-negative integer")
	}
	*n.p = x
	return nil
}

type nonNegInt struct{ p *int }

func (n *nonNegInt) String() string {
	if n.p == nil {
		return "0"
	}
	return strconv.Itoa(*n.p)
}
func (n *nonNegInt) Set(v string) error {
	x, err := strconv.Atoi(v)
	if err != nil || x < 0 {
		return fmt.Errorf("want a non-negative integer")
	}
	*n.p = x
	return nil
}

// CheckElection checks a leader election's settings as the election will
// (elect.Config.Periods): the renewal must come before the lease ends. Its
// error names both settings.
func CheckElection(ttlEnv string, ttl time.Duration, renewEnv string, renew time.Duration) error {
	ttl, renew, err := elect.Config{TTL: ttl, Renew: renew}.Periods()
	if err != nil {
		return fmt.Errorf("%s=%v must be shorter than %s=%v: a leader renews before its lease ends", renewEnv, renew, ttlEnv, ttl)
	}
	return nil
}
