package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/importer"
)

// An import is sent in parts of whole lines: the API's body limit is 1 MiB
// by default, and each task is one raft commit within the API's 30 s
// request timeout.
const importPartBytes = 512 << 10

// importPartLines is a variable so that a test can send small parts.
var importPartLines = 200

// runImport is "tdf import [--dry-run] FILE": the old system's export, JSON
// lines (docs/import.md). The whole file is validated here first; a file
// with a bad line is refused (exit 1) before anything is sent, except in
// a dry run, whose report shows every line.
func runImport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	addr := clientFlags(fs)
	dry := fs.Bool("dry-run", false, "report what would be imported, write nothing")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	c, err := parseClient(fs, args, addr)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tdf import [--dry-run] [--json] [--addr URL] FILE   (FILE - reads stdin)")
		return errUsage
	}
	data, err := readExport(fs.Arg(0))
	if err != nil {
		return err
	}
	tasks, errs := importer.Parse(bytes.NewReader(data), 1, fsm.DefaultPolicy(), time.Now())
	if len(tasks) == 0 && len(errs) == 0 {
		return fmt.Errorf("%s: the export is empty", fs.Arg(0))
	}
	if len(errs) > 0 && !*dry {
		for _, e := range errs {
			fmt.Fprintf(os.Stderr, "%s: %s\n", fs.Arg(0), e)
		}
		return fmt.Errorf("%d bad lines in %s; nothing was imported", len(errs), fs.Arg(0))
	}
	rep := importer.Report{DryRun: *dry}
	for _, part := range splitLines(data, importPartBytes, importPartLines) {
		r, err := c.importPart(ctx, part.data, part.first, *dry)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, r.Results...)
	}
	rep.Count()
	if *asJSON {
		if err := printJSON(rep); err != nil {
			return err
		}
	} else {
		rep.Print(os.Stdout)
	}
	if n := rep.Counts[importer.ActionError]; n > 0 && !*dry {
		return fmt.Errorf("%d tasks were not imported", n)
	}
	return nil
}

func readExport(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}

type exportPart struct {
	data  []byte
	first int
}

// splitLines cuts the export into parts of whole lines, of about maxBytes
// and at most maxLines each, each with the number of its first line.
func splitLines(data []byte, maxBytes, maxLines int) []exportPart {
	var parts []exportPart
	line, first, start := 1, 1, 0
	for i := 0; i < len(data); i++ {
		if data[i] != '\n' {
			continue
		}
		line++
		if i+1-start >= maxBytes || line-first >= maxLines {
			parts = append(parts, exportPart{data[start : i+1], first})
			start, first = i+1, line
		}
	}
	if start < len(data) {
		parts = append(parts, exportPart{data[start:], first})
	}
	return parts
}

// importPart sends one part; a 422 is a report of bad lines, printed as
// such.
func (c *client) importPart(ctx context.Context, body []byte, first int, dry bool) (importer.Report, error) {
	url := fmt.Sprintf("%s/v1/import?dry_run=%v&first_line=%d", c.addr, dry, first)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return importer.Report{}, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	hc := *c.http
	hc.Timeout = time.Minute // a part commits one entry per task
	resp, err := hc.Do(req)
	if err != nil {
		return importer.Report{}, fmt.Errorf("cannot reach %s: %w", c.addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return importer.Report{}, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var rep importer.Report
		return rep, json.Unmarshal(data, &rep)
	case http.StatusUnprocessableEntity:
		var e api.ImportErrorBody
		if json.Unmarshal(data, &e) == nil {
			e.Report.Print(os.Stderr)
			return importer.Report{}, fmt.Errorf("%s", e.Error.Message)
		}
	}
	var e api.ErrorBody
	if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
		return importer.Report{}, fmt.Errorf("%s (%s, HTTP %d)", e.Error.Message, e.Error.Code, resp.StatusCode)
	}
	return importer.Report{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
}
