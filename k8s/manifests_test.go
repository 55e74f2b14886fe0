// Package k8s holds the Kubernetes manifests of the aibatch worker (a
// Kustomize base and overlays). Its test decodes every manifest strictly
// into the Kubernetes API types, so a typo fails, and checks the invariants
// that tie the manifests to the worker: the probes hit endpoints it serves,
// every variable is one it reads, the grace period outlasts its shutdown,
// KEDA watches its stream and consumers.
package k8s

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// servedPaths are the HTTP paths the worker's admin server answers without
// a token. Probes and the Prometheus annotation may use only these, and each
// must appear in internal/admin's source once that package exists.
var servedPaths = []string{"/healthz", "/readyz", "/metrics"}

// runtimeEnv are variables read by the Go runtime rather than the worker's
// configuration.
var runtimeEnv = []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "GODEBUG"}

// drainAllowance is how long the worker may spend after SHUTDOWN_TIMEOUT
// draining its NATS connection (cmd/worker/run.go waits up to 10s).
const drainAllowance = 10 * time.Second

// kustomizations are the directories that build a deployable set.
var kustomizations = []string{"base", "overlays/cluster", "overlays/monitoring"}

// ---- Strict decoding ---------------------------------------------------

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) these
// manifests use; k8s.io/api has no type for it. Unknown fields are errors,
// as they are for the API types.
type scaledObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32         `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32         `json:"cooldownPeriod,omitempty"`
		MinReplicaCount *int32         `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32         `json:"maxReplicaCount,omitempty"`
		Triggers        []kedaTrigger  `json:"triggers,omitempty"`
		Advanced        map[string]any `json:"advanced,omitempty"`
	} `json:"spec"`
}

// kedaTrigger is a trigger of the nats-jetstream scaler; its metadata is a
// struct, not a map, so a misspelt key such as lagTreshold fails too.
type kedaTrigger struct {
	Type     string `json:"type"`
	Name     string `json:"name,omitempty"`
	Metadata struct {
		NatsServerMonitoringEndpoint string `json:"natsServerMonitoringEndpoint"`
		Account                      string `json:"account"`
		Stream                       string `json:"stream"`
		Consumer                     string `json:"consumer"`
		LagThreshold                 string `json:"lagThreshold"`
		ActivationLagThreshold       string `json:"activationLagThreshold,omitempty"`
		UseHTTPS                     string `json:"useHttps,omitempty"`
	} `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
}

// kustomization is the part of kustomize.config.k8s.io/v1beta1
// Kustomization these manifests use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
	Patches []struct {
		Path   string `json:"path"`
		Target struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"target"`
	} `json:"patches,omitempty"`
	// Components are directories holding a kind: Component.
	Components         []string             `json:"components,omitempty"`
	ConfigMapGenerator []configMapGenerator `json:"configMapGenerator,omitempty"`
}

// configMapGenerator is the part of a configMapGenerator entry these
// manifests use: files (key=path or path), no hash suffix, labels.
type configMapGenerator struct {
	Name    string   `json:"name"`
	Files   []string `json:"files,omitempty"`
	Options struct {
		DisableNameSuffixHash bool              `json:"disableNameSuffixHash,omitempty"`
		Labels                map[string]string `json:"labels,omitempty"`
	} `json:"options"`
}

// serviceMonitor is the part of the Prometheus Operator's ServiceMonitor
// (monitoring.coreos.com/v1) these manifests use; unknown fields are
// errors, as for the API types.
type serviceMonitor struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// prometheusRule is the Prometheus Operator's PrometheusRule
// (monitoring.coreos.com/v1): its spec is a Prometheus rule file, which
// promcheck.Rules also checks with Prometheus's own loader.
type prometheusRule struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Alert         string            `json:"alert,omitempty"`
				Record        string            `json:"record,omitempty"`
				Expr          string            `json:"expr"`
				For           string            `json:"for,omitempty"`
				KeepFiringFor string            `json:"keep_firing_for,omitempty"`
				Labels        map[string]string `json:"labels,omitempty"`
				Annotations   map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// newObject returns an empty value of the type for apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "keda.sh/v1alpha1 ScaledObject":
		return &scaledObject{}, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization", "kustomize.config.k8s.io/v1alpha1 Component":
		return &kustomization{}, nil
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &serviceMonitor{}, nil
	case "monitoring.coreos.com/v1 PrometheusRule":
		return &prometheusRule{}, nil
	}
	return nil, fmt.Errorf("apiVersion %q kind %q: not a type these manifests may use", apiVersion, kind)
}

// decodeJSON decodes data into a new object of its kind with unknown
// fields as errors (encoding/json), then again with the API server's
// case-sensitive rules (sigs.k8s.io/json), so that `httpget` for `httpGet`,
// which encoding/json would accept, fails as well.
func decodeJSON(data []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, fmt.Errorf("read apiVersion and kind: %w", err)
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: data after the object", tm.Kind)
	}
	strictErrs, err := sigsjson.UnmarshalStrict(data, reflect.New(reflect.TypeOf(obj).Elem()).Interface())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if len(strictErrs) > 0 {
		return nil, fmt.Errorf("%s: %w", tm.Kind, errors.Join(strictErrs...))
	}
	return obj, nil
}

// decodeYAML converts one YAML document to JSON, refusing duplicate keys,
// and decodes it strictly.
func decodeYAML(doc []byte) (any, error) {
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("YAML: %w", err)
	}
	return decodeJSON(data)
}

// splitDocs splits a multi-document YAML file on `---` lines and drops
// documents that hold only comments or blank lines.
func splitDocs(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for line := range bytes.Lines(data) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for line := range bytes.Lines(doc) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}

// yamlFiles returns every YAML file under the k8s directory.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list manifests: %v", err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under k8s/")
	}
	return files
}

func TestEveryManifestDecodesStrictly(t *testing.T) {
	t.Parallel()
	for _, file := range yamlFiles(t) {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			docs := splitDocs(data)
			if len(docs) == 0 {
				t.Fatal("no YAML document in the file")
			}
			for i, doc := range docs {
				if _, err := decodeYAML(doc); err != nil {
					t.Errorf("document %d: %v", i+1, err)
				}
			}
		})
	}
}

// TestStrictDecodingRejectsTypos proves the decoding above catches mistakes:
// each case edits a real manifest and expects the edited one to fail.
func TestStrictDecodingRejectsTypos(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, old, new, want string
	}{
		{"unknown field", "base/deployment.yaml", "livenessProbe:", "livenesProbe:", "unknown field"},
		{"field with the wrong case", "base/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "readOnlyRootFileSystem"},
		{"field with the wrong case inside a probe", "base/deployment.yaml", "httpGet:", "httpget:", "httpget"},
		{"number where a string is expected", "base/deployment.yaml", "terminationGracePeriodSeconds: 45", `terminationGracePeriodSeconds: "45s"`, "terminationGracePeriodSeconds"},
		{"bad quantity", "base/deployment.yaml", "memory: 512Mi", "memory: 512MB-ish", "quantities"},
		{"duplicate key", "base/deployment.yaml", "runAsUser: 65532\n        runAsGroup", "runAsUser: 65532\n        runAsUser: 0\n        runAsGroup", "runAsUser"},
		{"misspelt KEDA metadata key", "base/keda-scaledobject.yaml", "lagThreshold:", "lagTreshold:", "lagTreshold"},
		{"KEDA number not quoted", "base/keda-scaledobject.yaml", `lagThreshold: "400"`, "lagThreshold: 400", "lagThreshold"},
		{"unknown ScaledObject field", "base/keda-scaledobject.yaml", "minReplicaCount:", "minReplicas:", "minReplicas"},
		{"unknown ConfigMap field", "base/configmap.yaml", "data:", "date:", "date"},
		{"unknown Service field", "base/service.yaml", "targetPort:", "targetport:", "targetport"},
		{"unknown PDB field", "base/pdb.yaml", "maxUnavailable:", "maxUnavaliable:", "maxUnavaliable"},
		{"unknown Kustomization field", "base/kustomization.yaml", "resources:", "resource:", "resource"},
		{"unknown kind", "base/service.yaml", "kind: Service", "kind: Servise", "Servise"},
		{"unknown ServiceMonitor field", "monitoring/servicemonitor.yaml", "endpoints:", "endpoint:", "endpoint"},
		{"ServiceMonitor field with the wrong case", "monitoring/servicemonitor.yaml", "scrapeTimeout:", "scrapetimeout:", "scrapetimeout"},
		{"unknown PrometheusRule field", "monitoring/prometheusrule.yaml", "annotations:", "anotations:", "anotations"},
		{"unknown Component field", "monitoring/kustomization.yaml", "configMapGenerator:", "configMapGenerators:", "configMapGenerators"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			docs := splitDocs(data)
			if len(docs) != 1 {
				t.Fatalf("%s: %d documents; the case expects one", tt.file, len(docs))
			}
			if _, err := decodeYAML(docs[0]); err != nil {
				t.Fatalf("unedited %s does not decode: %v", tt.file, err)
			}
			if !bytes.Contains(docs[0], []byte(tt.old)) {
				t.Fatalf("%s no longer contains %q: update the case", tt.file, tt.old)
			}
			edited := bytes.Replace(docs[0], []byte(tt.old), []byte(tt.new), 1)
			_, err = decodeYAML(edited)
			if err == nil {
				t.Fatalf("%s with %q -> %q decoded without error", tt.file, tt.old, tt.new)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// ---- Rendering -----------------------------------------------------------

// manifestSet is what one kustomization directory builds.
type manifestSet struct {
	deployments   []*appsv1.Deployment
	configMaps    []*corev1.ConfigMap
	secrets       []*corev1.Secret
	services      []*corev1.Service
	pdbs          []*policyv1.PodDisruptionBudget
	scaledObjects []*scaledObject
	// The monitoring component's: dashboards are the ConfigMaps labelled
	// grafana_dashboard, not the worker's settings.
	serviceMonitors []*serviceMonitor
	rules           []*prometheusRule
	dashboards      []*corev1.ConfigMap
}

// dashboardLabel marks a ConfigMap Grafana's sidecar loads as dashboards.
const dashboardLabel = "grafana_dashboard"

func (s *manifestSet) add(obj any) error {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		s.deployments = append(s.deployments, o)
	case *corev1.ConfigMap:
		if _, ok := o.Labels[dashboardLabel]; ok {
			s.dashboards = append(s.dashboards, o)
			return nil
		}
		s.configMaps = append(s.configMaps, o)
	case *serviceMonitor:
		s.serviceMonitors = append(s.serviceMonitors, o)
	case *prometheusRule:
		s.rules = append(s.rules, o)
	case *corev1.Secret:
		s.secrets = append(s.secrets, o)
	case *corev1.Service:
		s.services = append(s.services, o)
	case *policyv1.PodDisruptionBudget:
		s.pdbs = append(s.pdbs, o)
	case *scaledObject:
		s.scaledObjects = append(s.scaledObjects, o)
	default:
		return fmt.Errorf("%T is not a deployable object", obj)
	}
	return nil
}

// renderedDoc is one object of a build, as JSON, before typed decoding.
type renderedDoc struct {
	kind, name string
	obj        map[string]any
}

// render builds dir the way kustomize does for the features these
// manifests use: resources (files and directories), components,
// configMapGenerator (files, without a hash suffix), patches (merge
// patches), images and namespace. kubectl kustomize, when installed, is
// checked by TestKubectlKustomizeBuilds.
func render(t *testing.T, dir string) []renderedDoc {
	t.Helper()
	k := readKustomization(t, dir)
	var docs []renderedDoc
	for _, c := range k.Components {
		docs = append(docs, render(t, filepath.Join(dir, c))...)
	}
	for _, g := range k.ConfigMapGenerator {
		docs = append(docs, generateConfigMap(t, dir, g))
	}
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			docs = append(docs, render(t, p)...)
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: resource %s: %v", dir, r, err)
		}
		for _, doc := range splitDocs(data) {
			docs = append(docs, toRendered(t, p, doc))
		}
	}
	for _, p := range k.Patches {
		data, err := os.ReadFile(filepath.Join(dir, p.Path))
		if err != nil {
			t.Fatalf("%s: patch %s: %v", dir, p.Path, err)
		}
		patch := toRendered(t, p.Path, data)
		found := false
		for i := range docs {
			if docs[i].kind == p.Target.Kind && docs[i].name == p.Target.Name {
				docs[i].obj = mergePatch(docs[i].obj, patch.obj).(map[string]any)
				found = true
			}
		}
		if !found {
			t.Fatalf("%s: patch %s targets %s/%s, which the resources do not hold", dir, p.Path, p.Target.Kind, p.Target.Name)
		}
	}
	for _, d := range docs {
		if k.Namespace != "" {
			d.obj["metadata"].(map[string]any)["namespace"] = k.Namespace
		}
		if d.kind != "Deployment" {
			continue
		}
		for _, img := range k.Images {
			for _, c := range d.obj["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any) {
				c := c.(map[string]any)
				if c["image"] == img.Name {
					name := img.Name
					if img.NewName != "" {
						name = img.NewName
					}
					c["image"] = name + ":" + img.NewTag
				}
			}
		}
	}
	return docs
}

// generateConfigMap is what kustomize's configMapGenerator makes of g: a
// ConfigMap with each file's content under its key (key=path, or the
// file's name), g's labels, and no hash suffix (the manifests ask for
// none: a dashboard's name is fixed).
func generateConfigMap(t *testing.T, dir string, g configMapGenerator) renderedDoc {
	t.Helper()
	if !g.Options.DisableNameSuffixHash {
		t.Fatalf("%s: configMapGenerator %s: set options.disableNameSuffixHash (this test does not compute kustomize's hash)", dir, g.Name)
	}
	data := map[string]any{}
	for _, f := range g.Files {
		key, path, ok := strings.Cut(f, "=")
		if !ok {
			key, path = filepath.Base(f), f
		}
		b, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil {
			t.Fatalf("%s: configMapGenerator %s: %v", dir, g.Name, err)
		}
		data[key] = string(b)
	}
	meta := map[string]any{"name": g.Name}
	if len(g.Options.Labels) > 0 {
		labels := map[string]any{}
		for k, v := range g.Options.Labels {
			labels[k] = v
		}
		meta["labels"] = labels
	}
	return renderedDoc{kind: "ConfigMap", name: g.Name, obj: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data,
	}}
}

func toRendered(t *testing.T, file string, doc []byte) renderedDoc {
	t.Helper()
	data, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	return renderedDoc{kind: kind, name: name, obj: obj}
}

// mergePatch applies an RFC 7386 JSON merge patch. For the maps and scalars
// the overlays patch it is what kustomize's strategic merge does.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

func readKustomization(t *testing.T, dir string) *kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	obj, err := decodeYAML(data)
	if err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	k, ok := obj.(*kustomization)
	if !ok {
		t.Fatalf("%s/kustomization.yaml holds a %T", dir, obj)
	}
	return k
}

// decodeSet decodes rendered documents strictly into a manifestSet.
func decodeSet(t *testing.T, docs []renderedDoc) *manifestSet {
	t.Helper()
	set := &manifestSet{}
	for _, d := range docs {
		data, err := json.Marshal(d.obj)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeJSON(data)
		if err != nil {
			t.Fatalf("%s/%s: %v", d.kind, d.name, err)
		}
		if err := set.add(obj); err != nil {
			t.Fatalf("%s/%s: %v", d.kind, d.name, err)
		}
	}
	return set
}

// ---- What the worker reads and serves -------------------------------------

// workerEnv returns every variable cmd/worker reads: the `env:"NAME"` tags
// of its config struct, following nested structs with a prefix.
func workerEnv(t *testing.T) map[string]bool {
	t.Helper()
	dir := filepath.Join("..", "cmd", "worker")
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	structs := map[string]*ast.StructType{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", e.Name(), err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					structs[ts.Name.Name] = st
				}
			}
			return true
		})
	}
	root, ok := structs["config"]
	if !ok {
		t.Fatalf("%s: no `config` struct to read the environment variables from", dir)
	}
	names := map[string]bool{}
	var walk func(st *ast.StructType, prefix string)
	walk = func(st *ast.StructType, prefix string) {
		for _, f := range st.Fields.List {
			if f.Tag == nil {
				continue
			}
			raw, err := strconv.Unquote(f.Tag.Value)
			if err != nil {
				t.Fatalf("struct tag %s: %v", f.Tag.Value, err)
			}
			tag, ok := reflect.StructTag(raw).Lookup("env")
			if !ok {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if name = strings.TrimSpace(name); name != "" {
				names[prefix+name] = true
				continue
			}
			for _, o := range strings.Split(opts, ",") {
				if p, ok := strings.CutPrefix(strings.TrimSpace(o), "prefix="); ok {
					typ := f.Type
					if star, ok := typ.(*ast.StarExpr); ok {
						typ = star.X
					}
					id, ok := typ.(*ast.Ident)
					if !ok || structs[id.Name] == nil {
						t.Fatalf("config field with prefix %q has a type this test cannot follow", p)
					}
					walk(structs[id.Name], prefix+p)
				}
			}
		}
	}
	walk(root, "")
	if len(names) == 0 {
		t.Fatal("the worker's config struct has no env tags")
	}
	return names
}

// adminSourcePaths returns the HTTP paths found in internal/admin's string
// literals ("/healthz", or a Go 1.22 pattern "GET /healthz"), and whether
// that package exists yet.
func adminSourcePaths(t *testing.T) (map[string]bool, bool) {
	t.Helper()
	dir := filepath.Join("..", "internal", "admin")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	paths := map[string]bool{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", e.Name(), err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					if fields := strings.Fields(s); len(fields) > 0 {
						paths[fields[len(fields)-1]] = true
					}
				}
			}
			return true
		})
	}
	return paths, true
}

// ---- Invariants ------------------------------------------------------------

// secretExample reads the Secret template the Deployment's secretRef names.
func secretExample(t *testing.T) *corev1.Secret {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("base", "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeYAML(data)
	if err != nil {
		t.Fatalf("secret.example.yaml: %v", err)
	}
	s, ok := obj.(*corev1.Secret)
	if !ok {
		t.Fatalf("secret.example.yaml holds a %T", obj)
	}
	return s
}

func secretKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.StringData {
		keys = append(keys, k)
	}
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// checkSet checks the invariants of one build. name labels the messages.
func checkSet(t *testing.T, set *manifestSet, secret *corev1.Secret, env map[string]bool) {
	t.Helper()
	if len(set.deployments) != 1 || len(set.configMaps) != 1 || len(set.services) != 1 || len(set.pdbs) != 1 || len(set.scaledObjects) != 1 {
		t.Fatalf("want one each of Deployment, ConfigMap, Service, PodDisruptionBudget and ScaledObject; got %d, %d, %d, %d, %d",
			len(set.deployments), len(set.configMaps), len(set.services), len(set.pdbs), len(set.scaledObjects))
	}
	if len(set.secrets) != 0 {
		t.Errorf("the build holds %d Secrets; secrets are created outside the build (secret.example.yaml is a template)", len(set.secrets))
	}
	d, cm, svc, pdb, so := set.deployments[0], set.configMaps[0], set.services[0], set.pdbs[0], set.scaledObjects[0]
	pod := d.Spec.Template
	cfg := cm.Data

	t.Run("every variable is one the worker reads", func(t *testing.T) {
		known := func(name string) bool { return env[name] || slices.Contains(runtimeEnv, name) }
		for k := range cfg {
			if !known(k) {
				t.Errorf("ConfigMap %s sets %s, which the worker does not read", cm.Name, k)
			}
		}
		for _, k := range secretKeys(secret) {
			if !known(k) {
				t.Errorf("Secret %s (secret.example.yaml) sets %s, which the worker does not read", secret.Name, k)
			}
		}
		for _, c := range pod.Spec.Containers {
			for _, e := range c.Env {
				if !known(e.Name) {
					t.Errorf("container %s sets %s, which the worker does not read", c.Name, e.Name)
				}
			}
		}
	})

	t.Run("secrets stay out of the ConfigMap and plain env", func(t *testing.T) {
		secretish := func(k string) bool {
			for _, s := range []string{"_KEY", "_TOKEN", "_PASSWORD", "_SECRET"} {
				if strings.HasSuffix(k, s) && !strings.HasPrefix(k, "NATS_TLS_") { // NATS_TLS_KEY is a path
					return true
				}
			}
			return false
		}
		for k := range cfg {
			if secretish(k) {
				t.Errorf("ConfigMap sets %s: a secret belongs in the Secret", k)
			}
		}
		for _, c := range pod.Spec.Containers {
			for _, e := range c.Env {
				if secretish(e.Name) && e.Value != "" {
					t.Errorf("container %s sets %s as a plain value: take it from the Secret", c.Name, e.Name)
				}
			}
		}
	})

	c := workerContainer(t, d)
	lookup := func(name string) (string, bool) {
		for _, e := range c.Env {
			if e.Name == name && e.ValueFrom == nil {
				return e.Value, true
			}
		}
		v, ok := cfg[name]
		return v, ok
	}
	fromSecret := func(name string) bool {
		for _, e := range c.Env {
			if e.Name == name {
				return e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil && ef.SecretRef.Name == secret.Name && slices.Contains(secretKeys(secret), name) {
				return true
			}
		}
		return false
	}

	t.Run("envFrom names the ConfigMap and the Secret", func(t *testing.T) {
		var cmRef, secretRef bool
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				cmRef = cmRef || ef.ConfigMapRef.Name == cm.Name
				if ef.ConfigMapRef.Name != cm.Name {
					t.Errorf("envFrom names ConfigMap %s; the build has %s", ef.ConfigMapRef.Name, cm.Name)
				}
			}
			if ef.SecretRef != nil {
				secretRef = secretRef || ef.SecretRef.Name == secret.Name
				if ef.SecretRef.Name != secret.Name {
					t.Errorf("envFrom names Secret %s; secret.example.yaml makes %s", ef.SecretRef.Name, secret.Name)
				}
			}
		}
		if !cmRef || !secretRef {
			t.Errorf("envFrom: ConfigMap %s referenced %v, Secret %s referenced %v; want both", cm.Name, cmRef, secret.Name, secretRef)
		}
	})

	t.Run("external NATS, never the embedded server", func(t *testing.T) {
		url, _ := lookup("NATS_URL")
		if !strings.Contains(url, "://") {
			t.Errorf("NATS_URL=%q: workers in Kubernetes need an external NATS URL (empty starts an embedded server per pod)", url)
		}
	})

	adminPort := int32(0)
	t.Run("admin server reachable and protected", func(t *testing.T) {
		addr, ok := lookup("ADMIN_ADDR")
		if !ok {
			t.Fatal("ADMIN_ADDR is not set: probes and metrics need the admin server on a pod address")
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("ADMIN_ADDR=%q: %v", addr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			t.Fatalf("ADMIN_ADDR=%q: port: %v", addr, err)
		}
		adminPort = int32(p)
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			t.Errorf("ADMIN_ADDR=%q is loopback: the kubelet's probes cannot reach it", addr)
		}
		if !fromSecret("ADMIN_TOKEN") {
			t.Errorf("ADMIN_ADDR=%q is not loopback, so ADMIN_TOKEN must come from the Secret (the worker refuses to start without it)", addr)
		}
		if !containerHasPort(c, intstr.FromInt32(adminPort)) {
			t.Errorf("ADMIN_ADDR port %d is not a container port of %s", adminPort, c.Name)
		}
	})

	adminPaths, adminExists := adminSourcePaths(t)
	checkPath := func(what, path string) {
		t.Helper()
		if !slices.Contains(servedPaths, path) {
			t.Errorf("%s uses %s; the worker serves %v", what, path, servedPaths)
		}
		if adminExists && !adminPaths[path] {
			t.Errorf("%s uses %s, which internal/admin does not register", what, path)
		}
	}
	t.Run("probes hit endpoints the worker serves", func(t *testing.T) {
		if !adminExists {
			t.Log("internal/admin does not exist yet: paths checked against the constant list only")
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Fatal("the worker container needs a liveness and a readiness probe")
		}
		probes := map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe}
		for kind, p := range probes {
			if p == nil {
				continue
			}
			if p.HTTPGet == nil {
				t.Errorf("%s probe is not an HTTP GET", kind)
				continue
			}
			checkPath(kind+" probe", p.HTTPGet.Path)
			if port := resolvePort(c, p.HTTPGet.Port); port != adminPort {
				t.Errorf("%s probe port %s is container port %d; ADMIN_ADDR listens on %d", kind, p.HTTPGet.Port.String(), port, adminPort)
			}
		}
		if c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("liveness probe path %s; want /healthz (readiness failing must not restart the pod)", c.LivenessProbe.HTTPGet.Path)
		}
		if c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("readiness probe path %s; want /readyz", c.ReadinessProbe.HTTPGet.Path)
		}
	})

	t.Run("prometheus scrape annotations", func(t *testing.T) {
		a := pod.Annotations
		if a["prometheus.io/scrape"] != "true" {
			t.Errorf("prometheus.io/scrape=%q; want true", a["prometheus.io/scrape"])
		}
		if p, err := strconv.Atoi(a["prometheus.io/port"]); err != nil || int32(p) != adminPort {
			t.Errorf("prometheus.io/port=%q; want the admin port %d", a["prometheus.io/port"], adminPort)
		}
		checkPath("prometheus.io/path", a["prometheus.io/path"])
	})

	t.Run("grace period outlasts the worker's shutdown", func(t *testing.T) {
		st := "30s" // the worker's default
		if v, ok := lookup("SHUTDOWN_TIMEOUT"); ok {
			st = v
		}
		shutdown, err := time.ParseDuration(st)
		if err != nil {
			t.Fatalf("SHUTDOWN_TIMEOUT=%q: %v", st, err)
		}
		if pod.Spec.TerminationGracePeriodSeconds == nil {
			t.Fatal("terminationGracePeriodSeconds is not set (the default 30s does not outlast the worker's shutdown)")
		}
		grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
		if grace <= shutdown+drainAllowance {
			t.Errorf("terminationGracePeriodSeconds %s <= SHUTDOWN_TIMEOUT %s + drain %s: the kubelet would kill the worker mid-shutdown", grace, shutdown, drainAllowance)
		}
	})

	t.Run("security context", func(t *testing.T) {
		psc := pod.Spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
			t.Errorf("pod securityContext %+v: want runAsNonRoot true and runAsUser 65532", psc)
		}
		for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("container %s has no securityContext", c.Name)
				continue
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("container %s: readOnlyRootFilesystem must be true", c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("container %s is privileged", c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("container %s: capabilities %+v; want drop [ALL] and no add", c.Name, sc.Capabilities)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				t.Errorf("container %s runs as root", c.Name)
			}
		}
	})

	t.Run("resource requests and limits", func(t *testing.T) {
		for _, c := range pod.Spec.Containers {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okReq := c.Resources.Requests[r]
				lim, okLim := c.Resources.Limits[r]
				if !okReq || !okLim {
					t.Errorf("container %s: %s request set %v, limit set %v; want both", c.Name, r, okReq, okLim)
					continue
				}
				if req.Cmp(lim) > 0 {
					t.Errorf("container %s: %s request %s above its limit %s", c.Name, r, req.String(), lim.String())
				}
			}
		}
	})

	podLabels := pod.Labels
	t.Run("selectors match the pods", func(t *testing.T) {
		if d.Spec.Selector == nil || !subset(d.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("Deployment selector %v does not match the pod labels %v", d.Spec.Selector, podLabels)
		}
		if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, podLabels) {
			t.Errorf("Service %s selector %v does not match the pod labels %v", svc.Name, svc.Spec.Selector, podLabels)
		}
		if pdb.Spec.Selector == nil || len(pdb.Spec.Selector.MatchLabels) == 0 || !subset(pdb.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PodDisruptionBudget %s selector %v does not match the pod labels %v", pdb.Name, pdb.Spec.Selector, podLabels)
		}
		if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
			t.Errorf("PodDisruptionBudget %s sets neither maxUnavailable nor minAvailable", pdb.Name)
		}
	})

	t.Run("service exposes the admin port", func(t *testing.T) {
		found := false
		for _, p := range svc.Spec.Ports {
			port := resolvePort(c, p.TargetPort)
			if p.TargetPort.String() == "0" || p.TargetPort.String() == "" {
				port = resolvePort(c, intstr.FromInt32(p.Port))
			}
			if port == 0 {
				t.Errorf("Service port %s targets %s, which is no container port", p.Name, p.TargetPort.String())
			}
			found = found || port == adminPort
		}
		if !found {
			t.Errorf("Service %s has no port targeting the admin port %d", svc.Name, adminPort)
		}
	})

	t.Run("KEDA scales this Deployment on its stream and consumers", func(t *testing.T) {
		ref := so.Spec.ScaleTargetRef
		if ref.Name != d.Name || (ref.Kind != "" && ref.Kind != "Deployment") || (ref.APIVersion != "" && ref.APIVersion != "apps/v1") {
			t.Errorf("scaleTargetRef %+v; want the Deployment %s", ref, d.Name)
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment sets replicas %d while KEDA owns the count: every apply would reset it", *d.Spec.Replicas)
		}
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
			t.Errorf("minReplicaCount %v; want at least 1: interval and max-wait batches need a running worker", so.Spec.MinReplicaCount)
		}
		if so.Spec.MaxReplicaCount == nil || so.Spec.MinReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
			t.Errorf("maxReplicaCount %v below minReplicaCount %v", so.Spec.MaxReplicaCount, so.Spec.MinReplicaCount)
		}
		stream := valueOr(cfg, "STREAM", "AI_REQUESTS")
		consumer := valueOr(cfg, "CONSUMER", "aibatch")
		batchSize := intValue(t, cfg, "MAX_BATCH_SIZE", 50)
		inflight := intValue(t, cfg, "MAX_INFLIGHT_BATCHES", 4)
		lanes := map[string]bool{}
		for i, tr := range so.Spec.Triggers {
			m := tr.Metadata
			if tr.Type != "nats-jetstream" {
				t.Errorf("trigger %d: type %q; want nats-jetstream", i, tr.Type)
				continue
			}
			if _, _, err := net.SplitHostPort(m.NatsServerMonitoringEndpoint); err != nil {
				t.Errorf("trigger %d: natsServerMonitoringEndpoint %q: want host:port (%v)", i, m.NatsServerMonitoringEndpoint, err)
			}
			if m.Account == "" {
				t.Errorf("trigger %d: account is empty ($G without accounts)", i)
			}
			if m.Stream != stream {
				t.Errorf("trigger %d: stream %q; the workers use STREAM=%s", i, m.Stream, stream)
			}
			if m.Consumer != consumer && m.Consumer != consumer+"_urgent" {
				t.Errorf("trigger %d: consumer %q; the workers use %s and %s_urgent", i, m.Consumer, consumer, consumer)
			}
			lanes[m.Consumer] = true
			lag, err := strconv.Atoi(m.LagThreshold)
			if err != nil {
				t.Errorf("trigger %d: lagThreshold %q: %v", i, m.LagThreshold, err)
				continue
			}
			// Below one batch, the backlog batching keeps on purpose
			// would add workers; on the batch lane, below one worker's
			// in-flight capacity, so would a worker that is merely busy.
			minLag := batchSize
			if m.Consumer == consumer {
				minLag = batchSize * inflight
			}
			if lag < minLag {
				t.Errorf("trigger %d (%s): lagThreshold %d < %d: it would scale on the intended batching wait, not on overload (docs/kubernetes.md)", i, m.Consumer, lag, minLag)
			}
		}
		if !lanes[consumer] {
			t.Errorf("no trigger watches the batch lane consumer %s", consumer)
		}
	})
}

func workerContainer(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("Deployment %s has %d containers; want the worker alone", d.Name, len(cs))
	}
	return &cs[0]
}

// resolvePort returns the container port a probe or Service port names,
// or 0.
func resolvePort(c *corev1.Container, p intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

func containerHasPort(c *corev1.Container, p intstr.IntOrString) bool { return resolvePort(c, p) != 0 }

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func valueOr(m map[string]string, k, def string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return def
}

func intValue(t *testing.T, m map[string]string, k string, def int) int {
	t.Helper()
	v, ok := m[k]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", k, v, err)
	}
	return n
}

func TestBuildsHoldTheInvariants(t *testing.T) {
	t.Parallel()
	env := workerEnv(t)
	secret := secretExample(t)
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			checkSet(t, decodeSet(t, render(t, dir)), secret, env)
		})
	}
}

func TestClusterOverlay(t *testing.T) {
	t.Parallel()
	set := decodeSet(t, render(t, "overlays/cluster"))
	if len(set.configMaps) != 1 || len(set.scaledObjects) != 1 {
		t.Fatalf("the overlay builds %d ConfigMaps and %d ScaledObjects; want one each", len(set.configMaps), len(set.scaledObjects))
	}
	cfg := set.configMaps[0].Data
	if cfg["STREAM_REPLICAS"] != "3" {
		t.Errorf("STREAM_REPLICAS=%q; a 3-node JetStream cluster wants 3", cfg["STREAM_REPLICAS"])
	}
	if !strings.HasPrefix(cfg["NATS_URL"], "nats://nats.") {
		t.Errorf("NATS_URL=%q; want the Helm chart's service (release nats)", cfg["NATS_URL"])
	}
	if m := set.scaledObjects[0].Spec.MinReplicaCount; m == nil || *m < 2 {
		t.Errorf("minReplicaCount %v; the cluster overlay keeps at least 2 workers", m)
	}
}

// commentedSetting matches a commented-out `KEY: value` line, such as
// "# NATS_USER: aibatch" in secret.example.yaml.
var commentedSetting = regexp.MustCompile(`^\s*#\s*([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+):\s`)

// TestCommentedSettingsAreWorkerVariables checks the settings the manifests
// offer in comments, to be uncommented by an operator, are variables the
// worker reads too.
func TestCommentedSettingsAreWorkerVariables(t *testing.T) {
	t.Parallel()
	env := workerEnv(t)
	seen := 0
	for _, file := range yamlFiles(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			m := commentedSetting.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			seen++
			if !env[m[1]] && !slices.Contains(runtimeEnv, m[1]) {
				t.Errorf("%s:%d: commented setting %s is not a variable the worker reads", file, i+1, m[1])
			}
		}
	}
	if seen == 0 {
		t.Error("no commented-out settings found; secret.example.yaml offers the NATS ones")
	}
}

func TestSecretExampleIsATemplate(t *testing.T) {
	t.Parallel()
	s := secretExample(t)
	keys := secretKeys(s)
	for _, want := range []string{"ADMIN_TOKEN", "OPENAI_API_KEY"} {
		if !slices.Contains(keys, want) {
			t.Errorf("secret.example.yaml has no %s; keys %v", want, keys)
		}
	}
	for k, v := range s.StringData {
		if !strings.HasPrefix(v, "REPLACE_WITH_") {
			t.Errorf("secret.example.yaml %s=%q: a template holds placeholders only", k, v)
		}
	}
	for _, dir := range kustomizations {
		if slices.Contains(readKustomization(t, dir).Resources, "secret.example.yaml") {
			t.Errorf("%s/kustomization.yaml applies secret.example.yaml: its placeholders would become the real Secret", dir)
		}
	}
}

func TestKustomizationFilesExist(t *testing.T) {
	t.Parallel()
	var dirs []string
	for _, f := range yamlFiles(t) {
		if filepath.Base(f) == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	if len(dirs) < len(kustomizations) {
		t.Fatalf("found kustomizations %v; want at least %v", dirs, kustomizations)
	}
	for _, dir := range dirs {
		k := readKustomization(t, dir)
		if len(k.Resources) == 0 {
			t.Errorf("%s: no resources", dir)
		}
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
				continue
			}
			if st.IsDir() {
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s: resource %s is a directory without kustomization.yaml", dir, r)
				}
			}
		}
		for _, p := range k.Patches {
			if _, err := os.Stat(filepath.Join(dir, p.Path)); err != nil {
				t.Errorf("%s: patch %s: %v", dir, p.Path, err)
			}
		}
		for _, c := range k.Components {
			ck := readKustomization(t, filepath.Join(dir, c))
			if ck.Kind != "Component" {
				t.Errorf("%s: component %s is a %s, not a Component", dir, c, ck.Kind)
			}
		}
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.Files {
				_, path, ok := strings.Cut(f, "=")
				if !ok {
					path = f
				}
				if _, err := os.Stat(filepath.Join(dir, path)); err != nil {
					t.Errorf("%s: configMapGenerator %s: %v", dir, g.Name, err)
				}
			}
		}
	}
}

// TestKubectlKustomizeBuilds builds each kustomization with the real
// kustomize (kubectl kustomize) when kubectl is installed, and checks its
// output the same way as the test's own rendering.
func TestKubectlKustomizeBuilds(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed; TestBuildsHoldTheInvariants covers the builds with the test's own rendering")
	}
	env := workerEnv(t)
	secret := secretExample(t)
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(kubectl, "kustomize", dir).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, ee.Stderr)
				}
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			var docs []renderedDoc
			for _, doc := range splitDocs(out) {
				docs = append(docs, toRendered(t, "kubectl kustomize "+dir, doc))
			}
			checkSet(t, decodeSet(t, docs), secret, env)
			// The test's own rendering must agree with kustomize on the
			// settings it checks.
			ours := decodeSet(t, render(t, dir))
			theirs := decodeSet(t, docs)
			if !reflect.DeepEqual(ours.configMaps[0].Data, theirs.configMaps[0].Data) {
				t.Errorf("ConfigMap data differs from kustomize's:\nours   %v\ntheirs %v", ours.configMaps[0].Data, theirs.configMaps[0].Data)
			}
			if !reflect.DeepEqual(ours.scaledObjects[0].Spec, theirs.scaledObjects[0].Spec) {
				t.Errorf("ScaledObject spec differs from kustomize's:\nours   %+v\ntheirs %+v", ours.scaledObjects[0].Spec, theirs.scaledObjects[0].Spec)
			}
		})
	}
}
