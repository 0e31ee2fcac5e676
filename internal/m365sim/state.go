package m365sim

import (
	"encoding/json"
	"strings"
	"sync"
	"time"
)

// User is a directory user (and mailbox owner).
type User struct {
	ID                            string    `json:"id"`
	UserPrincipalName             string    `json:"userPrincipalName"`
	DisplayName                   string    `json:"displayName"`
	Mail                          string    `json:"mail,omitempty"`
	GivenName                     string    `json:"givenName,omitempty"`
	Surname                       string    `json:"surname,omitempty"`
	JobTitle                      string    `json:"jobTitle,omitempty"`
	Department                    string    `json:"department,omitempty"`
	OfficeLocation                string    `json:"officeLocation,omitempty"`
	UsageLocation                 string    `json:"usageLocation,omitempty"`
	UserType                      string    `json:"userType,omitempty"` // Member (default) or Guest
	AccountEnabled                bool      `json:"accountEnabled"`
	CreatedDateTime               time.Time `json:"createdDateTime"`
	SignInSessionsValidFrom       time.Time `json:"signInSessionsValidFrom"`
	RevokeCount                   int       `json:"revokeCount"`
	PasswordChanges               int       `json:"passwordChanges"`
	LastPasswordChangeDateTime    time.Time `json:"lastPasswordChangeDateTime"`
	ForceChangePasswordNextSignIn bool      `json:"forceChangePasswordNextSignIn"`
	// Mailbox forwarding (Set-Mailbox), not exposed by Graph: read and set
	// through the Exchange admin API (Get-/Set-Mailbox). ForwardingSmtpAddress
	// is "smtp:"-prefixed; ForwardingAddress is a recipient's alias.
	ForwardingSmtpAddress      string `json:"forwardingSmtpAddress,omitempty"`
	ForwardingAddress          string `json:"forwardingAddress,omitempty"`
	DeliverToMailboxAndForward bool   `json:"deliverToMailboxAndForward,omitempty"`
	// NoMailbox marks a user without an Exchange Online mailbox.
	NoMailbox bool `json:"noMailbox,omitempty"`
	// Disabled is a convenience for AddUser: AccountEnabled defaults to true
	// unless Disabled is set.
	Disabled bool `json:"disabled,omitempty"`
}

type userRec struct {
	User
	password string
	mbox     *mailbox
}

type mailbox struct {
	// mu guards messages, byID and the fields of each message for the mail
	// handlers, which hold the tenant lock (Tenant.mu) only shared: requests
	// to different mailboxes then run side by side, as Exchange serves each
	// mailbox apart. Code holding Tenant.mu exclusively needs no mu.
	mu       sync.Mutex
	rules    []map[string]any
	messages []*message
	// byID indexes messages by their id (several only if raw messages share
	// one), in the order they were added.
	byID    map[string][]*message
	ruleSeq int
}

type message struct {
	obj     map[string]any
	folder  string // well-known folder name: inbox, deleteditems, recoverableitemsdeletions, …
	purged  bool
	visible time.Time
}

// item is a feed record with the instant it becomes visible.
type item struct {
	obj     map[string]any
	visible time.Time
	seq     int
	prev    *item // the version shown until visible (riskyUsers)
	isNew   bool  // created by this update, nothing shown before
}

// visibleVersion returns the newest version of it visible at now, or nil.
func visibleVersion(it *item, now time.Time) *item {
	for v := it; v != nil; v = v.prev {
		if !v.visible.After(now) {
			return v
		}
	}
	return nil
}

type dirRole struct {
	ID, DisplayName, Description, TemplateID string
	Members                                  []string
}

type state struct {
	apps    map[string]*App
	issued  map[string]string
	revoked map[string]bool

	users     map[string]*userRec // by id
	userOrder []string
	deleted   map[string]*deletedUser // soft-deleted users by id (userdelete.go)
	domains   []map[string]any
	roles     []*dirRole
	groups    map[string]*groupRec // by id (roles.go)
	grants    []*roleGrant         // role assignments to groups, PIM eligibility (roles.go)

	riskDetections []*item
	riskyUsers     map[string]*item
	riskyOrder     []string
	signIns        []*item
	namedLocations []map[string]any
	policies       []map[string]any

	subs  map[string]*subscription
	blobs []*blob

	tabl   []*TABLEntry // Tenant Allow/Block List (exchange_tabl.go)
	alerts []*item      // Defender XDR alerts (alerts.go)

	seq int
}

func newState(t *Tenant) *state {
	s := &state{
		apps: map[string]*App{}, issued: map[string]string{}, revoked: map[string]bool{},
		users: map[string]*userRec{}, riskyUsers: map[string]*item{}, subs: map[string]*subscription{},
	}
	s.apps[defaultClientID] = &App{ClientID: defaultClientID, ClientSecret: "sim~" + strings.ReplaceAll(newGUID(), "-", ""),
		Roles: ResponderRoles(), DisplayName: "Responder", DirectoryRoles: []string{"Exchange Recipient Administrator", "User Administrator", "Security Administrator"}}
	return s
}

func (s *state) nextSeq() int { s.seq++; return s.seq }

// userLocked finds a user by object id or UPN (case-insensitive).
func (s *state) userLocked(key string) *userRec {
	if u := s.users[strings.ToLower(key)]; u != nil {
		return u
	}
	for _, id := range s.userOrder {
		u := s.users[id]
		if strings.EqualFold(u.UserPrincipalName, key) {
			return u
		}
	}
	return nil
}

// AddUser adds a user (and a mailbox unless NoMailbox). ID is assigned when
// empty; AccountEnabled is true unless Disabled is set.
func (t *Tenant) AddUser(u User) User {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addUserLocked(u)
}

func (t *Tenant) addUserLocked(u User) User {
	if u.ID == "" {
		u.ID = newGUID()
	}
	u.ID = strings.ToLower(u.ID)
	if u.UserType == "" {
		u.UserType = "Member"
	}
	u.AccountEnabled = !u.Disabled
	u.Disabled = false
	if u.CreatedDateTime.IsZero() {
		u.CreatedDateTime = t.now().Add(-90 * 24 * time.Hour)
	}
	if u.SignInSessionsValidFrom.IsZero() {
		u.SignInSessionsValidFrom = u.CreatedDateTime
	}
	if u.Mail == "" && !u.NoMailbox {
		u.Mail = u.UserPrincipalName
	}
	if u.DisplayName == "" {
		u.DisplayName, _, _ = strings.Cut(u.UserPrincipalName, "@")
	}
	rec := &userRec{User: u}
	if !u.NoMailbox {
		rec.mbox = &mailbox{}
	}
	if _, exists := t.st.users[u.ID]; !exists {
		t.st.userOrder = append(t.st.userOrder, u.ID)
	}
	t.st.users[u.ID] = rec
	return u
}

// User returns a snapshot of a user by id or UPN.
func (t *Tenant) User(idOrUPN string) (User, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil {
		return User{}, false
	}
	return u.User, true
}

// Users returns snapshots of every user.
func (t *Tenant) Users() []User {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]User, 0, len(t.st.userOrder))
	for _, id := range t.st.userOrder {
		out = append(out, t.st.users[id].User)
	}
	return out
}

// toMap converts a value to a JSON object map (numbers as json.Number).
func toMap(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return map[string]any{}
	}
	return decodeObj(b)
}

func decodeObj(b []byte) map[string]any {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil
	}
	return m
}

// cloneObj deep-copies a stored object. Objects hold what decodeObj makes
// (maps, slices, strings, json.Number, bools, nulls), which are copied
// directly: a JSON round trip under the tenant lock made every message list
// cost O(mailbox) encodes and stalled other mailboxes' calls. Any other value
// falls back to the round trip, which normalises it as before.
func cloneObj(m map[string]any) map[string]any {
	if c, ok := cloneJSON(m); ok {
		c, _ := c.(map[string]any)
		return c
	}
	b, err := json.Marshal(m)
	if err != nil {
		return map[string]any{}
	}
	return decodeObj(b)
}

// cloneJSON copies a value of the decodeObj kinds; ok is false for any other.
func cloneJSON(v any) (any, bool) {
	switch x := v.(type) {
	case nil, string, bool, json.Number:
		return x, true
	case map[string]any:
		if x == nil {
			return nil, true
		}
		c := make(map[string]any, len(x))
		for k, e := range x {
			ce, ok := cloneJSON(e)
			if !ok {
				return nil, false
			}
			c[k] = ce
		}
		return c, true
	case []any:
		if x == nil {
			return nil, true
		}
		c := make([]any, len(x))
		for i, e := range x {
			ce, ok := cloneJSON(e)
			if !ok {
				return nil, false
			}
			c[i] = ce
		}
		return c, true
	}
	return nil, false
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
