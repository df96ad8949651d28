// Package integration holds fleetscan's end-to-end tests: real containers
// (NATS, registry, S3, fleetscan's own images) driven by testcontainers-go.
// It is a separate module so the main module does not carry testcontainers'
// dependencies.
package integration
