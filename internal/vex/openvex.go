package vex

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	openvex "github.com/openvex/go-vex/pkg/vex"
)

// OpenVEXPredicateType is the in-toto predicate type of an OpenVEX
// attestation.
const OpenVEXPredicateType = "https://openvex.dev/ns"

// parseOpenVEX reads an OpenVEX document.
func parseOpenVEX(data []byte, source string) ([]Statement, error) {
	var doc openvex.VEX
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("OpenVEX: %w", err)
	}
	if !strings.HasPrefix(doc.Context, "https://openvex.dev/ns") {
		return nil, fmt.Errorf("OpenVEX: @context %q is not https://openvex.dev/ns", doc.Context)
	}
	var docTime time.Time
	if doc.Timestamp != nil {
		docTime = doc.Timestamp.UTC()
	}
	out := make([]Statement, 0, len(doc.Statements))
	for i, s := range doc.Statements {
		st, err := openVEXStatement(s, doc.Author, docTime)
		if err != nil {
			return nil, fmt.Errorf("OpenVEX: statement %d: %w", i+1, err)
		}
		st.Source, st.Format = source, "openvex"
		out = append(out, st)
	}
	return out, nil
}

func openVEXStatement(s openvex.Statement, author string, docTime time.Time) (Statement, error) {
	st := Statement{
		Vulnerability: string(s.Vulnerability.Name), Status: Status(s.Status),
		Justification: string(s.Justification), Impact: s.ImpactStatement, Author: author, Timestamp: docTime,
	}
	if st.Vulnerability == "" {
		st.Vulnerability = s.Vulnerability.ID
	}
	for _, a := range s.Vulnerability.Aliases {
		st.Aliases = append(st.Aliases, string(a))
	}
	if st.Impact == "" {
		st.Impact = s.ActionStatement
	}
	if s.Timestamp != nil {
		st.Timestamp = s.Timestamp.UTC()
	}
	if st.Vulnerability == "" {
		return st, errors.New("vulnerability name is required")
	}
	if !st.Status.Valid() {
		return st, fmt.Errorf("%s: status %q is not one of not_affected, affected, fixed, under_investigation", st.Vulnerability, s.Status)
	}
	for _, p := range s.Products {
		prod := componentPURL(p.Component)
		if len(p.Subcomponents) == 0 {
			st.Targets = append(st.Targets, Target{Product: prod})
		}
		for _, sc := range p.Subcomponents {
			st.Targets = append(st.Targets, Target{Product: prod, Subcomponent: componentPURL(sc.Component)})
		}
	}
	if len(st.Targets) == 0 {
		return st, fmt.Errorf("%s: no products", st.Vulnerability)
	}
	return st, nil
}

// componentPURL is the component's PURL: its @id when it is one, else its
// purl identifier.
func componentPURL(c openvex.Component) string {
	if strings.HasPrefix(c.ID, "pkg:") {
		return c.ID
	}
	return c.Identifiers[openvex.PURL]
}

// unwrapAttestation returns the OpenVEX predicate of an in-toto statement
// or a DSSE envelope holding one; other documents come back unchanged.
func unwrapAttestation(data []byte) []byte {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if json.Unmarshal(data, &env) == nil && env.Payload != "" && strings.Contains(env.PayloadType, "in-toto") {
		if dec, err := base64.StdEncoding.DecodeString(env.Payload); err == nil {
			data = dec
		}
	}
	var st struct {
		PredicateType string          `json:"predicateType"`
		Predicate     json.RawMessage `json:"predicate"`
	}
	if json.Unmarshal(data, &st) == nil && strings.HasPrefix(st.PredicateType, OpenVEXPredicateType) && len(st.Predicate) > 0 {
		return bytes.TrimSpace(st.Predicate)
	}
	return data
}
