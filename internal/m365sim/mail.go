package m365sim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

var (
	permRulesRead = anyOf("MailboxSettings.Read", "MailboxSettings.ReadWrite")
	permRulesRW   = anyOf("MailboxSettings.ReadWrite")
	permMailRead  = anyOf("Mail.ReadBasic.All", "Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite")
	permMailRW    = anyOf("Mail.ReadWrite")
	wellKnown     = []string{"inbox", "deleteditems", "sentitems", "drafts", "junkemail", "archive", "outbox", "recoverableitemsdeletions"}
)

func mailRoutes() []route {
	const mf = "users/{}/mailFolders/{}"
	return []route{
		{http.MethodGet, mf + "/messageRules", permRulesRead, thrOutlook, (*Tenant).listRules},
		{http.MethodPost, mf + "/messageRules", permRulesRW, thrOutlook, (*Tenant).createRule},
		{http.MethodGet, mf + "/messageRules/{}", permRulesRead, thrOutlook, (*Tenant).getRule},
		{http.MethodPatch, mf + "/messageRules/{}", permRulesRW, thrOutlook, (*Tenant).updateRule},
		{http.MethodDelete, mf + "/messageRules/{}", permRulesRW, thrOutlook, (*Tenant).deleteRule},
		{http.MethodGet, "users/{}/messages", permMailRead, thrOutlook, (*Tenant).listMessages},
		{http.MethodGet, mf + "/messages", permMailRead, thrOutlook, (*Tenant).listFolderMessages},
		{http.MethodGet, "users/{}/messages/{}", permMailRead, thrOutlook, (*Tenant).getMessage},
		{http.MethodGet, mf + "/messages/{}", permMailRead, thrOutlook, (*Tenant).getFolderMessage},
		{http.MethodDelete, "users/{}/messages/{}", permMailRW, thrOutlook, (*Tenant).deleteMessage},
		{http.MethodDelete, mf + "/messages/{}", permMailRW, thrOutlook, (*Tenant).deleteFolderMessage},
		{http.MethodPost, "users/{}/messages/{}/permanentDelete", permMailRW, thrOutlook, (*Tenant).permanentDelete},
		{http.MethodPost, mf + "/messages/{}/permanentDelete", permMailRW, thrOutlook, (*Tenant).permanentDeleteFolder},
		{http.MethodPost, "users/{}/messages/{}/move", permMailRW, thrOutlook, (*Tenant).moveMessage},
		{http.MethodPost, mf + "/messages/{}/move", permMailRW, thrOutlook, (*Tenant).moveFolderMessage},
	}
}

// exchangeID makes an Exchange-looking id; these contain '/', '+' and '='.
func exchangeID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	e := base64.StdEncoding.EncodeToString(b)
	if len(e) > 12 {
		// Real ids often carry '+', '/' and '='; make sure every id does, so
		// clients that forget to percent-encode path segments fail here too.
		e = e[:4] + "+" + e[4:8] + "/" + e[8:]
	}
	if !strings.HasSuffix(e, "=") {
		e += "="
	}
	return prefix + e
}

// mailboxLocked resolves the mailbox or returns the Exchange error.
func (t *Tenant) mailboxLocked(r *req, key string) (*userRec, *resp) {
	u := t.st.userLocked(key)
	if u == nil {
		return nil, t.graphError(r, http.StatusNotFound, "ErrorInvalidUser", fmt.Sprintf("The requested user '%s' is invalid.", key))
	}
	if u.mbox == nil {
		return nil, t.graphError(r, http.StatusNotFound, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or is hosted on-premise.")
	}
	return u, nil
}

// lockMailbox resolves a mailbox with the tenant lock held shared and locks
// the mailbox itself; unlock releases both. Requests to one mailbox are
// serialised, requests to different mailboxes are not (mailbox.mu).
func (t *Tenant) lockMailbox(r *req, key string) (u *userRec, unlock func(), res *resp) {
	t.mu.RLock()
	u, res = t.mailboxLocked(r, key)
	if res != nil {
		t.mu.RUnlock()
		return nil, nil, res
	}
	u.mbox.mu.Lock()
	return u, func() {
		u.mbox.mu.Unlock()
		t.mu.RUnlock()
	}, nil
}

// add appends a message and indexes it by id.
func (mb *mailbox) add(m *message) {
	mb.messages = append(mb.messages, m)
	id := str(m.obj, "id")
	if mb.byID == nil {
		mb.byID = map[string][]*message{}
	}
	mb.byID[id] = append(mb.byID[id], m)
}

// setID gives a message a new id (a move), keeping the index.
func (mb *mailbox) setID(m *message, id string) {
	old := str(m.obj, "id")
	if list := mb.byID[old]; len(list) > 0 {
		kept := list[:0]
		for _, x := range list {
			if x != m {
				kept = append(kept, x)
			}
		}
		if len(kept) == 0 {
			delete(mb.byID, old)
		} else {
			mb.byID[old] = kept
		}
	}
	m.obj["id"] = id
	if mb.byID == nil {
		mb.byID = map[string][]*message{}
	}
	mb.byID[id] = append(mb.byID[id], m)
}

func folderName(f string) (string, bool) {
	low := strings.ToLower(f)
	for _, w := range wellKnown {
		if low == w || f == folderID(w) {
			return w, true
		}
	}
	return "", false
}

func folderID(name string) string {
	return "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OAAuAAAAAAAiQ8W967B7TKBjgx9rVEURAQAiIsqMbYjsT5e-T7KzowPTAAAA" + strings.ToUpper(base64.RawURLEncoding.EncodeToString([]byte(name)))
}

func (t *Tenant) errItemNotFound(r *req) *resp {
	return t.graphError(r, http.StatusNotFound, "ErrorItemNotFound", "The specified object was not found in the store.")
}

// ---- message rules ----

func (t *Tenant) rulesFolder(r *req, p []string) (*userRec, *resp) {
	u, res := t.mailboxLocked(r, p[0])
	if res != nil {
		return nil, res
	}
	if f, ok := folderName(p[1]); !ok || f != "inbox" {
		if !ok {
			return nil, t.graphError(r, http.StatusBadRequest, "ErrorInvalidIdMalformed", "Id is malformed.")
		}
		return nil, t.graphError(r, http.StatusBadRequest, "ErrorInvalidRequest", "Rules are only supported on the Inbox folder.")
	}
	return u, nil
}

func ruleView(o map[string]any) map[string]any {
	c := cloneObj(o)
	return c
}

func (t *Tenant) listRules(r *req, p []string) *resp {
	t.mu.Lock()
	u, res := t.rulesFolder(r, p)
	if res != nil {
		t.mu.Unlock()
		return res
	}
	items := make([]*item, 0, len(u.mbox.rules))
	for _, o := range u.mbox.rules {
		items = append(items, &item{obj: ruleView(o)})
	}
	t.mu.Unlock()
	return t.list(r, items, listing{context: fmt.Sprintf("users('%s')/mailFolders('inbox')/messageRules", p[0]), defTop: 1000, maxTop: 1000, useSkip: true, schema: messageRuleSchema()})
}

func (t *Tenant) getRule(r *req, p []string) *resp {
	t.mu.Lock()
	defer t.mu.Unlock()
	u, res := t.rulesFolder(r, p)
	if res != nil {
		return res
	}
	for _, o := range u.mbox.rules {
		if str(o, "id") == p[2] {
			v := ruleView(o)
			v["@odata.context"] = fmt.Sprintf("https://graph.microsoft.com/v1.0/$metadata#users('%s')/mailFolders('inbox')/messageRules/$entity", p[0])
			return jsonResp(http.StatusOK, v)
		}
	}
	return t.errItemNotFound(r)
}

var ruleProps = map[string]bool{"displayname": true, "sequence": true, "isenabled": true, "conditions": true, "exceptions": true,
	"actions": true, "@odata.type": true, "id": true, "haserror": true, "isreadonly": true}

func (t *Tenant) validRuleBody(r *req, body map[string]any, create bool) *resp {
	for k := range body {
		if !ruleProps[strings.ToLower(k)] {
			return t.graphError(r, http.StatusBadRequest, "RequestBodyRead", fmt.Sprintf("The property '%s' does not exist on type 'Microsoft.OutlookServices.MessageRule'. Make sure to only use property names that are defined by the type or mark the type as open type.", k))
		}
	}
	if create {
		if s, _ := body["displayName"].(string); s == "" {
			return t.graphError(r, http.StatusBadRequest, "ErrorInvalidParameter", "The value of the parameter 'DisplayName' is empty.")
		}
		if _, ok := body["actions"].(map[string]any); !ok {
			return t.graphError(r, http.StatusBadRequest, "ErrorInvalidRequest", "A rule must have at least one action.")
		}
	}
	return nil
}

func (t *Tenant) createRule(r *req, p []string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	if res := t.validRuleBody(r, body, true); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u, res := t.rulesFolder(r, p)
	if res != nil {
		return res
	}
	o := t.addRuleLocked(u, body)
	v := ruleView(o)
	v["@odata.context"] = fmt.Sprintf("https://graph.microsoft.com/v1.0/$metadata#users('%s')/mailFolders('inbox')/messageRules/$entity", p[0])
	return jsonResp(http.StatusCreated, v)
}

func (t *Tenant) addRuleLocked(u *userRec, body map[string]any) map[string]any {
	o := cloneObj(body)
	delete(o, "@odata.type")
	u.mbox.ruleSeq++
	o["id"] = exchangeID("AQAAA", 6)
	if _, ok := o["sequence"]; !ok {
		o["sequence"] = json.Number(fmt.Sprint(len(u.mbox.rules) + 1))
	}
	if _, ok := o["isEnabled"]; !ok {
		o["isEnabled"] = true
	}
	o["hasError"] = false
	o["isReadOnly"] = false
	u.mbox.rules = append(u.mbox.rules, o)
	sort.SliceStable(u.mbox.rules, func(i, j int) bool {
		a, _ := u.mbox.rules[i]["sequence"].(json.Number)
		b, _ := u.mbox.rules[j]["sequence"].(json.Number)
		ai, _ := a.Int64()
		bi, _ := b.Int64()
		return ai < bi
	})
	return o
}

func (t *Tenant) updateRule(r *req, p []string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	if res := t.validRuleBody(r, body, false); res != nil {
		return res
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u, res := t.rulesFolder(r, p)
	if res != nil {
		return res
	}
	for _, o := range u.mbox.rules {
		if str(o, "id") == p[2] {
			if b, _ := o["isReadOnly"].(bool); b {
				return t.graphError(r, http.StatusBadRequest, "ErrorInvalidRequest", "The rule is read-only and cannot be modified.")
			}
			for k, v := range body {
				if k == "@odata.type" || k == "id" {
					continue
				}
				o[k] = v
			}
			v := ruleView(o)
			v["@odata.context"] = fmt.Sprintf("https://graph.microsoft.com/v1.0/$metadata#users('%s')/mailFolders('inbox')/messageRules/$entity", p[0])
			return jsonResp(http.StatusOK, v)
		}
	}
	return t.errItemNotFound(r)
}

func (t *Tenant) deleteRule(r *req, p []string) *resp {
	t.mu.Lock()
	defer t.mu.Unlock()
	u, res := t.rulesFolder(r, p)
	if res != nil {
		return res
	}
	for i, o := range u.mbox.rules {
		if str(o, "id") == p[2] {
			u.mbox.rules = append(u.mbox.rules[:i], u.mbox.rules[i+1:]...)
			return noContent()
		}
	}
	return t.errItemNotFound(r)
}

// MessageRules returns a copy of a mailbox's inbox rules (Graph JSON objects).
func (t *Tenant) MessageRules(idOrUPN string) []map[string]any {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil || u.mbox == nil {
		return nil
	}
	out := make([]map[string]any, 0, len(u.mbox.rules))
	for _, o := range u.mbox.rules {
		out = append(out, cloneObj(o))
	}
	return out
}

// AddRawMessageRule stores a Graph messageRule object as given (id assigned
// when missing).
func (t *Tenant) AddRawMessageRule(idOrUPN string, raw json.RawMessage) (string, error) {
	m := decodeObj(raw)
	if m == nil {
		return "", fmt.Errorf("m365sim: message rule is not a JSON object")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil || u.mbox == nil {
		return "", fmt.Errorf("m365sim: no mailbox %q", idOrUPN)
	}
	if str(m, "id") == "" {
		m["id"] = exchangeID("AQAAA", 6)
	}
	u.mbox.rules = append(u.mbox.rules, m)
	return str(m, "id"), nil
}

// ---- messages ----

// Message describes a mail item for AddMessage / phishing injection.
type Message struct {
	ID                string    `json:"id,omitempty"`
	InternetMessageID string    `json:"internetMessageId,omitempty"`
	Subject           string    `json:"subject"`
	FromName          string    `json:"fromName,omitempty"`
	FromAddress       string    `json:"fromAddress"`
	To                []string  `json:"to,omitempty"`
	Body              string    `json:"body,omitempty"`
	BodyHTML          bool      `json:"bodyHtml,omitempty"`
	ReceivedDateTime  time.Time `json:"receivedDateTime"`
	Folder            string    `json:"folder,omitempty"` // default inbox
	IsRead            bool      `json:"isRead,omitempty"`
}

func (t *Tenant) newMessageLocked(u *userRec, m Message, visible time.Time) *message {
	if m.ID == "" {
		m.ID = exchangeID("AAMkAGI2TG93AAA", 33)
	}
	if m.InternetMessageID == "" {
		m.InternetMessageID = "<" + strings.ReplaceAll(newGUID(), "-", "") + "@mail.contoso.com>"
	}
	if m.ReceivedDateTime.IsZero() {
		m.ReceivedDateTime = t.now()
	}
	folder := "inbox"
	if f, ok := folderName(m.Folder); ok {
		folder = f
	}
	ctype := "text"
	if m.BodyHTML {
		ctype = "html"
	}
	preview := m.Body
	if len(preview) > 255 {
		preview = preview[:255]
	}
	to := m.To
	if len(to) == 0 {
		to = []string{u.Mail}
	}
	var toR []any
	for _, a := range to {
		toR = append(toR, map[string]any{"emailAddress": map[string]any{"name": a, "address": a}})
	}
	from := map[string]any{"emailAddress": map[string]any{"name": firstNonEmpty(m.FromName, m.FromAddress), "address": m.FromAddress}}
	rt := graphTime(m.ReceivedDateTime)
	o := map[string]any{
		"@odata.etag": `W/"CQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAEx8Vj"`, "id": m.ID,
		"createdDateTime": rt, "lastModifiedDateTime": rt, "changeKey": "CQAAABYAAAAiIsqMbYjsT5e/T7KzowPTAAAEx8Vj",
		"categories": []any{}, "receivedDateTime": rt, "sentDateTime": rt, "hasAttachments": false,
		"internetMessageId": m.InternetMessageID, "subject": m.Subject, "bodyPreview": preview, "importance": "normal",
		"parentFolderId": folderID(folder), "conversationId": exchangeID("AAQkAGI2", 24), "conversationIndex": "AQHZ",
		"isDeliveryReceiptRequested": false, "isReadReceiptRequested": false, "isRead": m.IsRead, "isDraft": false,
		"webLink":                 "https://outlook.office365.com/owa/?ItemID=" + m.ID + "&exvsurl=1&viewmodel=ReadMessageItem",
		"inferenceClassification": "focused", "body": map[string]any{"contentType": ctype, "content": m.Body},
		"sender": from, "from": from, "toRecipients": toR, "ccRecipients": []any{}, "bccRecipients": []any{}, "replyTo": []any{},
		"flag": map[string]any{"flagStatus": "notFlagged"},
	}
	msg := &message{obj: o, folder: folder, visible: visible}
	u.mbox.add(msg)
	return msg
}

// AddMessage puts a message into a mailbox (visible at once) and returns its id.
func (t *Tenant) AddMessage(idOrUPN string, m Message) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil || u.mbox == nil {
		return "", fmt.Errorf("m365sim: no mailbox %q", idOrUPN)
	}
	return str(t.newMessageLocked(u, m, time.Time{}).obj, "id"), nil
}

// AddRawMessage stores a Graph message object as given into the inbox.
func (t *Tenant) AddRawMessage(idOrUPN string, raw json.RawMessage) (string, error) {
	m := decodeObj(raw)
	if m == nil {
		return "", fmt.Errorf("m365sim: message is not a JSON object")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil || u.mbox == nil {
		return "", fmt.Errorf("m365sim: no mailbox %q", idOrUPN)
	}
	if str(m, "id") == "" {
		m["id"] = exchangeID("AAMkAGI2TG93AAA", 33)
	}
	u.mbox.add(&message{obj: m, folder: "inbox"})
	return str(m, "id"), nil
}

// MessageState reports where a message is: its folder, or "purged" after
// permanentDelete; ok is false when the id is unknown.
func (t *Tenant) MessageState(idOrUPN, messageID string) (folder string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil || u.mbox == nil {
		return "", false
	}
	for _, m := range u.mbox.byID[messageID] {
		if m.purged {
			return "purged", true
		}
		return m.folder, true
	}
	return "", false
}

func (t *Tenant) listMessages(r *req, p []string) *resp { return t.msgList(r, p[0], "") }

func (t *Tenant) listFolderMessages(r *req, p []string) *resp {
	f, ok := folderName(p[1])
	if !ok {
		return t.graphError(r, http.StatusBadRequest, "ErrorInvalidIdMalformed", "Id is malformed.")
	}
	return t.msgList(r, p[0], f)
}

func (t *Tenant) msgList(r *req, user, folder string) *resp {
	if r.has("$search") && (r.has("$filter") || r.has("$orderby")) {
		return t.graphError(r, http.StatusBadRequest, "ErrorInvalidUrlQuery", "The query parameter 'OrderBy' is invalid with '$search'.")
	}
	if ob := r.q("$orderby"); ob != "" && r.has("$filter") {
		first := strings.Fields(strings.Split(ob, ",")[0])
		fl := strings.TrimLeft(r.q("$filter"), "( ")
		if len(first) == 0 || !strings.HasPrefix(strings.ToLower(fl), strings.ToLower(first[0])) {
			return t.graphError(r, http.StatusBadRequest, "InefficientFilter", "The restriction or sort order is too complex for this operation.")
		}
	}
	search := strings.ToLower(strings.Trim(r.q("$search"), `"`))
	u, unlock, res := t.lockMailbox(r, user)
	if res != nil {
		return res
	}
	// The page is filtered, selected and encoded under the mailbox's lock,
	// so it reads the stored messages without copying them all first.
	defer unlock()
	type byTime struct {
		m        *message
		received string
	}
	var msgs []byTime
	for _, m := range u.mbox.messages {
		if m.purged || (folder != "" && m.folder != folder) {
			continue
		}
		msgs = append(msgs, byTime{m, str(m.obj, "receivedDateTime")})
	}
	// Newest first (Outlook's default order, receivedDateTime desc).
	slices.SortStableFunc(msgs, func(a, b byTime) int { return strings.Compare(b.received, a.received) })
	items := make([]*item, 0, len(msgs))
	for _, x := range msgs {
		if search != "" && !searchHit(x.m.obj, search) {
			continue
		}
		items = append(items, &item{obj: x.m.obj, visible: x.m.visible})
	}
	ctx := fmt.Sprintf("users('%s')/messages", user)
	if folder != "" {
		ctx = fmt.Sprintf("users('%s')/mailFolders('%s')/messages", user, folder)
	}
	return t.list(r, items, listing{context: ctx, defTop: 10, maxTop: 1000, useSkip: true, schema: messageSchema(),
		topError: func(r *req, top string) *resp {
			return t.graphError(r, http.StatusBadRequest, "ErrorInvalidUrlQuery", "The value specified for the $top query parameter is invalid.")
		}})
}

func searchHit(o map[string]any, q string) bool {
	field, term, ok := strings.Cut(q, ":")
	if !ok {
		term, field = q, ""
	}
	subj := strings.ToLower(str(o, "subject"))
	body := ""
	if b, ok := o["body"].(map[string]any); ok {
		body = strings.ToLower(str(b, "content"))
	}
	from := ""
	if f, ok := o["from"].(map[string]any); ok {
		if e, ok := f["emailAddress"].(map[string]any); ok {
			from = strings.ToLower(str(e, "address"))
		}
	}
	switch field {
	case "subject":
		return strings.Contains(subj, term)
	case "from":
		return strings.Contains(from, term)
	case "body":
		return strings.Contains(body, term)
	}
	return strings.Contains(subj, term) || strings.Contains(body, term) || strings.Contains(from, term)
}

// findMsg finds a message of a locked mailbox (lockMailbox) by id.
func (t *Tenant) findMsg(r *req, u *userRec, folder, id string) (*message, *resp) {
	now := t.now()
	for _, m := range u.mbox.byID[id] {
		if !m.purged && !m.visible.After(now) && (folder == "" || m.folder == folder) {
			return m, nil
		}
	}
	if !looksLikeExchangeID(id) {
		return nil, t.graphError(r, http.StatusBadRequest, "ErrorInvalidIdMalformed", "Id is malformed.")
	}
	return nil, t.errItemNotFound(r)
}

func looksLikeExchangeID(id string) bool {
	if len(id) < 16 {
		return false
	}
	s := strings.TrimRight(id, "=")
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

func (t *Tenant) folderParam(r *req, p []string) (string, *resp) {
	f, ok := folderName(p[1])
	if !ok {
		return "", t.graphError(r, http.StatusBadRequest, "ErrorInvalidIdMalformed", "Id is malformed.")
	}
	return f, nil
}

func (t *Tenant) msgGet(r *req, user, folder, id string) *resp {
	if res := t.checkQuery(r, messageSchema()); res != nil {
		return res
	}
	u, unlock, res := t.lockMailbox(r, user)
	if res != nil {
		return res
	}
	defer unlock()
	m, res := t.findMsg(r, u, folder, id)
	if res != nil {
		return res
	}
	o := selectProps(cloneObj(m.obj), r.q("$select"))
	o["@odata.context"] = fmt.Sprintf("https://graph.microsoft.com/v1.0/$metadata#users('%s')/messages/$entity", user)
	return jsonResp(http.StatusOK, o)
}

func (t *Tenant) getMessage(r *req, p []string) *resp { return t.msgGet(r, p[0], "", p[1]) }
func (t *Tenant) getFolderMessage(r *req, p []string) *resp {
	f, res := t.folderParam(r, p)
	if res != nil {
		return res
	}
	return t.msgGet(r, p[0], f, p[2])
}

func (t *Tenant) msgDelete(r *req, user, folder, id string, purge bool) *resp {
	u, unlock, res := t.lockMailbox(r, user)
	if res != nil {
		return res
	}
	defer unlock()
	m, res := t.findMsg(r, u, folder, id)
	if res != nil {
		return res
	}
	if purge {
		m.purged = true
	} else if m.folder == "deleteditems" {
		m.folder = "recoverableitemsdeletions"
	} else {
		m.folder = "deleteditems"
	}
	m.obj["parentFolderId"] = folderID(m.folder)
	return noContent()
}

func (t *Tenant) deleteMessage(r *req, p []string) *resp {
	return t.msgDelete(r, p[0], "", p[1], false)
}
func (t *Tenant) deleteFolderMessage(r *req, p []string) *resp {
	f, res := t.folderParam(r, p)
	if res != nil {
		return res
	}
	return t.msgDelete(r, p[0], f, p[2], false)
}
func (t *Tenant) permanentDelete(r *req, p []string) *resp {
	return t.msgDelete(r, p[0], "", p[1], true)
}
func (t *Tenant) permanentDeleteFolder(r *req, p []string) *resp {
	f, res := t.folderParam(r, p)
	if res != nil {
		return res
	}
	return t.msgDelete(r, p[0], f, p[2], true)
}

func (t *Tenant) msgMove(r *req, user, folder, id string) *resp {
	body, bad := t.readBody(r)
	if bad != nil {
		return bad
	}
	dest, _ := getCI(body, "destinationId").(string)
	if dest == "" {
		return t.graphError(r, http.StatusBadRequest, "ErrorInvalidParameter", "The value of the parameter 'DestinationId' is empty.")
	}
	df, ok := folderName(dest)
	if !ok {
		return t.graphError(r, http.StatusBadRequest, "ErrorInvalidIdMalformed", "Id is malformed.")
	}
	u, unlock, res := t.lockMailbox(r, user)
	if res != nil {
		return res
	}
	defer unlock()
	m, res := t.findMsg(r, u, folder, id)
	if res != nil {
		return res
	}
	// Exchange gives a moved item a new id.
	m.folder = df
	u.mbox.setID(m, exchangeID("AAMkAGI2TG93AAA", 33))
	m.obj["parentFolderId"] = folderID(df)
	o := cloneObj(m.obj)
	o["@odata.context"] = fmt.Sprintf("https://graph.microsoft.com/v1.0/$metadata#users('%s')/messages/$entity", user)
	return jsonResp(http.StatusCreated, o)
}

func (t *Tenant) moveMessage(r *req, p []string) *resp { return t.msgMove(r, p[0], "", p[1]) }
func (t *Tenant) moveFolderMessage(r *req, p []string) *resp {
	f, res := t.folderParam(r, p)
	if res != nil {
		return res
	}
	return t.msgMove(r, p[0], f, p[2])
}

// getCI reads a property case-insensitively (the SDK sends some action
// parameters in PascalCase, e.g. "DestinationId").
func getCI(m map[string]any, k string) any {
	if v, ok := m[k]; ok {
		return v
	}
	for kk, v := range m {
		if strings.EqualFold(kk, k) {
			return v
		}
	}
	return nil
}
