package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditquery"
)

// auditTrust are the flags that say whose signatures the audit trail may carry.
type auditTrust struct {
	Trust    []string `help:"A trusted engine public key (repeatable). Default: the engines of --analysts and the data directory's engine key." placeholder:"KEY"`
	Analysts string   `help:"Analysts file whose engines are trusted signers of the trail." env:"RESPONDER_ANALYSTS" type:"path"`
}

// trusted resolves the trusted engine keys: --trust, the analysts file's
// engines, and the public half of the data directory's engine key.
func (t auditTrust) trusted(dataDir string) (audit.Trusted, error) {
	keys := append([]string(nil), t.Trust...)
	if t.Analysts != "" {
		d, err := analyst.LoadFile(t.Analysts)
		if err != nil {
			return audit.Trusted{}, fmt.Errorf("--analysts: %w", err)
		}
		for _, a := range d.All() {
			if a.Role == analyst.RoleEngine {
				keys = append(keys, a.PublicKey)
			}
		}
	}
	if kp, err := analyst.ReadKeyFile(analyst.EngineKeyPath(dataDir)); err == nil {
		if pub, err := kp.PublicKey(); err == nil {
			keys = append(keys, pub)
		}
		kp.Wipe()
	}
	tr, err := audit.NewTrusted(keys...)
	if err != nil {
		return audit.Trusted{}, err
	}
	if tr.Empty() {
		return audit.Trusted{}, errors.New("no trusted engine key: give --trust KEY, --analysts FILE, or run where the engine's data directory is (--data-dir)")
	}
	return tr, nil
}

type auditVerifyCmd struct {
	auditAccess
	auditTrust
	File       string   `help:"Verify an exported JSONL file offline instead of the stream." type:"existingfile"`
	Partial    bool     `help:"The file is a filtered export: check each record and the links between consecutive ones, counting gaps."`
	ExpectHead []string `name:"expect-head" help:"A head kept elsewhere (HASH, or SEQ:HASH, as an earlier verify printed it) that the chain must still contain (repeatable)." placeholder:"HASH"`
	ChainOnly  bool     `name:"chain-only" help:"Check the hash chain only, not the engine signatures nor the kept heads. It cannot see appended or cut-off records."`
	Unsigned   bool     `name:"allow-unsigned-prefix" help:"Accept unsigned records before the first signed one (a trail begun before records were signed); every record after it must be signed."`
}

type verifyError struct{ msg string }

func (e *verifyError) Error() string { return e.msg }
func (e *verifyError) ExitCode() int { return 4 }

func broken(format string, a ...any) error {
	return &verifyError{msg: "audit chain BROKEN: " + fmt.Sprintf(format, a...)}
}

func (c *auditVerifyCmd) Run(e *env) error {
	var opts audit.VerifyOptions
	if !c.ChainOnly {
		tr, err := c.trusted(c.DataDir)
		if err != nil {
			return err
		}
		opts.Trusted, opts.UnsignedPrefix = tr, c.Unsigned
		for _, s := range c.ExpectHead {
			a, err := audit.ParseAnchor(s, "--expect-head "+s)
			if err != nil {
				return fmt.Errorf("--expect-head: %w", err)
			}
			opts.Anchors = append(opts.Anchors, a)
		}
	}
	var (
		res audit.VerifyResult
		err error
	)
	if c.File != "" {
		res, err = c.verifyFile(opts)
	} else {
		res, err = c.verifyLive(e, opts)
	}
	if err != nil {
		return err
	}
	if !res.OK {
		where := ""
		switch {
		case res.FirstBad != nil:
			where = fmt.Sprintf(" at record #%d (%s)", res.FirstBad.Seq, res.FirstBad.ID)
		case res.BadLine > 0:
			where = fmt.Sprintf(" at line %d", res.BadLine)
		case res.BadSeq > 0:
			where = fmt.Sprintf(" at seq %d", res.BadSeq)
		}
		return &verifyError{msg: fmt.Sprintf("audit chain BROKEN%s: %s (%d records read)", where, res.Reason, res.Records)}
	}
	fmt.Fprintf(e.stdout, "audit chain verified: %d records (seq %d..%d), last hash %s\n", res.Records, res.FirstSeq, res.LastSeq, res.LastHash)
	if !c.ChainOnly {
		fmt.Fprintf(e.stdout, "signatures: %d records signed by trusted engine keys; %d kept heads found in the chain\n", res.Signed, res.Anchors)
		if res.Unsigned > 0 {
			fmt.Fprintf(e.stdout, "note: %d records from before signing were accepted unsigned (--allow-unsigned-prefix)\n", res.Unsigned)
		}
	} else {
		fmt.Fprintln(e.stdout, "note: --chain-only: engine signatures and kept heads were not checked")
	}
	if res.Head != nil {
		fmt.Fprintf(e.stdout, "export head: seq %d signed by %s at %s\n", res.Head.Seq, res.Head.Signer, res.Head.Time.Format("2006-01-02T15:04:05Z07:00"))
	}
	if res.FirstSeq > 1 {
		fmt.Fprintf(e.stdout, "note: the trail starts at seq %d: older records were removed by retention\n", res.FirstSeq)
	}
	if res.Missing > 0 {
		fmt.Fprintf(e.stdout, "note: %d records not in this export (filtered)\n", res.Missing)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(e.stdout, "note: %s\n", n)
	}
	if res.LastSeq > 0 {
		fmt.Fprintf(e.stdout, "keep this head somewhere the engine cannot write, and pass it later as --expect-head %d:%s\n", res.LastSeq, res.LastHash)
	}
	return nil
}

func (c *auditVerifyCmd) verifyFile(opts audit.VerifyOptions) (audit.VerifyResult, error) {
	f, err := os.Open(c.File)
	if err != nil {
		return audit.VerifyResult{}, err
	}
	defer f.Close()
	switch {
	case c.Partial:
		return audit.VerifyPartial(f)
	case c.ChainOnly:
		return audit.VerifyReader(f)
	}
	return audit.VerifyExport(f, opts)
}

// verifyLive checks the trail as the engine's query service delivers it,
// against the kept heads: the data directory's file (when this machine has
// it), the KV head the engine reports, and --expect-head.
func (c *auditVerifyCmd) verifyLive(e *env, opts audit.VerifyOptions) (audit.VerifyResult, error) {
	src, err := openAuditSource(c.auditAccess)
	if err != nil {
		return audit.VerifyResult{}, err
	}
	defer src.Close()
	if c.ChainOnly {
		return verifyChainOnly(e, src)
	}
	info, err := src.client.Do(e.ctx, auditquery.Query{Op: auditquery.OpList, Limit: 1})
	if err != nil {
		return audit.VerifyResult{}, err
	}
	if h, ok, err := audit.ReadHeadFile(audit.HeadPath(c.DataDir)); err != nil {
		return audit.VerifyResult{}, broken("the kept head file: %v", err)
	} else if ok {
		if err := opts.Trusted.VerifyHead(h); err != nil {
			return audit.VerifyResult{}, broken("the kept head file %s: %v", audit.HeadPath(c.DataDir), err)
		}
		opts.Anchors = append(opts.Anchors, audit.AnchorFromHead(h, "the head file "+audit.HeadPath(c.DataDir)))
	}
	if len(info.Head) > 0 {
		h, err := audit.ParseHead(info.Head)
		if err != nil {
			return audit.VerifyResult{}, broken("the kept head in KV: %v", err)
		}
		if err := opts.Trusted.VerifyHead(h); err != nil {
			return audit.VerifyResult{}, broken("the kept head in KV (%s): someone with bus access wrote it: %v", audit.HeadKey, err)
		}
		opts.Anchors = append(opts.Anchors, audit.AnchorFromHead(h, "the KV head"))
	}
	k, err := audit.NewChecker(opts, audit.Limits{MaxAge: info.MaxAge})
	if err != nil {
		return audit.VerifyResult{}, err
	}
	_, _, err = src.each(e.ctx, audit.Filter{}, func(seq uint64, subject string, data []byte) error {
		if !k.Add(audit.Stored{Seq: seq, Subject: subject, Data: data}) {
			return errStopVerify
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopVerify) {
		return audit.VerifyResult{}, err
	}
	return k.Result(), nil
}

var errStopVerify = errors.New("stop")

// verifyChainOnly is the hash-chain check alone (trails from before signing).
func verifyChainOnly(e *env, src *auditSource) (audit.VerifyResult, error) {
	var buf bytes.Buffer
	first, _, err := src.each(e.ctx, audit.Filter{}, func(_ uint64, _ string, data []byte) error {
		buf.Write(data)
		return buf.WriteByte('\n')
	})
	if err != nil {
		return audit.VerifyResult{}, err
	}
	if first > 1 {
		return audit.VerifyPartial(&buf)
	}
	return audit.VerifyReader(&buf)
}

type auditExportCmd struct {
	auditAccess
	auditTrust
	auditFilter
	Format string `help:"Output format." enum:"jsonl,csv" default:"jsonl"`
	Output string `short:"o" help:"Write to this file instead of stdout."`
}

// Run exports the records up to the chain's kept head, and in JSONL ends with
// that head, signed by the engine, so that `audit verify --file` can tell an
// export cut short.
func (c *auditExportCmd) Run(e *env) error {
	f, err := c.filter()
	if err != nil {
		return err
	}
	src, err := openAuditSource(c.auditAccess)
	if err != nil {
		return err
	}
	defer src.Close()
	info, err := src.client.Do(e.ctx, auditquery.Query{Op: auditquery.OpList, Limit: 1})
	if err != nil {
		return err
	}
	var head *audit.Head
	if len(info.Head) > 0 {
		h, err := audit.ParseHead(info.Head)
		if err != nil {
			return fmt.Errorf("the engine's kept head: %w", err)
		}
		if tr, terr := c.trusted(c.DataDir); terr == nil {
			if err := tr.VerifyHead(h); err != nil {
				return broken("the kept head in KV (%s) is not an engine's: %v", audit.HeadKey, err)
			}
		}
		head = &h
	} else if info.LastSeq > 0 && c.Format != audit.FormatCSV {
		return errors.New("the engine keeps no signed head of the audit chain yet (it writes one after its next record): the export could not be verified")
	}
	w := e.stdout
	if c.Output != "" {
		file, err := os.OpenFile(c.Output, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer file.Close()
		w = file
	}
	x, err := audit.NewExporter(w, f, c.Format, head)
	if err != nil {
		return err
	}
	_, _, err = src.each(e.ctx, f, func(seq uint64, subject string, data []byte) error {
		return x.Add(audit.Stored{Seq: seq, Subject: subject, Data: data})
	})
	if err := errors.Join(err, x.Close()); err != nil {
		return err
	}
	if n := x.Left(); n > 0 && head != nil {
		fmt.Fprintf(e.stderr, "export ends at seq %d, the engine's latest signed head; %d later messages are left to the next export\n", head.Seq, n)
	}
	return nil
}
