package contract_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// A consumer of the results stream decodes each message and reads either its
// findings or why the scan failed.
func Example() {
	msg := []byte(`{
	  "schemaVersion": "1.3",
	  "runId": "run-20261127",
	  "cycle": "2026-11-27",
	  "digest": "sha256:9b2c7ac3e1d09ce2d05a3e1c39c2a1bb6c6b1f0f8cc6c4f4f2ea3a0e5f1c2d3e",
	  "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
	  "status": "scanned",
	  "completedAt": "2026-11-27T06:12:00Z",
	  "scanner": {"name": "trivy", "version": "0.68.1"},
	  "db": {"version": 2, "updatedAt": "2026-11-27T00:00:00Z"},
	  "findings": [
	    {"vulnerabilityId": "CVE-2024-6119", "pkgName": "openssl", "pkgVersion": "3.1.4-r5",
	     "fixedVersion": "3.1.7-r0", "severity": "HIGH"}
	  ],
	  "someFutureField": true
	}`)
	r, err := contract.DecodeScanResult(msg)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.ImageKey.Platform, r.Status)
	for _, f := range r.Findings {
		fmt.Println(f.VulnerabilityID, f.Severity, f.PkgName, f.PkgVersion, "->", f.FixedVersion)
	}
	// Output:
	// linux/arm64/v8 scanned
	// CVE-2024-6119 HIGH openssl 3.1.4-r5 -> 3.1.7-r0
}

// A message of a major version this build does not know is rejected with an
// error naming the field.
func ExampleDecodeScanJob() {
	_, err := contract.DecodeScanJob([]byte(`{"schemaVersion": "2.0", "runId": "r", "cycle": "c"}`))
	var de *contract.DecodeError
	fmt.Println(errors.As(err, &de), de.Field, errors.Is(err, contract.ErrUnsupportedVersion))
	// Output:
	// true schemaVersion true
}

// A job published by another program is built with NewScanJob and encoded
// with the current schema version.
func ExampleNewScanJob() {
	key := contract.ImageKey{
		Digest:   "sha256:9b2c7ac3e1d09ce2d05a3e1c39c2a1bb6c6b1f0f8cc6c4f4f2ea3a0e5f1c2d3e",
		Platform: contract.Platform{OS: "linux", Architecture: "amd64"},
	}
	job := contract.NewScanJob("run-1", "2026-11-27", key, "registry.example.com/shop/api@"+key.Digest, nil,
		time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC))
	data, err := job.Encode()
	if err != nil {
		fmt.Println(err)
		return
	}
	back, err := contract.DecodeScanJob(data)
	fmt.Println(back.SchemaVersion == contract.JobSchemaVersion, back.ImageKey == key, err)
	// Output:
	// true true <nil>
}

// Scanners classify their errors; the queue asks Classify whether to retry.
func ExampleClassify() {
	for _, err := range []error{
		contract.Permanent(contract.FailureNotFound, errors.New("manifest unknown")),
		contract.Retryable(contract.FailureRateLimited, errors.New("429 Too Many Requests")),
		// A retryable wrapper cannot make a permanent class retryable.
		contract.Retryable(contract.FailureUnauthorized, errors.New("401")),
		fmt.Errorf("pull: %w", contract.Retryable(contract.FailureTimeout, errors.New("i/o timeout"))),
		errors.New("unclassified"),
	} {
		class, retry := contract.Classify(err)
		fmt.Println(class, retry)
	}
	// Output:
	// not_found false
	// rate_limited true
	// unauthorized false
	// timeout true
	// internal true
}

func ExampleParsePlatform() {
	p, err := contract.ParsePlatform("linux/arm/v7")
	fmt.Println(p.OS, p.Architecture, p.Variant, err)
	// Output:
	// linux arm v7 <nil>
}
