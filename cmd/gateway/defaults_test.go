package main

import (
	"bufio"
	"context"
	"maps"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/gateway"
	"github.com/aibatch/aibatch/jetstream"
)

// Every default of the gateway is stated once, as a constant of the
// package that owns it; config's tags, docs/gateway.md's settings table and
// k8s/gateway/configmap.yaml restate them. These tests fail when any of
// them disagree.

// ownerDefaults is the owner of every tag default, as config's field gets
// it.
var ownerDefaults = map[string]any{
	"NATS_URL":          "nats://" + net.JoinHostPort(jetstream.DefaultServerHost, strconv.Itoa(jetstream.DefaultServerPort)),
	"GATEWAY_ADDR":      gateway.DefaultAddr,
	"MAX_WAIT":          batch.DefaultMaxWait,
	"PROVIDER_TIMEOUT":  batch.DefaultCallTimeout,
	"MAX_REQUEST_BYTES": byteSize(gateway.DefaultMaxRequestBytes),
	"SHUTDOWN_TIMEOUT":  gateway.DefaultShutdownTimeout,
	// The worker's defaultModel (cmd/worker/defaults.go), which a test
	// cannot import from another main package.
	"MODEL":           "gpt-4o-mini",
	"EMBEDDING_MODEL": "text-embedding-3-small",
	"LOG_LEVEL":       "info",
	"LOG_FORMAT":      "json",
}

// manifestOverrides are the values k8s/gateway/configmap.yaml sets apart
// from the defaults, with the reason.
var manifestOverrides = map[string]string{
	"GATEWAY_ADDR":      "other pods reach the gateway through its Service; keys are then required",
	"GATEWAY_KEYS_FILE": "the keys Secret, mounted as a file",
}

// tagged returns config's variables and their tag defaults ("" and false
// when a tag has none).
func tagged(t *testing.T) map[string]*string {
	t.Helper()
	vars := map[string]*string{}
	typ := reflect.TypeFor[config]()
	for i := range typ.NumField() {
		name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("env"), ",")
		var def *string
		if _, d, ok := strings.Cut(opts, "default="); ok {
			def = &d
		}
		vars[strings.TrimSpace(name)] = def
	}
	return vars
}

// value decodes s as config's variable name does.
func value(t *testing.T, name, s string) any {
	t.Helper()
	var c config
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &c, Lookuper: envconfig.MapLookuper(map[string]string{name: s})}); err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		if n, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("env"), ","); n == name {
			return v.Field(i).Interface()
		}
	}
	t.Fatalf("config reads no %s", name)
	return nil
}

func TestTagDefaultsAreTheOwnersConstants(t *testing.T) {
	t.Parallel()
	for name, def := range tagged(t) {
		owner, ok := ownerDefaults[name]
		switch {
		case def == nil && ok:
			t.Errorf("%s: ownerDefaults has %v, config's tag no default", name, owner)
		case def != nil && !ok:
			t.Errorf("%s: config's tag says default=%s, ownerDefaults names no owner", name, *def)
		case def != nil && !reflect.DeepEqual(value(t, name, *def), owner):
			t.Errorf("%s: config's tag says default=%s, its owner is %v", name, *def, owner)
		}
	}
}

// TestDocsSettingsTable checks docs/gateway.md's table under "## Settings":
// one row per variable config reads, with its default.
func TestDocsSettingsTable(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../docs/gateway.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Settings"
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		def := strings.Trim(strings.TrimSpace(cells[1]), "`")
		for _, name := range strings.Split(strings.TrimSpace(cells[0]), ", ") {
			rows[strings.Trim(name, "`")] = def
		}
	}
	vars := tagged(t)
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		def, ok := rows[name]
		switch {
		case !ok:
			t.Errorf("docs/gateway.md's settings table has no row for %s", name)
		case vars[name] == nil && def != "":
			t.Errorf("%s: docs/gateway.md says default %q, config has none", name, def)
		case vars[name] != nil && (def == "" || !reflect.DeepEqual(value(t, name, def), value(t, name, *vars[name]))):
			t.Errorf("%s: docs/gateway.md says default %q, config's tag %q", name, def, *vars[name])
		}
	}
	for name := range rows {
		if _, ok := vars[name]; !ok {
			t.Errorf("docs/gateway.md's settings table has %s, which config does not read", name)
		}
	}
}

func TestKubernetesConfigMapRestatesDefaults(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../k8s/gateway/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	vars := tagged(t)
	for name, v := range cm.Data {
		def, ok := vars[name]
		if !ok {
			t.Errorf("k8s/gateway/configmap.yaml sets %s, which the gateway does not read", name)
			continue
		}
		_, override := manifestOverrides[name]
		same := def != nil && reflect.DeepEqual(value(t, name, v), value(t, name, *def))
		if same == override {
			t.Errorf("k8s/gateway/configmap.yaml sets %s=%q: differs from the default (%v) exactly when manifestOverrides lists it", name, v, def)
		}
	}
	for name := range manifestOverrides {
		if _, ok := cm.Data[name]; !ok {
			t.Errorf("manifestOverrides lists %s, which k8s/gateway/configmap.yaml does not set", name)
		}
	}
}
