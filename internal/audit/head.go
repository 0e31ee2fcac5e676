package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A hash chain shows a changed or removed record between two others, but not
// records cut off its end, nor a stream wiped and refilled with a fresh chain:
// both leave a chain that checks. The head is the answer: the seq and hash of the
// last record, signed by the engine, kept where the stream's writers are not
// (a file in the engine's data directory, a key in the state bucket, and wherever
// an operator copies `audit verify`'s last hash to). Verify then asks that the
// chain still contain the head it was told about.

// HeadType is the value of Head.Type: what tells a head line from a record line
// in an export (a record's canonical encoding starts with "id").
const HeadType = "audit_head"

// HeadFile is the name of the kept head in the engine's data directory, and
// HeadKey its key in the state bucket (bus.BucketState).
const (
	HeadFile = "audit-head.json"
	HeadKey  = "audit.head"
)

// HeadPath is the kept head's file in dataDir.
func HeadPath(dataDir string) string { return filepath.Join(dataDir, HeadFile) }

// Head names the last record of the chain at Time, signed by an engine. It is
// the last line of an export, the content of the head file and of the KV key.
type Head struct {
	Type string `json:"type"`
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
	// RecordTime is the time of the record at Seq: a head whose record is gone
	// from the stream is believed aged out only when it is older than the
	// stream's MaxAge.
	RecordTime time.Time `json:"record_time"`
	// Time is when the head was signed.
	Time   time.Time `json:"time"`
	Signer string    `json:"signer"`
	Sig    string    `json:"sig,omitempty"`
}

// signedJSON is what the signature covers (after headSigDomain): the head's
// JSON with Sig empty.
func (h Head) signedJSON() ([]byte, error) {
	h.Sig = ""
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("audit: encode head: %w", err)
	}
	return b, nil
}

// SignHead returns the head naming r (its Seq, Hash and Time), signed by s at
// time at.
func SignHead(s Signer, r Record, at time.Time) (Head, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return Head{}, fmt.Errorf("audit: head signer: %w", err)
	}
	h := Head{Type: HeadType, Seq: r.Seq, Hash: r.Hash, RecordTime: r.Time.UTC(), Time: at.UTC(), Signer: pub}
	b, err := h.signedJSON()
	if err != nil {
		return Head{}, err
	}
	sig, err := s.Sign(append([]byte(headSigDomain), b...))
	if err != nil {
		return Head{}, fmt.Errorf("audit: sign head: %w", err)
	}
	h.Sig = base64.RawURLEncoding.EncodeToString(sig)
	return h, nil
}

// VerifyHead checks h's signature under the trusted keys.
func (t Trusted) VerifyHead(h Head) error {
	if h.Type != HeadType {
		return fmt.Errorf("audit: not a head (type %q)", h.Type)
	}
	b, err := h.signedJSON()
	if err != nil {
		return err
	}
	return t.verify(h.Signer, h.Sig, headSigDomain, string(b))
}

// Marshal is h's one-line JSON encoding.
func (h Head) Marshal() []byte {
	b, _ := json.Marshal(h) // a struct of strings, a number and a time: cannot fail
	return b
}

// isHeadLine reports whether an export line is a head rather than a record.
func isHeadLine(b []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(b), []byte(`{"type":"`+HeadType+`"`))
}

// ParseHead decodes a head strictly (no unknown field, nothing after it).
func ParseHead(data []byte) (Head, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var h Head
	if err := dec.Decode(&h); err != nil {
		return Head{}, fmt.Errorf("audit: not a head: %w", err)
	}
	if dec.More() {
		return Head{}, errors.New("audit: not a head: data after it")
	}
	if h.Type != HeadType || h.Seq == 0 || len(h.Hash) != 64 {
		return Head{}, fmt.Errorf("audit: not a head: type %q, seq %d, hash %q", h.Type, h.Seq, h.Hash)
	}
	return h, nil
}

// ReadHeadFile reads the kept head in path. ok is false when there is none.
func ReadHeadFile(path string) (h Head, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, fmt.Errorf("audit: kept head: %w", err)
	}
	h, err = ParseHead(bytes.TrimSpace(b))
	if err != nil {
		return Head{}, false, fmt.Errorf("audit: kept head %s: %w", path, err)
	}
	return h, true, nil
}

// ReadHeadKV reads the kept head from the state bucket. ok is false when there
// is none.
func ReadHeadKV(ctx context.Context, kv jetstream.KeyValue) (h Head, ok bool, err error) {
	e, err := kv.Get(ctx, HeadKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Head{}, false, nil
	}
	if err != nil {
		return Head{}, false, fmt.Errorf("audit: kept head in KV: %w", err)
	}
	h, err = ParseHead(e.Value())
	if err != nil {
		return Head{}, false, fmt.Errorf("audit: kept head in KV (revision %d): %w", e.Revision(), err)
	}
	return h, true, nil
}

// writeHeadFile replaces path with h: a temporary file, synced, renamed over it,
// so a crash leaves the old head or the new one, never half of one.
func writeHeadFile(path string, h Head) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+HeadFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(append(h.Marshal(), '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// putHeadKV stores h under HeadKey unless the bucket already holds a head at
// h.Seq or later (another engine of the cluster got further): compare-and-set,
// retried a few times against the other engines' puts.
func putHeadKV(ctx context.Context, kv jetstream.KeyValue, h Head) error {
	for range 5 {
		e, err := kv.Get(ctx, HeadKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err = kv.Create(ctx, HeadKey, h.Marshal()); err == nil {
				return nil
			}
		case err != nil:
			return err
		default:
			if cur, perr := ParseHead(e.Value()); perr == nil && cur.Seq >= h.Seq {
				return nil
			}
			if _, err = kv.Update(ctx, HeadKey, h.Marshal(), e.Revision()); err == nil {
				return nil
			}
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !conflict(err) {
			return err
		}
	}
	return errors.New("audit: kept head in KV: too many concurrent updates")
}

// ErrHeadMismatch: the stream does not contain the head this engine kept: records
// were cut off its end, or it was deleted and recreated. The writer refuses to
// append (the new records would bury the evidence) until an operator has looked
// (docs/operations.md, "The audit trail").
var ErrHeadMismatch = errors.New("audit: the stream does not extend the kept head")

// HeadKeeperConfig configures a HeadKeeper.
type HeadKeeperConfig struct {
	// Path is the head file (HeadPath of the data directory); "" = no file.
	Path string
	// KV is the state bucket; nil = no KV copy.
	KV jetstream.KeyValue
	// Signer is the engine key.
	Signer Signer
	// Trusted verifies the heads read at Load (the engine keys).
	Trusted Trusted
	// Interval is the least time between two writes (default
	// DefaultHeadInterval): under load the head is at most this far behind, and
	// the writes cost the stream's appends nothing much; once appends stop the
	// last record is written.
	Interval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default: discard).
	Logger *slog.Logger
}

// HeadKeeper keeps the head of the chain outside the stream: a Writer tells it
// every record it stores (and checks the stream against it before appending),
// and Run writes the latest one, signed, to the file and the KV key. Writes are
// coalesced and at most one per Interval: under load the kept head is at most
// an Interval behind; once appends stop it is the last record. Run writes once
// more when it stops, and Flush writes at once.
type HeadKeeper struct {
	cfg    HeadKeeperConfig
	notify chan struct{}

	mu      sync.Mutex
	latest  Head // the newest record this process knows of (unsigned)
	written uint64
	wmu     sync.Mutex // serialises writes (Run and Flush)
}

// DefaultHeadInterval is HeadKeeperConfig.Interval's default.
const DefaultHeadInterval = 100 * time.Millisecond

// NewHeadKeeper returns a keeper; call Load before the first append.
func NewHeadKeeper(cfg HeadKeeperConfig) *HeadKeeper {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultHeadInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &HeadKeeper{cfg: cfg, notify: make(chan struct{}, 1)}
}

// Load reads the kept heads (file and KV), checks their signatures, and makes
// the furthest the floor the stream must extend. A head file that does not
// verify is an error (someone wrote the engine's own data directory); a KV head
// that does not verify is logged and ignored, since whoever reaches the bus can
// write KV, and the next write replaces it.
func (k *HeadKeeper) Load(ctx context.Context) (Head, error) {
	var best Head
	if k.cfg.Path != "" {
		h, ok, err := ReadHeadFile(k.cfg.Path)
		if err != nil {
			return Head{}, err
		}
		if ok {
			if err := k.cfg.Trusted.VerifyHead(h); err != nil {
				return Head{}, fmt.Errorf("audit: kept head %s: %w", k.cfg.Path, err)
			}
			best = h
		}
	}
	if k.cfg.KV != nil {
		h, ok, err := ReadHeadKV(ctx, k.cfg.KV)
		switch {
		case err != nil:
			k.cfg.Logger.Error("the kept audit head in KV is unreadable; ignoring it", "err", err)
		case !ok:
		case k.cfg.Trusted.VerifyHead(h) != nil:
			k.cfg.Logger.Error("the kept audit head in KV is not signed by a trusted engine; ignoring it",
				"seq", h.Seq, "signer", h.Signer, "err", k.cfg.Trusted.VerifyHead(h))
		case h.Seq > best.Seq:
			best = h
		}
	}
	k.mu.Lock()
	if best.Seq > k.latest.Seq {
		k.latest = best
	}
	k.written = max(k.written, best.Seq)
	k.mu.Unlock()
	return best, nil
}

// floor is the newest head known: the stream must still contain it.
func (k *HeadKeeper) floor() Head {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.latest
}

// observe records r as stored; Run writes it.
func (k *HeadKeeper) observe(r Record) {
	k.mu.Lock()
	if r.Seq > k.latest.Seq {
		k.latest = Head{Type: HeadType, Seq: r.Seq, Hash: r.Hash, RecordTime: r.Time}
	}
	k.mu.Unlock()
	select {
	case k.notify <- struct{}{}:
	default:
	}
}

// Run writes the head whenever it moves, until ctx ends; then it writes it once
// more (bounded by 5s) and returns. A failed write is logged and retried on the
// next record: the stream, not the kept head, is the trail.
func (k *HeadKeeper) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := k.Flush(fctx); err != nil {
				k.cfg.Logger.Warn("could not write the audit head at shutdown", "err", err)
			}
			return nil
		case <-k.notify:
			if err := k.Flush(ctx); err != nil && ctx.Err() == nil {
				k.cfg.Logger.Warn("could not write the audit head", "err", err)
			}
			// Rate limit: records appended meanwhile are written together
			// (notify holds one pending wake-up).
			_ = sleep(ctx, k.cfg.Interval)
		}
	}
}

// Flush signs and writes the newest head now, if it moved since the last write.
func (k *HeadKeeper) Flush(ctx context.Context) error {
	k.wmu.Lock()
	defer k.wmu.Unlock()
	k.mu.Lock()
	cur, done := k.latest, k.written
	k.mu.Unlock()
	if cur.Seq == 0 || cur.Seq <= done {
		return nil
	}
	h, err := SignHead(k.cfg.Signer, Record{Seq: cur.Seq, Hash: cur.Hash, Time: cur.RecordTime}, k.cfg.Now())
	if err != nil {
		return err
	}
	var errs []error
	if k.cfg.Path != "" {
		if err := writeHeadFile(k.cfg.Path, h); err != nil {
			errs = append(errs, fmt.Errorf("audit: write kept head %s: %w", k.cfg.Path, err))
		}
	}
	if k.cfg.KV != nil {
		if err := putHeadKV(ctx, k.cfg.KV, h); err != nil {
			errs = append(errs, fmt.Errorf("audit: write kept head to KV: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	k.mu.Lock()
	k.written = max(k.written, h.Seq)
	k.mu.Unlock()
	return nil
}

// Limits are the stream settings that let it drop records by itself. Only age
// counts: Responder's AUDIT stream has no count or size limit (bus.Ensure), and
// records dropped by one would be lost audit, which verify should report.
type Limits struct {
	MaxAge time.Duration
}

// LimitsOf is the limits of a stream configuration.
func LimitsOf(cfg jetstream.StreamConfig) Limits { return Limits{MaxAge: cfg.MaxAge} }

// retains reports whether the stream drops records by itself at all.
func (l Limits) retains() bool { return l.MaxAge > 0 }

// ageSlack allows for the clocks of the record's writer and of the server that
// ages the message out.
const ageSlack = time.Minute

// agedOut reports whether a record written at t can have left the stream by
// itself by now: t is older than MaxAge. A zero t cannot be judged and is
// believed.
func (l Limits) agedOut(t, now time.Time) bool {
	if l.MaxAge <= 0 {
		return false
	}
	return t.IsZero() || now.Sub(t) > l.MaxAge-ageSlack
}
