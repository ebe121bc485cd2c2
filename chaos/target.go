package chaos

// Target is a running tdf cluster that the chaos runner can hurt: three
// processes on loopback, or a docker-compose cluster. Node names are the
// raft ids (n1, n2, n3).
type Target interface {
	// Nodes lists the node ids.
	Nodes() []string
	// APIURL is the base URL of a node's HTTP API as the runner reaches it.
	APIURL(node string) string
	// LedgerURL is the base URL of the fake cloud (GET /fake/ledger).
	LedgerURL() string
	// Kill stops a node at once (SIGKILL, docker kill); Restart starts it
	// again on the same data.
	Kill(node string) error
	Restart(node string) error
	// Pause freezes a node (SIGSTOP, docker pause); Resume thaws it.
	Pause(node string) error
	Resume(node string) error
	// Isolate cuts a node off from its peers; Heal reconnects it.
	Isolate(node string) error
	Heal(node string) error
	// Close stops the cluster and releases everything it holds.
	Close() error
}
