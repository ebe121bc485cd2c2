package cloudinit

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// renderUnit writes the agent's systemd unit. User=root makes systemd set
// HOME=/root, which the agent's sessions read. The agent exits when it
// cannot fetch the JWKS at start; Restart=always brings it back, and at 5 s
// apart the restarts stay under systemd's start limit (5 in 10 s).
func renderUnit(execStart string, env map[string]string) (string, error) {
	var sb strings.Builder
	sb.WriteString("[Unit]\nDescription=VM agent\nWants=network-online.target\nAfter=network-online.target\n\n")
	sb.WriteString("[Service]\nType=simple\nUser=root\n")
	for _, k := range slices.Sorted(maps.Keys(env)) {
		a, err := quoteEnv(k, env[k])
		if err != nil {
			return "", err
		}
		sb.WriteString("Environment=" + a + "\n")
	}
	sb.WriteString("ExecStart=" + execStart + "\nRestart=always\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n")
	return sb.String(), nil
}

// quoteEnv writes one assignment for an Environment= line. systemd splits
// the line into words at whitespace outside quotes, undoes C escapes (\\,
// \", \n, \xHH, …) and then expands %-specifiers; "$" means nothing there.
// So the whole assignment is double-quoted, \ and " are escaped, control
// characters C-escaped and % doubled.
func quoteEnv(name, value string) (string, error) {
	if !validEnvName(name) {
		return "", fmt.Errorf("cloudinit: %q is not an environment variable name", name)
	}
	if !utf8.ValidString(value) || strings.ContainsRune(value, 0) {
		return "", fmt.Errorf("cloudinit: %s is not valid UTF-8 without NUL", name)
	}
	var sb strings.Builder
	sb.WriteString(`"` + name + "=")
	for i := 0; i < len(value); i++ {
		switch c := value[i]; {
		case c == '\\' || c == '"':
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c == '%':
			sb.WriteString("%%")
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c < ' ' || c == 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, c)
		default:
			sb.WriteByte(c)
		}
	}
	sb.WriteByte('"')
	return sb.String(), nil
}

// validEnvName is the portable shell name systemd accepts.
func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// unit is what Parse reads from the unit file.
type unit struct {
	env       map[string]string
	execStart string
}

// parseUnit reads the [Service] section's Environment= and ExecStart= as
// systemd does, for the syntax a unit file may use there; what systemd
// would ignore with a warning is an error here.
func parseUnit(text string) (unit, error) {
	u := unit{env: map[string]string{}}
	section := ""
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case strings.HasSuffix(line, `\`):
			return u, fmt.Errorf("cloudinit: unit line %d: line continuations are not supported", n+1)
		case line[0] == '[':
			section = line
			continue
		}
		key, value, _ := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if section != "[Service]" {
			continue
		}
		switch key {
		case "Environment":
			if value == "" { // an empty assignment resets the list
				clear(u.env)
				continue
			}
			if err := parseEnvironment(value, u.env); err != nil {
				return u, fmt.Errorf("cloudinit: unit line %d: %w", n+1, err)
			}
		case "ExecStart":
			u.execStart = value
		}
	}
	return u, nil
}

// parseEnvironment adds the assignments of one Environment= value.
func parseEnvironment(value string, env map[string]string) error {
	for rest := value; ; {
		word, more, ok, err := nextWord(rest)
		if err != nil || !ok {
			return err
		}
		rest = more
		if word, err = expandSpecifiers(word); err != nil {
			return err
		}
		name, v, found := strings.Cut(word, "=")
		if !found || !validEnvName(name) || !utf8.ValidString(v) {
			return fmt.Errorf("invalid assignment %q", word)
		}
		env[name] = v
	}
}

// nextWord splits off one word as systemd's extract_first_word does with
// unquoting and C unescaping: quotes may open and close anywhere in a word,
// and backslash escapes work inside and outside them.
func nextWord(s string) (word, rest string, ok bool, err error) {
	s = strings.TrimLeft(s, " \t\n\r")
	if s == "" {
		return "", "", false, nil
	}
	var sb strings.Builder
	var quote byte
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == 0 && strings.IndexByte(" \t\n\r", c) >= 0:
			return sb.String(), s[i:], true, nil
		case c == '\\':
			r, n, err := unescape(s[i+1:])
			if err != nil {
				return "", "", false, err
			}
			sb.WriteRune(r)
			i += n
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		default:
			sb.WriteByte(c)
		}
	}
	if quote != 0 {
		return "", "", false, errors.New("unterminated quote")
	}
	return sb.String(), "", true, nil
}

// unescape decodes the C escape after a backslash (systemd's cunescape_one,
// without \x above 0x7f) and returns the rune and the bytes it used.
func unescape(s string) (rune, int, error) {
	if s == "" {
		return 0, 0, errors.New("a backslash at the end")
	}
	if i := strings.IndexByte(`abfnrtv\"'s`, s[0]); i >= 0 {
		return rune("\a\b\f\n\r\t\v\\\"' "[i]), 1, nil
	}
	var digits, base, size int
	switch {
	case s[0] == 'x':
		digits, base, size = 2, 16, 1
	case s[0] == 'u':
		digits, base, size = 4, 16, 1
	case s[0] == 'U':
		digits, base, size = 8, 16, 1
	case s[0] >= '0' && s[0] <= '7':
		digits, base, size = 3, 8, 0
	default:
		return 0, 0, fmt.Errorf("unknown escape \\%c", s[0])
	}
	if len(s) < size+digits {
		return 0, 0, fmt.Errorf("short escape \\%s", s)
	}
	v, err := strconv.ParseUint(s[size:size+digits], base, 32)
	if err != nil || v == 0 || v > utf8.MaxRune || s[0] == 'x' && v > 0x7f || s[0] != 'x' && s[0] != 'u' && s[0] != 'U' && v > 0x7f {
		return 0, 0, fmt.Errorf("unsupported escape \\%s", s[:size+digits])
	}
	return rune(v), size + digits, nil
}

// expandSpecifiers undoes the %-specifier step: "%%" is "%"; the others
// name things of the host systemd runs on and are not resolved here.
func expandSpecifiers(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) || s[i+1] != '%' {
			return "", fmt.Errorf("unsupported specifier in %q", s)
		}
		sb.WriteByte('%')
		i++
	}
	return sb.String(), nil
}
