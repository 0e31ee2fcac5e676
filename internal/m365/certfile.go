package m365

import (
	"fmt"
	"os"
	"runtime"
)

// ReadCertPEM reads the client-certificate PEM (the private key followed by the
// certificate) for Credentials.CertPEM. Like the analysts' key files (see
// analyst.ReadKeyFile) and as ssh does with private keys, on Unix it refuses a
// file that group or others may read or write: the private key in it signs
// the application's client assertions, so whoever reads it is the
// application. The error names the file and its mode, never its content.
func ReadCertPEM(path string) ([]byte, error) {
	if err := CheckPrivateFile(path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("m365: client certificate: %w", err)
	}
	return b, nil
}

// CheckPrivateFile fails when path is missing, is not a regular file, or (on
// Unix) group or others have any permission on it.
func CheckPrivateFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("m365: client certificate: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("m365: client certificate %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("m365: client certificate %s holds a private key and is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	return nil
}
