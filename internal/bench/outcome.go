package bench

import (
	"encoding/json"

	"github.com/responder-sec/responder/internal/actions"
)

func decodeOutcome(b []byte, o *actions.Outcome) error { return json.Unmarshal(b, o) }
