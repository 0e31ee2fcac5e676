package main

import (
	"errors"

	"github.com/responder-sec/responder/internal/actions"
)

// The Defender for Endpoint `act` verbs.

type actDeviceCmd struct {
	actCommon
	Device    string `help:"Defender machine id, Entra device id or computer DNS name." required:""`
	Selective bool   `help:"isolate-device only: selective isolation (Outlook, Teams and Skype keep working; Windows 10 1709+ and Windows 11)."`
}

type actIsolateCmd struct{ actDeviceCmd }

func (c *actIsolateCmd) Run(e *env) error {
	var p map[string]any
	if c.Selective {
		p = map[string]any{"selective": true}
	}
	return c.send(e, actions.IsolateDevice, actions.Target{Device: c.Device}, p)
}

type actReleaseCmd struct {
	actCommon
	Device string `help:"Defender machine id, Entra device id or computer DNS name." required:""`
}

func (c *actReleaseCmd) Run(e *env) error {
	return c.send(e, actions.ReleaseDevice, actions.Target{Device: c.Device}, nil)
}

// actIndicatorCommon is what every indicator verb takes besides its value.
type actIndicatorCommon struct {
	actCommon
	Expires string `help:"How long the indicator lasts (e.g. 24h, 7d; default 7d, at most 90d); Defender removes it then, and so does the engine."`
}

func (c *actIndicatorCommon) params() map[string]any {
	if c.Expires == "" {
		return nil
	}
	return map[string]any{"expires": c.Expires}
}

type actBlockFileCmd struct {
	actIndicatorCommon
	SHA256 string `name:"sha256" help:"SHA-256 of the file (hex)."`
	SHA1   string `name:"sha1" help:"SHA-1 of the file (hex)."`
}

func (c *actBlockFileCmd) Run(e *env) error {
	h := c.SHA256
	if (c.SHA256 == "") == (c.SHA1 == "") {
		return errors.New("block-file needs exactly one of --sha256 and --sha1")
	}
	if h == "" {
		h = c.SHA1
	}
	return c.send(e, actions.BlockFile, actions.Target{File: h}, c.params())
}

type actBlockURLCmd struct {
	actIndicatorCommon
	URL string `name:"url" help:"Absolute http(s) URL (never on the tenant's verified domains or Microsoft's)." required:""`
}

func (c *actBlockURLCmd) Run(e *env) error {
	return c.send(e, actions.BlockURL, actions.Target{URL: c.URL}, c.params())
}

type actBlockDomainCmd struct {
	actIndicatorCommon
	Domain string `help:"Domain name (never one of the tenant's verified domains or Microsoft's)." required:""`
}

func (c *actBlockDomainCmd) Run(e *env) error {
	return c.send(e, actions.BlockDomain, actions.Target{Domain: c.Domain}, c.params())
}

type actBlockDeviceIPCmd struct {
	actIndicatorCommon
	IP string `name:"ip" help:"One IP address (the Defender API takes no CIDR)." required:""`
}

func (c *actBlockDeviceIPCmd) Run(e *env) error {
	return c.send(e, actions.BlockDeviceIP, actions.Target{IP: c.IP}, c.params())
}

// nilIfEmpty keeps a setting's default when the list is empty.
func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
