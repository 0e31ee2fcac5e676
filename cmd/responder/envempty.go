package main

import (
	"os"
	"strings"
)

// ignoreEmptyEnv unsets every RESPONDER_ variable that is set to the empty
// string, so that it means what an unset one means. Compose files and
// Kubernetes manifests pass every setting through (`VAR: ${VAR:-}`), and kong
// parses an empty variable as a value: an empty RESPONDER_CLIENT_CERT became
// the current directory (a path flag), which made `serve --sandbox` refuse to
// start under docker-compose.yml and a real tenant read a directory as its
// certificate (found by .ci/compose-smoke).
func ignoreEmptyEnv() {
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if v == "" && strings.HasPrefix(k, "RESPONDER_") {
			_ = os.Unsetenv(k)
		}
	}
}
