package importer

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tdf-project/tdf/fsm"
)

var at = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const good = `{"id":"a1","status":"in_progress","execution_step":"running","project_id":"p","user_id":"u","prompt":"x","repository":"r","node_id":"n1","hetzner_server_id":7,"workspace_id":"w1","agent_session_id":"s1","created_at":"2026-11-25T10:00:00Z"}`

// with returns the good line with one field replaced (or removed, for "").
func with(field, raw string) string {
	start := strings.Index(good, `"`+field+`":`)
	if start < 0 {
		return strings.TrimSuffix(good, "}") + `,"` + field + `":` + raw + "}"
	}
	end := start + len(field) + 3
	for depth, inStr := 0, false; end < len(good); end++ {
		c := good[end]
		if c == '"' && good[end-1] != '\\' {
			inStr = !inStr
		}
		if !inStr && depth == 0 && (c == ',' || c == '}') {
			break
		}
	}
	if raw == "" {
		if good[end] == '}' {
			return strings.TrimSuffix(good[:start], ",") + good[end:]
		}
		return good[:start] + strings.TrimPrefix(good[end:], ",")
	}
	return good[:start] + `"` + field + `":` + raw + good[end:]
}

func TestParseSample(t *testing.T) {
	f, err := os.Open("../docs/import-sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tasks, errs := Parse(f, 1, fsm.DefaultPolicy(), at)
	if len(errs) != 0 || len(tasks) != 17 {
		t.Fatalf("sample: %d tasks, errors %v", len(tasks), errs)
	}
	steps := map[fsm.Step]bool{}
	for _, tk := range tasks {
		if fsm.ImportInFlight(tk.Cmd.Status) {
			steps[tk.Cmd.Step] = true
		}
	}
	for _, s := range fsm.AllSteps {
		if !steps[s] {
			t.Errorf("the sample has no in-flight task at %s", s)
		}
	}
}

func TestParseBadLines(t *testing.T) {
	cases := []struct {
		name, export string
		line         int
		field, msg   string
	}{
		{"malformed", good + "\n{\"id\":", 2, "", "malformed JSON"},
		{"not an object", `[1,2]`, 1, "", "must be a JSON object"},
		{"two objects", good + good, 1, "", "one task per line"},
		{"unknown field", with("hetzner_id", "7"), 1, "hetzner_id", "unknown field"},
		{"server id type", with("hetzner_server_id", `"7"`), 1, "hetzner_server_id", "must be a number"},
		{"id type", with("id", `12`), 1, "id", "must be a string"},
		{"no id", with("id", ""), 1, "id", "is required"},
		{"bad id", with("id", `"a b"`), 1, "id", "is not an id"},
		{"no user", with("user_id", ""), 1, "user_id", "is required"},
		{"bad status", with("status", `"paused"`), 1, "status", `unknown status "paused"`},
		{"no status", with("status", ""), 1, "status", "is required"},
		{"bad step", with("execution_step", `"compiling"`), 1, "execution_step", "unknown execution step"},
		{"no step in flight", with("execution_step", `""`), 1, "execution_step", "is required"},
		{"no workspace", with("workspace_id", ""), 1, "workspace_id", "is required at running"},
		{"no server", with("hetzner_server_id", ""), 1, "hetzner_server_id", "is required at running"},
		{"negative server", with("hetzner_server_id", "-3"), 1, "hetzner_server_id", "must be positive"},
		{"no node", with("node_id", ""), 1, "node_id", "is required at running"},
		{"no prompt", with("prompt", `" "`), 1, "prompt", "is required"},
		{"no created_at", with("created_at", ""), 1, "created_at", "is required"},
		{"bad time", with("created_at", `"yesterday"`), 1, "created_at", "RFC 3339"},
		{"bad started_at", with("started_at", `"2026-13-01T00:00:00Z"`), 1, "started_at", "RFC 3339"},
		{"bad size", with("vm_size", `"huge"`), 1, "vm_size", "small, medium, large"},
		{"bad branch", with("branch", `"a b"`), 1, "branch", "git branch"},
		{"duplicate id", good + "\n\n" + good, 3, "id", "already on line 1"},
		{"node with two servers", good + "\n" + strings.Replace(with("hetzner_server_id", "8"), `"a1"`, `"a2"`, 1), 2, "hetzner_server_id", "has server 7 on line 1"},
		{"node of two users", good + "\n" + strings.Replace(with("user_id", `"v"`), `"a1"`, `"a2"`, 1), 2, "node_id", "belongs to user u on line 1"},
		{"shared workspace", good + "\n" + strings.Replace(good, `"a1"`, `"a2"`, 1), 2, "workspace_id", "used by the task on line 1"},
		{"long line", good + "\n" + `{"id":"` + strings.Repeat("x", MaxLineBytes) + `"}`, 2, "", "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tasks, errs := Parse(strings.NewReader(tc.export), 1, fsm.DefaultPolicy(), at)
			if len(errs) != 1 {
				t.Fatalf("errors = %v (tasks %d), want one", errs, len(tasks))
			}
			e := errs[0]
			if e.Line != tc.line || e.Field != tc.field || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error = %+v, want line %d field %q message ~ %q", e, tc.line, tc.field, tc.msg)
			}
			want := "line " + strconv.Itoa(tc.line) + ": "
			if tc.field != "" {
				want += "field " + tc.field + ": "
			}
			if !strings.HasPrefix(e.Error(), want) {
				t.Fatalf("Error() = %q, want prefix %q", e.Error(), want)
			}
		})
	}
}

func TestParseNumbersFromFirstLine(t *testing.T) {
	_, errs := Parse(strings.NewReader(good+"\n"+with("status", `"x"`)), 41, fsm.DefaultPolicy(), at)
	if len(errs) != 1 || errs[0].Line != 42 {
		t.Fatalf("errors = %+v, want one on line 42", errs)
	}
}

func TestParseBuildsTheCommand(t *testing.T) {
	tasks, errs := Parse(strings.NewReader(with("started_at", `"2026-11-25T10:05:00+02:00"`)), 1, fsm.DefaultPolicy(), at)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	c := tasks[0].Cmd
	if c.TaskID != "a1" || c.Status != fsm.StatusInProgress || c.Step != fsm.StepRunning || c.ServerID != 7 || c.NodeID != "n1" ||
		c.WorkspaceID != "w1" || c.AgentSessionID != "s1" || !c.At.Equal(at) || c.StartedAt == nil ||
		!c.StartedAt.Equal(time.Date(2026, 11, 25, 8, 5, 0, 0, time.UTC)) || c.Policy != fsm.DefaultPolicy() {
		t.Fatalf("command = %+v", c)
	}
	if r := Plan(tasks[0]); r.String() != "line 1 a1: adopt at step running" {
		t.Fatalf("plan = %q", r)
	}
}

// FuzzParse: any input parses to tasks and line errors, never a panic;
// every error names a line, and every task's command passes the FSM's own
// validation.
func FuzzParse(f *testing.F) {
	sample, _ := os.ReadFile("../docs/import-sample.jsonl")
	f.Add(sample)
	f.Add([]byte(good + "\n" + good))
	f.Add([]byte(with("hetzner_server_id", `"x"`)))
	f.Add([]byte("{\n}\n[]\nnull\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tasks, errs := Parse(strings.NewReader(string(data)), 1, fsm.DefaultPolicy(), at)
		for _, e := range errs {
			if e.Line < 1 || e.Message == "" {
				t.Fatalf("error without line or message: %+v", e)
			}
		}
		for _, tk := range tasks {
			if err := tk.Cmd.Validate(); err != nil {
				t.Fatalf("line %d parsed but the FSM refuses it: %v", tk.Line, err)
			}
		}
	})
}
