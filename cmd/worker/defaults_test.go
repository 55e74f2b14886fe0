package main

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/aibatch/aibatch/batch"
	"github.com/aibatch/aibatch/internal/admin"
	"github.com/aibatch/aibatch/internal/attempts"
	"github.com/aibatch/aibatch/internal/cost"
	"github.com/aibatch/aibatch/internal/fleet"
	"github.com/aibatch/aibatch/internal/jobstore"
	"github.com/aibatch/aibatch/internal/respcache"
	"github.com/aibatch/aibatch/jetstream"
	"github.com/aibatch/aibatch/provider/openai"
	"github.com/aibatch/aibatch/provider/ratelimit"
	"github.com/aibatch/aibatch/wire"
)

// Every default the worker has is stated once, as a constant of the package
// that owns the setting. The struct tags of config restate them (a tag
// cannot name a constant), and so do README.md's configuration table and
// the Kubernetes manifests. These tests fail when any of them disagree.

// ownerDefaults is the owner constant of every variable whose tag has a
// default, typed as the config field it fills. A tag default missing from
// this table fails TestTagDefaultsAreTheOwnersConstants: a new setting's
// default needs an owner too.
var ownerDefaults = []struct {
	env   string
	owner string // the constant, as the messages name it
	want  any
}{
	// USE_BATCHED_CLIENT=true is batch.Config's default of Immediate=false.
	{"USE_BATCHED_CLIENT", "!batch.Config{}.WithDefaults().Immediate", !batch.Config{}.WithDefaults().Immediate},
	{"BATCH_INTERVAL", "batch.DefaultInterval", batch.DefaultInterval},
	{"MAX_BATCH_SIZE", "batch.DefaultMaxBatchSize", batch.DefaultMaxBatchSize},
	{"MAX_WAIT", "batch.DefaultMaxWait", batch.DefaultMaxWait},
	{"MAX_DELIVER", "batch.DefaultMaxDeliver", batch.DefaultMaxDeliver},
	{"MAX_REQUEST_BYTES", "batch.DefaultMaxRequestBytes", byteSize(batch.DefaultMaxRequestBytes)},
	{"MAX_INFLIGHT_BATCHES", "batch.DefaultMaxInflight", batch.DefaultMaxInflight},
	{"POLL_INTERVAL", "batch.DefaultPollInterval", batch.DefaultPollInterval},
	{"ACK_WAIT", "batch.DefaultAckWait", batch.DefaultAckWait},
	{"PROVIDER_TIMEOUT", "batch.DefaultCallTimeout", batch.DefaultCallTimeout},
	{"RETRY_BACKOFF", "batch.DefaultRetryBackoff", batch.DefaultRetryBackoff},
	{"RETRY_MAX_BACKOFF", "batch.DefaultRetryMaxBackoff", batch.DefaultRetryMaxBackoff},
	{"SHUTDOWN_TIMEOUT", "batch.DefaultShutdownTimeout", batch.DefaultShutdownTimeout},
	{"JOB_POLL_INTERVAL", "batch.DefaultJobPollInterval", batch.DefaultJobPollInterval},
	{"REQUEST_TTL", "batch.DefaultRequestTTL", batch.DefaultRequestTTL},
	{"HOLD_MAX_REQUESTS", "batch.DefaultHoldMaxRequests", batch.DefaultHoldMaxRequests},
	{"HOLD_MAX_BYTES", "batch.DefaultHoldMaxBytes", byteSize(batch.DefaultHoldMaxBytes)},
	// batch.Config.MixTopics' zero value (false) is ISOLATE_TOPICS=true.
	{"ISOLATE_TOPICS", "!batch.Config{}.MixTopics", !batch.Config{}.MixTopics},
	{"PROVIDER_PROBE_INTERVAL", "batch.DefaultProbeInterval", batch.DefaultProbeInterval},
	{"DEFAULT_OUTPUT_TOKENS", "batch.DefaultOutputTokens", batch.DefaultOutputTokens},
	{"ATTEMPTS_BUCKET", "attempts.DefaultBucket", attempts.DefaultBucket},

	{"NATS_LISTEN", "jetstream.DefaultServerHost:DefaultServerPort",
		net.JoinHostPort(jetstream.DefaultServerHost, strconv.Itoa(jetstream.DefaultServerPort))},
	{"STORE_DIR", "defaultStoreDir", defaultStoreDir},
	{"STREAM", "wire.RequestStream", wire.RequestStream},
	{"REQUEST_SUBJECTS", "wire.RequestSubjects", []string{wire.RequestSubjects}},
	{"URGENT_SUBJECTS", "wire.UrgentSubjects", []string{wire.UrgentSubjects}},
	{"DEDUPE_WINDOW", "jetstream.DefaultDedupeWindow", jetstream.DefaultDedupeWindow},
	{"RESULTS_STREAM", "wire.ResultStream", wire.ResultStream},
	{"RESULTS_PREFIX", "wire.ResultPrefix", wire.ResultPrefix},
	{"RESULTS_MAX_AGE", "jetstream.DefaultResultMaxAge", jetstream.DefaultResultMaxAge},
	{"DEAD_STREAM", "wire.DeadStream", wire.DeadStream},
	{"DEAD_PREFIX", "wire.DeadPrefix", wire.DeadPrefix},
	{"CONSUMER", "wire.Consumer", wire.Consumer},
	{"STREAM_REPLICAS", "jetstream.DefaultReplicas", jetstream.DefaultReplicas},
	{"STREAM_MAX_MSGS", "jetstream.NoLimit", int64(jetstream.NoLimit)},
	{"STREAM_MAX_BYTES", "jetstream.NoLimit", byteSize(jetstream.NoLimit)},
	{"JOBS_BUCKET", "jobstore.DefaultBucket", jobstore.DefaultBucket},
	{"STATS_BUCKET", "fleet.DefaultBucket", fleet.DefaultBucket},
	{"STATS_FLUSH_INTERVAL", "fleet.DefaultInterval", fleet.DefaultInterval},

	{"PROVIDER", "defaultProvider", defaultProvider},
	// An empty openai.Config.Mode, PROVIDER's default, means ModeCombined.
	{"BATCH_MODE", "openai.ModeCombined", string(openai.ModeCombined)},
	{"MODEL", "defaultModel", defaultModel},
	{"EMBEDDING_MODEL", "batch.DefaultEmbeddingModel", batch.DefaultEmbeddingModel},
	{"EMBEDDING_MAX_INPUTS", "batch.DefaultEmbeddingMaxInputs", batch.DefaultEmbeddingMaxInputs},
	{"PROVIDER_RPM", "ratelimit.NoLimit", ratelimit.NoLimit},
	{"PROVIDER_TPM", "ratelimit.NoLimit", ratelimit.NoLimit},
	{"QUOTA_HEARTBEAT", "fleet.DefaultQuotaHeartbeat", fleet.DefaultQuotaHeartbeat},
	{"PROVIDER_QUEUE_TOKENS", "ratelimit.NoLimit", ratelimit.NoLimit},
	{"PROVIDER_QUEUE_REQUESTS", "ratelimit.NoLimit", ratelimit.NoLimit},
	{"MAX_BATCH_TOKENS", "defaultMaxBatchTokens", defaultMaxBatchTokens},
	{"BATCH_DISCOUNT", "cost.DefaultBatchDiscount", cost.DefaultBatchDiscount},

	{"LOG_LEVEL", "defaultLogLevel", defaultLogLevel},
	{"LOG_FORMAT", "defaultLogFormat", defaultLogFormat},
	{"ADMIN_ADDR", "admin.DefaultAddr", admin.DefaultAddr},

	{"REPLY_SUBJECTS", "batch.DefaultReplySubjects() (wire.ReplySubjects)", batch.DefaultReplySubjects()},
	{"MAX_OUTPUT_TOKENS_LIMIT", "batch.DefaultMaxOutputTokensLimit", batch.DefaultMaxOutputTokensLimit},

	{"RESPONSE_CACHE_TTL", "respcache.DefaultTTL", respcache.DefaultTTL},
	{"RESPONSE_CACHE_NONDETERMINISTIC", "batch.Config{}.CacheNondeterministic", batch.Config{}.CacheNondeterministic},
	{"CACHE_BUCKET", "respcache.DefaultBucket", respcache.DefaultBucket},
	{"ASYNC_COMBINE", "batch.Config{}.AsyncCombine", batch.Config{}.AsyncCombine},
	{"SHADOW_RATE", "batch.DefaultShadowRate", batch.DefaultShadowRate},
	{"SHADOW_AGREE_AT", "batch.DefaultShadowAgreeAt", batch.DefaultShadowAgreeAt},
	{"QUALITY_FLOOR", "batch.DefaultQualityFloor", batch.DefaultQualityFloor},
	{"SHADOW_WINDOW", "batch.DefaultShadowWindow", batch.DefaultShadowWindow},
}

// manifestOverrides are the Kubernetes values that deliberately differ from
// the worker's default, by manifest (under k8s/) and variable, with the
// reason. Every other value a manifest sets must equal the default.
var manifestOverrides = map[[2]string]string{
	{"base/configmap.yaml", "NATS_URL"}:                          "workers in Kubernetes use an external NATS server; the embedded one would give every pod its own stream",
	{"overlays/cluster/configmap-patch.yaml", "NATS_URL"}:        "the NATS Helm chart's client service",
	{"overlays/cluster/configmap-patch.yaml", "STREAM_REPLICAS"}: "3 copies of every stream on the 3-node cluster",
	{"base/deployment.yaml", "ADMIN_ADDR"}:                       "probes and Prometheus reach the admin server from outside the pod (with ADMIN_TOKEN from the Secret)",
}

// manifests are the files under k8s/ that set the worker's variables.
var manifests = []string{"base/configmap.yaml", "overlays/cluster/configmap-patch.yaml", "base/deployment.yaml"}

// runtimeVars are read by the Go runtime, not by config.
var runtimeVars = []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "GODEBUG"}

// envVar is one variable of config, as its struct tag declares it.
type envVar struct {
	name   string
	field  reflect.StructField
	def    string // the tag's default= value
	hasDef bool
}

// envVars reads config's env tags the way go-envconfig does: the name, then
// options, and a default= option takes the rest of the tag.
func envVars(t *testing.T) map[string]envVar {
	t.Helper()
	vars := map[string]envVar{}
	typ := reflect.TypeFor[config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, ok := f.Tag.Lookup("env")
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		name = strings.TrimSpace(name)
		if name == "" {
			t.Fatalf("config.%s: env tag %q has no variable name; this test does not follow nested structs", f.Name, tag)
		}
		v := envVar{name: name, field: f}
		for opts != "" {
			opt, rest, _ := strings.Cut(opts, ",")
			if d, ok := strings.CutPrefix(strings.TrimLeft(opt, " "), "default="); ok {
				v.def, v.hasDef = d, true
				if rest != "" {
					v.def += "," + rest
				}
				break
			}
			opts = rest
		}
		if strings.ContainsAny(v.def, `\$`) {
			t.Fatalf("%s: tag default %q has \\ or $, which go-envconfig expands; this test compares it as written", name, v.def)
		}
		if _, dup := vars[name]; dup {
			t.Fatalf("%s: two config fields read it", name)
		}
		vars[name] = v
	}
	if len(vars) == 0 {
		t.Fatal("config has no env tags")
	}
	return vars
}

// decode turns s into the value v's field gets from the environment value
// s, with go-envconfig as loadConfig uses it, so that 1h and 1h0m0s, or
// 64KiB and 65536, compare equal.
func decode(v envVar, s string) (any, error) {
	var c config
	err := envconfig.ProcessWith(context.Background(), &envconfig.Config{
		Target: &c, Lookuper: envconfig.MapLookuper(map[string]string{v.name: s}),
	})
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %s", v.name, s, envErrorText(err))
	}
	return reflect.ValueOf(c).FieldByIndex(v.field.Index).Interface(), nil
}

// differ says how got and want differ, or "" when they are equal; lists are
// compared element by element.
func differ(got, want any) string {
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	if g.Kind() == reflect.Slice && w.Kind() == reflect.Slice {
		if g.Len() != w.Len() {
			return fmt.Sprintf("%d items %q ≠ %d items %q", g.Len(), got, w.Len(), want)
		}
		for i := range g.Len() {
			if !reflect.DeepEqual(g.Index(i).Interface(), w.Index(i).Interface()) {
				return fmt.Sprintf("element %d: %q ≠ %q", i, g.Index(i).Interface(), w.Index(i).Interface())
			}
		}
		return ""
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("%v ≠ %v", got, want)
	}
	return ""
}

// differsFromDefault says how value, as an environment value of v, differs
// from v's tag default, or "" when it does not. Without a tag default the
// variable defaults to the empty value.
func differsFromDefault(v envVar, value string) (string, error) {
	if !v.hasDef || value == "" {
		if value == v.def {
			return "", nil
		}
		return "one of them is empty", nil
	}
	got, err := decode(v, value)
	if err != nil {
		return "", err
	}
	want, err := decode(v, v.def)
	if err != nil {
		return "", fmt.Errorf("config.go's tag default: %w", err)
	}
	return differ(got, want), nil
}

// tagDefault is how messages show v's tag default.
func tagDefault(v envVar) string {
	if !v.hasDef {
		return "none"
	}
	return strconv.Quote(v.def)
}

func TestTagDefaultsAreTheOwnersConstants(t *testing.T) {
	t.Parallel()
	vars := envVars(t)
	inTable := map[string]bool{}
	for _, tt := range ownerDefaults {
		t.Run(tt.env, func(t *testing.T) {
			t.Parallel()
			v, ok := vars[tt.env]
			switch {
			case !ok:
				t.Fatalf("%s: in the table with owner %s, but no config field reads it", tt.env, tt.owner)
			case !v.hasDef:
				t.Fatalf("%s: config.go's tag has no default; the owner %s is %v", tt.env, tt.owner, tt.want)
			case reflect.TypeOf(tt.want) != v.field.Type:
				t.Fatalf("%s: the table's value of %s is a %T; config.%s is a %s", tt.env, tt.owner, tt.want, v.field.Name, v.field.Type)
			}
			got, err := decode(v, v.def)
			if err != nil {
				t.Fatalf("config.go's tag default: %v", err)
			}
			if d := differ(got, tt.want); d != "" {
				t.Errorf("%s: config.go's tag says default=%s, the owner %s is %v (%s)", tt.env, v.def, tt.owner, tt.want, d)
			}
		})
		if inTable[tt.env] {
			t.Errorf("%s: in the table twice", tt.env)
		}
		inTable[tt.env] = true
	}
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		if v := vars[name]; v.hasDef && !inTable[name] {
			t.Errorf("%s: config.go's tag says default=%s, but ownerDefaults in defaults_test.go names no owner constant for it; add the constant to the package that owns the setting (cmd/worker's defaults.go for a worker-only one) and a row to the table", name, v.def)
		}
	}
}

// readmeRow is one variable of README.md's configuration table.
type readmeRow struct {
	def  string // normalised: no backticks; "" for none
	line int
}

// readmeVarCell is a table cell naming variables: `A` or `A`, `B`.
var readmeVarCell = regexp.MustCompile("^`[A-Z][A-Z0-9_]*`(, `[A-Z][A-Z0-9_]*`)*$")

// readmeConfig reads the tables under README.md's "## Configuration" whose
// header is `| variable | default | ... |`, and the settings of the example
// configuration marked "(default)".
func readmeConfig(t *testing.T) (rows map[string]readmeRow, defaultProfile []string, profileLine int) {
	t.Helper()
	const path = "../../README.md"
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows = map[string]readmeRow{}
	var inSection, inVarTable, inProfiles bool
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inSection = line == "## Configuration"
		}
		if !inSection {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			inVarTable, inProfiles = false, false
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case len(cells) >= 2 && cells[0] == "variable" && cells[1] == "default":
			inVarTable = true
			continue
		case cells[0] == "profile":
			inProfiles = true
			continue
		case strings.Trim(cells[0], "-:") == "":
			continue // the delimiter row
		}
		if inProfiles && strings.Contains(cells[0], "(default)") && len(cells) >= 2 {
			defaultProfile, profileLine = strings.Fields(strings.ReplaceAll(cells[1], "`", "")), n
		}
		if !inVarTable {
			continue
		}
		if len(cells) < 2 || !readmeVarCell.MatchString(cells[0]) {
			t.Errorf("%s:%d: want `| `VARIABLE` | default | meaning |`, got %q", path, n, line)
			continue
		}
		def := strings.TrimSpace(strings.ReplaceAll(cells[1], "`", ""))
		switch strings.ToLower(def) {
		case "none", "(none)", "empty", `""`, "-", "—":
			def = ""
		}
		for _, name := range strings.Split(cells[0], ", ") {
			name = strings.Trim(name, "`")
			if prev, dup := rows[name]; dup {
				t.Errorf("%s:%d: %s is already in the table at line %d", path, n, name, prev.line)
			}
			rows[name] = readmeRow{def: def, line: n}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no `| variable | default | meaning |` table under ## Configuration", path)
	}
	return rows, defaultProfile, profileLine
}

func TestREADMEConfigurationTable(t *testing.T) {
	t.Parallel()
	vars := envVars(t)
	rows, profile, profileLine := readmeConfig(t)
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v := vars[name]
			row, ok := rows[name]
			if !ok {
				t.Fatalf("%s: config reads it (tag default %q) but README.md's configuration table has no row for it", name, v.def)
			}
			d, err := differsFromDefault(v, row.def)
			if err != nil {
				t.Fatalf("README.md:%d: %v", row.line, err)
			}
			if d != "" {
				t.Errorf("%s: README.md:%d says default %q, config.go's tag says %s (%s)", name, row.line, row.def, tagDefault(v), d)
			}
		})
	}
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		if _, ok := vars[name]; !ok {
			t.Errorf("README.md:%d: %s is in the configuration table, but config reads no such variable", rows[name].line, name)
		}
	}
	t.Run("the default example configuration", func(t *testing.T) {
		t.Parallel()
		if len(profile) == 0 {
			t.Fatal(`README.md: no example configuration marked "(default)" under ## Configuration`)
		}
		for _, kv := range profile {
			name, value, ok := strings.Cut(kv, "=")
			v, known := vars[name]
			if !ok || !known {
				t.Errorf("README.md:%d: the default profile sets %q; want VARIABLE=value with a variable config reads", profileLine, kv)
				continue
			}
			d, err := differsFromDefault(v, value)
			if err != nil {
				t.Errorf("README.md:%d: %v", profileLine, err)
			} else if d != "" {
				t.Errorf("%s: README.md:%d's default example configuration sets %q, config.go's tag default is %s (%s)", name, profileLine, value, tagDefault(v), d)
			}
		}
	})
}

// manifestEnv returns the variables a manifest under k8s/ sets: a
// ConfigMap's data, or a Deployment's plain container env values. Both are
// decoded strictly, so a misspelt field fails.
func manifestEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "k8s", filepath.FromSlash(file)))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &meta); err != nil {
		t.Fatalf("k8s/%s: %v", file, err)
	}
	env := map[string]string{}
	switch meta.Kind {
	case "ConfigMap":
		var cm corev1.ConfigMap
		if err := yaml.UnmarshalStrict(data, &cm); err != nil {
			t.Fatalf("k8s/%s: %v", file, err)
		}
		env = cm.Data
	case "Deployment":
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(data, &d); err != nil {
			t.Fatalf("k8s/%s: %v", file, err)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					env[e.Name] = e.Value
				}
			}
		}
	default:
		t.Fatalf("k8s/%s: kind %q; want ConfigMap or Deployment", file, meta.Kind)
	}
	if len(env) == 0 {
		t.Fatalf("k8s/%s sets no variables", file)
	}
	return env
}

func TestKubernetesManifestsRestateDefaults(t *testing.T) {
	t.Parallel()
	vars := envVars(t)
	seen := map[[2]string]bool{}
	var tests []struct{ file, name, value string }
	for _, file := range manifests {
		env := manifestEnv(t, file)
		for _, name := range slices.Sorted(maps.Keys(env)) {
			tests = append(tests, struct{ file, name, value string }{file, name, env[name]})
			seen[[2]string{file, name}] = true
		}
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.name, func(t *testing.T) {
			t.Parallel()
			if slices.Contains(runtimeVars, tt.name) {
				return
			}
			v, ok := vars[tt.name]
			if !ok {
				t.Fatalf("k8s/%s sets %s=%q, but config reads no such variable", tt.file, tt.name, tt.value)
			}
			d, err := differsFromDefault(v, tt.value)
			if err != nil {
				t.Fatalf("k8s/%s: %v", tt.file, err)
			}
			reason, override := manifestOverrides[[2]string{tt.file, tt.name}]
			switch {
			case d != "" && !override:
				t.Errorf("%s: k8s/%s sets %q, config.go's tag default is %s (%s); make them agree, or list it in manifestOverrides with the reason", tt.name, tt.file, tt.value, tagDefault(v), d)
			case d == "" && override:
				t.Errorf("k8s/%s sets %s=%q, the default, but manifestOverrides lists it as a deliberate difference (%s); remove it from the list", tt.file, tt.name, tt.value, reason)
			}
		})
	}
	for key, reason := range manifestOverrides {
		if !seen[key] {
			t.Errorf("manifestOverrides lists %s in k8s/%s (%s), but that manifest does not set it", key[1], key[0], reason)
		}
	}
}
