package scan

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// classify wraps err with the failure class the queue acts on: permanent
// classes (not found, unauthorized, unsupported) are recorded at once,
// retryable ones (rate limited, timeout, internal) are retried with backoff.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var qe *contract.FailureError
	if errors.As(err, &qe) {
		return err
	}
	if tlsVerification(err) {
		// A certificate the worker cannot verify will not verify on the
		// next attempt either: a CA bundle or --insecure-registry is needed.
		return contract.Permanent(contract.FailureInternal, fmt.Errorf("TLS verification failed (trust the registry's CA or list it in --insecure-registry): %w", err))
	}
	class := classOf(err)
	if class.Retryable() {
		return contract.Retryable(class, err)
	}
	return contract.Permanent(class, err)
}

func tlsVerification(err error) bool {
	var (
		cve *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
	)
	return errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// classOf maps an error from the registry client or Trivy to a class.
func classOf(err error) contract.FailureClass {
	if errors.Is(err, context.DeadlineExceeded) {
		return contract.FailureTimeout
	}
	if unreachable(err) {
		return contract.FailureUnreachable
	}
	if errors.Is(err, remote.ErrSchema1) {
		return contract.FailureUnsupported
	}
	// Registry errors: the OCI distribution error codes are more precise
	// than the status code, so they win.
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode,
				transport.ManifestBlobUnknownErrorCode:
				return contract.FailureNotFound
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return contract.FailureUnauthorized
			case transport.TooManyRequestsErrorCode:
				return contract.FailureRateLimited
			case transport.UnsupportedErrorCode, transport.ManifestInvalidErrorCode, transport.NameInvalidErrorCode:
				return contract.FailureUnsupported
			}
		}
		switch code := te.StatusCode; {
		case code == http.StatusNotFound:
			return contract.FailureNotFound
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			return contract.FailureUnauthorized
		case code == http.StatusTooManyRequests:
			return contract.FailureRateLimited
		case code == http.StatusRequestTimeout || code == http.StatusGatewayTimeout:
			return contract.FailureTimeout
		case code >= 500:
			return contract.FailureInternal
		case code >= 400:
			return contract.FailureUnsupported
		}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no child with platform"):
		// The index exists but has no manifest for the job's platform.
		return contract.FailureNotFound
	case strings.Contains(msg, "unsupported artifact type"), strings.Contains(msg, "unsupported MediaType"),
		strings.Contains(msg, "unexpected media type"):
		return contract.FailureUnsupported
	}
	return contract.FailureInternal
}

// unreachable reports whether err says the registry could not be reached
// at all: the connection was refused, the host or network is unreachable,
// or its name does not resolve.
func unreachable(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return !dns.IsTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	// Some clients flatten the error into text.
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") ||
		strings.Contains(msg, "no route to host") || strings.Contains(msg, "network is unreachable")
}

// registryClass reports whether a failure of this class may not happen on
// another copy of the same digest (a mirror), so the next reference is worth
// trying.
func registryClass(c contract.FailureClass) bool {
	switch c {
	case contract.FailureNotFound, contract.FailureUnauthorized, contract.FailureRateLimited, contract.FailureInternal,
		contract.FailureUnreachable:
		return true
	}
	return false
}
