package m365sim

// Password is the password last set on a user through Graph
// (passwordProfile), so that tests can look for it where it must never
// appear; ok is false for an unknown user or one whose password was never
// set through the emulator.
func (t *Tenant) Password(idOrUPN string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.st.userLocked(idOrUPN)
	if u == nil || u.password == "" {
		return "", false
	}
	return u.password, true
}
