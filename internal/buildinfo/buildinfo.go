// Package buildinfo says which build of aibatch is running: its version,
// the commit it was built from and the Go version that built it.
//
// The version and commit come from the linker when the build sets them,
//
//	go build -ldflags "-X github.com/aibatch/aibatch/internal/buildinfo.version=v1.2.0 \
//	  -X github.com/aibatch/aibatch/internal/buildinfo.commit=$(git rev-parse HEAD)" ./cmd/worker
//
// as `make build` and the Dockerfile do; otherwise from the module and VCS
// information Go embeds (runtime/debug.ReadBuildInfo): the module version
// of `go install …@v1.2.0`, and vcs.revision when the build ran in a git
// checkout without -buildvcs=false.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set by -ldflags "-X …"; empty means: read the embedded build information.
var (
	version string
	commit  string
)

// Unknown is what Info holds for a value no source gave.
const Unknown = "unknown"

// Info is one build's identity.
type Info struct {
	// Version is the release ("v1.2.0"), "(devel)" for a build from a
	// source tree, or Unknown.
	Version string
	// Commit is the VCS revision the build came from, with "-dirty" when
	// the tree had changes, or Unknown.
	Commit string
	// GoVersion is the Go release that built the binary ("go1.26.8").
	GoVersion string
}

// Get returns this binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(version, commit, bi)
}

// fromBuild prefers the linker's values and falls back on bi (nil when
// the binary carries no build information).
func fromBuild(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" {
			var revision, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					revision = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if revision != "" && modified == "true" {
				revision += "-dirty"
			}
			info.Commit = revision
		}
	}
	if info.Version == "" {
		info.Version = Unknown
	}
	if info.Commit == "" {
		info.Commit = Unknown
	}
	return info
}
