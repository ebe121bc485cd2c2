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
// Every other request goes to next. They take an admin token, like every
// other operations route, unless API authentication is off (admin reports
// which).
func faultRoutes(fl *cluster.FaultLayer, next http.Handler, admin func(*http.Request) bool) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(fl.State())
	}
	only := func(h func()) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !admin(r) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("WWW-Authenticate", `Bearer realm="tdf"`)
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"the fault injection endpoints need an admin token (Authorization: Bearer <token>)"}}`))
				return
			}
			h()
			reply(w)
		}
	}
	mux.HandleFunc("GET /debug/faults", only(func() {}))
	mux.HandleFunc("POST /debug/faults/isolate", only(fl.Isolate))
	mux.HandleFunc("POST /debug/faults/heal", only(fl.Heal))
	mux.Handle("/", next)
	return mux
}
