package handlers

import (
	"fmt"
	"strings"

	"github.com/tdf-project/tdf/fsm"
)

// MaxOutputBranch bounds a task's output branch name (REFERENCE.md).
const MaxOutputBranch = 60

// OutputBranch is the branch a task's work is pushed to: the configured
// prefix, a slug of the prompt and the task id's tail (so two tasks with
// one prompt never share a branch), at most MaxOutputBranch characters.
// It is derived from the task alone, so every attempt and every leader
// names the same branch.
func OutputBranch(prefix string, t *fsm.Task) string {
	id := strings.TrimPrefix(t.ID, "t-")
	if len(id) > 8 {
		id = id[len(id)-8:]
	}
	room := MaxOutputBranch - len(prefix) - len(id) - 1
	slug := slugify(t.Prompt, room)
	if slug == "" {
		return prefix + id
	}
	return prefix + slug + "-" + id
}

// slugify keeps lower-case letters and digits of s, words joined by
// single dashes, at most n bytes.
func slugify(s string, n int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		switch {
		case ok && b.Len() < n:
			if dash && b.Len() > 0 {
				if b.Len()+1 >= n {
					return b.String()
				}
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		case !ok:
			dash = true
		}
	}
	return b.String()
}

// BranchInstruction is how the initial prompt names the output branch; a
// coding agent (and the test's fake one) follows it.
const BranchInstruction = "Work on the git branch `%s`: create it from the current branch before your first change. When you finish, your work is committed and pushed from it."

// TaskPrompt is the agent's initial prompt: the user's, then where to
// put the work.
func TaskPrompt(t *fsm.Task, branch string) string {
	return t.Prompt + "\n\n" + fmt.Sprintf(BranchInstruction, branch)
}
