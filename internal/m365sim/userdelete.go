package m365sim

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Deleting a user moves it to the directory's deleted items, where it stays
// restorable for 30 days; /users/{id} answers 404 Request_ResourceNotFound at
// once, and GET /directory/deletedItems/{id} returns it with its
// deletedDateTime (https://learn.microsoft.com/graph/api/user-delete,
// https://learn.microsoft.com/graph/api/directory-deleteditems-get). Identity
// Protection is not told: the user's riskyUsers record and risk detections
// stay, with isDeleted as it was. Microsoft documents isDeleted ("Indicates
// whether the user is deleted",
// https://learn.microsoft.com/graph/api/resources/riskyuser) but computes
// risky-user state offline and late (users at risk: up to 2 hours, retired
// reporting-latencies page), so a record naming a deleted user can say false;
// clients must confirm the user exists before acting.

var permDeletedRead = anyOf("User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All")

type deletedUser struct {
	rec *userRec
	at  time.Time
}

// DeleteUser deletes a user (by id or UPN), as DELETE /users/{id} would,
// leaving its Identity Protection records untouched.
func (t *Tenant) DeleteUser(idOrUPN string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil {
		return fmt.Errorf("m365sim: no user %s", idOrUPN)
	}
	delete(t.st.users, u.ID)
	for i, id := range t.st.userOrder {
		if id == u.ID {
			t.st.userOrder = append(t.st.userOrder[:i], t.st.userOrder[i+1:]...)
			break
		}
	}
	if t.st.deleted == nil {
		t.st.deleted = map[string]*deletedUser{}
	}
	t.st.deleted[u.ID] = &deletedUser{rec: u, at: t.now()}
	return nil
}

// DeletedUser returns a snapshot of a deleted user by id or UPN.
func (t *Tenant) DeletedUser(idOrUPN string) (User, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.deletedLocked(idOrUPN); d != nil {
		return d.rec.User, true
	}
	return User{}, false
}

func (t *Tenant) deletedLocked(key string) *deletedUser {
	if d := t.st.deleted[strings.ToLower(key)]; d != nil {
		return d
	}
	for _, d := range t.st.deleted {
		if strings.EqualFold(d.rec.UserPrincipalName, key) {
			return d
		}
	}
	return nil
}

// getDeletedItem serves GET /directory/deletedItems/{id} for users. Microsoft
// keys deleted items by object id; a deleted user's UPN is rewritten with its
// id as a prefix, so a UPN does not find it.
func (t *Tenant) getDeletedItem(r *req, p []string) *resp {
	t.mu.Lock()
	d := t.st.deleted[strings.ToLower(p[0])]
	var obj map[string]any
	if d != nil {
		obj = userObj(d.rec)
		obj["@odata.type"] = "#microsoft.graph.user"
		obj["deletedDateTime"] = graphTime(d.at)
		obj["userPrincipalName"] = strings.ReplaceAll(d.rec.ID, "-", "") + d.rec.UserPrincipalName
	}
	t.mu.Unlock()
	if d == nil {
		return t.notFoundEntra(r, p[0])
	}
	obj["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#directory/deletedItems/$entity"
	return jsonResp(http.StatusOK, obj)
}
