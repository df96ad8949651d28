// Package deploy holds fleetscan's Kubernetes manifests (kustomize bases,
// components and overlays under this directory), the Helm chart that renders
// those same files (helm/fleetscan), and the tests that keep them honest:
// every manifest decodes strictly into the Kubernetes API types, every
// overlay builds with kustomize and every chart shape renders with Helm to
// the same objects as its overlay, all of them pass a server-side dry run
// against a real kube-apiserver, the README's five-minute Helm install runs
// there as written, the chart is published to and pulled from an OCI
// registry, the NATS configuration loads in a real nats-server and grants
// each component exactly what it needs, and the policies the README promises
// (limits, non-root, RBAC, schedules, retry behaviour) hold in every
// rendering.
//
// The package has no code of its own; see README.md for how to deploy.
package deploy
