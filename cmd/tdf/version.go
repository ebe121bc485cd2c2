package main

import (
	"flag"
	"fmt"

	"github.com/tdf-project/tdf/internal/buildinfo"
)

// runVersion prints the binary's version, commit and Go version.
func runVersion(args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	in := buildinfo.Read()
	if *asJSON {
		return printJSON(in)
	}
	fmt.Printf("tdf %s (commit %s, %s)\n", in.Version, in.ShortCommit(), in.GoVersion)
	return nil
}
