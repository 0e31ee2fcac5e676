package console

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/responder-sec/responder/internal/analyst"
	"github.com/responder-sec/responder/internal/audit"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages are parsed once per process, each with the layout: html/template
// escapes every value by its context (a UPN or reason with <script> is text).
var pageNames = []string{"signin", "continue", "error", "forbidden", "approvals", "audit", "request", "act", "status"}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"fmtTime": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"join":       strings.Join,
		"filterKeys": func() []string { return filterKeys },
		"short": func(s string) string {
			if len(s) > 8 {
				return s[:8] + "…"
			}
			return s
		},
		"target": func(m map[string]string) string {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, m[k])
			}
			return strings.Join(parts, ", ")
		},
		"actor": func(a audit.Actor) string {
			s := a.Kind + " " + a.Name
			if a.UPN != "" && !strings.EqualFold(a.UPN, a.Name) {
				s += " (" + a.UPN + ")"
			}
			return s
		},
		"roles": func(a analyst.Analyst) string {
			var r []string
			if len(a.Actions) > 0 {
				r = append(r, "analyst")
			}
			if a.MayApprove {
				r = append(r, "approver")
			}
			r = append(r, "reviewer")
			return strings.Join(r, ", ")
		},
		"pretty": func(raw json.RawMessage) string {
			var b bytes.Buffer
			if json.Indent(&b, raw, "", "  ") != nil {
				return string(raw)
			}
			return b.String()
		},
	}
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		out[n] = template.Must(template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html"))
	}
	return out
}

func (c *Console) render(w http.ResponseWriter, name string, v view) {
	c.renderStatus(w, http.StatusOK, name, v)
}

func (c *Console) renderStatus(w http.ResponseWriter, status int, name string, v view) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// OID and UPN name the signed-in person in templates.
func (s *session) OID() string { return s.oid }

// UPN is the signed-in person's user principal name.
func (s *session) UPN() string { return s.upn }
