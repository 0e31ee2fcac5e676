package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
	"github.com/responder-sec/responder/internal/auditindex"
	"github.com/responder-sec/responder/internal/auditquery"
	"github.com/responder-sec/responder/internal/bus"
)

// auditQueryBound is the goal of the audit-query scenario: a filtered page of
// the timeline within 500 ms at p99 over a year of a busy tenant (issue 16).
const auditQueryBound = 500

// auditQueryPage is the console's page size.
const auditQueryPage = 50

// The synthetic tenant of the audit-query scenario: a year of records.
var (
	aqActions   = []string{"revoke_sessions", "disable_user", "block_ip", "reset_password", "delete_forward_rules", "remove_mailbox_forwarding", "purge_mail", "confirm_compromised", "enable_user", "unblock_ip"}
	aqPlaybooks = []string{"high-risk-user", "risky-signin-anonymous-ip", "risky-detection-anonymous-ip", "external-forwarding-rule", "external-mailbox-forwarding", "leaked-credentials", "mfa-fatigue", "mfa-fraud-report", "password-spray", "password-spray-success"}
	aqOutcomes  = []audit.Outcome{audit.Accepted, audit.Succeeded, audit.Failed, audit.PendingApproval, audit.Approved, audit.Refused, audit.Denied, audit.DryRun}
)

const (
	aqUsers      = 20000
	aqIPs        = 5000
	aqAnalysts   = 25
	aqSpan       = 365 * 24 * time.Hour
	aqNoPlaybook = -1
)

// aqRec is what the scenario keeps of each record to compute, by brute force,
// what each page must hold.
type aqRec struct {
	target   int32 // user index, or aqUsers + ip index
	request  int32
	actor    int16 // < len(aqPlaybooks): that playbook; else an analyst
	action   uint8
	outcome  uint8
	playbook int8
}

func aqTarget(t int32) (key, value string) {
	if t >= aqUsers {
		return "ip", fmt.Sprintf("198.51.%d.%d", (t-aqUsers)/250, (t-aqUsers)%250+1)
	}
	return "user", fmt.Sprintf("user%05d@contoso.com", t)
}

func aqActor(a int16) audit.Actor {
	if int(a) < len(aqPlaybooks) {
		return audit.Actor{Kind: "playbook", Name: aqPlaybooks[a]}
	}
	return audit.Actor{Kind: "analyst", Name: fmt.Sprintf("analyst%02d", int(a)-len(aqPlaybooks)), KeyID: "UABENCH"}
}

// aqGenerate makes n records: requests of two to four records each (accepted,
// then pending and approved, then succeeded or failed), 70% from playbooks,
// targets drawn from a Zipf distribution over 20,000 users (a few users are in
// many records, most in few) or, for IP actions, 5,000 addresses.
func aqGenerate(n int, rng *rand.Rand) []aqRec {
	zipf := rand.NewZipf(rng, 1.1, 8, aqUsers-1)
	recs := make([]aqRec, 0, n)
	for req := int32(0); len(recs) < n; req++ {
		action := uint8(rng.IntN(len(aqActions)))
		var target int32
		if a := aqActions[action]; a == "block_ip" || a == "unblock_ip" {
			target = aqUsers + int32(rng.IntN(aqIPs))
		} else {
			target = int32(zipf.Uint64())
		}
		actor, playbook := int16(len(aqPlaybooks)+rng.IntN(aqAnalysts)), int8(aqNoPlaybook)
		if rng.IntN(10) < 7 {
			p := rng.IntN(len(aqPlaybooks))
			actor, playbook = int16(p), int8(p)
		}
		steps := []uint8{0, 1} // accepted, succeeded
		switch k := rng.IntN(10); {
		case k == 0:
			steps = []uint8{0, 3, 4, 1} // accepted, pending, approved, succeeded
		case k < 3:
			steps = []uint8{0, 2} // failed
		case k == 3:
			steps = []uint8{5} // refused
		case k == 4:
			steps = []uint8{0, 3, 6} // denied
		}
		for _, o := range steps {
			if len(recs) == n {
				break
			}
			recs = append(recs, aqRec{target: target, request: req, actor: actor, action: action, outcome: o, playbook: playbook})
		}
	}
	return recs
}

func aqTime(i, n int) time.Time {
	t0 := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	return t0.Add(time.Duration(float64(aqSpan) * float64(i) / float64(n)))
}

func aqRecord(r aqRec, i, n int) audit.Record {
	k, v := aqTarget(r.target)
	rec := audit.Record{
		Time:      aqTime(i, n),
		TenantID:  benchTenant,
		RequestID: fmt.Sprintf("00000000-0000-4000-8000-%012d", r.request),
		Action:    aqActions[r.action],
		Target:    map[string]string{k: v},
		Actor:     aqActor(r.actor),
		Outcome:   aqOutcomes[r.outcome],
		Detail:    fmt.Sprintf("%s of %s: step %s recorded by the benchmark with some detail text, as the engine writes it", aqActions[r.action], v, aqOutcomes[r.outcome]),
		Reason:    "suspicious sign-in from an anonymising network",
		Ticket:    fmt.Sprintf("INC-%d", r.request%100000),
		EventID:   fmt.Sprintf("evt-%d", r.request),
		Attempts:  1,
	}
	if r.playbook != aqNoPlaybook {
		rec.Playbook = aqPlaybooks[r.playbook]
	}
	if r.outcome == 1 || r.outcome == 2 {
		rec.GraphRequestIDs = []string{uuid.NewString()}
	}
	return rec
}

// aqQuery is one sampled page query.
type aqQuery struct {
	kind string
	f    audit.Filter
	// match is the brute-force predicate over the kept records.
	match func(i int, r aqRec) bool
}

func aqSample(recs []aqRec, rng *rand.Rand) aqQuery {
	n := len(recs)
	r := recs[rng.IntN(n)]
	switch k := rng.IntN(8); k {
	case 0, 1:
		_, v := aqTarget(r.target)
		return aqQuery{"target", audit.Filter{Target: v}, func(_ int, x aqRec) bool { return x.target == r.target }}
	case 2:
		a := aqActor(r.actor)
		return aqQuery{"actor", audit.Filter{Actor: a.Name}, func(_ int, x aqRec) bool { return x.actor == r.actor }}
	case 3:
		return aqQuery{"action", audit.Filter{Action: aqActions[r.action]}, func(_ int, x aqRec) bool { return x.action == r.action }}
	case 4:
		return aqQuery{"request", audit.Filter{RequestID: fmt.Sprintf("00000000-0000-4000-8000-%012d", r.request)},
			func(_ int, x aqRec) bool { return x.request == r.request }}
	case 5:
		// A target within a month, as an investigation narrows it.
		_, v := aqTarget(r.target)
		from := rng.IntN(n)
		since, until := aqTime(from, n), aqTime(from, n).Add(30*24*time.Hour)
		return aqQuery{"target+time", audit.Filter{Target: v, Since: since, Until: until}, func(i int, x aqRec) bool {
			t := aqTime(i, n)
			return x.target == r.target && !t.Before(since) && t.Before(until)
		}}
	case 6:
		a := aqActor(r.actor)
		return aqQuery{"actor+outcome", audit.Filter{Actor: a.Name, Outcome: string(aqOutcomes[2])},
			func(_ int, x aqRec) bool { return x.actor == r.actor && x.outcome == 2 }}
	default:
		p := rng.IntN(len(aqPlaybooks))
		return aqQuery{"playbook+action", audit.Filter{Playbook: aqPlaybooks[p], Action: aqActions[r.action]},
			func(_ int, x aqRec) bool { return x.playbook == int8(p) && x.action == r.action }}
	}
}

// runAuditQuery writes N audit records (default 1,000,000) with the engine's
// writer (signed, chained; appended in pipelined batches), lets the engine's
// indexer index them, and then asks the engine's query service, as a
// reviewer over NATS, for filtered pages of the timeline newest first (by
// target, actor, action, request, and with time, outcome and playbook): the
// page time p50 and p99, and a check that each page holds exactly the
// records a scan of the generated trail selects.
func runAuditQuery(ctx context.Context, o Options) (Result, error) {
	n := o.N
	if n <= 0 {
		n = 1_000_000
	}
	dir, cleanup, err := o.dir()
	if err != nil {
		return Result{}, err
	}
	defer cleanup()
	log := o.logger()
	reviewerKey, err := nkeys.CreateUser()
	if err != nil {
		return Result{}, fmt.Errorf("bench: reviewer key: %w", err)
	}
	reviewerPub, _ := reviewerKey.PublicKey()
	b, err := bus.Open(ctx, bus.Config{StoreDir: dir, Port: -1, Logger: log, Name: "bench-audit-query",
		Tenant: benchTenant, Identities: []bus.Identity{{PublicKey: reviewerPub, Reviewer: true}}})
	if err != nil {
		return Result{}, err
	}
	defer b.Close()
	engineKey, err := nkeys.CreateUser()
	if err != nil {
		return Result{}, fmt.Errorf("bench: engine key: %w", err)
	}
	w := audit.NewWriter(b.JS, audit.WriterOptions{Logger: log, Signer: engineKey})

	rng := rand.New(rand.NewPCG(16, 2026))
	recs := aqGenerate(n, rng)
	o.progressf("audit-query: writing %d records", n)
	start := time.Now()
	const batch = 2000
	var last uint64
	consecutive := true
	for i := 0; i < n; i += batch {
		part := make([]audit.Record, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			part = append(part, aqRecord(recs[j], j, n))
		}
		stored, err := w.AppendBatch(ctx, part)
		if err != nil {
			return Result{}, fmt.Errorf("bench: write records: %w", err)
		}
		for j, r := range stored {
			consecutive = consecutive && r.Seq == uint64(i+j+1)
		}
		last = stored[len(stored)-1].Seq
		if (i/batch)%50 == 49 {
			o.progressf("audit-query: %d records written", i+batch)
		}
	}
	writeTime := time.Since(start)

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	marks := make(chan uint64, 1)
	ix, err := auditindex.NewIndexer(auditindex.IndexerConfig{Tenant: benchTenant, JS: b.JS, Logger: log,
		Flushed: func(m uint64) {
			select {
			case <-marks:
			default:
			}
			marks <- m
		}})
	if err != nil {
		return Result{}, err
	}
	seen, err := analyst.EnsureReplayBucket(ctx, b.JS, 1, 0)
	if err != nil {
		return Result{}, err
	}
	dirctory, err := analyst.NewDirectory(analyst.Analyst{Name: "reviewer", PublicKey: reviewerPub, Role: analyst.RoleReviewer})
	if err != nil {
		return Result{}, err
	}
	verifier, err := analyst.NewVerifier(analyst.VerifierConfig{Directory: func() *analyst.Directory { return dirctory }, Seen: seen})
	if err != nil {
		return Result{}, err
	}
	svc, err := auditquery.New(auditquery.Config{Tenant: benchTenant, Conn: b.NC, JS: b.JS, Verifier: verifier, Audit: w, Logger: log})
	if err != nil {
		return Result{}, err
	}
	errs := make(chan error, 2)
	go func() { errs <- ix.Run(runCtx) }()
	go func() { errs <- svc.Run(runCtx) }()
	defer func() {
		stop()
		<-errs
		<-errs
	}()
	o.progressf("audit-query: indexing")
	start = time.Now()
	var mark uint64
	for mark < last {
		select {
		case mark = <-marks:
		case err := <-errs:
			return Result{}, fmt.Errorf("bench: indexer or query service stopped: %v", err)
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	indexTime := time.Since(start)

	copts, err := bus.ClientAuth{Key: reviewerKey}.Options()
	if err != nil {
		return Result{}, err
	}
	nc, err := nats.Connect(b.ClientURL(), append(copts, nats.Name("bench-reviewer"))...)
	if err != nil {
		return Result{}, fmt.Errorf("bench: reviewer connection: %w", err)
	}
	defer nc.Close()
	client := auditquery.Client{NC: nc, Tenant: benchTenant, Key: reviewerKey, Name: "reviewer"}
	reader := auditindex.NewReader(b.NC, b.JS, benchTenant)
	var readerTimes []time.Duration
	var maxBuckets, maxFetched int

	const queries = 200
	o.progressf("audit-query: %d filtered queries, first and second pages of %d newest first", queries, auditQueryPage)
	var (
		times             []time.Duration
		pages, wrong      int
		firstWrong        string
		items, emptyPages int
		kinds             = map[string]int{}
		byKind            = map[string][]time.Duration{}
	)
	for q := range queries {
		qs := aqSample(recs, rng)
		kinds[qs.kind]++
		var cursor uint64
		for pageNo := 0; pageNo < 2; pageNo++ {
			t0 := time.Now()
			rep, err := client.Page(ctx, auditquery.FromAudit(qs.f), auditquery.OrderNewest, cursor, auditQueryPage)
			el := time.Since(t0)
			if err != nil {
				return Result{}, fmt.Errorf("bench: query %d (%s): %w", q, qs.kind, err)
			}
			times = append(times, el)
			byKind[qs.kind] = append(byKind[qs.kind], el)
			pages++
			// The same page read by the engine's index reader alone (no
			// signature, replay check or NATS request): the service's share.
			t0 = time.Now()
			rp, err := reader.Page(ctx, auditindex.Query{Filter: qs.f, Newest: true, Cursor: cursor, Limit: auditQueryPage})
			if err != nil {
				return Result{}, fmt.Errorf("bench: reader: %w", err)
			}
			readerTimes = append(readerTimes, time.Since(t0))
			maxBuckets, maxFetched = max(maxBuckets, rp.Buckets), max(maxFetched, rp.Fetched)
			if o.Progress != nil && time.Since(t0) > 200*time.Millisecond {
				o.progressf("audit-query: slow page %s %+v: %v (list %v, chunks %v in %d buckets, %d records %v)",
					qs.kind, qs.f, time.Since(t0).Round(time.Millisecond), rp.ListTime.Round(time.Millisecond),
					rp.ChunkTime.Round(time.Millisecond), rp.Buckets, rp.Fetched, rp.FetchTime.Round(time.Millisecond))
			}
			// What the page must hold: the newest matches before the cursor.
			var want []uint64
			for i := len(recs) - 1; i >= 0 && len(want) < auditQueryPage; i-- {
				seq := uint64(i + 1)
				if (cursor == 0 || seq < cursor) && qs.match(i, recs[i]) {
					want = append(want, seq)
				}
			}
			got := make([]uint64, 0, len(rep.Items))
			ok := true
			for _, it := range rep.Items {
				var r audit.Record
				if json.Unmarshal(it.Data, &r) != nil || r.Seq != it.Seq || !qs.f.Match(r) {
					ok = false
				}
				got = append(got, it.Seq)
			}
			if !ok || !slices.Equal(got, want) {
				wrong++
				if firstWrong == "" {
					firstWrong = fmt.Sprintf("%s %+v page %d: got %d records, want %d", qs.kind, qs.f, pageNo+1, len(got), len(want))
				}
			}
			items += len(got)
			if len(got) == 0 {
				emptyPages++
			}
			if !rep.More || len(rep.Items) == 0 {
				break
			}
			cursor = rep.NextSeq
		}
	}
	slices.Sort(times)
	p50, p99 := percentile(times, 50), percentile(times, 99)
	storeMB := 0.0
	for _, name := range []string{bus.StreamAudit, bus.StreamAuditIndex} {
		if s, err := b.JS.Stream(ctx, name); err == nil {
			storeMB += float64(s.CachedInfo().State.Bytes) / (1 << 20)
		}
	}
	slices.Sort(readerTimes)
	kindP99 := map[string]float64{}
	for k, ts := range byKind {
		slices.Sort(ts)
		kindP99[k] = ms(percentile(ts, 99))
	}
	res := Result{
		Measured: ms(p99), Unit: "ms (p99 page)", Bound: auditQueryBound, N: n,
		BoundNote: "a filtered page of the timeline in < 500 ms over a year of a busy tenant (issue 16)",
		Goal:      Goal{AtMost, 1},
		Extra: map[string]any{
			"p50_ms":         ms(p50),
			"p99_ms":         ms(p99),
			"max_ms":         ms(times[len(times)-1]),
			"pages":          pages,
			"page_size":      auditQueryPage,
			"records_paged":  items,
			"empty_pages":    emptyPages,
			"query_kinds":    kinds,
			"p99_ms_by_kind": kindP99,
			"reader_p50_ms":  ms(percentile(readerTimes, 50)),
			"reader_p99_ms":  ms(percentile(readerTimes, 99)),
			// The most index buckets and records one page read.
			"max_page_buckets": maxBuckets,
			"max_page_fetched": maxFetched,
			"write_s":          writeTime.Seconds(),
			"index_s":          indexTime.Seconds(),
			"store_mb":         storeMB,
		},
	}
	res.AddCheck("every record written, in order", consecutive && last == uint64(n),
		fmt.Sprintf("%d records, last seq %d", n, last))
	res.AddCheck("the index covers the trail", mark >= last, fmt.Sprintf("index mark %d, last record %d", mark, last))
	detail := fmt.Sprintf("%d pages, %d wrong", pages, wrong)
	if firstWrong != "" {
		detail += "; first: " + firstWrong
	}
	res.AddCheck("each page holds exactly the matching records", wrong == 0, detail)
	return res, nil
}
