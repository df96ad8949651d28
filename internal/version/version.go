// Package version holds the build's version, stamped at link time with
// -ldflags "-X github.com/fleetscan/fleetscan/internal/version.Version=v1.2.3".
package version

// Version of fleetscan; "dev" for unstamped builds.
var Version = "dev"
