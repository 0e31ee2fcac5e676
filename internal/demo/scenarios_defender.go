package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/actions"
	"github.com/responder-sec/responder/internal/m365sim"
)

// The Defender XDR scenarios: an alert on the alerts feed (Graph
// security/alerts_v2) fires one of the defender-* playbooks.

const (
	ransomwareSHA256 = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
	phishSender      = "billing@invoices-evil.example"
	phishURL         = "https://login.invoices-evil.example/o365/verify"
	c2IP             = "203.0.113.45"
	demoWorkstation  = "desktop-07.contoso.com"
)

func defenderScenarios() []scenario {
	return []scenario{
		{name: "defender-ransomware", playbook: "defender-device-compromise",
			attack: "Defender for Endpoint raises a ransomware alert on a workstation", play: ransomwareAlert},
		{name: "defender-phishing", playbook: "defender-phishing-mail",
			attack: "a phishing mail with a credential-harvesting link lands in every mailbox; Defender for Office 365 alerts", play: phishingAlert},
		{name: "defender-malicious-ip", playbook: "defender-malicious-ip",
			attack: "a workstation talks to a command-and-control address; Defender for Endpoint alerts", play: c2Alert},
	}
}

// workstation is a seeded Defender device (a workstation, not protected).
func (a *attacker) workstation() (m365sim.Machine, error) {
	if m, ok := a.tenant.MachineByName(demoWorkstation); ok {
		return m, nil
	}
	return m365sim.Machine{}, fmt.Errorf("the sandbox has no device %s", demoWorkstation)
}

func ransomwareAlert(_ context.Context, a *attacker) error {
	m, err := a.workstation()
	if err != nil {
		return err
	}
	id := a.tenant.InjectAlert(m365sim.AlertSpec{
		Title: "Ransomware behavior detected in the file system", Category: "Ransomware", Severity: "high",
		DeviceID: m.ID, DeviceName: m.ComputerDNSName, SHA256: ransomwareSHA256, FileName: "svchst.exe",
		UserUPN: a.victim.UserPrincipalName, UserID: a.victim.ID,
	})
	a.say("ransomware starts encrypting files on %s as %s; Defender for Endpoint raises alert %s (file %s)",
		m.ComputerDNSName, a.victim.UserPrincipalName, id, ransomwareSHA256[:16]+"…")
	return nil
}

func phishingAlert(_ context.Context, a *attacker) error {
	v := a.victim
	msgID := fmt.Sprintf("<%d.invoice@mail.invoices-evil.example>", time.Now().UnixNano())
	ids, err := a.tenant.InjectPhishing(m365sim.Phish{FromAddress: phishSender, FromName: "Billing", Subject: "Invoice 88213 overdue",
		Body: "Please verify your account: " + phishURL, InternetMessageID: msgID, ReceivedDateTime: time.Now().UTC().Add(-time.Minute)})
	if err != nil {
		return err
	}
	id := a.tenant.InjectAlert(m365sim.AlertSpec{
		Title: "Email messages containing malicious URL removed after delivery", Category: "InitialAccess", Severity: "medium",
		ServiceSource: "microsoftDefenderForOffice365", DetectionSource: "microsoftDefenderForOffice365",
		Mailbox: v.UserPrincipalName, UserID: v.ID, Sender: phishSender, URL: phishURL,
		InternetMessageID: msgID, NetworkMessageID: "42220a17-4fae-42b7-e485-08dd51827298", IP: "198.51.100.44",
	})
	a.facts.PhishMessageID, a.facts.PhishCopies = msgID, ids
	a.say("%s sends %q with a link to %s to %d mailboxes (message %s); Defender for Office 365 raises alert %s",
		phishSender, "Invoice 88213 overdue", phishURL, len(ids), msgID, id)
	return nil
}

func c2Alert(_ context.Context, a *attacker) error {
	m, err := a.workstation()
	if err != nil {
		return err
	}
	id := a.tenant.InjectAlert(m365sim.AlertSpec{
		Title: "Communication with a known malicious IP address", Category: "CommandAndControl", Severity: "medium",
		DeviceID: m.ID, DeviceName: m.ComputerDNSName, IP: c2IP,
	})
	a.facts.SourceIP = c2IP
	a.say("%s beacons to %s every 60 s; Defender for Endpoint raises alert %s", m.ComputerDNSName, c2IP, id)
	return nil
}

// checkDefender reports the tenant's state after a Defender or mail-filtering
// step.
func checkDefender(t *m365sim.Tenant, atk Attack, st *stepState) (facts, problems []string, ok bool) {
	target := func(k string) string {
		if st.final != nil {
			return st.final.Target[k]
		}
		return ""
	}
	indicator := func(value string) bool {
		for _, i := range t.Indicators() {
			if strings.EqualFold(i.IndicatorValue, value) {
				return true
			}
		}
		return false
	}
	switch st.step.Action {
	case actions.IsolateDevice:
		m, found := t.MachineByName(target("device"))
		facts = append(facts, fmt.Sprintf("device %s isolated: %t", m.ComputerDNSName, m.Isolated))
		if found && !m.Isolated && st.final != nil {
			problems = append(problems, "the device is not isolated")
		}
	case actions.BlockFile, actions.BlockURL, actions.BlockDomain, actions.BlockDeviceIP:
		k := map[actions.Name]string{actions.BlockFile: "file", actions.BlockURL: "url", actions.BlockDomain: "domain", actions.BlockDeviceIP: "ip"}[st.step.Action]
		v := target(k)
		on := indicator(v)
		facts = append(facts, fmt.Sprintf("Defender indicator for %s: %t", v, on))
		if st.final != nil && !on {
			problems = append(problems, "no Defender indicator blocks "+v)
		}
	case actions.BlockSender:
		v := target("sender")
		on := false
		for _, e := range t.TABLSenders() {
			if strings.EqualFold(e.Value, v) && e.Action == "Block" {
				on = true
			}
		}
		facts = append(facts, fmt.Sprintf("Tenant Allow/Block List blocks %s: %t", v, on))
		if st.final != nil && !on {
			problems = append(problems, "the sender is not in the Tenant Allow/Block List")
		}
	case actions.PurgeMail:
		left := 0
		if atk.PhishMessageID != "" {
			for upn, id := range atk.PhishCopies {
				if folder, ok := t.MessageState(upn, id); ok && folder == "inbox" {
					left++
				}
			}
			facts = append(facts, fmt.Sprintf("copies of %s left in inboxes: %d", atk.PhishMessageID, left))
			if st.final != nil && left > 0 {
				problems = append(problems, fmt.Sprintf("%d copies of the phishing message are still in inboxes", left))
			}
		}
	default:
		return nil, nil, false
	}
	return facts, problems, true
}
