package main

import (
	"context"
	"flag"
	"os"

	"github.com/tdf-project/tdf/vmagent/fakeacp"
)

// runFakeACP serves the fake coding agent on stdin/stdout: the real VM
// agent of the test harness spawns it as its coding agent
// (vmagent/fakeacp).
func runFakeACP(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("fake-acp", flag.ContinueOnError)
	var o fakeacp.Options
	fs.DurationVar(&o.WorkDelay, "work-delay", 0, "how long each prompt works before it answers")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return fakeacp.Serve(os.Stdin, os.Stdout, o)
}
