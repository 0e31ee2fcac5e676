package bus

// InboxPrefix is the inbox prefix of the holder of publicKey: replies to its
// requests (JetStream publish acknowledgements, approval and query replies)
// arrive under InboxPrefix(key)+".>", and no other identity but the engine may
// subscribe there. Clients set it with nats.CustomInboxPrefix.
func InboxPrefix(publicKey string) string { return "_INBOX_" + Token(publicKey) }

// ResultSubjectFor is where the engine announces the outcome of one request to
// the one who asked: responder.<tenant>.result.<requester key id>.<request id>.
// Only the holder of requesterKey (and the engine) may subscribe there, so an
// outcome, and any secret it carries, reaches nobody else.
func ResultSubjectFor(tenant, requesterKey, requestID string) string {
	return "responder." + Token(tenant) + ".result." + Token(requesterKey) + "." + Token(requestID)
}

// ResultsFilterFor matches every result subject of one requester.
func ResultsFilterFor(tenant, requesterKey string) string {
	return "responder." + Token(tenant) + ".result." + Token(requesterKey) + ".>"
}

// AuditQuerySubject is where reviewers and analysts ask the engine for audit
// records (core NATS request/reply, signed queries).
func AuditQuerySubject(tenant string) string { return "responder." + Token(tenant) + ".query.audit" }

// ApprovalSubject is where analysts send signed approval commands (core NATS
// request/reply). It names the same subject as approval.Subject.
func ApprovalSubject(tenant string) string { return "responder." + Token(tenant) + ".approval" }
