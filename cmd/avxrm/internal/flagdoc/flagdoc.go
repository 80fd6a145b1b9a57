// Package flagdoc lists the flags of the commands that parse their own
// (avxrm up and avxrm store use the standard flag package, which also
// reads their RM_* variables) as cobra lists every other command's: --name,
// aligned, with the type and the default.
package flagdoc

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// Write writes the flags of the set that flags makes to w in cobra's
// layout. The flag package takes --name as it takes -name, so the
// spelling listed is the one parsed.
func Write(w io.Writer, flags func() (*flag.FlagSet, error)) error {
	fs, err := flags()
	if err != nil {
		return err
	}
	pfs := pflag.NewFlagSet(fs.Name(), pflag.ContinueOnError)
	pfs.AddGoFlagSet(fs)
	_, err = io.WriteString(w, pfs.FlagUsages())
	return err
}

// Parse parses args into fs, printing nothing: -h or --help returns
// flag.ErrHelp (the command's help lists the flags, through Write), and a
// bad flag is an error that says where the flags are listed ('avxrm
// <command> --help').
func Parse(fs *flag.FlagSet, args []string, command string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w ('avxrm %s --help' lists the flags)", err, command)
}
