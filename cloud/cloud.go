package cloud

import (
	"context"
	"time"
)

// ServerSpec describes the server to create. Name is the identity: it is
// unique per project, a valid hostname, and derived deterministically from
// what the server is for (node-<id>), so that a retry finds the server an
// earlier attempt created. Labels are the ownership labels (cluster, node
// id, managed-by); they must not be empty, since they decide whether an
// existing server of that name may be adopted.
type ServerSpec struct {
	Name       string
	ServerType string // e.g. cx23
	Location   string // by name, e.g. fsn1
	// FallbackLocations are tried in order when Location has no capacity
	// for the type (resource_unavailable, placement_error) or does not
	// offer it. A server of that name found anywhere is adopted first, so
	// the fallback never makes a second server.
	FallbackLocations []string
	Image             string // by name; empty means ubuntu-24.04
	UserData          string // cloud-init; at most 32 KiB; never logged
	Labels            map[string]string
}

// Server is a server as the provider reports it.
type Server struct {
	ID   int64
	Name string
	// Status is the provider's status: initializing, starting, running,
	// stopping, off, deleting, migrating, rebuilding or unknown.
	Status string
	// IPv4 is the address tdf reaches the server's agent at: its public
	// IPv4, or its address in the private network the provider attaches
	// servers to when configured so; empty if it has none yet.
	IPv4    string
	Labels  map[string]string
	Created time.Time
	// Location is where the server is, by name.
	Location string
	// ServerType is its type, by name.
	ServerType string
	// Placement says why a server just created is not in the location
	// asked for first (which locations were full), empty otherwise.
	Placement string
}

// Server statuses the callers act on.
const (
	StatusRunning  = "running"
	StatusOff      = "off"
	StatusDeleting = "deleting"
)

// Action is an asynchronous operation of the provider (create, start,
// delete a server). A zero Action (ID 0) means there is nothing to wait for.
type Action struct {
	ID int64
	// Status is ActionRunning, ActionSuccess or ActionError.
	Status   string
	Progress int // percent
	// ErrorCode and ErrorMessage describe a failed action; ClassifyCode
	// tells whether retrying can help.
	ErrorCode, ErrorMessage string
}

// Action statuses.
const (
	ActionRunning = "running"
	ActionSuccess = "success"
	ActionError   = "error"
)

// Done reports whether the action has finished, successfully or not. The
// zero Action is done.
func (a Action) Done() bool { return a.ID == 0 || a.Status == ActionSuccess || a.Status == ActionError }

// Failed reports whether the action finished with an error.
func (a Action) Failed() bool { return a.Status == ActionError }

// Provider creates and deletes servers. Every method is safe for concurrent
// use and returns errors that Classify understands.
type Provider interface {
	// CreateServer creates the server named spec.Name — or adopts it: it
	// looks the name up first and, on a uniqueness_error from the create,
	// looks it up again. A server of that name whose labels are ours
	// (spec.Labels ⊆ its labels) is adopted: it is returned with a zero
	// Action if it is already running, with the action that makes it run
	// otherwise. One that is not ours is ErrNameTaken (permanent). One of
	// ours that is being deleted or stopped is ErrServerBusy (transient).
	//
	// The returned Action is the create action: poll it with GetAction. If
	// it fails, the server may still exist; the caller deletes it by id
	// (DeleteServer) before trying again.
	CreateServer(ctx context.Context, spec ServerSpec) (Server, Action, error)
	// GetServer returns the server with that id, or nil, nil when absent.
	GetServer(ctx context.Context, id int64) (*Server, error)
	// GetServerByName returns the server with that name, or nil, nil when
	// absent.
	GetServerByName(ctx context.Context, name string) (*Server, error)
	// GetAction returns the action's current state. An unknown id is a
	// permanent *Error with code not_found.
	GetAction(ctx context.Context, id int64) (Action, error)
	// DeleteServer deletes the server; a server that is already gone
	// (not_found) counts as success. It does not wait for the deletion.
	DeleteServer(ctx context.Context, id int64) error
	// ListServers returns every server matching the label selector (all
	// pages), e.g. "managed-by=tdf,cluster=c1". An empty selector lists all.
	ListServers(ctx context.Context, labelSelector string) ([]Server, error)
}

// Owns reports whether a server with labels have belongs to the owner of
// want: every label of want is present in have with the same value. An
// empty want owns nothing.
func Owns(want, have map[string]string) bool {
	if len(want) == 0 {
		return false
	}
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}
