package api

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/importer"
)

// CodeInvalidImport: an export has bad lines (or lines the state refuses);
// the answer lists them and nothing was imported.
const CodeInvalidImport = "invalid_import"

// ImportErrorBody is the 422 answer of POST /v1/import: the usual error and
// the report, whose error lines name the line and the field.
type ImportErrorBody struct {
	Error  ErrorDetail     `json:"error"`
	Report importer.Report `json:"report"`
}

// importTasks is POST /v1/import[?dry_run=true][&first_line=N]: the body is the old
// system's export, JSON lines (docs/import.md). Every line is validated,
// on its own and against the state, before anything is written; then each
// task is imported by one command. A dry run answers the same report
// without writing.
func (s *Server) importTasks(c *gin.Context) {
	dry := false
	if v := c.Query("dry_run"); v != "" {
		var err error
		if dry, err = strconv.ParseBool(v); err != nil {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("dry_run: %q is not a boolean", v))
			return
		}
	}
	first := 1
	if v := c.Query("first_line"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			abortError(c, http.StatusBadRequest, CodeInvalidField, fmt.Sprintf("first_line: %q is not a line number", v))
			return
		}
		first = n
	}
	body := c.MustGet(ctxBody).([]byte)
	tasks, errs := importer.Parse(bytes.NewReader(body), first, s.cfg.Policy, s.now())
	if len(tasks) == 0 && len(errs) == 0 {
		abortError(c, http.StatusBadRequest, CodeInvalidJSON, "the export is empty: one JSON object per line is required")
		return
	}
	rep := importer.Report{DryRun: dry}
	for _, e := range errs {
		rep.Results = append(rep.Results, importer.ErrorResult(e))
	}
	f := s.cfg.Node.FSM()
	var todo []importer.Task
	for _, t := range tasks {
		dup, err := f.CheckImport(t.Cmd)
		switch {
		case err != nil:
			rep.Results = append(rep.Results, importer.ErrorResult(importer.FieldError(t.Line, t.Cmd.TaskID, err)))
		case dup:
			rep.Results = append(rep.Results, importer.Result{Line: t.Line, ID: t.Cmd.TaskID, Action: importer.ActionSkip})
		default:
			todo = append(todo, t)
			if dry {
				rep.Results = append(rep.Results, importer.Plan(t))
			}
		}
	}
	bad := len(rep.Results) > 0 && slices.ContainsFunc(rep.Results, func(r importer.Result) bool { return r.Action == importer.ActionError })
	if bad && !dry {
		// Validate everything first: a bad line imports nothing.
		finish(&rep)
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, ImportErrorBody{
			Error:  ErrorDetail{Code: CodeInvalidImport, Message: fmt.Sprintf("%d bad lines; nothing was imported", rep.Counts[importer.ActionError])},
			Report: rep,
		})
		return
	}
	if !dry {
		for _, t := range todo {
			res, ok := s.commitResult(c, t.Cmd)
			if !ok {
				return // answered (forwarded to a new leader, which skips what was imported here)
			}
			rep.Results = append(rep.Results, importResult(t, res))
		}
	}
	finish(&rep)
	c.JSON(http.StatusOK, rep)
}

func importResult(t importer.Task, res *fsm.Result) importer.Result {
	switch {
	case res.Err != nil:
		return importer.ErrorResult(importer.FieldError(t.Line, t.Cmd.TaskID, res.Err))
	case res.Unchanged:
		return importer.Result{Line: t.Line, ID: t.Cmd.TaskID, Action: importer.ActionSkip}
	}
	return importer.Plan(t)
}

func finish(rep *importer.Report) {
	slices.SortStableFunc(rep.Results, func(a, b importer.Result) int { return a.Line - b.Line })
	if rep.Results == nil {
		rep.Results = []importer.Result{}
	}
	rep.Count()
}
