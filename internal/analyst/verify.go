package analyst

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/bus"
)

// Reason classifies a rejection.
type Reason string

// The rejection classes. Each lands in the audit record's detail as
// "<reason>: <detail>".
const (
	Unsigned     Reason = "unsigned"
	BadSignature Reason = "bad_signature"
	UnknownKey   Reason = "unknown_key"
	Replayed     Reason = "replayed"
	Unauthorised Reason = "unauthorised"
)

// RejectError is why a signed message was refused. It never holds key material
// other than public keys.
type RejectError struct {
	Reason Reason
	Detail string
}

func (e *RejectError) Error() string { return string(e.Reason) + ": " + e.Detail }

func rejectf(r Reason, format string, a ...any) *RejectError {
	return &RejectError{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// ReasonOf returns the rejection class of err, or "" when err is not a
// *RejectError (an infrastructure failure: retry, do not reject).
func ReasonOf(err error) Reason {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// Defaults of the Verifier.
const (
	DefaultMaxSkew = 5 * time.Minute
	// ReplayBucket holds the ids of verified messages until they are too old
	// to pass the time check anyway.
	ReplayBucket     = "responder_replay"
	DefaultReplayTTL = 2 * time.Hour
)

// EnsureReplayBucket creates (or updates) the KV bucket of seen ids. Every key
// expires after ttl (DefaultReplayTTL when zero), which must exceed twice the
// Verifier's MaxSkew plus the longest time a request may wait in the ACTIONS
// stream before a worker reads it.
func EnsureReplayBucket(ctx context.Context, js jetstream.JetStream, replicas int, ttl time.Duration) (jetstream.KeyValue, error) {
	if ttl <= 0 {
		ttl = DefaultReplayTTL
	}
	if replicas <= 0 {
		// Unset: an existing bucket keeps its own count (a process started
		// without --replicas must not scale a cluster's R3 bucket down).
		replicas = 1
		if st, err := js.Stream(ctx, "KV_"+ReplayBucket); err == nil {
			if n := st.CachedInfo().Config.Replicas; n > 0 {
				replicas = n
			}
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("analyst: kv %s: %w", ReplayBucket, err)
		}
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ReplayBucket,
		Description: "ids of verified signed messages (replay protection)",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("analyst: kv %s: %w", ReplayBucket, err)
	}
	return kv, nil
}

// SeenStore is the part of jetstream.KeyValue the replay check uses.
type SeenStore interface {
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
}

// VerifierConfig wires a Verifier.
type VerifierConfig struct {
	// Directory returns the current analysts (called once per message, so a
	// reloaded file takes effect at once). Required.
	Directory func() *Directory
	// Seen remembers verified ids (see EnsureReplayBucket). Required.
	Seen SeenStore
	// MaxSkew is how far a message's time may be from the time it was received
	// (default DefaultMaxSkew).
	MaxSkew time.Duration
	// Now is the clock used when a message carries no receive time.
	Now func() time.Time
}

// Verifier authenticates and authorises signed messages. It is safe for
// concurrent use and holds no state of its own: seen ids are in KV, so several
// processes share one replay window.
type Verifier struct {
	dir     func() *Directory
	seen    SeenStore
	maxSkew time.Duration
	now     func() time.Time
}

// NewVerifier applies defaults.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Directory == nil || cfg.Seen == nil {
		return nil, errors.New("analyst: verifier needs a Directory and a Seen store")
	}
	v := &Verifier{dir: cfg.Directory, seen: cfg.Seen, maxSkew: cfg.MaxSkew, now: cfg.Now}
	if v.maxSkew <= 0 {
		v.maxSkew = DefaultMaxSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Message is a received message as the Verifier needs it.
type Message struct {
	Data   []byte
	Header nats.Header
	// Seq is the message's stream sequence (0 for core NATS). A redelivery of
	// the same stored message is not a replay; a copy published again is.
	Seq uint64
	// Received is when the server stored the message (the JetStream metadata
	// timestamp); zero means now. Checking the request time against it, not
	// against the time a worker gets round to the message, keeps a backlog from
	// turning into rejections.
	Received time.Time
}

// FromJetStream builds a Message from a JetStream message.
func FromJetStream(m jetstream.Msg) Message {
	out := Message{Data: m.Data(), Header: m.Headers()}
	if md, err := m.Metadata(); err == nil {
		out.Seq = md.Sequence.Stream
		out.Received = md.Timestamp
	}
	return out
}

// Verify authenticates a decoded action request and authorises it. req must be
// the decoding of m.Data (actions.Decode). On success it returns the signer
// (for a relayed request, the engine key that relayed it: the requester is still
// req.RequestedBy). Errors are *RejectError, except failures of the Seen store,
// which the caller should retry.
func (v *Verifier) Verify(ctx context.Context, req *actions.Request, m Message) (Analyst, error) {
	signer, err := v.authenticate(m, req.RequestedBy.KeyID)
	if err != nil {
		return Analyst{}, err
	}
	if signer, err = v.authorize(signer, req); err != nil {
		return Analyst{}, err
	}
	if err := v.fresh(ctx, nsRequest, req.ID, req.RequestedAt, m); err != nil {
		return Analyst{}, err
	}
	return signer, nil
}

// Reverify authenticates and authorises a stored request again against the
// analysts directory as it stands now (a held request at its release): the
// signature, the key's presence in the file and its rights. Time and replay
// are not checked again: the request passed them when it arrived.
func (v *Verifier) Reverify(req *actions.Request, m Message) (Analyst, error) {
	signer, err := v.authenticate(m, req.RequestedBy.KeyID)
	if err != nil {
		return Analyst{}, err
	}
	return v.authorize(signer, req)
}

// ReverifyCommand authenticates a stored command (an approver's vote) again
// against the directory as it stands now; keyID is the author the body names.
func (v *Verifier) ReverifyCommand(keyID string, m Message) (Analyst, error) {
	signer, err := v.authenticate(m, keyID)
	if err != nil {
		return Analyst{}, err
	}
	if keyID != "" && keyID != signer.PublicKey {
		return Analyst{}, rejectf(Unauthorised, "signed by %s but the body names key %q", signer.PublicKey, short(keyID))
	}
	return signer, nil
}

// ReverifyCommandBy is ReverifyCommand for a command whose body names its
// author by: a console's command resolves to the person it speaks for.
func (v *Verifier) ReverifyCommandBy(by audit.Actor, m Message) (Analyst, error) {
	signer, err := v.ReverifyCommand(by.KeyID, m)
	if err != nil {
		return Analyst{}, err
	}
	return v.OnBehalf(signer, by)
}

// VerifyCommandBy is VerifyCommand for a command whose body names its author
// by: a console's command resolves to the person it speaks for (see
// OnBehalf), checked before the id is claimed.
func (v *Verifier) VerifyCommandBy(ctx context.Context, id string, by audit.Actor, at time.Time, m Message) (Analyst, error) {
	signer, err := v.authenticate(m, by.KeyID)
	if err != nil {
		return Analyst{}, err
	}
	if by.KeyID != "" && by.KeyID != signer.PublicKey {
		return Analyst{}, rejectf(Unauthorised, "signed by %s but the body names key %q", signer.PublicKey, short(by.KeyID))
	}
	who, err := v.OnBehalf(signer, by)
	if err != nil {
		return Analyst{}, err
	}
	if err := v.fresh(ctx, nsCommand, id, at, m); err != nil {
		return Analyst{}, err
	}
	return who, nil
}

// Allowed says whether who (an actor as a request names it) may request
// action under the directory as it stands now: "" when allowed, else why not.
// Engine actors (playbooks, the engine) may request anything.
func (v *Verifier) Allowed(who audit.Actor, action actions.Name) string {
	if who.Kind != "analyst" {
		return ""
	}
	a, ok := v.dir().Lookup(who.KeyID)
	if !ok {
		return fmt.Sprintf("key %s is not in the analysts file", short(who.KeyID))
	}
	if a.Role == RoleConsole {
		p, err := v.OnBehalf(a, who)
		if err != nil {
			return err.Error()
		}
		a = p
	}
	if !strings.EqualFold(a.Name, who.Name) {
		return fmt.Sprintf("key %s belongs to %s, not %s", short(who.KeyID), a.Name, short(who.Name))
	}
	if !a.Allowed(string(action)) {
		return fmt.Sprintf("%s may not request %s", a.Name, action)
	}
	return ""
}

// authorize checks that signer may speak for req's requester and request its
// actions, and returns who the request is from: the signer, or for a console
// key the person signed in whom it names.
func (v *Verifier) authorize(signer Analyst, req *actions.Request) (Analyst, error) {
	by := req.RequestedBy
	switch {
	case signer.Role == RoleConsole:
		p, err := v.OnBehalf(signer, by)
		if err != nil {
			return Analyst{}, err
		}
		signer = p
	case signer.Role != RoleEngine && (by.EntraOID != "" || by.UPN != "" || by.TokenID != "" || by.Groups != ""):
		// Only a console vouches for an Entra identity: an analyst key
		// naming one would put someone else's object id in the audit trail.
		return Analyst{}, rejectf(Unauthorised, "%s signed a request naming an Entra identity; only a console key may", signer.Name)
	}
	return signer, authorizeAs(signer, req)
}

func authorizeAs(signer Analyst, req *actions.Request) error {
	by := req.RequestedBy
	switch {
	case signer.Role == RoleEngine:
		// The engine speaks for playbooks and itself, and relays requests it
		// verified before (follow-up steps, approved requests).
	case by.Kind != "analyst":
		return rejectf(Unauthorised, "%s %q signed a request as %s %q; only an engine key may", signer.Name, signer.PublicKey, by.Kind, by.Name)
	case by.KeyID != signer.PublicKey:
		return rejectf(Unauthorised, "signed by %s but requested_by.key_id is %q", signer.PublicKey, short(by.KeyID))
	case !strings.EqualFold(by.Name, signer.Name):
		return rejectf(Unauthorised, "requested_by.name %q is not the key holder %q", short(by.Name), signer.Name)
	default:
		if !signer.Allowed(string(req.Action)) {
			return rejectf(Unauthorised, "%s may not request %s", signer.Name, req.Action)
		}
		for i, s := range req.Next {
			if !signer.Allowed(string(s.Action)) {
				return rejectf(Unauthorised, "%s may not request %s (next[%d])", signer.Name, s.Action, i)
			}
		}
	}
	return nil
}

// VerifyCommand authenticates any other signed message (an approval command):
// signature, known key, time within MaxSkew and id not seen before. keyID is
// the key the body names as its author (may be empty when the header names it);
// it must be the signer's. Authorisation is the caller's.
func (v *Verifier) VerifyCommand(ctx context.Context, id, keyID string, at time.Time, m Message) (Analyst, error) {
	signer, err := v.authenticate(m, keyID)
	if err != nil {
		return Analyst{}, err
	}
	if keyID != "" && keyID != signer.PublicKey {
		return Analyst{}, rejectf(Unauthorised, "signed by %s but the body names key %q", signer.PublicKey, short(keyID))
	}
	if err := v.fresh(ctx, nsCommand, id, at, m); err != nil {
		return Analyst{}, err
	}
	return signer, nil
}

// Replay namespaces: a request id and a command id never collide, so a
// command cannot burn a request's id (or the reverse).
const (
	nsRequest = "req"
	nsCommand = "cmd"
)

// authenticate checks the signature and finds the signer.
func (v *Verifier) authenticate(m Message, bodyKey string) (Analyst, error) {
	env, err := readEnvelope(m.Data, m.Header)
	if err != nil {
		return Analyst{}, rejectf(BadSignature, "%v", err)
	}
	if env.sig == "" {
		return Analyst{}, rejectf(Unsigned, "no %s header", HeaderSignature)
	}
	key := env.key
	if key == "" {
		key = bodyKey
	}
	if key == "" {
		return Analyst{}, rejectf(Unsigned, "no signer: neither a %s header nor requested_by.key_id", HeaderKey)
	}
	if err := verifySignature(m.Data, key, env.sig); err != nil {
		return Analyst{}, rejectf(BadSignature, "%v", err)
	}
	signer, ok := v.dir().Lookup(key)
	if !ok {
		return Analyst{}, rejectf(UnknownKey, "key %s is not in the analysts file", key)
	}
	return signer, nil
}

// seenValue is stored under a verified id.
type seenValue struct {
	Seq    uint64    `json:"seq,omitempty"`
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
}

// fresh checks the time and claims the id in its namespace.
func (v *Verifier) fresh(ctx context.Context, ns, id string, at time.Time, m Message) error {
	ref := m.Received
	if ref.IsZero() {
		ref = v.now()
	}
	if at.IsZero() {
		return rejectf(Replayed, "no time in the message")
	}
	if d := ref.Sub(at); d > v.maxSkew || d < -v.maxSkew {
		return rejectf(Replayed, "time %s is outside ±%s of %s", at.UTC().Format(time.RFC3339), v.maxSkew, ref.UTC().Format(time.RFC3339))
	}
	if id == "" {
		return rejectf(Replayed, "no id in the message")
	}
	sum := sha256.Sum256(m.Data)
	val, _ := json.Marshal(seenValue{Seq: m.Seq, Digest: hex.EncodeToString(sum[:]), At: ref.UTC()})
	key := bus.ReplayKey(ns + "/" + id) // any id makes a valid key
	if len(key) > 200 {
		return rejectf(Replayed, "id is too long")
	}
	_, err := v.seen.Create(ctx, key, val)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("analyst: replay check for %s: %w", short(id), err)
	}
	e, gerr := v.seen.Get(ctx, key)
	if gerr != nil {
		return fmt.Errorf("analyst: replay check for %s: %w", short(id), gerr)
	}
	var prev seenValue
	_ = json.Unmarshal(e.Value(), &prev)
	if m.Seq != 0 && prev.Seq == m.Seq && prev.Digest == hex.EncodeToString(sum[:]) {
		return nil // a redelivery of the stored message we verified before
	}
	return rejectf(Replayed, "id %s was already used (first seen %s)", short(id), prev.At.Format(time.RFC3339))
}

// RejectRecord is the audit record of a rejected request: outcome rejected,
// the reason as detail, and the requester as the request claims it (the
// claim is unverified, which the detail makes plain). req may be nil when the
// body did not decode.
func RejectRecord(tenant string, req *actions.Request, err error) audit.Record {
	rec := audit.Record{
		TenantID: tenant,
		Outcome:  audit.Rejected,
		Detail:   err.Error(),
		Actor:    audit.Actor{Kind: "unknown", Name: "unknown"},
	}
	if req != nil {
		rec.RequestID = req.ID
		rec.Action = string(req.Action)
		rec.Target = req.Target.Map()
		rec.Reason = req.Reason
		rec.Ticket = req.Ticket
		rec.EventID = req.EventID
		if req.RequestedBy.Kind != "" || req.RequestedBy.Name != "" {
			rec.Actor = req.RequestedBy
			rec.Detail = err.Error() + " (requester as claimed, not verified)"
		}
	}
	return rec
}
