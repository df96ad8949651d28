package inventory

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// FileSource reads a cluster's pods from what `kubectl get pods -A -o json`
// prints: a v1 List (or PodList) whose items are Pods. The file is decoded
// one item at a time, so its size does not bound memory. Node platforms come
// from an optional second file, the output of `kubectl get nodes -o json`.
// A file carries no ReplicaSets or Jobs, so owners are inferred from naming
// conventions (see contract.Workload.Inferred).
type FileSource struct {
	cluster   string
	path      string
	nodesPath string
}

// NewFileSource returns a source reading pods from path and, when nodesPath
// is not empty, node platforms from nodesPath.
func NewFileSource(cluster, path, nodesPath string) *FileSource {
	return &FileSource{cluster: cluster, path: path, nodesPath: nodesPath}
}

// Cluster implements Source.
func (s *FileSource) Cluster() string { return s.cluster }

// EachPod implements Source, matching selector on the client.
func (s *FileSource) EachPod(ctx context.Context, selector labels.Selector, fn func(*corev1.Pod) error) error {
	if selector == nil {
		selector = labels.Everything()
	}
	return eachListItem(ctx, s.path, "Pod", func(dec *json.Decoder, index int) error {
		var fp filePod
		if err := dec.Decode(&fp); err != nil {
			return fmt.Errorf("items[%d]: %w", index, err)
		}
		if fp.Kind != "" && fp.Kind != "Pod" {
			return fmt.Errorf("items[%d]: kind %q, want Pod (is this `kubectl get pods -A -o json` output?)", index, fp.Kind)
		}
		if !selector.Matches(labels.Set(fp.Metadata.Labels)) {
			return nil
		}
		return fn(fp.pod())
	})
}

// filePod is the part of a Pod the inventory reads. Decoding only these
// fields (the rest of each item is scanned but not built) makes a large
// file several times cheaper than decoding full corev1.Pods.
type filePod struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name            string                  `json:"name"`
		Namespace       string                  `json:"namespace"`
		Labels          map[string]string       `json:"labels"`
		OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		NodeName            string            `json:"nodeName"`
		NodeSelector        map[string]string `json:"nodeSelector"`
		InitContainers      []fileContainer   `json:"initContainers"`
		Containers          []fileContainer   `json:"containers"`
		EphemeralContainers []fileContainer   `json:"ephemeralContainers"`
	} `json:"spec"`
	Status struct {
		InitContainerStatuses      []fileStatus `json:"initContainerStatuses"`
		ContainerStatuses          []fileStatus `json:"containerStatuses"`
		EphemeralContainerStatuses []fileStatus `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

type fileContainer struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type fileStatus struct {
	Name    string `json:"name"`
	ImageID string `json:"imageID"`
	State   struct {
		Waiting *struct {
			Reason string `json:"reason"`
		} `json:"waiting"`
	} `json:"state"`
}

func (fp *filePod) pod() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.Namespace, p.Labels, p.OwnerReferences = fp.Metadata.Name, fp.Metadata.Namespace, fp.Metadata.Labels, fp.Metadata.OwnerReferences
	p.Spec.NodeName, p.Spec.NodeSelector = fp.Spec.NodeName, fp.Spec.NodeSelector
	for _, c := range fp.Spec.InitContainers {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range fp.Spec.Containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	for _, c := range fp.Spec.EphemeralContainers {
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers,
			corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name, Image: c.Image}})
	}
	p.Status.InitContainerStatuses = statuses(fp.Status.InitContainerStatuses)
	p.Status.ContainerStatuses = statuses(fp.Status.ContainerStatuses)
	p.Status.EphemeralContainerStatuses = statuses(fp.Status.EphemeralContainerStatuses)
	return p
}

func statuses(in []fileStatus) []corev1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		out[i].Name, out[i].ImageID = s.Name, s.ImageID
		if s.State.Waiting != nil {
			out[i].State.Waiting = &corev1.ContainerStateWaiting{Reason: s.State.Waiting.Reason}
		}
	}
	return out
}

// NodePlatforms implements Source: the platforms in the nodes file, or an
// empty map without one.
func (s *FileSource) NodePlatforms(ctx context.Context) (map[string]contract.Platform, error) {
	out := map[string]contract.Platform{}
	if s.nodesPath == "" {
		return out, nil
	}
	err := eachListItem(ctx, s.nodesPath, "Node", func(dec *json.Decoder, index int) error {
		var node corev1.Node
		if err := dec.Decode(&node); err != nil {
			return fmt.Errorf("items[%d]: %w", index, err)
		}
		if node.Kind != "" && node.Kind != "Node" {
			return fmt.Errorf("items[%d]: kind %q, want Node (is this `kubectl get nodes -o json` output?)", index, node.Kind)
		}
		if p, ok := NodePlatform(&node); ok {
			out[node.Name] = p
		}
		return nil
	})
	return out, err
}

// ControllerOf implements Source: a file has no ReplicaSets or Jobs, so
// every owner is unknown and attribution infers it.
func (s *FileSource) ControllerOf(context.Context, string, string, string) (*metav1.OwnerReference, bool, error) {
	return nil, false, nil
}

// eachListItem streams the items array of the JSON List in path, calling
// item with the decoder positioned at each element. Errors name the file.
func eachListItem(ctx context.Context, path, itemKind string, item func(dec *json.Decoder, index int) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := decodeList(ctx, bufio.NewReaderSize(f, 1<<20), itemKind, item); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func decodeList(ctx context.Context, r io.Reader, itemKind string, item func(dec *json.Decoder, index int) error) error {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return fmt.Errorf("not a JSON List object: %w", err)
	}
	sawItems := false
	kind := ""
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		key, _ := tok.(string)
		switch key {
		case "items":
			if sawItems {
				return errors.New(`two "items" arrays`)
			}
			sawItems = true
			if err := expectDelim(dec, '['); err != nil {
				return fmt.Errorf(`"items": %w`, err)
			}
			for i := 0; dec.More(); i++ {
				if i%256 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				if err := item(dec, i); err != nil {
					return err
				}
			}
			if _, err := dec.Token(); err != nil {
				return fmt.Errorf(`"items": malformed JSON: %w`, err)
			}
		case "kind":
			if err := dec.Decode(&kind); err != nil {
				return fmt.Errorf(`"kind": %w`, err)
			}
			if kind != "List" && kind != itemKind+"List" {
				return fmt.Errorf("kind %q, want List or %sList", kind, itemKind)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return fmt.Errorf("%q: malformed JSON: %w", key, err)
			}
		}
	}
	if !sawItems {
		return fmt.Errorf(`no "items" array: want a List of %ss`, itemKind)
	}
	return nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("got %v, want %q", tok, string(want))
	}
	return nil
}
