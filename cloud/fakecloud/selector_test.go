package fakecloud

import (
	"reflect"
	"testing"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in   string
		want Selector
	}{
		{"", nil},
		{"  ", nil},
		{"k=v", Selector{{"k", OpEquals, []string{"v"}}}},
		{"k==v", Selector{{"k", OpEquals, []string{"v"}}}},
		{"k=", Selector{{"k", OpEquals, []string{""}}}},
		{"k!=v", Selector{{"k", OpNotEquals, []string{"v"}}}},
		{"k", Selector{{"k", OpExists, nil}}},
		{"!k", Selector{{"k", OpNotExists, nil}}},
		{"k in (a,b)", Selector{{"k", OpIn, []string{"a", "b"}}}},
		{"k in ( a , b )", Selector{{"k", OpIn, []string{"a", "b"}}}},
		{"k notin (a)", Selector{{"k", OpNotIn, []string{"a"}}}},
		{"tdf.io/cluster=c1,managed-by=tdf", Selector{
			{"tdf.io/cluster", OpEquals, []string{"c1"}},
			{"managed-by", OpEquals, []string{"tdf"}},
		}},
		{"a=1, b!=2, c, !d, e in (x,y), f notin (z)", Selector{
			{"a", OpEquals, []string{"1"}},
			{"b", OpNotEquals, []string{"2"}},
			{"c", OpExists, nil},
			{"d", OpNotExists, nil},
			{"e", OpIn, []string{"x", "y"}},
			{"f", OpNotIn, []string{"z"}},
		}},
		// "in" is a key when no operator follows.
		{"in", Selector{{"in", OpExists, nil}}},
	}
	for _, tt := range tests {
		got, err := ParseSelector(tt.in)
		if err != nil {
			t.Errorf("ParseSelector(%q) error %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseSelector(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestParseSelectorErrors(t *testing.T) {
	for _, in := range []string{
		",", "k=v,", ",k=v", "k=v,,j=w", "=v", "!=v", "!", "!k=v", "k in", "k in ()", "k in (a", "k in (a,)",
		"k in a", "k notin (a b)", "k =v w", "k v", "k=(v)", "-k=v", "k=-v", "hetzner.cloud/x=1", "k=" + string(make([]byte, 64)),
		"a/b/c=1", "/k=1",
	} {
		if got, err := ParseSelector(in); err == nil {
			t.Errorf("ParseSelector(%q) = %+v, want an error", in, got)
		}
	}
}

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{"managed-by": "tdf", "node": "n1", "empty": ""}
	tests := []struct {
		sel  string
		want bool
	}{
		{"", true},
		{"managed-by=tdf", true},
		{"managed-by=other", false},
		{"managed-by!=other", true},
		{"managed-by!=tdf", false},
		{"absent!=x", true},
		{"node", true},
		{"absent", false},
		{"!absent", true},
		{"!node", false},
		{"node in (n0,n1)", true},
		{"node in (n2,n3)", false},
		{"absent in (n1)", false},
		{"node notin (n2)", true},
		{"node notin (n1,n2)", false},
		{"absent notin (n1)", true},
		{"empty=", true},
		{"empty", true},
		{"managed-by=tdf,node=n1", true},
		{"managed-by=tdf,node=n2", false},
	}
	for _, tt := range tests {
		sel, err := ParseSelector(tt.sel)
		if err != nil {
			t.Fatalf("ParseSelector(%q): %v", tt.sel, err)
		}
		if got := sel.Matches(labels); got != tt.want {
			t.Errorf("ParseSelector(%q).Matches(%v) = %v, want %v", tt.sel, labels, got, tt.want)
		}
	}
}
