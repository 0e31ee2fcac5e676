package notify

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/audit"
)

// summary is the text of a notification, before the receiver's markup.
type summary struct {
	title string
	facts [][2]string // label, value (values are untrusted)
}

func summarise(ev Event) summary {
	var s summary
	switch ev.State {
	case audit.PendingApproval:
		s.title = "Approval needed: " + ev.Action
	case audit.Failed:
		s.title = "Request failed: " + ev.Action
	default:
		s.title = string(ev.State) + ": " + ev.Action
	}
	add := func(label, v string) {
		if v != "" {
			s.facts = append(s.facts, [2]string{label, v})
		}
	}
	add("On", targetText(ev.Target))
	add("Requested by", actorText(ev.Requester))
	add("Why", ev.Reason)
	add("Playbook", ev.Playbook)
	add("Event", ev.EventID)
	add("Ticket", ev.Ticket)
	add("Detail", ev.Detail)
	add("Error code", ev.ErrorCode)
	add("Request", ev.RequestID)
	if !ev.Time.IsZero() {
		add("At", ev.Time.UTC().Format(time.RFC3339))
	}
	return s
}

func targetText(t map[string]string) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+" "+t[k])
	}
	return strings.Join(parts, ", ")
}

func actorText(a audit.Actor) string {
	name := a.Name
	if a.UPN != "" {
		name = a.UPN
	}
	if a.Kind == "" {
		return name
	}
	return a.Kind + " " + name
}

// Payload is the JSON body posted to a webhook of kind k; link is the
// request's console page ("" for none).
func Payload(k Kind, ev Event, link string) ([]byte, error) {
	s := summarise(ev)
	var v any
	switch k {
	case Teams:
		v = teamsCard(s, link)
	case Slack:
		v = slackMessage(s, link)
	case Generic:
		v = genericObject(ev, link)
	default:
		return nil, fmt.Errorf("notify: unknown webhook kind %q", k)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("notify: encode %s payload: %w", k, err)
	}
	return b, nil
}

// teamsCard is an Adaptive Card in the message envelope Teams incoming
// webhooks and Workflows ("When a Teams webhook request is received") accept:
// https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook
// Card schema: https://adaptivecards.io/explorer/ (TextBlock, FactSet,
// Action.OpenUrl; version 1.4 renders in Teams).
func teamsCard(s summary, link string) map[string]any {
	facts := make([]map[string]string, 0, len(s.facts))
	for _, f := range s.facts {
		facts = append(facts, map[string]string{"title": f[0], "value": escapeMarkdown(f[1])})
	}
	card := map[string]any{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": "1.4",
		"body": []any{
			map[string]any{"type": "TextBlock", "text": escapeMarkdown(s.title), "weight": "Bolder", "size": "Medium", "wrap": true},
			map[string]any{"type": "FactSet", "facts": facts},
		},
	}
	if link != "" {
		card["actions"] = []any{map[string]any{"type": "Action.OpenUrl", "title": "Open in the console", "url": link}}
	}
	return map[string]any{
		"type": "message",
		"attachments": []any{map[string]any{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content":     card,
		}},
	}
}

// escapeMarkdown makes untrusted text literal in an Adaptive Card TextBlock or
// fact, which render a Markdown subset (bold, italic, lists, links:
// https://learn.microsoft.com/en-us/adaptive-cards/authoring-cards/text-features):
// every Markdown punctuation character is backslash-escaped (CommonMark
// backslash escapes), and line breaks become spaces so a value cannot start a
// list or heading of its own. HTML is not rendered by Adaptive Cards; the
// angle brackets are escaped all the same.
func escapeMarkdown(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n' || r == '\t':
			b.WriteByte(' ')
		case r < ' ' || r == 0x7f:
		case strings.ContainsRune("\\`*_{}[]()<>#+-.!|~=&:", r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// slackMessage is a Block Kit message for an incoming webhook
// (https://api.slack.com/messaging/webhooks): untrusted values go in
// plain_text objects, which Slack does not parse for formatting, links or
// mentions (https://api.slack.com/reference/block-kit/composition-objects#text);
// the top-level text (the notification's fallback, parsed as mrkdwn) has &, <
// and > escaped as Slack requires
// (https://api.slack.com/reference/surfaces/formatting#escaping), which
// neutralises <!channel>, <@U…> and <url|label> forms.
func slackMessage(s summary, link string) map[string]any {
	fields := make([]any, 0, len(s.facts))
	for _, f := range s.facts {
		fields = append(fields, map[string]any{"type": "plain_text", "text": f[0] + ": " + clip(f[1], 1900), "emoji": false})
	}
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": clip(s.title, 150), "emoji": false}},
	}
	// A section holds at most 10 fields.
	for len(fields) > 0 {
		n := min(len(fields), 10)
		blocks = append(blocks, map[string]any{"type": "section", "fields": fields[:n]})
		fields = fields[n:]
	}
	if link != "" {
		blocks = append(blocks, map[string]any{"type": "actions", "elements": []any{map[string]any{
			"type": "button", "text": map[string]any{"type": "plain_text", "text": "Open in the console"}, "url": link,
		}}})
	}
	return map[string]any{"text": escapeSlack(s.title), "blocks": blocks}
}

// escapeSlack escapes the three characters Slack's mrkdwn gives meaning to.
func escapeSlack(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// clip bounds a text to n bytes on a rune boundary (Slack refuses longer
// text objects).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// genericObject is the JSON webhook's body: the event's fields as data (the
// receiver escapes them for whatever it renders).
func genericObject(ev Event, link string) map[string]any {
	m := map[string]any{
		"type":       "responder.notification",
		"state":      string(ev.State),
		"request_id": ev.RequestID,
		"action":     ev.Action,
		"target":     ev.Target,
		"requested_by": map[string]string{
			"kind": ev.Requester.Kind, "name": ev.Requester.Name, "upn": ev.Requester.UPN,
		},
		"reason":   ev.Reason,
		"playbook": ev.Playbook,
		"event_id": ev.EventID,
		"ticket":   ev.Ticket,
		"detail":   ev.Detail,
		"url":      link,
	}
	if ev.ErrorCode != "" {
		m["error_code"] = ev.ErrorCode
	}
	if !ev.Time.IsZero() {
		m["time"] = ev.Time.UTC().Format(time.RFC3339Nano)
	}
	return m
}
