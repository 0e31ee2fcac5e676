package m365sim

import "net/http"

// RetireInvokeCommand makes the Exchange Online admin API's InvokeCommand
// answer status (404 Not Found or 410 Gone) to every call, as it would once
// Microsoft retires the endpoint, which it does not document as a public API
// (the ExchangeOnlineManagement module's REST transport; Microsoft's
// documented replacement is the Exchange Online Admin API,
// https://learn.microsoft.com/exchange/reference/admin-api-overview). The body
// is the admin API's OData error without any cmdlet detail: no capture of a
// retired endpoint exists, so only the status is asserted by clients. The
// returned func brings the endpoint back. Over HTTP the same is
// POST /_sim/faults {"method":"POST","path_prefix":"/adminapi/beta/","status":410}.
func (t *Tenant) RetireInvokeCommand(status int) (restore func()) {
	msg := "The requested resource does not exist."
	code := "NotFound"
	if status == http.StatusGone {
		msg, code = "The requested resource is no longer available.", "Gone"
	}
	return t.AddFault(Fault{Method: http.MethodPost, PathPrefix: "/adminapi/beta/", Status: status, Code: code, Message: msg})
}
