package handlers

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/tdf-project/tdf/fsm"
	"github.com/tdf-project/tdf/vmagent"
)

// DeliveryID is the deliveryId of a task step's session start: derived from
// the task and the step only (never the attempt), so a re-dispatched start
// is a replay the agent answers 200 duplicate. The agent accepts only
// vmagent.ValidDeliveryID ids, so the runner's idempotency key (which holds
// a '/') is not used; "<task>:<step>" is, and a task id too long or odd for
// that is hashed to "d-<hex>" instead. Steps hold no ':', so two (task,
// step) pairs never share an id.
func DeliveryID(taskID string, step fsm.Step) string {
	if id := taskID + ":" + string(step); vmagent.ValidDeliveryID(id) {
		return id
	}
	sum := sha256.Sum256([]byte(taskID + "/" + string(step)))
	return "d-" + hex.EncodeToString(sum[:20])
}
