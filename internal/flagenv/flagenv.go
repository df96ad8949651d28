// Package flagenv lets every flag of a fleetscan binary also be set from an
// environment variable: --nats-url is FLEETSCAN_NATS_URL. Command-line flags
// win over the environment. The variable name is appended to each flag's
// help text so --help stays accurate.
package flagenv

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Prefix is prepended to every variable name.
const Prefix = "FLEETSCAN_"

// Name returns the environment variable for a flag name.
func Name(flag string) string {
	return Prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Annotate appends "[$FLEETSCAN_X]" to the usage of every flag of fs. Call it
// after defining the flags and before parsing.
func Annotate(fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		f.Usage += fmt.Sprintf(" [$%s]", Name(f.Name))
	})
}

// Apply sets every flag not given on the command line from its environment
// variable, if present. Repeatable flags (slices and arrays) take a
// comma-separated list. aliases maps extra variable names to flag names
// (e.g. REPORT_BUCKET -> s3-url); the FLEETSCAN_ variable wins over an alias.
// Call it after fs.Parse.
func Apply(fs *pflag.FlagSet, aliases map[string]string) error {
	var firstErr error
	set := func(f *pflag.Flag, env, val string) {
		if firstErr != nil {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			var items []string
			for _, it := range strings.Split(val, ",") {
				if it = strings.TrimSpace(it); it != "" {
					items = append(items, it)
				}
			}
			if err := sv.Replace(items); err != nil {
				firstErr = fmt.Errorf("$%s=%q (for --%s): %w", env, val, f.Name, err)
			}
			f.Changed = true
			return
		}
		if err := fs.Set(f.Name, val); err != nil {
			firstErr = fmt.Errorf("$%s=%q (for --%s): %w", env, val, f.Name, err)
		}
	}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		if val, ok := os.LookupEnv(Name(f.Name)); ok {
			set(f, Name(f.Name), val)
		}
	})
	for env, flag := range aliases {
		f := fs.Lookup(flag)
		if f == nil || f.Changed {
			continue
		}
		if val, ok := os.LookupEnv(env); ok && val != "" {
			set(f, env, val)
		}
	}
	return firstErr
}

// Parse is how every fleetscan command reads its flags: it annotates the
// usage with the variable names, parses args (which must hold flags only),
// then applies the environment (with aliases) to the flags not given.
// pflag.ErrHelp is returned as is for --help; any other error is a usage
// error naming the flag, argument or variable at fault.
func Parse(fs *pflag.FlagSet, args []string, aliases map[string]string) error {
	Annotate(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return Apply(fs, aliases)
}
