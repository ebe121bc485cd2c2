// Package importer reads the old system's export of tasks (JSON lines,
// docs/import.md) and turns each line into an fsm.ImportTask. It only
// parses and validates; the API commits the commands and the pipeline's
// adopt step reconciles each adopted task against reality.
//
// Every line of a file is validated before anything is imported, and each
// task is imported by one command (task, node and workspace together), so
// a bad line never leaves a half-imported task.
package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tdf-project/tdf/fsm"
)

// Record is one line of the export.
type Record struct {
	ID              string `json:"id"`
	Status          string `json:"status"`
	ExecutionStep   string `json:"execution_step"`
	ProjectID       string `json:"project_id"`
	UserID          string `json:"user_id"`
	Prompt          string `json:"prompt"`
	Repository      string `json:"repository"`
	Branch          string `json:"branch"`
	VMSize          string `json:"vm_size"`
	VMLocation      string `json:"vm_location"`
	NodeID          string `json:"node_id"`
	HetznerServerID int64  `json:"hetzner_server_id"`
	WorkspaceID     string `json:"workspace_id"`
	AgentSessionID  string `json:"agent_session_id"`
	ErrorMessage    string `json:"error_message"`
	OutputBranch    string `json:"output_branch"`
	OutputPRURL     string `json:"output_pr_url"`
	OutputSummary   string `json:"output_summary"`
	// Timestamps are RFC 3339 strings, parsed here so that a bad one is
	// reported with its field name.
	CreatedAt   string `json:"created_at"`
	UpdatedAt   string `json:"updated_at"`
	StartedAt   string `json:"started_at"`
	CompletedAt string `json:"completed_at"`
}

// LineError is a problem with one line of the export.
type LineError struct {
	Line    int    `json:"line"`
	ID      string `json:"id,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Message)
	}
	return fmt.Sprintf("line %d: field %s: %s", e.Line, e.Field, e.Message)
}

// Task is one valid line: its number and the command that imports it.
type Task struct {
	Line int            `json:"line"`
	Cmd  fsm.ImportTask `json:"command"`
	Rec  Record         `json:"-"`
}

// Limits of one line.
const (
	MaxLineBytes  = 256 << 10
	maxIDLen      = 128
	maxPromptLen  = 64 << 10
	maxTextLen    = 4096
	maxRepoLength = 512
)

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)
	branchPattern = regexp.MustCompile(`^[A-Za-z0-9._/-]{1,255}$`)
	locPattern    = regexp.MustCompile(`^[a-z]{3}[0-9]$`)
	vmSizes       = map[string]bool{"small": true, "medium": true, "large": true}
)

// Parse reads the whole export and validates every line, on its own and
// against the others (a task id twice, a node with two servers or two
// users, a workspace shared by two running tasks). Blank lines are
// skipped. It returns the valid tasks and every error; callers import
// nothing if errs is not empty. policy and at are stamped into the
// commands. Lines are numbered from firstLine (1 for a whole file; a
// client sending a long export in parts passes each part's first line).
func Parse(r io.Reader, firstLine int, policy fsm.Policy, at time.Time) (tasks []Task, errs []LineError) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLineBytes)
	seen := map[string]int{}       // task id → line
	nodes := map[string]Record{}   // node id → first record naming it
	nodeLine := map[string]int{}   // node id → that record's line
	workspaces := map[string]int{} // workspace id of an in-flight task → line
	line := max(firstLine, 1) - 1
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		t, err := parseLine(line, raw, policy, at)
		if err != nil {
			errs = append(errs, *err)
			continue
		}
		c := t.Cmd
		if first, dup := seen[c.TaskID]; dup {
			errs = append(errs, LineError{Line: line, ID: c.TaskID, Field: "id", Message: fmt.Sprintf("task %s is already on line %d", c.TaskID, first)})
			continue
		}
		seen[c.TaskID] = line
		if c.NodeID != "" {
			if prev, ok := nodes[c.NodeID]; ok {
				switch {
				case prev.UserID != t.Rec.UserID:
					errs = append(errs, LineError{Line: line, ID: c.TaskID, Field: "node_id",
						Message: fmt.Sprintf("node %s belongs to user %s on line %d", c.NodeID, prev.UserID, nodeLine[c.NodeID])})
					continue
				case prev.HetznerServerID != 0 && c.ServerID != 0 && prev.HetznerServerID != c.ServerID:
					errs = append(errs, LineError{Line: line, ID: c.TaskID, Field: "hetzner_server_id",
						Message: fmt.Sprintf("node %s has server %d on line %d", c.NodeID, prev.HetznerServerID, nodeLine[c.NodeID])})
					continue
				}
			} else {
				nodes[c.NodeID], nodeLine[c.NodeID] = t.Rec, line
			}
		}
		if c.WorkspaceID != "" && fsm.ImportInFlight(c.Status) {
			if first, dup := workspaces[c.WorkspaceID]; dup {
				errs = append(errs, LineError{Line: line, ID: c.TaskID, Field: "workspace_id",
					Message: fmt.Sprintf("workspace %s is used by the task on line %d", c.WorkspaceID, first)})
				continue
			}
			workspaces[c.WorkspaceID] = line
		}
		tasks = append(tasks, t)
	}
	if err := sc.Err(); err != nil {
		msg := err.Error()
		if errors.Is(err, bufio.ErrTooLong) {
			msg = fmt.Sprintf("line is longer than %d bytes", MaxLineBytes)
		}
		errs = append(errs, LineError{Line: line + 1, Message: msg})
	}
	return tasks, errs
}

// parseLine decodes and validates one line.
func parseLine(line int, raw []byte, policy fsm.Policy, at time.Time) (Task, *LineError) {
	var rec Record
	fail := func(field, format string, args ...any) (Task, *LineError) {
		return Task{}, &LineError{Line: line, ID: rec.ID, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		field, msg := describe(err)
		return fail(field, "%s", msg)
	}
	if dec.More() {
		return fail("", "data after the JSON object (one task per line)")
	}
	status, err := fsm.ParseStatus(rec.Status)
	if err != nil {
		return fail("status", "%s; one of %s", quoteOrMissing(rec.Status), joinStatuses())
	}
	step, err := fsm.ParseStep(rec.ExecutionStep)
	if err != nil || step == fsm.StepAdopt || step == fsm.StepCleanup {
		return fail("execution_step", "unknown execution step %q", rec.ExecutionStep)
	}
	live := status != fsm.StatusCompleted && status != fsm.StatusFailed && status != fsm.StatusCancelled
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"id", rec.ID, true}, {"project_id", rec.ProjectID, true}, {"user_id", rec.UserID, true},
		{"node_id", rec.NodeID, false}, {"workspace_id", rec.WorkspaceID, false}, {"agent_session_id", rec.AgentSessionID, false},
	} {
		if f.v == "" && f.required {
			return fail(f.name, "is required")
		}
		if f.v != "" && (len(f.v) > maxIDLen || !idPattern.MatchString(f.v)) {
			return fail(f.name, "%q is not an id (1–%d letters, digits and _.:-, starting with a letter or digit)", f.v, maxIDLen)
		}
	}
	for _, f := range []struct {
		name, v  string
		required bool
		max      int
	}{
		{"prompt", rec.Prompt, live, maxPromptLen}, {"repository", rec.Repository, live, maxRepoLength},
		{"error_message", rec.ErrorMessage, false, maxTextLen}, {"output_branch", rec.OutputBranch, false, maxTextLen},
		{"output_pr_url", rec.OutputPRURL, false, maxTextLen}, {"output_summary", rec.OutputSummary, false, maxPromptLen},
	} {
		switch {
		case f.required && strings.TrimSpace(f.v) == "":
			return fail(f.name, "is required for a task that is %s", status)
		case len(f.v) > f.max:
			return fail(f.name, "is %d bytes, at most %d allowed", len(f.v), f.max)
		case !utf8.ValidString(f.v):
			return fail(f.name, "must be valid UTF-8")
		}
	}
	if rec.Branch != "" && !branchPattern.MatchString(rec.Branch) {
		return fail("branch", "%q is not a git branch name", rec.Branch)
	}
	if rec.VMSize != "" && !vmSizes[rec.VMSize] {
		return fail("vm_size", "%q is not one of small, medium, large", rec.VMSize)
	}
	if rec.VMLocation != "" && !locPattern.MatchString(rec.VMLocation) {
		return fail("vm_location", "%q is not a location name such as fsn1", rec.VMLocation)
	}
	times := map[string]*time.Time{}
	for _, f := range []struct {
		name, v  string
		required bool
	}{
		{"created_at", rec.CreatedAt, true}, {"updated_at", rec.UpdatedAt, false},
		{"started_at", rec.StartedAt, false}, {"completed_at", rec.CompletedAt, false},
	} {
		if f.v == "" {
			if f.required {
				return fail(f.name, "is required (RFC 3339, e.g. 2026-11-25T12:00:00Z)")
			}
			continue
		}
		tm, err := time.Parse(time.RFC3339Nano, f.v)
		if err != nil {
			return fail(f.name, "%q is not an RFC 3339 time such as 2026-11-25T12:00:00Z", f.v)
		}
		tm = tm.UTC()
		times[f.name] = &tm
	}
	c := fsm.ImportTask{
		TaskID: rec.ID,
		Spec: fsm.TaskSpec{ProjectID: rec.ProjectID, UserID: rec.UserID, Prompt: rec.Prompt, Repository: rec.Repository,
			Branch: rec.Branch, VMSize: rec.VMSize, VMLocation: rec.VMLocation},
		Status: status, Step: step, NodeID: rec.NodeID, WorkspaceID: rec.WorkspaceID, AgentSessionID: rec.AgentSessionID,
		ServerID: rec.HetznerServerID, ErrorMessage: rec.ErrorMessage,
		Output:    fsm.Output{Branch: rec.OutputBranch, PRURL: rec.OutputPRURL, Summary: rec.OutputSummary},
		CreatedAt: *times["created_at"], StartedAt: times["started_at"], CompletedAt: times["completed_at"],
		Policy: policy, At: at,
	}
	if err := c.Validate(); err != nil {
		field, msg := splitField(err)
		return fail(field, "%s", msg)
	}
	return Task{Line: line, Cmd: c, Rec: rec}, nil
}

// splitField takes "invalid command: field: message" apart.
func splitField(err error) (field, msg string) {
	s := strings.TrimPrefix(err.Error(), fsm.ErrInvalid.Error()+": ")
	s = strings.TrimPrefix(s, fsm.ErrExists.Error()+": ")
	if f, m, ok := strings.Cut(s, ": "); ok && !strings.ContainsAny(f, " ") {
		return f, m
	}
	return "", s
}

// FieldError splits an FSM refusal into the export field it names and
// the message.
func FieldError(line int, id string, err error) LineError {
	f, m := splitField(err)
	return LineError{Line: line, ID: id, Field: f, Message: m}
}

// describe names the field of a JSON decoding error.
func describe(err error) (field, msg string) {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return "", fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return "", fmt.Sprintf("a line must be a JSON object, not %s", typ.Value)
		}
		return typ.Field, fmt.Sprintf("must be %s, not %s", kind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "", "malformed JSON: unexpected end of line"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return f, "unknown field (see docs/import.md for the format)"
	}
	return "", "malformed JSON: " + err.Error()
}

func kind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "uint64", "float64":
		return "a number"
	}
	return "an object"
}

func quoteOrMissing(s string) string {
	if s == "" {
		return "is required"
	}
	return fmt.Sprintf("unknown status %q", s)
}

func joinStatuses() string {
	var out []string
	for _, s := range fsm.AllStatuses {
		out = append(out, string(s))
	}
	return strings.Join(out, ", ")
}
