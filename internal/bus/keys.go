package bus

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// The KV key namespace of the shared state bucket (BucketState) and of the
// replay bucket. Every key any package reads or writes is built here, so the
// namespace can be read in one place (docs/architecture.md lists it) and no two
// packages can pick overlapping prefixes by accident. Parts that come from
// outside (request ids, playbook names, UPNs) are encoded with Token or KeyPart,
// never concatenated raw.
const (
	// prefixRequest: one request's idempotency state (actions worker).
	prefixRequest = "req."
	// prefixExpiry: a scheduled undo of an expiring action.
	prefixExpiry = "expiry."
	// prefixApproval: a request held for a human decision.
	prefixApproval = "approval."
	// prefixLease: a named lease (one holder at a time).
	prefixLease = "lease."
	// prefixCheckpoint: a feed's checkpoint ("feed.<feed>[.<part>...]").
	prefixCheckpoint = "feed."
	// prefixFeedStatus: a feed's status line ("feed.status.<feed>.<content type>").
	prefixFeedStatus = "feed.status."
	// prefixThreshold: a stateful playbook's counting window.
	prefixThreshold = "threshold."
	// prefixSuppress: a playbook's suppression window for one key.
	prefixSuppress = "suppress."
	// prefixPlaybookBlast: the matcher's blast-radius count of a playbook.
	prefixPlaybookBlast = "blast.playbook."
	// prefixActionBlast: the workers' blast-radius counts.
	prefixActionBlast = "blast.actions."
	// prefixNotification: a notification claimed (internal/notify).
	prefixNotification = "notify."
	// prefixReplay: a signed message id seen (replay bucket, not BucketState).
	prefixReplay = "id."
)

// RequestStateKey is the key of one action request's state: "req.<id>".
func RequestStateKey(requestID string) string { return prefixRequest + Token(requestID) }

// ExpiryKey is the key of the scheduled expiry of request requestID.
func ExpiryKey(requestID string) string { return prefixExpiry + Token(requestID) }

// ExpiryFilter matches every scheduled expiry.
func ExpiryFilter() string { return prefixExpiry + ">" }

// ExpiryKeyID is the request id of an expiry key ("" if k is not one).
func ExpiryKeyID(k string) string {
	id, ok := strings.CutPrefix(k, prefixExpiry)
	if !ok {
		return ""
	}
	return id
}

// ApprovalKey is the key of the approval held for request requestID. The id must
// already be a valid key token (approval.Store checks it: letters, digits, '-').
func ApprovalKey(requestID string) string { return prefixApproval + requestID }

// ApprovalFilter matches every held approval.
func ApprovalFilter() string { return prefixApproval + ">" }

// ApprovalKeyID is the request id of an approval key ("" if k is not one).
func ApprovalKeyID(k string) string {
	id, ok := strings.CutPrefix(k, prefixApproval)
	if !ok {
		return ""
	}
	return id
}

// LeaseKey is the key of the lease called name.
func LeaseKey(name string) string { return prefixLease + KeyPart(name) }

// FeedLeaseName is the name of the lease under which one process runs a
// tenant's feeds.
func FeedLeaseName(tenant string) string { return "feeds." + tenant }

// CheckpointKey is the key of a feed's checkpoint, with optional sub-parts
// (content type, "coverage", ...): "feed.<feed>[.<part>...]".
func CheckpointKey(feed string, part ...string) string {
	k := prefixCheckpoint + Token(feed)
	for _, p := range part {
		k += "." + Token(p)
	}
	return k
}

// SubscriptionStartAfterKey is the key of the time before which Microsoft
// asked not to start a Management Activity content type's subscription again
// (its 403 / "429" "retry again after 14m 56s"), so that a restarted poller
// waits too: "feed.management_activity.<content type>.start_after".
func SubscriptionStartAfterKey(contentType string) string {
	return CheckpointKey("management_activity", contentType, "start_after")
}

// FeedStatusKey is the key of the status line of one feed and content type
// ("" for feeds without content types).
func FeedStatusKey(feed, contentType string) string {
	if contentType == "" {
		contentType = "_"
	}
	return prefixFeedStatus + Token(feed) + "." + KeyPart(contentType)
}

// FeedStatusFilter matches every feed status line.
func FeedStatusFilter() string { return prefixFeedStatus + ">" }

// ThresholdKey is the key of a stateful playbook's counter for one threshold
// key (hashed by the caller to a fixed-length hex token).
func ThresholdKey(playbook, hashedKey string) string {
	return prefixThreshold + KeyPart(playbook) + "." + hashedKey
}

// SuppressionKey is the key of a suppression window.
func SuppressionKey(key string) string { return prefixSuppress + KeyPart(key) }

// PlaybookBlastKey is the key of the matcher's count of a playbook's firings in
// the window that starts at start.
func PlaybookBlastKey(playbook string, start time.Time) string {
	return fmt.Sprintf("%s%s.%d", prefixPlaybookBlast, KeyPart(playbook), start.Unix())
}

// ActionBlastPlaybookKey is the key of the workers' count of one playbook's
// requests in the window that starts at start.
func ActionBlastPlaybookKey(playbook string, start time.Time) string {
	return fmt.Sprintf("%splaybook.%s.%d", prefixActionBlast, Token(playbook), start.Unix())
}

// ActionBlastActionKey is the key of the workers' count of one action's
// requests in the window that starts at start.
func ActionBlastActionKey(action string, start time.Time) string {
	return fmt.Sprintf("%saction.%s.%d", prefixActionBlast, Token(action), start.Unix())
}

// NotificationKey is the key that claims the notification of request
// requestID's state to one destination (webhook index and kind), so it is
// posted once: "notify.<request>.<state>.<destination>".
func NotificationKey(requestID, state, destination string) string {
	return prefixNotification + KeyPart(requestID) + "." + KeyPart(state) + "." + KeyPart(destination)
}

// ReplayKey is the key under which the replay bucket remembers a signed
// message id (hex, so any id makes a valid key).
func ReplayKey(id string) string { return prefixReplay + hex.EncodeToString([]byte(id)) }
