package fakecloud

import (
	"fmt"
	"strings"
)

// maxUserData is Hetzner's limit on user_data.
const maxUserData = 32 << 10

// validName checks that a server name is a valid hostname (RFC 1123).
func validName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("name must be 1 to 253 characters")
	}
	for _, part := range strings.Split(name, ".") {
		if len(part) == 0 || len(part) > 63 {
			return fmt.Errorf("name %q is not a valid hostname", name)
		}
		if part[0] == '-' || part[len(part)-1] == '-' {
			return fmt.Errorf("name %q is not a valid hostname", name)
		}
		for i := 0; i < len(part); i++ {
			if !isAlnum(part[i]) && part[i] != '-' {
				return fmt.Errorf("name %q is not a valid hostname", name)
			}
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// labelName checks a label value or the name part of a key: at most 63
// characters, alphanumerics at the ends and -_. inside.
func labelName(s string) bool {
	if len(s) > 63 {
		return false
	}
	if s == "" {
		return true
	}
	if !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func validLabelKey(k string) error {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if hasPrefix {
		if prefix == "" || len(prefix) > 253 || validName(prefix) != nil {
			return fmt.Errorf("label key %q has an invalid prefix", k)
		}
		if prefix == "hetzner.cloud" || strings.HasSuffix(prefix, ".hetzner.cloud") {
			return fmt.Errorf("label key %q uses the reserved prefix hetzner.cloud/", k)
		}
	}
	if name == "" && !hasPrefix {
		name = prefix
	}
	if name == "" || !labelName(name) {
		return fmt.Errorf("label key %q is invalid", k)
	}
	return nil
}

func validLabelValue(v string) error {
	if !labelName(v) {
		return fmt.Errorf("label value %q is invalid", v)
	}
	return nil
}

func validLabels(labels map[string]string) error {
	for k, v := range labels {
		if err := validLabelKey(k); err != nil {
			return err
		}
		if err := validLabelValue(v); err != nil {
			return err
		}
	}
	return nil
}
