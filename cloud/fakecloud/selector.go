package fakecloud

import (
	"fmt"
	"slices"
	"strings"
)

// Operator is the test of one selector requirement.
type Operator int

// Selector operators.
const (
	OpEquals    Operator = iota + 1 // k=v (or k==v)
	OpNotEquals                     // k!=v: k absent or another value
	OpExists                        // k
	OpNotExists                     // !k
	OpIn                            // k in (a,b)
	OpNotIn                         // k notin (a,b): k absent or none of them
)

// Requirement is one comma-separated term of a label selector.
type Requirement struct {
	Key    string
	Op     Operator
	Values []string
}

// Selector is a parsed label selector: every requirement must hold.
type Selector []Requirement

// Matches reports whether labels satisfy every requirement. The empty
// selector matches everything.
func (s Selector) Matches(labels map[string]string) bool {
	for _, r := range s {
		v, ok := labels[r.Key]
		var match bool
		switch r.Op {
		case OpEquals:
			match = ok && v == r.Values[0]
		case OpNotEquals:
			match = !ok || v != r.Values[0]
		case OpExists:
			match = ok
		case OpNotExists:
			match = !ok
		case OpIn:
			match = ok && slices.Contains(r.Values, v)
		case OpNotIn:
			match = !ok || !slices.Contains(r.Values, v)
		}
		if !match {
			return false
		}
	}
	return true
}

// ParseSelector parses Hetzner's label selector syntax: comma-separated
// requirements `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)` and
// `k notin (a,b)`, all of which must hold. Keys and values must be valid
// labels. Whitespace between tokens is ignored.
func ParseSelector(s string) (Selector, error) {
	p := &selParser{toks: lexSelector(s)}
	var sel Selector
	if p.peek().kind == tokEOF {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return nil, fmt.Errorf("label selector %q: %w", s, err)
		}
		sel = append(sel, r)
		switch t := p.next(); t.kind {
		case tokEOF:
			return sel, nil
		case tokComma:
		default:
			return nil, fmt.Errorf("label selector %q: want ',' or end, got %q", s, t.text)
		}
	}
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokWord
	tokEq  // = or ==
	tokNeq // !=
	tokBang
	tokLParen
	tokRParen
	tokComma
)

type token struct {
	kind tokKind
	text string
}

func lexSelector(s string) []token {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case c == ',':
			toks = append(toks, token{tokComma, ","})
			i++
		case c == '(':
			toks = append(toks, token{tokLParen, "("})
			i++
		case c == ')':
			toks = append(toks, token{tokRParen, ")"})
			i++
		case c == '=':
			if strings.HasPrefix(s[i:], "==") {
				toks = append(toks, token{tokEq, "=="})
				i += 2
			} else {
				toks = append(toks, token{tokEq, "="})
				i++
			}
		case c == '!':
			if strings.HasPrefix(s[i:], "!=") {
				toks = append(toks, token{tokNeq, "!="})
				i += 2
			} else {
				toks = append(toks, token{tokBang, "!"})
				i++
			}
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t,()=!", rune(s[j])) {
				j++
			}
			toks = append(toks, token{tokWord, s[i:j]})
			i = j
		}
	}
	return append(toks, token{tokEOF, "end"})
}

type selParser struct {
	toks []token
	pos  int
}

func (p *selParser) peek() token { return p.toks[p.pos] }

func (p *selParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *selParser) requirement() (Requirement, error) {
	if p.peek().kind == tokBang {
		p.next()
		k, err := p.key()
		if err != nil {
			return Requirement{}, err
		}
		return Requirement{Key: k, Op: OpNotExists}, nil
	}
	k, err := p.key()
	if err != nil {
		return Requirement{}, err
	}
	switch t := p.peek(); {
	case t.kind == tokEOF || t.kind == tokComma:
		return Requirement{Key: k, Op: OpExists}, nil
	case t.kind == tokEq || t.kind == tokNeq:
		p.next()
		op := OpEquals
		if t.kind == tokNeq {
			op = OpNotEquals
		}
		v := ""
		if p.peek().kind == tokWord {
			v = p.next().text
		}
		if err := validLabelValue(v); err != nil {
			return Requirement{}, err
		}
		return Requirement{Key: k, Op: op, Values: []string{v}}, nil
	case t.kind == tokWord && (t.text == "in" || t.text == "notin"):
		p.next()
		op := OpIn
		if t.text == "notin" {
			op = OpNotIn
		}
		vs, err := p.valueList()
		if err != nil {
			return Requirement{}, err
		}
		return Requirement{Key: k, Op: op, Values: vs}, nil
	default:
		return Requirement{}, fmt.Errorf("want an operator after %q, got %q", k, t.text)
	}
}

func (p *selParser) key() (string, error) {
	t := p.next()
	if t.kind != tokWord {
		return "", fmt.Errorf("want a label key, got %q", t.text)
	}
	if err := validLabelKey(t.text); err != nil {
		return "", err
	}
	return t.text, nil
}

func (p *selParser) valueList() ([]string, error) {
	if t := p.next(); t.kind != tokLParen {
		return nil, fmt.Errorf("want '(', got %q", t.text)
	}
	var vs []string
	for {
		t := p.next()
		if t.kind != tokWord {
			return nil, fmt.Errorf("want a value, got %q", t.text)
		}
		if err := validLabelValue(t.text); err != nil {
			return nil, err
		}
		vs = append(vs, t.text)
		switch t := p.next(); t.kind {
		case tokComma:
		case tokRParen:
			return vs, nil
		default:
			return nil, fmt.Errorf("want ',' or ')', got %q", t.text)
		}
	}
}
