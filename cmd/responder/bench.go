package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/responder-sec/responder/internal/bench"
	"github.com/responder-sec/responder/internal/bench/ingest"
)

// serveBenchChild runs this process as the NATS server and emulated tenant of
// `bench ingest` when that benchmark started it (see ingest.ServeChild), so
// that their memory is measured apart from the poller's.
func serveBenchChild() (served bool, code int) { return ingest.ServeChild() }

// benchCmd runs one benchmark scenario on loopback against the emulated tenant.
type benchCmd struct {
	Scenario    string `arg:"" help:"Scenario: bus, latency, contain, purge, block-ip, isolate, indicators, ingest, match, audit-query."`
	JSON        bool   `name:"json" help:"Print one JSON object (scenario, measured, unit, bound, ratio, goal, met, n, concurrency, checks, and the scenario's other figures)."`
	N           int    `name:"n" help:"Size of the run (requests, users or samples; 0 = the scenario's default)."`
	Concurrency int    `help:"Action worker requests in flight (0 = the engine's default)."`
	DataDir     string `help:"Embedded NATS store (default: a fresh temporary directory, removed afterwards)."`
	Verbose     bool   `short:"v" help:"Show progress and the engine's warnings."`
	CPUProfile  string `name:"cpuprofile" help:"Write a CPU profile of the whole run to this file (go tool pprof)."`
}

func (c *benchCmd) Run(e *env) error {
	o := bench.Options{N: c.N, Concurrency: c.Concurrency, Dir: c.DataDir}
	if c.Verbose {
		o.Progress = e.stderr
		o.Logger = newLogger(e.stderr, "warn", "text")
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	scenarios := bench.Scenarios()
	res, err := bench.Run(e.ctx, scenarios, strings.ToLower(c.Scenario), o)
	if err != nil {
		return err
	}
	if c.JSON {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(e.stdout, string(b))
		return err
	}
	return res.WriteText(e.stdout)
}
