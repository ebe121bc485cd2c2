package fsm

import (
	"fmt"
	"net/url"
	"strings"
)

// CmdSetControlPlane sets the cluster's control-plane URL (31 is CmdBatch).
// It carries IgnoreUnknown on the wire: a binary from before the setting
// skips it and goes on signing with its own configured URL, as it did.
const CmdSetControlPlane CommandType = 32

// maxControlPlaneURL bounds the URL (it goes into every token and every
// VM's cloud-init).
const maxControlPlaneURL = 2048

// SetControlPlane sets the control-plane URL: the one URL the VM agents
// call back to and the issuer (iss) of every token the cluster signs. It
// is replicated so that every node signs and verifies alike, whichever
// leads. IfUnset makes it a no-op (Unchanged) when a URL is already set:
// the leader's bootstrap default, which must never replace the first
// leader's choice or an operator's.
type SetControlPlane struct {
	URL     string `json:"url"`
	IfUnset bool   `json:"if_unset,omitempty"`
}

// Type implements Command.
func (SetControlPlane) Type() CommandType { return CmdSetControlPlane | IgnoreUnknown }

// ValidateControlPlaneURL checks that u is an absolute http(s) URL of a
// host, without user info, query, fragment or trailing slash: agents
// compare the issuer as a string, and append paths to it.
func ValidateControlPlaneURL(u string) error {
	if u == "" {
		return fmt.Errorf("control-plane URL is empty")
	}
	if len(u) > maxControlPlaneURL {
		return fmt.Errorf("control-plane URL is %d bytes long, more than %d", len(u), maxControlPlaneURL)
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("control-plane URL %q: %v", u, err)
	}
	switch {
	case p.Scheme != "http" && p.Scheme != "https":
		return fmt.Errorf("control-plane URL %q: want an http or https URL", u)
	case p.Host == "" || p.Opaque != "":
		return fmt.Errorf("control-plane URL %q has no host", u)
	case p.User != nil || p.RawQuery != "" || p.Fragment != "" || strings.Contains(u, "#") || strings.Contains(u, "?"):
		return fmt.Errorf("control-plane URL %q: no user info, query or fragment allowed", u)
	case strings.HasSuffix(u, "/"):
		return fmt.Errorf("control-plane URL %q ends in a slash", u)
	}
	return nil
}

func (f *FSM) applySetControlPlane(c SetControlPlane, res *Result) {
	if err := ValidateControlPlaneURL(c.URL); err != nil {
		res.Err = fmt.Errorf("%w: %v", ErrInvalid, err)
		return
	}
	if (c.IfUnset && f.st.controlURL != "") || c.URL == f.st.controlURL {
		res.Unchanged = true
		return
	}
	f.st.controlURL = c.URL
}

// ControlPlaneURL returns the cluster's control-plane URL, "" until the
// first leader has set it.
func (f *FSM) ControlPlaneURL() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.controlURL
}
