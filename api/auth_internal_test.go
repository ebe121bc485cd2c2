package api

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

func TestParseTokensLines(t *testing.T) {
	in := "# ops\n\nadmin-token-0123456789 admin ops\n  user-token-0123456789ab user alice  \n"
	got, err := ParseTokens(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []TokenEntry{{"admin-token-0123456789", ScopeAdmin, "ops"}, {"user-token-0123456789ab", ScopeUser, "alice"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	js := `[{"token":"admin-token-0123456789","scope":"admin","subject":"ops"}]`
	if got, err := ParseTokens(strings.NewReader(js)); err != nil || len(got) != 1 || got[0] != want[0] {
		t.Fatalf("JSON: %+v, %v", got, err)
	}
}

// Every parse error names the line (or JSON entry) and the problem.
func TestParseTokensErrorsNameTheLine(t *testing.T) {
	good := "admin-token-0123456789 admin ops\n"
	for _, tc := range []struct{ in, want string }{
		{good + "only-two-fields-0123 admin\n", "line 2: want \"token scope subject\", got 2 fields"},
		{good + "# c\nuser-token-0123456789ab root alice\n", `line 3: scope "root" is not admin or user`},
		{"short user alice\n", "line 1: token of alice is 5 characters, at least 16 required"},
		{good + "\n\nuser-token-0123456789ab user al/ice\n", `line 4: subject "al/ice"`},
		{good + "a b c d\n", "line 2: want \"token scope subject\", got 4 fields"},
		{`[{"token":"admin-token-0123456789","scope":"admin","subject":"ops"},{"token":"x","scope":"user","subject":"a"}]`, "entry 2: token of a is 1 characters"},
		{`[{"token":"admin-token-0123456789","scope":"admin","subject":"ops","extra":1}]`, "unknown field"},
	} {
		_, err := ParseTokens(strings.NewReader(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTokens(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
	_, err := NewTokens([]TokenEntry{{"admin-token-0123456789", ScopeAdmin, "ops"}, {"admin-token-0123456789", ScopeUser, "a"}})
	if err == nil || !strings.Contains(err.Error(), "token 2 (subject a): the same token is configured twice") {
		t.Errorf("duplicate token: %v", err)
	}
	if _, err := LoadTokens("", "admin-token-0123456789 admin ops;bad"); err == nil || !strings.Contains(err.Error(), "TDF_TOKENS: line 2") {
		t.Errorf("TDF_TOKENS error = %v, want it to name line 2", err)
	}
}

func TestTokensLookup(t *testing.T) {
	tk, err := NewTokens([]TokenEntry{{"admin-token-0123456789", ScopeAdmin, "ops"}, {"user-token-0123456789ab", ScopeUser, "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := tk.Lookup("user-token-0123456789ab"); !ok || p.Subject != "alice" || p.Scope != ScopeUser {
		t.Fatalf("lookup alice = %+v %v", p, ok)
	}
	for _, bad := range []string{"", "user-token-0123456789a", "user-token-0123456789abc", "USER-token-0123456789ab", strings.Repeat("x", 1<<16)} {
		if p, ok := tk.Lookup(bad); ok {
			t.Errorf("lookup %q matched %+v", bad, p)
		}
	}
	// Only digests are kept for comparison.
	for _, e := range tk.entries {
		if strings.Contains(string(e.sum[:]), "token") {
			t.Fatal("a plaintext token is kept in the comparison table")
		}
	}
}

// Lookup compares fixed-length SHA-256 digests with
// subtle.ConstantTimeCompare and never with == on the token, so neither a
// token's content nor its length shows in the response time.
func TestLookupIsConstantTime(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "auth.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var lookup *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "Lookup" {
			lookup = fd
		}
	}
	if lookup == nil {
		t.Fatal("no Lookup in auth.go")
	}
	var constantTime, hashed, early bool
	ast.Inspect(lookup.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if id, ok := n.X.(*ast.Ident); ok {
				constantTime = constantTime || id.Name == "subtle" && n.Sel.Name == "ConstantTimeCompare"
				hashed = hashed || id.Name == "sha256" && n.Sel.Name == "Sum256"
			}
		case *ast.BinaryExpr:
			if n.Op == token.EQL || n.Op == token.NEQ {
				for _, side := range []ast.Expr{n.X, n.Y} {
					if id, ok := side.(*ast.Ident); ok && (id.Name == "token" || id.Name == "sum") {
						t.Errorf("Lookup compares %s with %s", id.Name, n.Op)
					}
				}
			}
		case *ast.RangeStmt:
			ast.Inspect(n.Body, func(m ast.Node) bool {
				if _, ok := m.(*ast.ReturnStmt); ok {
					early = true
				}
				if _, ok := m.(*ast.BranchStmt); ok {
					early = true
				}
				return true
			})
		}
		return true
	})
	if !constantTime || !hashed {
		t.Errorf("Lookup must hash with sha256.Sum256 (%v) and compare with subtle.ConstantTimeCompare (%v)", hashed, constantTime)
	}
	if early {
		t.Error("Lookup leaves its loop early: the position of the matching token would show in the time")
	}
}

func TestRouteAccess(t *testing.T) {
	for _, tc := range []struct {
		method, route string
		want          access
	}{
		{"GET", "/healthz", accessOpen}, {"GET", "/readyz", accessOpen}, {"GET", "/ui/*file", accessOpen},
		{"POST", "/v1/nodes/:id/ready", accessOpen}, {"POST", "/api/workspaces/:id/messages", accessOpen},
		{"POST", "/v1/tasks/:id/status", accessOpen},
		{"POST", "/v1/tasks", accessUser}, {"GET", "/v1/events", accessUser},
		{"GET", "/v1/tasks/:id/messages", accessUser}, {"GET", "/v1/nodes/:id", accessUser},
		{"GET", "/v1/cluster", accessAdmin}, {"GET", "/v1/nodes", accessUser}, {"GET", "/metrics", accessAdmin},
		{"POST", "/v1/cluster/join", accessAdmin}, {"GET", "/v1/some/new/endpoint", accessAdmin},
	} {
		if got := routeAccess(tc.method, tc.route); got != tc.want {
			t.Errorf("routeAccess(%s %s) = %v, want %v", tc.method, tc.route, got, tc.want)
		}
	}
}

// BenchmarkTokensLookup is the per-request cost of authentication with
// 100 configured tokens (every digest is compared on every lookup).
func BenchmarkTokensLookup(b *testing.B) {
	var es []TokenEntry
	for i := range 100 {
		es = append(es, TokenEntry{Token: fmt.Sprintf("bench-token-%016d", i), Scope: ScopeUser, Subject: fmt.Sprintf("u%d", i)})
	}
	tk, err := NewTokens(es)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tk.Lookup("bench-token-0000000000000050"); !ok {
			b.Fatal("no match")
		}
	}
}
