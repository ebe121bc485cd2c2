package handlers

import (
	"strings"
	"testing"

	"github.com/tdf-project/tdf/fsm"
)

func TestOutputBranch(t *testing.T) {
	long := strings.Repeat("Refactor the payment module ", 10)
	for _, tc := range []struct {
		prompt, id, want string
	}{
		{"Fix the flaky test!", "t-01a23b66ac3c2dfb8a9f210e", "sam/fix-the-flaky-test-8a9f210e"},
		{"   ", "t-01a23b66ac3c2dfb8a9f210e", "sam/8a9f210e"},
		{"Ünïcode — only", "t-abc", "sam/n-code-only-abc"},
	} {
		got := OutputBranch("sam/", &fsm.Task{ID: tc.id, TaskSpec: fsm.TaskSpec{Prompt: tc.prompt}})
		if got != tc.want {
			t.Errorf("OutputBranch(%q, %q) = %q, want %q", tc.prompt, tc.id, got, tc.want)
		}
	}
	got := OutputBranch("sam/", &fsm.Task{ID: "t-01a23b66ac3c2dfb8a9f210e", TaskSpec: fsm.TaskSpec{Prompt: long}})
	if len(got) > MaxOutputBranch || !strings.HasPrefix(got, "sam/refactor-the-payment-module") || !strings.HasSuffix(got, "-8a9f210e") || strings.Contains(got, "--") {
		t.Errorf("long prompt: %q (%d bytes), want ≤ %d, prefix, slug and id tail", got, len(got), MaxOutputBranch)
	}
}
