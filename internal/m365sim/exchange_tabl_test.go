package m365sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestTenantAllowBlockListSenders: the sender cmdlets with Microsoft's limits
// (https://learn.microsoft.com/defender-office-365/tenant-allow-block-list-email-spoof-configure):
// each refusal is a 400 with the cmdlet error shape and leaves the list as it
// was; the 501st block entry is refused; removal by id; a reader role may not
// add.
func TestTenantAllowBlockListSenders(t *testing.T) {
	tn := startTenant(t, Options{Seed: SeedSmall})
	in := tn.Info()
	invoke := in.ExchangeURL + "/" + in.TenantID + "/InvokeCommand"
	tok := bearer(t, tn, "https://outlook.office365.com/.default")
	run := func(name string, params map[string]any) (int, string) {
		b, _ := json.Marshal(map[string]any{"CmdletInput": map[string]any{"CmdletName": name, "Parameters": params}})
		r, body := do(t, tn, "POST", invoke, tok, string(b))
		return r.StatusCode, body
	}
	in30 := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	for name, c := range map[string]struct {
		params map[string]any
		want   string
	}{
		"no expiry":       {map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"a@evil.example"}}, "ExpirationDate or NoExpiration"},
		"both expiries":   {map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"a@evil.example"}, "ExpirationDate": in30, "NoExpiration": true}, "Parameter set cannot be resolved"},
		"past expiry":     {map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"a@evil.example"}, "ExpirationDate": "2020-01-01T00:00:00Z"}, "must be in the future"},
		"91 days":         {map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"a@evil.example"}, "ExpirationDate": time.Now().Add(91 * 24 * time.Hour).UTC().Format(time.RFC3339)}, "at most 90 days"},
		"bad entry":       {map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"not an address"}, "NoExpiration": true}, "not a valid e-mail address or domain"},
		"21 entries":      {map[string]any{"ListType": "Sender", "Block": true, "Entries": make([]string, 21), "NoExpiration": true}, "up to 20 entries"},
		"unknown param":   {map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"a@evil.example"}, "NoExpiration": true, "Force": true}, "parameter name 'force'"},
		"no list type":    {map[string]any{"Block": true, "Entries": []string{"a@evil.example"}, "NoExpiration": true}, "ListType"},
		"allow and block": {map[string]any{"ListType": "Sender", "Block": true, "Allow": true, "Entries": []string{"a@evil.example"}, "NoExpiration": true}, "exactly one"},
	} {
		code, body := run("New-TenantAllowBlockListItems", c.params)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if n := len(tn.TABLSenders()); n != 0 {
		t.Fatalf("refused calls left %d entries", n)
	}
	code, body := run("Remove-TenantAllowBlockListItems", map[string]any{"ListType": "Sender", "Ids": []string{"RgAAAAnope"}})
	if code != http.StatusNotFound || !strings.Contains(body, "ManagementObjectNotFoundException") {
		t.Errorf("remove unknown id: %d %s", code, body)
	}

	// Up to the limit in calls of 20, then the 501st is refused.
	for i := 0; i < TABLBlockLimit; i += 20 {
		var entries []string
		for j := i; j < i+20; j++ {
			entries = append(entries, fmt.Sprintf("s%d@evil.example", j))
		}
		if code, body := run("New-TenantAllowBlockListItems", map[string]any{"ListType": "Sender", "Block": true, "Entries": entries, "ExpirationDate": in30}); code != 200 {
			t.Fatalf("batch %d: %d %s", i, code, body)
		}
	}
	if code, body := run("New-TenantAllowBlockListItems", map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"one-more.example"}, "NoExpiration": true}); code != 400 || !strings.Contains(body, "maximum number of block entries (500)") {
		t.Errorf("501st entry: %d %s", code, body)
	}
	// Get by entry, then remove by id.
	code, body = run("Get-TenantAllowBlockListItems", map[string]any{"ListType": "Sender", "Block": true, "Entry": "S7@Evil.Example"})
	var got struct {
		Value []map[string]any `json:"value"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Value) != 1 || got.Value[0]["Value"] != "s7@evil.example" {
		t.Fatalf("Get: %d %s", code, body)
	}
	id, _ := got.Value[0]["Identity"].(string)
	if code, body := run("Remove-TenantAllowBlockListItems", map[string]any{"ListType": "Sender", "Ids": []string{id}}); code != 200 {
		t.Fatalf("Remove: %d %s", code, body)
	}
	if n := len(tn.TABLSenders()); n != TABLBlockLimit-1 {
		t.Errorf("%d entries after one removal", n)
	}

	// An app with only a reader role may list but not add.
	tn.mu.Lock()
	tn.st.apps[strings.ToLower(in.ClientID)].DirectoryRoles = []string{"Security Reader"}
	tn.mu.Unlock()
	if code, _ := run("Get-TenantAllowBlockListItems", map[string]any{"ListType": "Sender"}); code != 200 {
		t.Errorf("reader Get: %d", code)
	}
	if code, body := run("New-TenantAllowBlockListItems", map[string]any{"ListType": "Sender", "Block": true, "Entries": []string{"x@evil.example"}, "NoExpiration": true}); code != 403 || !strings.Contains(body, "CmdletAccessDeniedException") {
		t.Errorf("reader New: %d %s", code, body)
	}
}
