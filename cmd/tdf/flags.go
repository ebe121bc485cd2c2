package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// parseFlags parses args. Help (-h, --help) is printed on stdout and ends
// the command with exit 0; a bad flag is named on stderr (exit 2). Only the
// environment variables a command documents are read (commandEnv): a
// variable meant for one command never configures another.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package prints nothing itself (it would print help twice,
	// and errors with the whole flag list on stderr): the answers are ours.
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(flagsFirst(fs, args))
	fs.SetOutput(os.Stderr)
	fs.Usage = func() { printUsage(os.Stdout, fs) }
	if errors.Is(err, flag.ErrHelp) {
		printUsage(os.Stdout, fs)
		return errHelp
	}
	if err != nil {
		return usageErrorf("%s: %v (tdf %s --help lists the flags)", fs.Name(), err, fs.Name())
	}
	return fillFromEnv(fs)
}

// fillFromEnv sets each flag not given on the command line from the
// environment variable the command documents for it, if set.
func fillFromEnv(fs *flag.FlagSet) error {
	envOf := commandEnv[fs.Name()]
	if envOf == nil {
		return nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := envOf(f.Name)
		if set[f.Name] || err != nil || env == "" {
			return
		}
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = usageErrorf("%s=%q: %v", env, v, e)
			}
		}
	})
	return err
}

// commandEnv is, per command, the environment variable each flag reads.
// tdf server reads every flag from TDF_<FLAG> (a container's configuration);
// the fake cloud's token is the servers' cloud token. The client commands'
// TDF_ADDR, TDF_TOKEN and TDF_CA_FILE are read by the client itself.
var commandEnv = map[string]func(flagName string) string{
	"server": envName,
	"fakecloud": func(f string) string {
		if f == "token" {
			return "TDF_CLOUD_TOKEN"
		}
		return ""
	},
}

// commandEnvHelp is the environment section of a command's help.
func commandEnvHelp(name string) string {
	switch {
	case name == "server":
		return "Every flag can also be set as TDF_<FLAG> (--http-addr → TDF_HTTP_ADDR); the command line wins.\n"
	case name == "fakecloud":
		return "Environment: TDF_CLOUD_TOKEN sets --token (the servers' cloud token).\n"
	}
	return ""
}

var errHelp = errors.New("help")

func envName(flagName string) string {
	return "TDF_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// printUsage prints a command's help: its arguments, its flags, the
// environment it reads.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	name := fs.Name()
	fmt.Fprintf(w, "Usage: tdf %s [flags]", name)
	if a, ok := commandArgs[name]; ok {
		fmt.Fprintf(w, " %s\n\n%s\n", a[0], a[1])
	} else {
		fmt.Fprintln(w)
	}
	if hasFlag(fs, "addr") {
		fmt.Fprint(w, "\nClient: --addr or TDF_ADDR names any node, --token or TDF_TOKEN the API token, --ca-file or TDF_CA_FILE an https node's CA.\n")
	}
	if e := commandEnvHelp(name); e != "" {
		fmt.Fprint(w, "\n"+e)
	}
	if req := requiredFlags[name]; len(req) > 0 {
		fmt.Fprintf(w, "\nRequired: --%s\n", strings.Join(req, ", --"))
	}
	if name == "server" {
		printGroupedDefaults(w, fs)
	} else {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(os.Stderr)
	}
	fmt.Fprint(w, exitCodesHelp)
}

func hasFlag(fs *flag.FlagSet, name string) bool { return fs.Lookup(name) != nil }

// requiredFlags are, per command, the flags it cannot run without; they
// are checked before any request is sent.
var requiredFlags = map[string][]string{
	"task submit": {"project", "user", "repo", "prompt"},
	"task prompt": {"prompt"},
}

// checkRequired names every required flag of the command left empty.
func checkRequired(fs *flag.FlagSet) error {
	var missing []string
	for _, name := range requiredFlags[fs.Name()] {
		if f := fs.Lookup(name); f != nil && f.Value.String() == "" {
			missing = append(missing, "--"+name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	return usageErrorf("%s: missing required flag(s) %s (tdf %s --help)", fs.Name(), strings.Join(missing, ", "), fs.Name())
}

// flagsFirst moves positional arguments after the flags, so that
// "tdf task get ID --addr URL" works as well as "tdf task get --addr URL ID"
// (the flag package stops at the first positional argument).
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !(ok && b.IsBoolFlag()) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return append(flags, pos...)
}
