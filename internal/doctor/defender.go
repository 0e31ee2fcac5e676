package doctor

// The Microsoft Defender for Endpoint actions (isolate_device, release_device,
// block_file, block_url, block_domain, block_device_ip, remove_indicator)
// call the Defender API with a token for its own audience: the App ID URI of
// the WindowsDefenderATP application, https://api.securitycenter.microsoft.com
// (m365.DefenderScope), on every host, regional ones included
// (https://learn.microsoft.com/defender-endpoint/api/exposed-apis-create-app-webapp).
// Its application permissions are granted under "APIs my organization uses →
// WindowsDefenderATP" and appear in that token's roles claim, which doctor
// reads like the other audiences': Machine.Isolate and Machine.Read.All for
// the device actions, Ti.ReadWrite.All for the indicators
// (https://learn.microsoft.com/defender-endpoint/api/isolate-machine,
// …/post-ti-indicator, …/import-ti-indicators). A Defender API token that
// cannot be had (the tenant has no Defender for Endpoint licence, or the app
// was never consented for it) fails those actions with the token error.

// DefenderActions are the catalogue actions doctor checks against the
// Defender audience.
func DefenderActions() []string {
	var out []string
	for _, r := range Requirements() {
		if r.Audience == Defender && r.Kind == KindAction {
			out = append(out, r.Name)
		}
	}
	return out
}
