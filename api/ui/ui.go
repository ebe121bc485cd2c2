// Package ui is the operator dashboard served at /ui/ by every node: plain
// HTML, CSS and JavaScript embedded in the binary, with no build step and
// nothing loaded from elsewhere. The page reads the same JSON API any client
// uses (GET /v1/cluster, /v1/tasks, /v1/nodes, /v1/errors) from the node
// that served it and follows GET /v1/events (server-sent events) to update
// the task list and the open task live. With API tokens configured the
// files are still served to anyone (they hold no data), and the page asks
// for a token before it reads anything (see docs/security.md).
//
// The script builds every element with the DOM API and inserts text only as
// text nodes; the Content-Security-Policy sent with the page forbids inline
// scripts and styles and any other origin, so a task prompt or an error
// message can never run as code.
package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
)

// Prefix is where the dashboard is served.
const Prefix = "/ui/"

//go:embed static
var embedded embed.FS

// contentSecurityPolicy allows the page only its own files and API.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Files returns the dashboard's files (index.html at the root).
func Files() fs.FS {
	sub, err := fs.Sub(embedded, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return sub
}

// Handler serves the dashboard's files under Prefix. Embedded files have no
// modification time, so each answer carries an ETag of its content instead,
// and a revalidating browser gets 304.
func Handler() http.Handler {
	files := Files()
	etags := map[string]string{}
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags[p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	fileServer := http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == "" {
			name = "index.html"
		}
		if name == stepsFile {
			serveSteps(w, r)
			return
		}
		tag, ok := etags[name]
		if !ok {
			// The API's error shape, as for every other unknown path.
			h.Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{
				"code": "not_found", "message": "no dashboard file " + r.URL.Path}})
			return
		}
		h.Set("ETag", tag)
		fileServer.ServeHTTP(w, r)
	})
}

// stepsFile is the script that gives the page the step table, generated
// from fsm's so that the dashboard shows the steps the binary runs.
const stepsFile = "steps.js"

var stepsJS, stepsTag = func() ([]byte, string) {
	type step struct {
		ID    string `json:"id"`
		Label string `json:"label"`
		Kind  string `json:"kind"`
	}
	var list []step
	for _, s := range fsm.StepTable() {
		if s.Execution {
			list = append(list, step{ID: string(s.Step), Label: s.Label, Kind: s.Kind.String()})
		}
	}
	b, err := json.Marshal(list)
	if err != nil {
		panic(err) // plain strings always marshal
	}
	js := []byte("// Generated from the binary's step table.\nwindow.TDF_STEPS = " + string(b) + ";\n")
	sum := sha256.Sum256(js)
	return js, `"` + hex.EncodeToString(sum[:8]) + `"`
}()

func serveSteps(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("ETag", stepsTag)
	if r.Header.Get("If-None-Match") == stepsTag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	_, _ = w.Write(stepsJS)
}

// Register adds the dashboard's routes: GET and HEAD of /ui/… serve its
// files, and / and /ui redirect to /ui/.
func Register(r gin.IRoutes) {
	files := gin.WrapH(Handler())
	toUI := func(c *gin.Context) { c.Redirect(http.StatusFound, Prefix) }
	r.GET("/", toUI)
	r.GET("/ui", toUI)
	r.GET(Prefix+"*file", files)
	r.HEAD(Prefix+"*file", files)
}
