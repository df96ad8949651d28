// Package deploy holds fleetscan's Kubernetes manifests (kustomize bases,
// components and overlays under this directory) and the tests that keep
// them honest: every manifest decodes strictly into the Kubernetes API
// types, every overlay builds with kustomize, the rendered base passes a
// server-side dry run against a real kube-apiserver, the NATS configuration
// loads in a real nats-server and grants each component exactly what it
// needs, and the policies the README promises (limits, non-root, RBAC,
// schedules, retry behaviour) hold in every overlay.
//
// The package has no code of its own; see README.md for how to deploy.
package deploy
