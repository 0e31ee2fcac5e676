package feeds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sec/responder/internal/bus"
	"github.com/responder-sec/responder/internal/event"
)

// appendEnvelope appends the JSON of env to dst: the same document as
// json.Marshal(env), written by hand (no reflection, no allocation). Raw is
// spliced in as it is; it must be valid JSON (the blob reader and the Graph
// decoder validate it), and unlike json.Marshal it is not HTML-escaped again,
// which decodes to the same value.
func appendEnvelope(dst []byte, env *event.Envelope) ([]byte, error) {
	if y := env.Time.Year(); y < 0 || y > 9999 {
		return dst, fmt.Errorf("feeds: encode event %s: time %v outside years 0-9999", env.ID, env.Time)
	}
	if _, off := env.Time.Zone(); off <= -24*3600 || off >= 24*3600 {
		return dst, fmt.Errorf("feeds: encode event %s: time zone offset out of range", env.ID)
	}
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, env.ID)
	dst = append(dst, `,"source":`...)
	dst = appendJSONString(dst, string(env.Source))
	dst = append(dst, `,"kind":`...)
	dst = appendJSONString(dst, env.Kind)
	dst = append(dst, `,"time":"`...)
	dst = env.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","tenant_id":`...)
	dst = appendJSONString(dst, env.TenantID)
	if env.User != "" {
		dst = append(dst, `,"user":`...)
		dst = appendJSONString(dst, env.User)
	}
	if env.UserID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = appendJSONString(dst, env.UserID)
	}
	if env.IP != "" {
		dst = append(dst, `,"ip":`...)
		dst = appendJSONString(dst, env.IP)
	}
	if env.Mailbox != "" {
		dst = append(dst, `,"mailbox":`...)
		dst = appendJSONString(dst, env.Mailbox)
	}
	if env.RuleID != "" {
		dst = append(dst, `,"rule_id":`...)
		dst = appendJSONString(dst, env.RuleID)
	}
	if env.Alert != nil {
		// Alerts are few: the evidence summary goes through encoding/json.
		b, err := json.Marshal(env.Alert)
		if err != nil {
			return dst, fmt.Errorf("feeds: encode event %s: alert: %w", env.ID, err)
		}
		dst = append(dst, `,"alert":`...)
		dst = append(dst, b...)
	}
	dst = append(dst, `,"raw":`...)
	if len(env.Raw) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, env.Raw...)
	}
	return append(dst, '}'), nil
}

// appendJSONString quotes s exactly as encoding/json does (HTML-safe: <, >
// and & escaped; invalid UTF-8 as U+FFFD; U+2028 and U+2029 escaped).
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// encodeEnvelope is appendEnvelope into a new slice.
func encodeEnvelope(env event.Envelope) ([]byte, error) {
	return appendEnvelope(make([]byte, 0, 256+len(env.Raw)), &env)
}

// pipeline publishes envelopes asynchronously (Nats-Msg-Id = envelope id) with
// at most max unacknowledged, and reports acknowledgements strictly in the order
// the records were added, so that the caller can checkpoint the stored prefix.
// It keeps at most max payload buffers and reuses them once acknowledged (the
// client may re-send a payload until then), and a few subjects.
type pipeline struct {
	js         jetstream.Publisher
	max        int
	ackTimeout time.Duration
	keepEnv    bool
	// q is a ring of the unacknowledged publishes: q[head], …, n of them.
	q       []pendingPub
	head, n int
	free    [][]byte // payload buffers ready for reuse
	subj    subjectCache
	timer   *time.Timer
	// onAck is called in order for every record added (skipped ones included).
	onAck func(tag int, stored bool, env *event.Envelope)
}

type pendingPub struct {
	fut jetstream.PubAckFuture // nil: skipped record, counts as done
	tag int
	env *event.Envelope
	buf []byte // payload, reused after the acknowledgement
}

// maxReusedPayload: larger payload buffers are left to the garbage collector.
const maxReusedPayload = 64 << 10

func newPipeline(js jetstream.Publisher, max int, keepEnv bool, onAck func(int, bool, *event.Envelope)) *pipeline {
	if max <= 0 {
		max = 512
	}
	return &pipeline{js: js, max: max, ackTimeout: 30 * time.Second, keepEnv: keepEnv, onAck: onAck, q: make([]pendingPub, max+1)}
}

// subjectCache remembers the subjects of the last few (tenant, source, kind):
// a blob's records share a handful.
type subjectCache struct {
	tenant, source string
	kinds          map[string]string
}

func (c *subjectCache) get(tenant string, source event.Source, kind string) string {
	if c.kinds == nil || c.tenant != tenant || c.source != string(source) || len(c.kinds) >= 256 {
		c.tenant, c.source, c.kinds = tenant, string(source), make(map[string]string, 8)
	}
	s, ok := c.kinds[kind]
	if !ok {
		s = bus.EventSubject(tenant, string(source), kind)
		c.kinds[kind] = s
	}
	return s
}

func (p *pipeline) push(pp pendingPub) {
	if p.n == len(p.q) {
		// Only skipped records can exceed max: grow the ring.
		nq := make([]pendingPub, 2*len(p.q))
		for i := range p.n {
			nq[i] = p.q[(p.head+i)%len(p.q)]
		}
		p.q, p.head = nq, 0
	}
	p.q[(p.head+p.n)%len(p.q)] = pp
	p.n++
}

// add publishes env; tag is the caller's position of the record.
func (p *pipeline) add(ctx context.Context, env event.Envelope, tag int) error {
	var buf []byte
	if k := len(p.free); k > 0 {
		buf, p.free = p.free[k-1], p.free[:k-1]
	}
	data, err := appendEnvelope(buf, &env)
	if err != nil {
		return err
	}
	subj := p.subj.get(env.TenantID, env.Source, env.Kind)
	for p.n >= p.max {
		if err := p.popOne(ctx); err != nil {
			return err
		}
	}
	for {
		fut, err := p.js.PublishAsync(subj, data, jetstream.WithMsgID(env.ID))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) && p.n > 0 {
			// The connection is shared: wait for one of ours and try again.
			if err := p.popOne(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("feeds: publish event %s: %w", env.ID, err)
		}
		pp := pendingPub{fut: fut, tag: tag, buf: data}
		if p.keepEnv {
			e := env
			pp.env = &e
		}
		p.push(pp)
		return nil
	}
}

// skip records a position that produced no event (a record that does not
// normalise), keeping acknowledgements in order.
func (p *pipeline) skip(tag int) {
	p.push(pendingPub{tag: tag})
}

func (p *pipeline) popOne(ctx context.Context) error {
	pp := p.q[p.head]
	stored := false
	if pp.fut != nil {
		var ack *jetstream.PubAck
		var err error
		select {
		case ack = <-pp.fut.Ok():
		case err = <-pp.fut.Err():
		default:
			if p.timer == nil {
				p.timer = time.NewTimer(p.ackTimeout)
			} else {
				p.timer.Reset(p.ackTimeout)
			}
			select {
			case ack = <-pp.fut.Ok():
			case err = <-pp.fut.Err():
			case <-ctx.Done():
				err = ctx.Err()
			case <-p.timer.C:
				err = fmt.Errorf("no acknowledgement after %s", p.ackTimeout)
			}
			p.timer.Stop()
		}
		if err != nil {
			return fmt.Errorf("feeds: publish event %s: %w", pp.fut.Msg().Header.Get(jetstream.MsgIDHeader), err)
		}
		stored = !ack.Duplicate
		if cap(pp.buf) <= maxReusedPayload {
			p.free = append(p.free, pp.buf[:0])
		}
	}
	p.q[p.head] = pendingPub{}
	p.head = (p.head + 1) % len(p.q)
	p.n--
	if p.onAck != nil {
		p.onAck(pp.tag, stored, pp.env)
	}
	return nil
}

// drain waits for every outstanding acknowledgement.
func (p *pipeline) drain(ctx context.Context) error {
	for p.n > 0 {
		if err := p.popOne(ctx); err != nil {
			return err
		}
	}
	return nil
}
