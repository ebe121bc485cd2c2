package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/tdf-project/tdf/cluster"
)

// showClusterStatus prints a node's view of the cluster with the leader's
// view of each member's health.
func showClusterStatus(w io.Writer, st cluster.Status) {
	ready := "ready"
	if !st.Ready {
		ready = "not ready: " + st.NotReady
	}
	fmt.Fprintf(w, "node %s (%s, %s), leader %s, term %d, commit %d, applied %d\n", st.NodeID, st.State, ready, st.LeaderID, st.Term, st.CommitIndex, st.AppliedIndex)
	if st.HealthFrom == "" {
		fmt.Fprintln(w, "members' health unknown: the leader's view could not be read")
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tVOTER\tHEALTH\tLAST CONTACT\tLAG\tRAFT\tAPI")
	for _, m := range st.Members {
		health, contact, lag := "-", "-", "-"
		if h := m.Health; h != nil {
			health = "healthy"
			if !h.Healthy {
				health = "UNHEALTHY: " + h.Reason
			}
			contact = fmt.Sprintf("%.3fs", h.LastContactSeconds)
			lag = fmt.Sprint(h.Lag)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, m.Voter, health, contact, lag, m.RaftAddr, m.APIAddr)
	}
	_ = tw.Flush()
}
