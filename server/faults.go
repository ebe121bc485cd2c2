package server

import (
	"encoding/json"
	"net/http"

	"github.com/tdf-project/tdf/cluster"
)

// faultRoutes serves the fault-injection debug endpoints in front of the
// API, only when the node runs with fault injection (--fault-injection):
//
//	GET  /debug/faults           the fault layer's state
//	POST /debug/faults/isolate   cut every raft connection in and out
//	POST /debug/faults/heal      allow raft connections again
//
// Every other request goes to next.
func faultRoutes(fl *cluster.FaultLayer, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(fl.State())
	}
	mux.HandleFunc("GET /debug/faults", func(w http.ResponseWriter, r *http.Request) { reply(w) })
	mux.HandleFunc("POST /debug/faults/isolate", func(w http.ResponseWriter, r *http.Request) {
		fl.Isolate()
		reply(w)
	})
	mux.HandleFunc("POST /debug/faults/heal", func(w http.ResponseWriter, r *http.Request) {
		fl.Heal()
		reply(w)
	})
	mux.Handle("/", next)
	return mux
}
