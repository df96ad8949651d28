package deploy

import (
	"encoding/json"
	"fmt"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// scaledObject mirrors the fields of KEDA's keda.sh/v1alpha1 ScaledObject
// (v2.21) that a manifest may set. Decoding with unknown fields disallowed
// catches typos the way decoding into KEDA's own types would, without
// importing KEDA's API package (~600 packages).
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       scaledObjectSpec  `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        scaleTarget     `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *advancedConfig `json:"advanced,omitempty"`
	Triggers              []scaleTrigger  `json:"triggers"`
	Fallback              *fallback       `json:"fallback,omitempty"`
}

type scaleTarget struct {
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	Name                   string `json:"name"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type advancedConfig struct {
	HorizontalPodAutoscalerConfig *hpaConfig `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool       `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *struct {
		Formula          string `json:"formula,omitempty"`
		Target           string `json:"target,omitempty"`
		ActivationTarget string `json:"activationTarget,omitempty"`
		MetricType       string `json:"metricType,omitempty"`
	} `json:"scalingModifiers,omitempty"`
}

type hpaConfig struct {
	Name     string                                         `json:"name,omitempty"`
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
}

type fallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type scaleTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
	MetricType string `json:"metricType,omitempty"`
}

// natsJetStreamMetadata is the metadata KEDA's nats-jetstream scaler reads
// (pkg/scalers/nats_jetstream_scaler.go); anything else is ignored by KEDA,
// so an unknown key is a typo.
type natsJetStreamMetadata struct {
	NatsServerMonitoringEndpoint string `json:"natsServerMonitoringEndpoint"`
	Account                      string `json:"account"`
	Stream                       string `json:"stream"`
	Consumer                     string `json:"consumer"`
	LagThreshold                 string `json:"lagThreshold,omitempty"`
	ActivationLagThreshold       string `json:"activationLagThreshold,omitempty"`
	UseHTTPS                     string `json:"useHttps,omitempty"`
}

// natsJetStream decodes a nats-jetstream trigger's metadata strictly.
func (t scaleTrigger) natsJetStream() (natsJetStreamMetadata, error) {
	var m natsJetStreamMetadata
	if t.Type != "nats-jetstream" {
		return m, fmt.Errorf("trigger type %q, want nats-jetstream", t.Type)
	}
	data, err := json.Marshal(t.Metadata)
	if err != nil {
		return m, err
	}
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return m, fmt.Errorf("nats-jetstream trigger metadata: %w", err)
	}
	return m, nil
}
