package feeds

import (
	"errors"
	"fmt"

	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// describe turns an SDK error into one that can be printed safely (the SDK's
// ODataError.Error dereferences a message Microsoft may omit) and names a missing
// licence clearly.
func describe(err error) error {
	var oe *odataerrors.ODataError
	if !errors.As(err, &oe) {
		return err
	}
	code, msg := "", ""
	if me := oe.GetErrorEscaped(); me != nil {
		if c := me.GetCode(); c != nil {
			code = *c
		}
		if m := me.GetMessage(); m != nil {
			msg = *m
		}
	}
	if code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant" {
		return fmt.Errorf("HTTP %d %s: this feed needs a Microsoft Entra ID P1 (sign-ins) or P2 (Identity Protection) licence on the tenant: %s", oe.ResponseStatusCode, code, msg)
	}
	return fmt.Errorf("HTTP %d %s: %s", oe.ResponseStatusCode, code, msg)
}
