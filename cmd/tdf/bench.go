package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/tdf-project/tdf/bench"
)

// runBench runs the benchmark harnesses (package bench) and prints their
// tables; BENCHMARKS.md explains them.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	dir := fs.String("dir", "", "work directory for the clusters' data (default: a temporary directory, removed after)")
	only := fs.String("only", "", "comma-separated parts to run: "+strings.Join(bench.Parts, ",")+" (default all)")
	smoke := fs.Bool("smoke", false, "tiny sizes: checks that the harnesses run, in seconds")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var parts []string
	if *only != "" {
		for _, p := range strings.Split(*only, ",") {
			if !contains(bench.Parts, p) {
				fmt.Fprintf(os.Stderr, "tdf bench: unknown part %q (want some of %s)\n", p, strings.Join(bench.Parts, ","))
				return errUsage
			}
			parts = append(parts, p)
		}
	}
	d := *dir
	if d == "" {
		tmp, err := os.MkdirTemp("", "tdf-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		d = tmp
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	sz := bench.FullSizes()
	if *smoke {
		sz = bench.SmokeSizes()
	}
	return bench.Run(ctx, os.Stdout, d, sz, parts)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
