// Package archive keeps what the FSM's retention forgets: finished tasks
// with their timelines and messages, deleted nodes with their event logs,
// stopped workspaces. Files are gzip-compressed JSON lines, one per UTC day
// of the records' end (a task's completion, a node's deletion, a
// workspace's last change), named YYYY-MM-DD.jsonl.gz, so an operator can
// ship or delete them by day with ordinary tools (zcat, jq). Each day also
// has a plain list of its task ids (YYYY-MM-DD.ids) that lookups scan
// instead of decompressing every file.
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
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
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

// writeDay appends records to a day's file as one more gzip member (a
// concatenation of gzip members is one valid gzip stream), then their task
// ids to the day's id list; both are synced before it returns.
func (a *Archive) writeDay(d string, recs []Record) error {
	seen, err := a.seenIDs(d)
	if err != nil {
		return err
	}
	var ids []string
	keep := recs[:0:0]
	for _, r := range recs {
		if r.Kind == KindTask {
			if seen[r.Task.ID] {
				continue // archived before this restart's replay
			}
			ids = append(ids, r.Task.ID)
		}
		keep = append(keep, r)
	}
	if len(keep) == 0 {
		return nil
	}
	if err := appendGzipLines(filepath.Join(a.dir, d+".jsonl.gz"), keep); err != nil {
		return err
	}
	if len(ids) > 0 {
		if err := appendFile(filepath.Join(a.dir, d+".ids"), []byte(strings.Join(ids, "\n")+"\n")); err != nil {
			return err
		}
		for _, id := range ids {
			seen[id] = true
		}
	}
	return nil
}

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

func appendGzipLines(path string, recs []Record) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	enc := json.NewEncoder(zw)
	for i := range recs {
		if err = enc.Encode(&recs[i]); err != nil {
			break
		}
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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

func readIDs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
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
// lists are scanned newest first, then the day's file that names it.
func (a *Archive) Task(id string) (*fsm.Task, bool, error) {
	days, err := a.Days()
	if err != nil {
		return nil, false, err
	}
	for _, d := range days {
		ids, err := readIDs(filepath.Join(a.dir, d+".ids"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		for _, x := range ids {
			if x != id {
				continue
			}
			var found *fsm.Task
			err := a.ScanDay(d, func(r Record) bool {
				if r.Kind == KindTask && r.Task != nil && r.Task.ID == id {
					found = r.Task
					return false
				}
				return true
			})
			if err != nil || found != nil {
				return found, found != nil, err
			}
		}
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
