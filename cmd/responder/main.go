// Command responder is Responder's one binary. It parses flags and environment and
// hands over to the packages under internal/; signals are handled only here.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
)

// cli is the command tree. Every setting has a flag and an environment variable.
type cli struct {
	LogLevel  string `help:"Log level." enum:"debug,info,warn,error" default:"info" env:"RESPONDER_LOG_LEVEL"`
	LogFormat string `help:"Log format." enum:"text,json" default:"text" env:"RESPONDER_LOG_FORMAT"`

	Demo     demoCmd     `cmd:"" help:"Run the whole engine against a built-in emulated tenant and contain a risky user (--scenario NAME|all plays the other playbooks' attacks)."`
	Serve    serveCmd    `cmd:"" help:"Run the engine as a long-lived service."`
	Act      actCmd      `cmd:"" help:"Ask a running engine to carry out an action, and wait for the outcome."`
	Audit    auditCmd    `cmd:"" help:"Read and verify the audit trail."`
	Playbook playbookCmd `cmd:"" help:"Validate and test playbooks offline."`
	Sim      simCmd      `cmd:"" help:"Run the emulated Microsoft 365 tenant standalone on loopback."`
	Bench    benchCmd    `cmd:"" help:"Run a benchmark scenario against the emulated tenant."`
	Keys     keysCmd     `cmd:"" help:"Make analyst and engine keys."`
	Pending  pendingCmd  `cmd:"" help:"List requests waiting for approval."`
	Approve  approveCmd  `cmd:"" help:"Approve a pending request (never your own)."`
	Deny     denyCmd     `cmd:"" help:"Deny a pending request."`
	Doctor   doctorCmd   `cmd:"" help:"Check the app's Microsoft permissions for every feed and action."`
	Feeds    feedsCmd    `cmd:"" help:"Feed status and backfill."`
}

// env is what every command gets: the signal-aware context and the streams.
type env struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
}

func main() {
	if served, code := serveBenchChild(); served {
		os.Exit(code) // this process was the NATS server of `bench ingest`
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ignoreEmptyEnv() // an empty RESPONDER_ variable means unset (envempty.go)
	c := newCLI()
	parser, err := kong.New(c,
		kong.Name("responder"),
		kong.Description("Security-response action engine for Microsoft 365."),
		kong.UsageOnError(),
		kong.Writers(stdout, stderr),
		kongVars(defaultDataDir()),
	)
	if err != nil {
		fmt.Fprintln(stderr, "responder:", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintln(stderr, "responder:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{ctx: ctx, stdout: stdout, stderr: stderr, log: newLogger(stderr, c.LogLevel, c.LogFormat)}
	if err := kctx.Run(e, kctx); err != nil {
		fmt.Fprintln(stderr, "responder:", err)
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) { // kong wraps the command's error
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
