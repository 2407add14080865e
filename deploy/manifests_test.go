package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// binary is what the deployment files must agree with about one binary,
// read from its source rather than by running it.
type binary struct {
	name string
	// vars are the environment variables the binary reads.
	vars map[string]bool
	// port is the default port of its HTTP server (/healthz, /readyz,
	// /metrics).
	port string
}

// readSource reads a file of the module, relative to its root.
func readSource(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	// envLiteralRe finds the environment variable names given to the flag
	// helpers: str(&o.addr, "addr", "INGEST_ADDR", …).
	envLiteralRe = regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"`)
	// authConstRe finds internal/auth's variable names and suffixes.
	authConstRe = regexp.MustCompile(`(?m)^\s*(?:EnvAccounts|envPrefix|env[A-Z][A-Za-z]*)\s*=\s*"([A-Z_]+)"`)
)

// binaries reads the settings of ingest and worker from their sources:
// cmd/*/main.go for flags with variables, internal/auth/env.go for the
// Altegio account variables (and their _FILE forms) the worker reads.
func binaries(t *testing.T) map[string]binary {
	t.Helper()
	read := func(name, addrVar string) binary {
		src := readSource(t, "cmd/"+name+"/main.go")
		b := binary{name: name, vars: map[string]bool{}}
		for _, m := range envLiteralRe.FindAllStringSubmatch(src, -1) {
			b.vars[m[1]] = true
		}
		m := regexp.MustCompile(`"` + addrVar + `",\s*":(\d+)"`).FindStringSubmatch(src)
		if m == nil {
			t.Fatalf("cmd/%s/main.go: no default for %s", name, addrVar)
		}
		b.port = m[1]
		return b
	}
	ingest, worker := read("ingest", "INGEST_ADDR"), read("worker", "WORKER_ADDR")

	src := readSource(t, "internal/auth/env.go")
	var prefix string
	var suffixes []string
	for _, m := range authConstRe.FindAllStringSubmatch(src, -1) {
		switch {
		case m[1] == "ALTEGIO_":
			prefix = m[1]
		case strings.HasPrefix(m[1], "ALTEGIO_"):
			worker.vars[m[1]] = true // ALTEGIO_ACCOUNTS
		default:
			suffixes = append(suffixes, m[1])
		}
	}
	if prefix == "" || len(suffixes) < 4 {
		t.Fatalf("internal/auth/env.go: prefix %q, suffixes %v; the test's reading of it is out of date", prefix, suffixes)
	}
	for _, s := range suffixes {
		worker.vars[prefix+s] = true
		worker.vars[prefix+s+"_FILE"] = true
	}
	for _, b := range []binary{ingest, worker} {
		for _, want := range []string{"NATS_URL", "LOG_FORMAT"} {
			if !b.vars[want] {
				t.Fatalf("%s: found no %s in its source; the test's reading of it is out of date", b.name, want)
			}
		}
	}
	return map[string]binary{"ingest": ingest, "worker": worker}
}

// passwordVars are the variables accounts.conf takes passwords from.
func passwordVars(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(accountsConf)
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, m := range regexp.MustCompile(`(?m)^\s*(?:\{\s*user:\s*\w+,\s*)?password:\s*\$([A-Z_]+)`).FindAllStringSubmatch(string(b), -1) {
		vars = append(vars, m[1])
	}
	slices.Sort(vars)
	if len(vars) != len(users) {
		t.Fatalf("accounts.conf takes passwords from %v, the tests know %d users", vars, len(users))
	}
	return vars
}

// decodeAll decodes every YAML document of a file.
func decodeAll(t *testing.T, name string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// get walks nested maps and lists: get(doc, "spec", "template", 0).
func get(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, keys ...any) string {
	s, _ := get(v, keys...).(string)
	return s
}

func list(v any, keys ...any) []any {
	l, _ := get(v, keys...).([]any)
	return l
}

func TestComposeFile(t *testing.T) {
	bins := binaries(t)
	docs := decodeAll(t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	services, _ := docs[0]["services"].(map[string]any)
	envOf := func(svc string) map[string]string {
		env := map[string]string{}
		m, _ := get(services, svc, "environment").(map[string]any)
		for k, v := range m {
			env[k] = fmt.Sprint(v)
		}
		return env
	}

	// Every ${VAR} the file uses is documented in .env.example.
	raw := readSource(t, "deploy/compose.yaml")
	example := readSource(t, "deploy/.env.example")
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)`).FindAllStringSubmatch(raw, -1) {
		if !regexp.MustCompile(`(?m)^` + m[1] + `=`).MatchString(example) {
			t.Errorf("compose.yaml uses ${%s}, .env.example does not list it", m[1])
		}
	}
	if !strings.Contains(readSource(t, "deploy/.gitignore"), ".env\n") {
		t.Error("deploy/.gitignore does not keep .env out of git")
	}

	// The NATS image runs the server version the tests run (go.mod).
	m := regexp.MustCompile(`nats-server/v2 v(\d+\.\d+)\.`).FindStringSubmatch(readSource(t, "go.mod"))
	if m == nil || !strings.Contains(raw, "image: nats:"+m[1]+"-alpine") {
		t.Errorf("compose.yaml's NATS image is not nats-server %v of go.mod", m)
	}

	// The three NATS nodes: their config, their passwords, their names.
	pw := passwordVars(t)
	for i := 1; i <= 3; i++ {
		svc := fmt.Sprintf("nats-%d", i)
		if get(services, svc) == nil {
			t.Fatalf("no service %s", svc)
		}
		if h := str(services, svc, "hostname"); h != svc {
			t.Errorf("%s: hostname %q; the cluster configs route to %s", svc, h, svc)
		}
		cmd := list(services, svc, "command")
		if len(cmd) != 2 || cmd[0] != "-c" || !strings.HasPrefix(fmt.Sprint(cmd[1]), "/etc/nats/") {
			t.Fatalf("%s: command %v, want -c /etc/nats/…", svc, cmd)
		}
		conf := strings.TrimPrefix(fmt.Sprint(cmd[1]), "/etc/nats/")
		if conf != fmt.Sprintf("cluster/n%d.conf", i) {
			t.Errorf("%s runs %s", svc, conf)
		}
		if !slices.Contains(list(services, svc, "volumes"), "./nats:/etc/nats:ro") {
			t.Errorf("%s does not mount deploy/nats on /etc/nats", svc)
		}
		env := envOf(svc)
		for _, v := range pw {
			if !strings.Contains(env[v], "${"+v+":?") {
				t.Errorf("%s: %s = %q, want it required from .env", svc, v, env[v])
			}
		}
	}

	app := func(svc string, b binary, user string) {
		t.Helper()
		if get(services, svc) == nil {
			t.Fatalf("no service %s", svc)
		}
		if c := list(services, svc, "command"); len(c) != 1 || c[0] != b.name {
			t.Errorf("%s: command %v, want [%s]", svc, c, b.name)
		}
		env := envOf(svc)
		for k := range env {
			if !b.vars[k] {
				t.Errorf("%s: %s is not a setting of %s", svc, k, b.name)
			}
		}
		for i := 1; i <= 3; i++ {
			if want := fmt.Sprintf("nats://%s:${%s}@nats-%d:4222", user, users[user].env, i); !strings.Contains(env["NATS_URL"], want) {
				t.Errorf("%s: NATS_URL %q lacks %s", svc, env["NATS_URL"], want)
			}
		}
		if addr := env[strings.ToUpper(b.name)+"_ADDR"]; addr != "" && addr != ":"+b.port {
			t.Errorf("%s: listens on %s, its healthcheck and ports assume :%s", svc, addr, b.port)
		}
		hc := fmt.Sprint(list(services, svc, "healthcheck", "test"))
		if !strings.Contains(hc, "http://127.0.0.1:"+b.port+"/healthz") {
			t.Errorf("%s: healthcheck %s, want /healthz on port %s", svc, hc, b.port)
		}
		for _, p := range list(services, svc, "ports") {
			if !strings.HasSuffix(fmt.Sprint(p), ":"+b.port) {
				t.Errorf("%s: port mapping %v does not reach port %s", svc, p, b.port)
			}
		}
		deps, _ := get(services, svc, "depends_on").(map[string]any)
		for i := 1; i <= 3; i++ {
			if str(deps, fmt.Sprintf("nats-%d", i), "condition") != "service_healthy" {
				t.Errorf("%s does not wait for a healthy nats-%d", svc, i)
			}
		}
		if str(services, svc, "build", "dockerfile") != "deploy/Dockerfile" {
			t.Errorf("%s is not built from deploy/Dockerfile", svc)
		}
	}
	for _, svc := range []string{"ingest-1", "ingest-2"} {
		app(svc, bins["ingest"], "ingest")
		env := envOf(svc)
		if env["INGEST_REPLICAS"] != "3" || env["INGEST_APPLY_TOPOLOGY"] != "false" {
			t.Errorf("%s: INGEST_REPLICAS %q, INGEST_APPLY_TOPOLOGY %q; want 3 and false (the worker applies)", svc, env["INGEST_REPLICAS"], env["INGEST_APPLY_TOPOLOGY"])
		}
		if vol := list(services, svc, "volumes"); len(vol) != 1 || path.Dir(env["INGEST_OUTBOX"]) != strings.SplitN(fmt.Sprint(vol[0]), ":", 2)[1] {
			t.Errorf("%s: outbox %q is not on its volume %v", svc, env["INGEST_OUTBOX"], vol)
		}
	}
	if a, b := list(services, "ingest-1", "volumes"), list(services, "ingest-2", "volumes"); fmt.Sprint(a) == fmt.Sprint(b) {
		t.Errorf("ingest-1 and ingest-2 share the outbox volume %v; an outbox file belongs to one process", a)
	}
	app("worker", bins["worker"], "worker")
	if env := envOf("worker"); env["WORKER_REPLICAS"] != "3" {
		t.Errorf("worker: WORKER_REPLICAS %q, want 3 on the 3-node cluster", env["WORKER_REPLICAS"])
	}
	if n, _ := get(services, "worker", "deploy", "replicas").(int); n < 2 {
		t.Errorf("worker: %d replicas, want at least 2", n)
	}

	// The sandbox reads ALTEGIO_SANDBOX_<FLAG>.
	sandboxSrc := readSource(t, "cmd/altegio-sandbox/main.go")
	for k := range envOf("sandbox") {
		flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "ALTEGIO_SANDBOX_"), "_", "-"))
		if !strings.HasPrefix(k, "ALTEGIO_SANDBOX_") || !strings.Contains(sandboxSrc, `"`+flag+`"`) {
			t.Errorf("sandbox: %s is not a setting of altegio-sandbox", k)
		}
	}
}

func TestDockerfile(t *testing.T) {
	src := readSource(t, "deploy/Dockerfile")
	for _, want := range []string{
		"./cmd/ingest", "./cmd/worker", "CGO_ENABLED=0",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	bins := binaries(t)
	if !strings.Contains(src, "EXPOSE "+bins["ingest"].port+" "+bins["worker"].port) {
		t.Errorf("Dockerfile does not expose ports %s and %s", bins["ingest"].port, bins["worker"].port)
	}
	gomod := readSource(t, "go.mod")
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if m == nil || !strings.Contains(src, "FROM golang:"+m[1]+" ") {
		t.Errorf("Dockerfile does not build with the go.mod version %v", m)
	}
}

func TestKubernetesManifests(t *testing.T) {
	bins := binaries(t)
	kust := decodeAll(t, "k8s/kustomization.yaml")[0]
	objects := map[string]map[string]any{} // "Kind/name"
	for _, r := range list(kust, "resources") {
		for _, doc := range decodeAll(t, filepath.Join("k8s", fmt.Sprint(r))) {
			objects[str(doc, "kind")+"/"+str(doc, "metadata", "name")] = doc
		}
	}
	secrets := map[string]map[string]any{}
	for _, doc := range decodeAll(t, "k8s/secret.example.yaml") {
		if str(doc, "kind") != "Secret" {
			t.Errorf("secret.example.yaml holds a %s", str(doc, "kind"))
		}
		secrets[str(doc, "metadata", "name")], _ = get(doc, "stringData").(map[string]any)
	}
	if slices.Contains(list(kust, "resources"), "secret.example.yaml") {
		t.Error("kustomization applies the secret template with its placeholders")
	}

	workloads := []struct {
		kind, name string
		bin        binary
		user       string
	}{
		{"StatefulSet", "ingest", bins["ingest"], "ingest"},
		{"Deployment", "worker", bins["worker"], "worker"},
	}
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			obj := objects[w.kind+"/"+w.name]
			if obj == nil {
				t.Fatalf("no %s/%s", w.kind, w.name)
			}
			if n, _ := get(obj, "spec", "replicas").(int); n < 2 {
				t.Errorf("%d replicas, want at least 2", n)
			}
			labels, _ := get(obj, "spec", "selector", "matchLabels").(map[string]any)
			pdb := objects["PodDisruptionBudget/"+w.name]
			if pdb == nil || fmt.Sprint(get(pdb, "spec", "selector", "matchLabels")) != fmt.Sprint(labels) {
				t.Errorf("no PodDisruptionBudget selecting %v", labels)
			}
			c := get(obj, "spec", "template", "spec", "containers", 0)
			if cmd := list(c, "command"); len(cmd) != 1 || path.Base(fmt.Sprint(cmd[0])) != w.bin.name || len(list(c, "args")) > 0 {
				t.Errorf("command %v args %v, want the %s binary alone", cmd, list(c, "args"), w.bin.name)
			}

			// Settings: every variable is one the binary reads, or one
			// expanded into another with $(NAME).
			env := map[string]string{}
			for _, e := range list(c, "env") {
				name := str(e, "name")
				env[name] = str(e, "value")
				if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
					keys := secrets[str(ref, "name")]
					if _, ok := keys[str(ref, "key")]; !ok {
						t.Errorf("%s reads key %q of Secret %q, which secret.example.yaml does not define", name, str(ref, "key"), str(ref, "name"))
					}
				}
			}
			for _, ef := range list(c, "envFrom") {
				cm := objects["ConfigMap/"+str(ef, "configMapRef", "name")]
				if cm == nil {
					t.Fatalf("envFrom names a ConfigMap %q that is not applied", str(ef, "configMapRef", "name"))
				}
				data, _ := get(cm, "data").(map[string]any)
				for k, v := range data {
					env[k] = fmt.Sprint(v)
				}
			}
			expanded := map[string]bool{}
			for _, v := range env {
				for _, m := range regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).FindAllStringSubmatch(v, -1) {
					expanded[m[1]] = true
				}
			}
			for k := range env {
				if !w.bin.vars[k] && !expanded[k] {
					t.Errorf("%s is not a setting of %s", k, w.bin.name)
				}
			}
			if !strings.HasPrefix(env["NATS_URL"], "nats://"+w.user+":$(NATS_PASSWORD)@") {
				t.Errorf("NATS_URL %q does not log in as %s", env["NATS_URL"], w.user)
			}
			if r := strings.ToUpper(w.name) + "_REPLICAS"; env[r] != "3" {
				t.Errorf("%s = %q, want 3 (R3 on the NATS cluster)", r, env[r])
			}
			if a := env[strings.ToUpper(w.name)+"_ADDR"]; a != "" && a != ":"+w.bin.port {
				t.Errorf("listens on %s; probes assume :%s", a, w.bin.port)
			}

			// Probes and ports.
			ports := map[string]string{}
			for _, p := range list(c, "ports") {
				ports[str(p, "name")] = fmt.Sprint(get(p, "containerPort"))
			}
			for probe, want := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
				h := get(c, probe, "httpGet")
				port := fmt.Sprint(get(h, "port"))
				if p, ok := ports[port]; ok {
					port = p
				}
				if str(h, "path") != want || port != w.bin.port {
					t.Errorf("%s: GET %s on port %s, want %s on %s", probe, str(h, "path"), port, want, w.bin.port)
				}
			}
			for _, k := range []string{"requests", "limits"} {
				if get(c, "resources", k, "memory") == nil {
					t.Errorf("no memory %s", k)
				}
			}
			if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(obj, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true {
				t.Error("not read-only and non-root")
			}
		})
	}

	// Ingest keeps its outbox on a claim of its own.
	ingest := objects["StatefulSet/ingest"]
	claim := str(ingest, "spec", "volumeClaimTemplates", 0, "metadata", "name")
	outbox := str(objects["ConfigMap/ingest"], "data", "INGEST_OUTBOX")
	mounted := false
	for _, m := range list(ingest, "spec", "template", "spec", "containers", 0, "volumeMounts") {
		mounted = mounted || (str(m, "name") == claim && str(m, "mountPath") == path.Dir(outbox))
	}
	if claim == "" || !mounted {
		t.Errorf("the outbox %q is not on the StatefulSet's claim %q", outbox, claim)
	}
	svc := objects["Service/ingest"]
	if svc == nil || fmt.Sprint(get(svc, "spec", "selector")) != fmt.Sprint(get(ingest, "spec", "selector", "matchLabels")) ||
		str(svc, "spec", "ports", 0, "targetPort") != "http" {
		t.Error("Service ingest does not route to the ingest pods' http port")
	}
	if pf := str(objects["ConfigMap/ingest"], "data", "INGEST_PRODUCERS_FILE"); pf == "" || secrets["ingest-producers"][path.Base(pf)] == nil {
		t.Errorf("INGEST_PRODUCERS_FILE %q is not a key of the ingest-producers Secret", pf)
	}
}

func TestNATSHelmValues(t *testing.T) {
	v := decodeAll(t, "k8s/nats-values.yaml")[0]
	if get(v, "config", "cluster", "enabled") != true || get(v, "config", "cluster", "replicas") != 3 {
		t.Error("the NATS cluster is not three nodes")
	}
	if get(v, "config", "jetstream", "enabled") != true || str(v, "config", "jetstream", "fileStore", "pvc", "size") == "" {
		t.Error("JetStream is not on persistent volumes")
	}
	if str(v, "config", "merge", "$include") != path.Base(accountsConf) {
		t.Errorf("the values do not include %s", path.Base(accountsConf))
	}
	env, _ := get(v, "container", "env").(map[string]any)
	var got []string
	for k := range env {
		got = append(got, k)
	}
	slices.Sort(got)
	want := append(passwordVars(t), "JS_KEY") // the store's encryption key
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("container env %v, accounts.conf and the store need %v", got, want)
	}
	if str(v, "config", "jetstream", "merge", "cipher") != "chachapoly" || str(v, "config", "jetstream", "merge", "key") == "" {
		t.Error("JetStream's files are not encrypted at rest (config.jetstream.merge cipher and key)")
	}
	// The same sync_interval as the cluster configs.
	if s := str(v, "config", "jetstream", "merge", "sync_interval"); s != "2m" {
		t.Errorf("sync_interval %q, the cluster configs use 2m", s)
	}
}
