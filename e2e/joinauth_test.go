package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestJoinSecureCluster: a new node joins a secure-by-default cluster with
// an admin token made for it (TDF_JOIN_TOKEN), and then serves the API
// with the cluster's replicated tokens like any member; the bootstrapped
// members registered themselves with member tokens, no admin token given.
// The fault injection endpoints, when on, take an admin token as well.
func TestJoinSecureCluster(t *testing.T) {
	c := StartCluster(t, Options{Secure: true, ExtraArgs: []string{"--fault-injection"}})
	c.Token = c.AdminToken()
	c.Leader()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The fault injection endpoints are operations routes too.
	for tok, want := range map[string]int{"": http.StatusUnauthorized, "tdf_not-a-token": http.StatusUnauthorized, c.Token: http.StatusOK} {
		r, err := c.Do(ctx, c.Nodes[0], http.MethodGet, "/debug/faults", http.Header{"Authorization": {"Bearer " + tok}}, nil)
		if err != nil || r.Status != want {
			t.Fatalf("GET /debug/faults with %.8q: %v %v, want %d", tok, err, r, want)
		}
	}
	r, err := c.Do(ctx, c.Nodes[0], http.MethodPost, "/v1/tokens", nil, map[string]string{"scope": "admin", "subject": "join"})
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("create the join token: %v %v", err, r)
	}
	var created struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.Body, &created); err != nil {
		t.Fatal(err)
	}
	n4 := c.AddNode("n4")
	n4.UseJoin(c.Nodes[0].URL)
	n4.env = append(n4.env, "TDF_JOIN_TOKEN="+created.Token)
	c.Start(n4)
	c.WaitFor(DefaultElectionWait, "n4 to be a voter with its API address, on n4 too", func() error {
		for _, n := range []*Node{c.Nodes[0], n4} {
			st, err := c.Status(n)
			if err != nil {
				return err
			}
			found := false
			for _, m := range st.Members {
				found = found || (m.ID == "n4" && m.Voter && m.APIAddr == n4.URL)
			}
			if !found || len(st.Members) != 4 {
				return fmt.Errorf("%s's members: %+v", n.ID, st.Members)
			}
		}
		return nil
	})
	// The new member accepts the replicated admin token and refuses none.
	if r, err := c.Do(ctx, n4, http.MethodGet, "/v1/tasks", http.Header{"Authorization": {""}}, nil); err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("n4 without a token: %v %v, want 401", err, r)
	}
	if r, err := c.Do(ctx, n4, http.MethodGet, "/v1/tokens", nil, nil); err != nil || r.Status != http.StatusOK {
		t.Fatalf("n4 with the admin token: %v %v", err, r)
	}
}
