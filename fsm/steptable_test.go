package fsm

import "testing"

// TestStepTable checks what the rest of the code relies on the table for.
func TestStepTable(t *testing.T) {
	var exec []Step
	completes := map[Callback]int{}
	for _, sp := range StepTable() {
		if sp.Label == "" {
			t.Errorf("%s has no label", sp.Step)
		}
		if sp.Execution {
			exec = append(exec, sp.Step)
		} else if sp.Result == nil {
			t.Errorf("pseudo-step %s has no result handling of its own", sp.Step)
		}
		switch sp.Kind {
		case KindDecided:
			if sp.Decide == nil {
				t.Errorf("decided step %s has no Decide", sp.Step)
			}
		case KindWaiting:
			if sp.Timeout == nil || sp.Timeout(DefaultPolicy()) <= 0 {
				t.Errorf("waiting step %s has no deadline", sp.Step)
			}
		case KindEffect:
		default:
			t.Errorf("%s has no kind", sp.Step)
		}
		if sp.CompletedBy != "" {
			completes[sp.CompletedBy]++
			if sp.Kind != KindWaiting {
				t.Errorf("%s is completed by a callback but does not wait", sp.Step)
			}
		}
		if got, ok := SpecOf(sp.Step); !ok || got.Step != sp.Step {
			t.Errorf("SpecOf(%s) = %v, %v", sp.Step, got, ok)
		}
	}
	if len(exec) != len(AllSteps) {
		t.Fatalf("execution steps %v, AllSteps %v", exec, AllSteps)
	}
	for i, s := range exec {
		if AllSteps[i] != s || s.Order() != i+1 {
			t.Errorf("execution step %d is %s; AllSteps has %s, Order %d", i, s, AllSteps[i], s.Order())
		}
	}
	for cb, n := range completes {
		if n != 1 {
			t.Errorf("callback %s completes %d steps, want one", cb, n)
		}
	}
	if _, ok := SpecOf(StepNone); ok {
		t.Error("StepNone has a declaration")
	}
	if nextStep(AllSteps[len(AllSteps)-1]) != StepNone {
		t.Error("the last step has a successor")
	}
}
