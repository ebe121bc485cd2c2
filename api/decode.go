package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"
)

// decodeStrict parses a JSON object into v, refusing unknown fields,
// trailing data and type mismatches, with messages that name the field.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("request body is empty; a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("request body has data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Errorf("request body must be a JSON object, not %s", typ.Value)
		}
		return fmt.Errorf("field %s must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf("malformed JSON: %v", err)
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "uint64", "float64":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	}
	return "an object"
}

// fieldError is a validation failure of one named field.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]*$`)

const maxIDLen = 128

// validID reports whether s can be an id of a task, node, user or project.
func validID(s string) bool {
	return len(s) <= maxIDLen && idPattern.MatchString(s)
}

func checkID(field, v string, required bool) error {
	if v == "" {
		if required {
			return &fieldError{field, "is required"}
		}
		return nil
	}
	if !validID(v) {
		return &fieldError{field, fmt.Sprintf("must be 1–%d characters of letters, digits and _.:- starting with a letter or digit", maxIDLen)}
	}
	return nil
}

func checkText(field, v string, required bool, maxLen int) error {
	switch {
	case v == "" && required:
		return &fieldError{field, "is required"}
	case strings.TrimSpace(v) == "" && required:
		return &fieldError{field, "must not be blank"}
	case len(v) > maxLen:
		return &fieldError{field, fmt.Sprintf("is %d bytes, at most %d allowed", len(v), maxLen)}
	case !utf8.ValidString(v):
		return &fieldError{field, "must be valid UTF-8"}
	case strings.ContainsRune(v, 0):
		return &fieldError{field, "must not contain NUL characters"}
	}
	return nil
}
