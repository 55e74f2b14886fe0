package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuild(t *testing.T) {
	t.Parallel()
	vcs := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/aibatch/aibatch", Version: "(devel)"},
		Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}},
	}
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{"linker values win", "v1.2.0", "deadbeef", vcs, Info{Version: "v1.2.0", Commit: "deadbeef", GoVersion: "go1.26.8"}},
		{"embedded VCS information", "", "", vcs, Info{Version: "(devel)", Commit: "abc123-dirty", GoVersion: "go1.26.8"}},
		{"go install of a release", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.3.0"}},
			Info{Version: "v1.3.0", Commit: Unknown, GoVersion: "go1.26.8"}},
	}
	for _, tt := range tests {
		if got := fromBuild(tt.version, tt.commit, tt.bi); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
	if got := fromBuild("", "", nil); got.Version != Unknown || got.Commit != Unknown || got.GoVersion == "" {
		t.Errorf("no build information: %+v, want unknown version and commit, and the runtime's Go version", got)
	}
	if got := Get(); got.GoVersion == "" || got.Version == "" || got.Commit == "" {
		t.Errorf("Get() = %+v: every field has a value", got)
	}
}
