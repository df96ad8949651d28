package inventory

import (
	"errors"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"

	"github.com/fleetscan/fleetscan/internal/imageref"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Reasons recorded on unresolved entries (before tag resolution adds its
// own outcome).
const (
	ReasonNoStatus = "no container status yet (pod not started)"
	ReasonNoID     = "no imageID in the container status yet"
	ReasonLocalID  = "the runtime reported a local image ID, not a registry manifest digest"
)

// pendingTag is an unresolved entry whose spec tag may be resolved against
// its registry.
type pendingTag struct {
	index int
	ref   imageref.Reference
}

// entryBuilder turns pods into inventory entries. It caches the parses of
// repeated image strings (a fleet runs few distinct images in many pods) and
// interns the resulting strings, so 100k pods cost little more memory than
// their entries.
type entryBuilder struct {
	cluster string
	refs    map[string]refParse
	ids     map[string]idParse
	strs    map[string]string
}

type refParse struct {
	ref imageref.Reference
	str string
	err error
}

type idParse struct {
	id  imageref.ImageID
	err error
}

func newEntryBuilder(cluster string) *entryBuilder {
	return &entryBuilder{cluster: cluster, refs: map[string]refParse{}, ids: map[string]idParse{}, strs: map[string]string{}}
}

func (b *entryBuilder) intern(s string) string {
	if v, ok := b.strs[s]; ok {
		return v
	}
	b.strs[s] = s
	return s
}

func (b *entryBuilder) reference(s string) refParse {
	if p, ok := b.refs[s]; ok {
		return p
	}
	ref, err := imageref.NormalizeReference(s)
	p := refParse{ref: ref, err: err}
	if err == nil {
		p.str = b.intern(ref.String())
	}
	b.refs[b.intern(s)] = p
	return p
}

func (b *entryBuilder) imageID(s string) idParse {
	if p, ok := b.ids[s]; ok {
		return p
	}
	id, err := imageref.ParseImageID(s)
	if err == nil {
		id.Repository = b.intern(id.Repository)
		id.Digest = b.intern(id.Digest)
	}
	p := idParse{id: id, err: err}
	b.ids[b.intern(s)] = p
	return p
}

// podEntries appends one entry per container of pod to out. It returns the
// extended slice, the entries (by index into out) whose spec tag may be
// resolved, and the containers whose image strings did not parse.
func (b *entryBuilder) podEntries(out []contract.InventoryEntry, pod *corev1.Pod, platform contract.Platform, wl contract.Workload) ([]contract.InventoryEntry, []pendingTag, error) {
	var (
		pending []pendingTag
		errs    []error
	)
	add := func(kind contract.ContainerKind, name, image string, st *corev1.ContainerStatus) {
		e := contract.InventoryEntry{
			Namespace:     pod.Namespace,
			Pod:           pod.Name,
			Node:          pod.Spec.NodeName,
			Workload:      wl,
			Container:     name,
			ContainerKind: kind,
			Image:         image,
			Platform:      platform,
			Resolution:    contract.Unresolved,
		}
		fail := func(err error) {
			errs = append(errs, &ContainerError{Cluster: b.cluster, Namespace: pod.Namespace, Pod: pod.Name, Container: name, Err: err})
		}
		rp := b.reference(image)
		if rp.err == nil {
			e.Image = rp.str
		} else {
			e.Image = b.intern(image)
			fail(rp.err)
		}
		if st != nil {
			e.ImageID = b.intern(st.ImageID)
		}
		if rp.err == nil && rp.ref.Pinned() {
			// A spec pinned by digest is what the kubelet pulled.
			e.Digest, e.Resolution = rp.ref.Digest, contract.ResolvedSpec
			out = append(out, e)
			return
		}
		switch {
		case st == nil:
			e.Reason = ReasonNoStatus
		default:
			ip := b.imageID(st.ImageID)
			switch {
			case ip.err != nil:
				e.Reason = ip.err.Error()
				fail(ip.err)
			case ip.id.Kind == imageref.IDRepoDigest:
				e.Digest, e.Resolution = ip.id.Digest, contract.ResolvedStatus
			case ip.id.Kind == imageref.IDLocal:
				e.Reason = ReasonLocalID
			default:
				e.Reason = ReasonNoID
				if w := st.State.Waiting; w != nil && w.Reason != "" {
					e.Reason = fmt.Sprintf("%s (container waiting: %s)", ReasonNoID, w.Reason)
				}
			}
		}
		if e.Resolution == contract.Unresolved {
			if rp.err != nil {
				e.Reason += "; spec image: " + rp.err.Error()
			} else {
				pending = append(pending, pendingTag{index: len(out), ref: rp.ref})
			}
		}
		out = append(out, e)
	}

	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		add(contract.ContainerInit, c.Name, c.Image, statusOf(pod.Status.InitContainerStatuses, c.Name))
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		add(contract.ContainerRegular, c.Name, c.Image, statusOf(pod.Status.ContainerStatuses, c.Name))
	}
	for i := range pod.Spec.EphemeralContainers {
		c := &pod.Spec.EphemeralContainers[i]
		add(contract.ContainerEphemeral, c.Name, c.Image, statusOf(pod.Status.EphemeralContainerStatuses, c.Name))
	}
	return out, pending, errors.Join(errs...)
}

// statusOf finds a container's status by name (statuses are not guaranteed
// to be in spec order, and may be missing).
func statusOf(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

// PodEntries returns one inventory entry per container of pod — init,
// regular and ephemeral — on platform and attributed to wl. Containers whose
// image or imageID does not parse are still returned (unresolved, with the
// reason); the error joins a *ContainerError per such container. Entries
// that need their tag resolved are left unresolved: Collector does that.
func PodEntries(pod *corev1.Pod, platform contract.Platform, wl contract.Workload) ([]contract.InventoryEntry, error) {
	out, _, err := newEntryBuilder("").podEntries(nil, pod, platform, wl)
	return out, err
}

// EntryReferences returns the pullable references (repository@digest) of a
// resolved entry: its spec repository and, when the runtime reported a
// repo digest for the same digest under another repository (a mirror), that
// one too. It is empty for an unresolved entry.
func EntryReferences(e contract.InventoryEntry) []string {
	if e.Digest == "" {
		return nil
	}
	var refs []string
	if r, err := imageref.NormalizeReference(e.Image); err == nil {
		refs = append(refs, r.WithDigest(e.Digest))
	}
	if id, err := imageref.ParseImageID(e.ImageID); err == nil && id.Kind == imageref.IDRepoDigest && id.Digest == e.Digest {
		if ref := id.Reference(); len(refs) == 0 || refs[0] != ref {
			refs = append(refs, ref)
		}
	}
	sort.Strings(refs)
	return refs
}
