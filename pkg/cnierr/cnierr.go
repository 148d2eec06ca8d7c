// Package cnierr builds CNI error results (code, message, details) and keeps
// their code when the error is wrapped with context on the way up.
package cnierr

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// Config reports an invalid network configuration (code 7). The message
// starts with the field so a person can find it in the conflist.
func Config(field, format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, field+": "+fmt.Sprintf(format, a...), "")
}

// Decode reports input that is not the JSON it should be (code 6).
func Decode(format string, a ...any) *types.Error {
	return types.NewError(types.ErrDecodingFailure, fmt.Sprintf(format, a...), "")
}

// Env reports a bad CNI_* environment variable (code 4).
func Env(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf(format, a...), "")
}

// IO reports a failure to read or write state (code 5).
func IO(format string, a ...any) *types.Error {
	return types.NewError(types.ErrIOFailure, fmt.Sprintf(format, a...), "")
}

// TryAgain reports a transient condition (code 11, "try again later"): the
// same request can succeed once it is gone, e.g. an etcd cluster out of reach.
func TryAgain(format string, a ...any) *types.Error {
	return types.NewError(types.ErrTryAgainLater, fmt.Sprintf(format, a...), "")
}

// NotAvailable is STATUS's "the plugin cannot add containers now" (code 50).
func NotAvailable(format string, a ...any) *types.Error {
	return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf(format, a...), "")
}

// LimitedConnectivity is STATUS's "ADD works, but containers will reach
// less than they should" (code 51).
func LimitedConnectivity(format string, a ...any) *types.Error {
	return types.NewError(types.ErrLimitedConnectivity, fmt.Sprintf(format, a...), "")
}

// Wrap turns any error into a CNI error. skel unwraps to the innermost
// *types.Error and would drop the context added by fmt.Errorf; Wrap keeps the
// inner code but the whole message.
func Wrap(err error) *types.Error {
	if err == nil {
		return nil
	}
	var e *types.Error
	if errors.As(err, &e) {
		if e == err {
			return e
		}
		return types.NewError(e.Code, err.Error(), e.Details)
	}
	return types.NewError(types.ErrInternal, err.Error(), "")
}

// Handler adapts a command handler for skel so that a wrapped CNI error keeps
// its code and its whole message.
func Handler(f func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(a *skel.CmdArgs) error {
		if err := f(a); err != nil {
			return Wrap(err)
		}
		return nil
	}
}
