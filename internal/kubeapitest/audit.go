package kubeapitest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

// auditPolicy records every request at Metadata level (no bodies) when it
// is received and when it completes.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["ResponseStarted"]
rules:
  - level: Metadata
`

// Audit stages an AuditEvent is recorded at.
const (
	// StageRequestReceived is written before the request is served, so a
	// request whose response the client has is already in the log.
	StageRequestReceived  = "RequestReceived"
	StageResponseComplete = "ResponseComplete"
)

// AuditEvent is the part of an audit.k8s.io/v1 Event tests compare.
type AuditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string   `json:"username"`
		Groups   []string `json:"groups"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

// auditArgs writes the audit policy and returns kube-apiserver's audit
// flags (none unless WithAuditLog). The log is written synchronously
// (blocking mode).
func (s *Server) auditArgs() ([]string, error) {
	if !s.audit {
		return nil, nil
	}
	policy := s.path("audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	s.AuditLogPath = s.path("audit.log")
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + s.AuditLogPath,
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		"--audit-log-maxbackup=0",
	}, nil
}

// AuditEvents reads every event of the audit log so far. It fails the test
// when the server was not started WithAuditLog or the log cannot be parsed.
func (s *Server) AuditEvents(t testing.TB) []AuditEvent {
	t.Helper()
	if s.AuditLogPath == "" {
		t.Fatal("kubeapitest: AuditEvents needs Start(t, WithAuditLog())")
	}
	b, err := os.ReadFile(s.AuditLogPath)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	events, err := parseAudit(b)
	if err != nil {
		t.Fatalf("audit log %s: %v", s.AuditLogPath, err)
	}
	return events
}

// parseAudit parses JSON lines of audit events; a last line without its
// newline (being written) is left out.
func parseAudit(b []byte) ([]AuditEvent, error) {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	var out []AuditEvent
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
