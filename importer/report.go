package importer

import (
	"fmt"
	"io"

	"github.com/tdf-project/tdf/fsm"
)

// Action is what an import does (or, in a dry run, would do) with a line.
type Action string

// Actions of a report.
const (
	// ActionAdopt: an in-flight task resumes at its step (from
	// node_agent_ready on, after its adopt step has looked at reality).
	ActionAdopt Action = "adopt"
	// ActionHistory: a finished task (completed, failed, cancelled) is
	// kept as history: terminal, no alarms.
	ActionHistory Action = "history"
	// ActionNotStarted: a draft or ready task is imported as it is.
	ActionNotStarted Action = "not_started"
	// ActionSkip: the task was imported before; nothing changes.
	ActionSkip Action = "skip"
	// ActionError: the line is invalid or the state refuses it.
	ActionError Action = "error"
)

// Result is the report line of one export line.
type Result struct {
	Line   int      `json:"line"`
	ID     string   `json:"id,omitempty"`
	Action Action   `json:"action"`
	Step   fsm.Step `json:"execution_step,omitempty"`
	Field  string   `json:"field,omitempty"`
	Detail string   `json:"detail,omitempty"`
}

// Report is the answer of POST /v1/import.
type Report struct {
	DryRun  bool           `json:"dry_run"`
	Results []Result       `json:"results"`
	Counts  map[Action]int `json:"counts"`
}

// Plan is what importing t does when the state accepts it.
func Plan(t Task) Result {
	r := Result{Line: t.Line, ID: t.Cmd.TaskID}
	switch c := t.Cmd; {
	case fsm.ImportInFlight(c.Status):
		r.Action, r.Step = ActionAdopt, c.Step
	case c.Status.Terminal():
		r.Action, r.Detail = ActionHistory, string(c.Status)
	default:
		r.Action, r.Detail = ActionNotStarted, string(c.Status)
	}
	return r
}

// ErrorResult is the report line of a bad line.
func ErrorResult(e LineError) Result {
	return Result{Line: e.Line, ID: e.ID, Action: ActionError, Field: e.Field, Detail: e.Message}
}

// String is the human form of a report line.
func (r Result) String() string {
	head := fmt.Sprintf("line %d", r.Line)
	if r.ID != "" {
		head += " " + r.ID
	}
	switch r.Action {
	case ActionAdopt:
		return fmt.Sprintf("%s: adopt at step %s", head, r.Step)
	case ActionHistory:
		return fmt.Sprintf("%s: import as history (%s)", head, r.Detail)
	case ActionNotStarted:
		return fmt.Sprintf("%s: import as %s (not started)", head, r.Detail)
	case ActionSkip:
		return fmt.Sprintf("%s: skip: already imported", head)
	}
	if r.Field != "" {
		return fmt.Sprintf("%s: error: field %s: %s", head, r.Field, r.Detail)
	}
	return fmt.Sprintf("%s: error: %s", head, r.Detail)
}

// Count fills the report's counts.
func (rep *Report) Count() {
	rep.Counts = map[Action]int{}
	for _, r := range rep.Results {
		rep.Counts[r.Action]++
	}
}

// Print writes the report, one line per task and a summary.
func (rep *Report) Print(w io.Writer) {
	for _, r := range rep.Results {
		fmt.Fprintln(w, r)
	}
	verb := "imported"
	if rep.DryRun {
		verb = "dry run, nothing written"
	}
	fmt.Fprintf(w, "%d tasks (%s): %d adopt, %d history, %d not started, %d skipped (already imported), %d errors\n",
		len(rep.Results), verb, rep.Counts[ActionAdopt], rep.Counts[ActionHistory], rep.Counts[ActionNotStarted],
		rep.Counts[ActionSkip], rep.Counts[ActionError])
}
