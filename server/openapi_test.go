package server_test

import (
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/server"
)

// TestOpenAPIMatchesRouter: docs/openapi.yaml is a valid OpenAPI document
// that describes exactly the routes a node serves — every route is
// documented, and every documented route is served.
func TestOpenAPIMatchesRouter(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join("..", "docs", "openapi.yaml"))
	if err != nil {
		t.Fatalf("load docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}

	c := server.NewTestCluster(t, server.TestOptions{Nodes: 1})
	param := regexp.MustCompile(`[:*]([A-Za-z]+)`)
	var served []string
	for _, rt := range c.Nodes[0].API.Handler().(*gin.Engine).Routes() {
		served = append(served, rt.Method+" "+param.ReplaceAllString(rt.Path, "{$1}"))
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("%s is served but not in docs/openapi.yaml", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("%s is in docs/openapi.yaml but no node serves it", r)
		}
	}
	if t.Failed() {
		t.Logf("served:\n%s", strings.Join(served, "\n"))
	}
}
