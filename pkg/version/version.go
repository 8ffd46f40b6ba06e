// Package version reports the build version, set by the Makefile through -ldflags.
package version

// Version is overridden at build time: -X .../pkg/version.Version=v0.1.0.
var Version = "dev"
