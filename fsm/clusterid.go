package fsm

import (
	"fmt"
	"regexp"
)

// CmdSetClusterID records the cluster's id (bootstrap guard). It carries
// IgnoreUnknown on the wire: a binary from before the cluster id skips it.
const CmdSetClusterID CommandType = 40

// clusterIDPattern is what a cluster id looks like: the first leader makes
// one from 16 random bytes, hex-encoded.
var clusterIDPattern = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

// SetClusterID records the id of the cluster this state belongs to. The
// first leader sets it once (IfUnset: a no-op when one is set); Replace is
// only for putting a cluster's own id back after a restore brought in the
// id of the cluster the backup came from.
type SetClusterID struct {
	ID      string `json:"id"`
	Replace bool   `json:"replace,omitempty"`
}

// Type implements Command.
func (SetClusterID) Type() CommandType { return CmdSetClusterID | IgnoreUnknown }

// ValidateClusterID checks the form of a cluster id.
func ValidateClusterID(id string) error {
	if !clusterIDPattern.MatchString(id) {
		return fmt.Errorf("cluster id %q: want 8 to 64 lower-case hex digits", id)
	}
	return nil
}

func (f *FSM) applySetClusterID(c SetClusterID, res *Result) {
	if err := ValidateClusterID(c.ID); err != nil {
		res.Err = fmt.Errorf("%w: %v", ErrInvalid, err)
		return
	}
	if c.ID == f.st.clusterID || (f.st.clusterID != "" && !c.Replace) {
		res.Unchanged = true
		return
	}
	f.st.clusterID = c.ID
}

// ClusterID returns the id of the cluster this state belongs to, "" until
// the first leader has set it.
func (f *FSM) ClusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.clusterID
}
