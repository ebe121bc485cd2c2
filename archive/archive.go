// Package archive keeps what the FSM's retention forgets: finished tasks
// with their timelines and messages, deleted nodes with their event logs,
// stopped workspaces. Files are gzip-compressed JSON lines, one per UTC day
// of the records' end (a task's completion, a node's deletion, a
// workspace's last change), named YYYY-MM-DD.jsonl.gz, so an operator can
// ship or delete them by day with ordinary tools (zcat, jq). Each day also
// has a plain list of its records' ids with the offset of the gzip member
// holding each (YYYY-MM-DD.ids, "id offset" lines; "node:id" and
// "workspace:id" for those), so a lookup by id scans
// the small lists and decompresses one member of at most 32 records.
//
// Every replica archives on applying the Forget command, from its own FSM
// state, just before the records leave it (fsm.SetArchiveHook): the
// archive is then complete on every node that applied the command, and
// each node serves archived reads from its own files, without asking
// another node. Writing cannot fail the command: an error is logged and
// counted (Errors), and the records are still forgotten — losing one
// node's copy of an archive day is preferable to a replica that diverges or
// stops applying. A command applied again after a restart (the log replayed
// from an older snapshot) does not duplicate records: ids already in a
// day's list are skipped.
package archive

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

// Record kinds, one JSON object per line.
const (
	KindTask      = "task"
	KindNode      = "node"
	KindWorkspace = "workspace"
)

// Record is one line of an archive file.
type Record struct {
	Kind       string    `json:"kind"`
	ArchivedAt time.Time `json:"archived_at"`
	// Index is the raft index of the Forget command that dropped it.
	Index     uint64            `json:"index"`
	Task      *fsm.Task         `json:"task,omitempty"`
	Messages  *fsm.TaskMessages `json:"messages,omitempty"`
	Node      *fsm.Node         `json:"node,omitempty"`
	Events    []fsm.NodeEvent   `json:"node_events,omitempty"`
	Workspace *fsm.Workspace    `json:"workspace,omitempty"`
}

// Archive writes and reads the archive files of one directory.
type Archive struct {
	dir string
	mu  sync.Mutex
	// seen caches the task ids of the days written lately (dedupe).
	seen map[string]map[string]bool
	// Errors counts failed writes; LastError is the latest.
	errors    atomic.Uint64
	lastError atomic.Value
	log       func(msg string, args ...any)
}

// Open returns the archive in dir, creating it. log receives write errors
// (nil: discarded).
func Open(dir string, log func(msg string, args ...any)) (*Archive, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if log == nil {
		log = func(string, ...any) {}
	}
	return &Archive{dir: dir, seen: map[string]map[string]bool{}, log: log}, nil
}

// Dir is the archive's directory.
func (a *Archive) Dir() string { return a.dir }

// Errors is the number of archive writes that failed.
func (a *Archive) Errors() uint64 { return a.errors.Load() }

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func endOf(t *fsm.Task) time.Time {
	if t.CompletedAt != nil {
		return *t.CompletedAt
	}
	return t.UpdatedAt
}

// Write archives what one Forget command drops. It is the FSM's archive
// hook: it never fails the caller; errors are logged and counted.
func (a *Archive) Write(f fsm.Forgotten) {
	byDay := map[string][]Record{}
	add := func(at time.Time, r Record) {
		r.ArchivedAt, r.Index = f.At, f.Index
		byDay[day(at)] = append(byDay[day(at)], r)
	}
	for _, t := range f.Tasks {
		add(endOf(t), Record{Kind: KindTask, Task: t, Messages: f.Messages[t.ID]})
	}
	for _, n := range f.Nodes {
		at := n.UpdatedAt
		if n.DeletedAt != nil {
			at = *n.DeletedAt
		}
		add(at, Record{Kind: KindNode, Node: n, Events: f.NodeEvents[n.ID]})
	}
	for _, w := range f.Workspaces {
		add(w.UpdatedAt, Record{Kind: KindWorkspace, Workspace: w})
	}
	days := make([]string, 0, len(byDay))
	for d := range byDay {
		days = append(days, d)
	}
	sort.Strings(days)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range days {
		if err := a.writeDay(d, byDay[d]); err != nil {
			a.errors.Add(1)
			a.lastError.Store(err.Error())
			a.log("cannot archive forgotten records; this node's archive lacks them", "day", d, "records", len(byDay[d]), "error", err)
		}
	}
}

// writeDay appends records to a day's file as gzip members of at most
// memberRecords records (a concatenation of gzip members is one valid gzip
// stream), then "id offset" lines to the day's id list, offset being where
// the member holding the task starts: a lookup decompresses one member,
// not the day. Both files are synced before it returns.
func (a *Archive) writeDay(d string, recs []Record) error {
	seen, err := a.seenIDs(d)
	if err != nil {
		return err
	}
	keep := recs[:0:0]
	for _, r := range recs {
		if seen[r.key()] {
			continue // archived before this restart's replay
		}
		keep = append(keep, r)
	}
	if len(keep) == 0 {
		return nil
	}
	offsets, err := appendGzipMembers(filepath.Join(a.dir, d+".jsonl.gz"), keep)
	if err != nil {
		return err
	}
	var list strings.Builder
	for i, r := range keep {
		fmt.Fprintf(&list, "%s %d\n", r.key(), offsets[i/memberRecords])
	}
	if err := appendFile(filepath.Join(a.dir, d+".ids"), []byte(list.String())); err != nil {
		return err
	}
	for _, r := range keep {
		seen[r.key()] = true
	}
	return nil
}

// key is a record's entry in its day's id list: a task's id, "node:ID" or
// "workspace:ID" (ids never hold a colon).
func (r Record) key() string {
	switch {
	case r.Task != nil:
		return r.Task.ID
	case r.Node != nil:
		return KindNode + ":" + r.Node.ID
	case r.Workspace != nil:
		return KindWorkspace + ":" + r.Workspace.ID
	}
	return ""
}

// memberRecords is how many records one gzip member holds.
const memberRecords = 32

// seenIDs returns the cached id set of a day, read from its list the first
// time. Only a few recent days stay cached.
func (a *Archive) seenIDs(d string) (map[string]bool, error) {
	if s, ok := a.seen[d]; ok {
		return s, nil
	}
	s := map[string]bool{}
	ids, err := readIDs(filepath.Join(a.dir, d+".ids"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, id := range ids {
		s[id] = true
	}
	if len(a.seen) >= 4 {
		oldest := ""
		for k := range a.seen {
			if oldest == "" || k < oldest {
				oldest = k
			}
		}
		delete(a.seen, oldest)
	}
	a.seen[d] = s
	return s, nil
}

// appendGzipMembers appends recs as gzip members of memberRecords records
// and returns each member's offset in the file.
func appendGzipMembers(path string, recs []Record) ([]int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	off, err := f.Seek(0, io.SeekEnd)
	var offsets []int64
	cw := &countingWriter{w: bufio.NewWriter(f), n: off}
	for i := 0; err == nil && i < len(recs); i += memberRecords {
		offsets = append(offsets, cw.n)
		zw := gzip.NewWriter(cw)
		enc := json.NewEncoder(zw)
		for j := i; err == nil && j < min(i+memberRecords, len(recs)); j++ {
			err = enc.Encode(&recs[j])
		}
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
	}
	if ferr := cw.w.Flush(); err == nil {
		err = ferr
	}
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return offsets, err
}

type countingWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func appendFile(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readIDs returns the keys of a day's id list.
func readIDs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, line := range strings.Split(string(b), "\n") {
		if id, _, ok := strings.Cut(line, " "); ok {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// Days lists the archive's days, newest first.
func (a *Archive) Days() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(a.dir, "*.jsonl.gz"))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(m))
	for _, p := range m {
		out = append(out, strings.TrimSuffix(filepath.Base(p), ".jsonl.gz"))
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, nil
}

// Task returns an archived task (with its timeline) by id: the days' id
// lists are scanned, and the one naming the id gives the offset of the
// gzip member that holds it. A task id made by the API carries its
// submission time, and a task is filed under the day it ended, so the scan
// starts at the day before the submission and goes forward (a list or two);
// other ids scan every day, newest first.
func (a *Archive) Task(id string) (*fsm.Task, bool, error) {
	days, err := a.Days()
	if err != nil {
		return nil, false, err
	}
	if from, ok := submittedDay(id); ok {
		sort.Strings(days)
		days = days[sort.SearchStrings(days, from):]
	}
	key := []byte("\n" + id + " ")
	for _, d := range days {
		b, err := os.ReadFile(filepath.Join(a.dir, d+".ids"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		b = append([]byte{'\n'}, b...)
		i := bytes.LastIndex(b, key)
		if i < 0 {
			continue
		}
		rest := b[i+len(key):]
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			rest = rest[:j]
		}
		off, err := strconv.ParseInt(string(rest), 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("archive %s: id list line for %s: %w", d, id, err)
		}
		return a.taskAt(d, off, id)
	}
	return nil, false, nil
}

// submittedDay reads the day out of an API task id ("t-" and the
// submission time in milliseconds as 12 hex digits, then random hex).
func submittedDay(id string) (string, bool) {
	if len(id) < 14 || !strings.HasPrefix(id, "t-") {
		return "", false
	}
	ms, err := strconv.ParseInt(id[2:14], 16, 64)
	if err != nil || ms <= 0 {
		return "", false
	}
	// A day early: the leader that stamped the end may run behind the
	// one that stamped the submission.
	return day(time.UnixMilli(ms).Add(-24 * time.Hour)), true
}

// taskAt reads the task from the gzip member at off of a day's file.
func (a *Archive) taskAt(d string, off int64, id string) (*fsm.Task, bool, error) {
	f, err := os.Open(filepath.Join(a.dir, d+".jsonl.gz"))
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, false, err
	}
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, false, fmt.Errorf("archive %s at %d: %w", d, off, err)
	}
	zr.Multistream(false)
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 64<<20)
	want := []byte(`"id":"` + id + `"`)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), want) {
			continue
		}
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, false, fmt.Errorf("archive %s at %d: %w", d, off, err)
		}
		if r.Kind == KindTask && r.Task != nil && r.Task.ID == id {
			return r.Task, true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("archive %s at %d: %w", d, off, err)
	}
	return nil, false, nil
}

// ScanDay calls fn for each record of a day's file, in order, until fn
// returns false.
func (a *Archive) ScanDay(d string, fn func(Record) bool) error {
	f, err := os.Open(filepath.Join(a.dir, d+".jsonl.gz"))
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("archive %s: %w", d, err)
	}
	dec := json.NewDecoder(zr)
	for {
		var r Record
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("archive %s: %w", d, err)
		}
		if !fn(r) {
			return nil
		}
	}
}
