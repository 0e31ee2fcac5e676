// Package defenderexec carries out the Microsoft Defender for Endpoint actions
// of the catalogue (isolate_device, release_device, block_file, block_url,
// block_domain, block_device_ip, remove_indicator) with plain net/http against
// the Defender API (https://api.securitycenter.microsoft.com or a regional
// host), with a token for that API's own audience from the app's credential
// (m365.BearerClient with m365.DefenderScope). It does not use the Graph SDK.
//
// What it owns:
//   - device naming: a Defender machine id, an Entra device id or a computer
//     DNS name, resolved through GET /api/machines (OData literals escaped);
//   - isolation as a machine action followed to its final status (Succeeded,
//     Failed, TimeOut, Cancelled) by polling with backoff on an injectable
//     clock; an isolation already pending or in force is not requested again;
//   - indicators: requests in flight are coalesced into rounds of one read of
//     the existing indicators and the fewest submissions (one POST
//     /api/indicators, or POST /api/indicators/import with up to 500 each);
//     an indicator another principal created is never overwritten or deleted;
//     the inverse deletes only the indicator id this executor created;
//   - the guards of these actions (Handler.Guard): protected devices, servers
//     and domain controllers behind approval for playbooks, the tenant's
//     verified domains and Microsoft's, a file-hash allow list;
//   - the budgets Microsoft publishes per API: 100 calls a minute and 1,500 an
//     hour; the import API 30 calls a minute (paced evenly).
//
// Concurrency: an Executor is safe for concurrent use. It owns no goroutine:
// the first caller of an indicator round leads it until no request waits.
// It never logs a token, and its errors carry only status, Microsoft's code
// and message.
package defenderexec
