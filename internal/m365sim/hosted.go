package m365sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Serving the emulator to other machines of a private network (the compose
// sandbox, docker-compose.sandbox.yml): engines in other containers reach it
// by a host name (Options.Hosts) and trust a CA kept in a directory
// (Options.TLSDir) that outlives restarts of the emulator, so an engine that
// loaded the CA once keeps trusting the emulator after either restarts.

// Files of Options.TLSDir.
const (
	CAFileName    = "ca.pem"     // the CA certificate clients trust (SSL_CERT_FILE)
	CAKeyFileName = "ca-key.pem" // its private key, mode 0600
)

// EnsureCA makes the CA of dir (ca.pem, ca-key.pem) when it does not hold one
// yet, and returns the certificate's PEM. An existing CA is kept.
func EnsureCA(dir string) ([]byte, error) {
	_, _, caPEM, err := loadOrMakeCA(dir)
	return caPEM, err
}

func loadOrMakeCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	certPath, keyPath := filepath.Join(dir, CAFileName), filepath.Join(dir, CAKeyFileName)
	caPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		cb, _ := pem.Decode(caPEM)
		kb, _ := pem.Decode(keyPEM)
		if cb == nil || kb == nil {
			return nil, nil, nil, fmt.Errorf("m365sim: %s or %s is not PEM", certPath, keyPath)
		}
		ca, err := x509.ParseCertificate(cb.Bytes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("m365sim: CA %s: %w", certPath, err)
		}
		key, err := x509.ParseECPrivateKey(kb.Bytes)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("m365sim: CA key %s: %w", keyPath, err)
		}
		return ca, key, caPEM, nil
	}
	if !errors.Is(cerr, fs.ErrNotExist) && cerr != nil {
		return nil, nil, nil, fmt.Errorf("m365sim: CA: %w", cerr)
	}
	if !errors.Is(kerr, fs.ErrNotExist) && kerr != nil {
		return nil, nil, nil, fmt.Errorf("m365sim: CA key: %w", kerr)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("m365sim: TLS directory: %w", err)
	}
	ca, key, caPEM, err := newCA()
	if err != nil {
		return nil, nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("m365sim: CA key: %w", err)
	}
	// The key first: a reader that finds ca.pem finds its key too.
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := writeNew(certPath, caPEM, 0o644); err != nil {
		return nil, nil, nil, err
	}
	return ca, key, caPEM, nil
}

// newCA makes a CA in memory.
func newCA() (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("m365sim: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "m365sim local CA", Organization: []string{"Responder sandbox"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("m365sim: CA cert: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("m365sim: CA parse: %w", err)
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// writeNew writes through a temporary file renamed into place, so a reader
// never sees half a file.
func writeNew(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("m365sim: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("m365sim: write %s: %w", path, err)
	}
	return nil
}

// makeHostedCerts issues the server certificate for loopback, the listen
// address and hosts, signed by the CA of dir (made when missing), or by a
// fresh CA when dir is empty.
func makeHostedCerts(dir string, hosts []string, addr net.Addr) (tls.Certificate, []byte, error) {
	if dir == "" && len(hosts) == 0 {
		return makeCerts(addr)
	}
	var (
		ca    *x509.Certificate
		caKey *ecdsa.PrivateKey
		caPEM []byte
		err   error
	)
	if dir != "" {
		ca, caKey, caPEM, err = loadOrMakeCA(dir)
	} else {
		ca, caKey, caPEM, err = newCA()
	}
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("m365sim: server key: %w", err)
	}
	now := time.Now()
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else if h != "" {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && !ta.IP.IsLoopback() {
		leaf.IPAddresses = append(leaf.IPAddresses, ta.IP)
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("m365sim: server cert: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}, caPEM, nil
}

// baseURL is the origin the tenant's URLs use: the first of hosts when set
// (with the listening port), else the listen address.
func baseURL(hosts []string, addr net.Addr) string {
	if len(hosts) > 0 && hosts[0] != "" {
		if ta, ok := addr.(*net.TCPAddr); ok {
			return fmt.Sprintf("https://%s", net.JoinHostPort(hosts[0], fmt.Sprint(ta.Port)))
		}
	}
	return "https://" + addr.String()
}

// hostedOrigin reports whether res (a token scope's resource, without
// /.default) is the origin of one of the names in Options.Hosts. Responder
// scopes its tokens for an API on a host that is not Microsoft's public cloud
// to that host's origin (m365.Audience, the national clouds' rule: "the
// token's audience is the service root of the cloud's Graph endpoint",
// https://learn.microsoft.com/en-us/graph/deployments#app-registration-and-token-service-root-endpoints).
// Every API of a hosted emulator shares its origin, so a token for it is good
// for each of them, as a token for a national cloud's host is there.
func (t *Tenant) hostedOrigin(res string) bool {
	if len(t.opts.Hosts) == 0 {
		return false
	}
	ta, ok := t.ln.Addr().(*net.TCPAddr)
	if !ok {
		return false
	}
	res = strings.TrimRight(strings.ToLower(res), "/")
	for _, h := range t.opts.Hosts {
		if h != "" && res == "https://"+strings.ToLower(net.JoinHostPort(h, fmt.Sprint(ta.Port))) {
			return true
		}
	}
	return false
}
