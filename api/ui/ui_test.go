package ui_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/api/ui"
)

func engine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	ui.Register(r)
	return r
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestRoutes(t *testing.T) {
	r := engine()
	for _, p := range []string{"/", "/ui"} {
		w := get(t, r, p)
		if w.Code != http.StatusFound || w.Header().Get("Location") != "/ui/" {
			t.Errorf("GET %s = %d Location %q, want 302 to /ui/", p, w.Code, w.Header().Get("Location"))
		}
	}
	cases := []struct {
		path, ctype, contains string
	}{
		{"/ui/", "text/html", `<script src="app.js" defer></script>`},
		{"/ui/app.js", "javascript", "new EventSource("},
		{"/ui/style.css", "text/css", ".diagram"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		w := get(t, r, c.path)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s = %d, want 200", c.path, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); !strings.Contains(ct, c.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", c.path, ct, c.ctype)
		}
		if !strings.Contains(w.Body.String(), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: Content-Security-Policy %q", c.path, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", c.path)
		}
		etag := w.Header().Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", c.path)
		}
		if w := get(t, r, c.path, "If-None-Match", etag); w.Code != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match = %d, want 304", c.path, w.Code)
		}
	}
	for _, p := range []string{"/ui/missing.js", "/ui/static/app.js", "/ui/../go.mod", "/ui/index.html/x"} {
		w := get(t, r, p)
		if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), `"code":"not_found"`) {
			t.Errorf("GET %s = %d %s, want a JSON 404", p, w.Code, w.Body)
		}
	}
}

// TestAssetsAreSelfContained guards the dashboard's two rules: nothing is
// loaded from another origin, and no data is ever inserted as markup.
func TestAssetsAreSelfContained(t *testing.T) {
	files := ui.Files()
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//`)
	markup := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(`)
	inline := regexp.MustCompile(`(?i)<script>|<style|\son[a-z]+\s*=|style\s*=\s*"`)
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		s := string(b)
		if m := external.FindString(s); m != "" && !strings.HasSuffix(p, ".svg") {
			t.Errorf("%s loads something from another origin: %q", p, m)
		}
		if strings.HasSuffix(p, ".js") {
			if m := markup.FindString(s); m != "" {
				t.Errorf("%s inserts markup or evaluates code: %q", p, m)
			}
		}
		if strings.HasSuffix(p, ".html") {
			if m := inline.FindString(s); m != "" {
				t.Errorf("%s has inline script or style, which the CSP refuses: %q", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
