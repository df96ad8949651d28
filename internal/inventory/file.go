package inventory

import (
	"bufio"
	"bytes"
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
// prints: a v1 List (or PodList) whose items are Pods — or several such
// values one after the other (cat of several outputs), single Pods included.
// The file is decoded one item at a time, so its size does not bound
// memory, and read to its end: trailing garbage is an error naming the
// offset, never silently dropped. Node platforms come
// from an optional second file, the output of `kubectl get nodes -o json`.
// A file carries no ReplicaSets or Jobs, so owners are inferred from naming
// conventions (see contract.Workload.Inferred).
//
// The pods file may also carry Namespace objects (`kubectl get
// namespaces,pods -A -o json`): their labels and annotations are recorded
// as the API server's would be (NamespaceMeta). A file without them records
// none.
type FileSource struct {
	cluster   string
	path      string
	nodesPath string
	// namespaces are the Namespace objects EachPod met.
	namespaces map[string]contract.Namespace
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
	var annotations []byte
	return eachListItem(ctx, s.path, "Pod", func(dec *json.Decoder, index int) error {
		var fp filePod
		annotations = annotations[:0]
		fp.Metadata.Annotations.buf = &annotations
		if err := dec.Decode(&fp); err != nil {
			return fmt.Errorf("items[%d]: %w", index, err)
		}
		if fp.Kind == "Namespace" {
			return s.addNamespace(&fp, index)
		}
		if fp.Kind != "" && fp.Kind != "Pod" {
			return fmt.Errorf("items[%d]: kind %q, want Pod or Namespace (is this `kubectl get pods -A -o json` output?)", index, fp.Kind)
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
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
		// Annotations are decoded only for a Namespace.
		Annotations     scratchJSON             `json:"annotations"`
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

// scratchJSON keeps a JSON value in a buffer reused from item to item: a
// pod's annotations, never read, cost no allocation; a Namespace's are
// decoded from it before the next item.
type scratchJSON struct{ buf *[]byte }

// UnmarshalJSON implements json.Unmarshaler.
func (r *scratchJSON) UnmarshalJSON(b []byte) error {
	if r.buf != nil {
		*r.buf = append((*r.buf)[:0], b...)
	}
	return nil
}

func (r scratchJSON) bytes() []byte {
	if r.buf == nil {
		return nil
	}
	return *r.buf
}

// addNamespace records a Namespace item of the pods file.
func (s *FileSource) addNamespace(fp *filePod, index int) error {
	var annotations map[string]string
	if raw := fp.Metadata.Annotations.bytes(); len(raw) > 0 {
		if err := json.Unmarshal(raw, &annotations); err != nil {
			return fmt.Errorf("items[%d]: namespace %s annotations: %w", index, fp.Metadata.Name, err)
		}
	}
	if s.namespaces == nil {
		s.namespaces = map[string]contract.Namespace{}
	}
	s.namespaces[fp.Metadata.Name] = NamespaceMeta(fp.Metadata.Name, fp.Metadata.Labels, annotations)
	return nil
}

// Namespaces implements NamespaceSource: the Namespace objects of the pods
// file, known once EachPod has read it (Collector.Collect lists pods
// first).
func (s *FileSource) Namespaces(context.Context) (map[string]contract.Namespace, error) {
	return s.namespaces, nil
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

// eachListItem streams every item of the JSON values in path — a stream of
// Lists (or <Kind>Lists) and single objects of itemKind, as `cat` of several
// kubectl outputs gives — calling item with the decoder positioned at each.
// The whole file is read: anything after the first value that is not
// another List or item is an error naming the file and the byte offset.
func eachListItem(ctx context.Context, path, itemKind string, item func(dec *json.Decoder, index int) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := decodeStream(ctx, bufio.NewReaderSize(f, 1<<20), itemKind, item); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// decodeStream decodes every top-level JSON value of r.
func decodeStream(ctx context.Context, r io.Reader, itemKind string, item func(dec *json.Decoder, index int) error) error {
	dec := json.NewDecoder(r)
	for n := 0; ; n++ {
		off := dec.InputOffset()
		tok, err := dec.Token()
		switch {
		case errors.Is(err, io.EOF) && n > 0:
			return nil
		case n == 0 && err != nil:
			return fmt.Errorf("not a JSON List object: %w", err)
		case err != nil:
			return fmt.Errorf("offset %d, after %d JSON values: malformed JSON: %w", dec.InputOffset(), n, err)
		}
		if d, ok := tok.(json.Delim); !ok || d != '{' {
			if n == 0 {
				return fmt.Errorf("not a JSON List object: got %v, want '{'", tok)
			}
			return fmt.Errorf("offset %d, after %d JSON values: got %v, want another List or %s object", off, n, tok, itemKind)
		}
		if err := decodeValue(ctx, dec, itemKind, item); err != nil {
			if n == 0 {
				return err
			}
			return fmt.Errorf("JSON value %d at offset %d: %w", n+1, off, err)
		}
	}
}

// decodeValue decodes one object whose '{' was read: a List whose items
// are streamed, or a single item (kept whole: a Pod or Node is small).
func decodeValue(ctx context.Context, dec *json.Decoder, itemKind string, item func(dec *json.Decoder, index int) error) error {
	sawItems := false
	kind := ""
	fields := map[string]json.RawMessage{}
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
		default:
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return fmt.Errorf("%q: malformed JSON: %w", key, err)
			}
			if key == "kind" {
				if err := json.Unmarshal(raw, &kind); err != nil {
					return fmt.Errorf(`"kind": %w`, err)
				}
				if sawItems && kind != "List" && kind != itemKind+"List" {
					return fmt.Errorf("kind %q, want List or %sList", kind, itemKind)
				}
			}
			if !sawItems {
				fields[key] = raw
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return fmt.Errorf("malformed JSON: %w", err)
	}
	switch {
	case sawItems && (kind == "" || kind == "List" || kind == itemKind+"List"):
		return nil
	case sawItems:
		return fmt.Errorf("kind %q, want List or %sList", kind, itemKind)
	case kind == itemKind:
		// A single object (`kubectl get pod NAME -o json`).
		data, err := json.Marshal(fields)
		if err != nil {
			return err
		}
		return item(json.NewDecoder(bytes.NewReader(data)), 0)
	case kind == "" || kind == "List" || kind == itemKind+"List":
		return fmt.Errorf(`no "items" array: want a List of %ss`, itemKind)
	}
	return fmt.Errorf("kind %q, want List, %sList or %s", kind, itemKind, itemKind)
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
