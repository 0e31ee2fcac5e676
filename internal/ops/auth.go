package ops

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

// TokenFile is the name of the /api/audit bearer token in the data directory.
const TokenFile = "ops-token"

// TokenPath is where EnsureToken keeps the token in dataDir.
func TokenPath(dataDir string) string { return filepath.Join(dataDir, TokenFile) }

// EnsureToken returns the bearer token kept in dataDir, creating it (32 random
// bytes, base64url, mode 0600) when there is none. Like key files, a token
// file that group or others may read is refused. created says a new one was
// written.
func EnsureToken(dataDir string) (token string, created bool, err error) {
	p := TokenPath(dataDir)
	tok, err := ReadTokenFile(p)
	if err == nil {
		return tok, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", false, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("ops: token: %w", err)
	}
	tok = base64.RawURLEncoding.EncodeToString(b[:])
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("ops: token: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // another process made it first
			tok, err := ReadTokenFile(p)
			return tok, false, err
		}
		return "", false, fmt.Errorf("ops: token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("ops: token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("ops: token: %w", err)
	}
	return tok, true, nil
}

// ReadTokenFile reads a token file, refusing one that group or others may
// read (on Unix) or that is too short to be a secret. The error never holds
// the token.
func ReadTokenFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("ops: token file: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("ops: token file %s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("ops: token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if err := CheckToken(tok); err != nil {
		return "", fmt.Errorf("ops: token file %s: %w", path, err)
	}
	return tok, nil
}

// MinTokenLen is the shortest configured token accepted.
const MinTokenLen = 24

// CheckToken refuses a token too short to resist guessing or holding spaces.
func CheckToken(tok string) error {
	if len(tok) < MinTokenLen {
		return fmt.Errorf("the operations token must be at least %d characters", MinTokenLen)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return errors.New("the operations token must not contain white space")
	}
	return nil
}

// Refusal is one refused /api/audit request, as the engine audits it. Host
// and Remote are as the client sent them (bounded); the token is never here.
type Refusal struct {
	Status int
	Reason string
	Remote string
	Host   string
}

// hostAllowed is the DNS-rebinding check: a browser tricked into reaching the
// loopback server through an attacker's name (evil.example resolving to
// 127.0.0.1) sends that name in Host. Accepted are IP literals, localhost, and
// the names configured in hosts, each with any port.
func hostAllowed(host string, hosts []string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if h == "" {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	for _, a := range hosts {
		if ah, _, err := net.SplitHostPort(a); err == nil {
			a = ah
		}
		if strings.EqualFold(h, a) {
			return true
		}
	}
	return false
}

// authorise decides whether r may read /api/audit: the Host header first
// (421), then a verified client certificate (mutual TLS) or the bearer token
// (401 without credentials, 403 with wrong ones). A pure function of the
// request and the configuration.
func authorise(r *http.Request, token string, hosts []string) (status int, reason string) {
	if !hostAllowed(r.Host, hosts) {
		return http.StatusMisdirectedRequest, "host header not served here (DNS rebinding?)"
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return 0, ""
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return http.StatusUnauthorized, "no credentials"
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return http.StatusUnauthorized, "no bearer token"
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(token)) != 1 {
		return http.StatusForbidden, "wrong bearer token"
	}
	return 0, ""
}

// guardAudit wraps the /api/audit handler with authorise; a refusal is
// answered with its status and no record, and reported to Refused.
func (s *Server) guardAudit(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		status, reason := authorise(r, s.cfg.Token, s.cfg.Hosts)
		if status == 0 {
			next(w, r)
			return
		}
		ref := Refusal{Status: status, Reason: reason, Remote: bound(r.RemoteAddr), Host: bound(r.Host)}
		s.log.Warn("api/audit refused", "status", status, "reason", reason, "remote", ref.Remote, "host", ref.Host)
		if s.cfg.Refused != nil {
			if tell, dropped := s.tellRefusal(); tell {
				if dropped > 0 {
					ref.Reason += fmt.Sprintf(" (and %d more refused, not audited one by one)", dropped)
				}
				// Audited past the response: the request's context may end first.
				s.cfg.Refused(context.WithoutCancel(r.Context()), ref)
			}
		}
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="responder"`)
		}
		http.Error(w, http.StatusText(status), status)
	}
}

func bound(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}

// tellRefusal says whether this refusal is told (at most RefusalsPerMinute a
// minute) and how many were not told since the last one that was.
func (s *Server) tellRefusal() (bool, int) {
	s.refMu.Lock()
	defer s.refMu.Unlock()
	now := s.cfg.Now()
	if now.Sub(s.refWindow) >= time.Minute || now.Before(s.refWindow) {
		s.refWindow, s.refTold = now, 0
	}
	if s.refTold >= RefusalsPerMinute {
		s.refDropped++
		return false, 0
	}
	s.refTold++
	d := s.refDropped
	s.refDropped = 0
	return true, d
}

// Recorder appends to the audit trail (audit.Writer, the engine's recorder).
type Recorder interface {
	Append(ctx context.Context, r audit.Record) (audit.Record, error)
}

// AuditAction names refused /api/audit requests in the audit trail.
const AuditAction = "ops_api_audit"

// AuditRefusals returns a Config.Refused that records each refusal as a
// rejected audit record of tenant (actor unknown: the remote address as the
// client's name). A failed append is logged.
func AuditRefusals(rec Recorder, tenant string, log *slog.Logger) func(context.Context, Refusal) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, r Refusal) {
		_, err := rec.Append(ctx, audit.Record{TenantID: tenant, Action: AuditAction, Outcome: audit.Rejected,
			Actor:     audit.Actor{Kind: "unknown", Name: r.Remote},
			ErrorCode: http.StatusText(r.Status),
			Detail:    fmt.Sprintf("GET /api/audit refused (%d): %s; host %q", r.Status, r.Reason, r.Host)})
		if err != nil {
			log.Error("could not audit a refused /api/audit request", "err", err)
		}
	}
}
