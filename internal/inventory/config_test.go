package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.uber.org/zap/zaptest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"defaults", nil, ""},
		{"files", []string{"--inventory-file", "a.json", "--inventory-file", "b=/x/b.json", "--nodes-file", "/x/nodes.json"}, ""},
		{"in-cluster needs a name", []string{"--in-cluster"}, "--in-cluster needs --cluster-name"},
		{"in-cluster with contexts", []string{"--in-cluster", "--cluster-name", "x", "--context", "a"}, "--in-cluster excludes"},
		{"all and some contexts", []string{"--all-contexts", "--context", "a"}, "--all-contexts excludes --context"},
		{"cluster name with many contexts", []string{"--context", "a", "--context", "b", "--cluster-name", "x"}, "--cluster-name names a single cluster"},
		{"cluster name for files only", []string{"--inventory-file", "a.json", "--cluster-name", "x"}, "--cluster-name applies to a live cluster"},
		{"page size", []string{"--page-size", "0"}, "--page-size 0"},
		{"selector", []string{"--selector", "a in (b"}, "--selector"},
		{"glob", []string{"--exclude-namespace", "[x"}, "--exclude-namespace"},
		{"duplicate file names", []string{"--inventory-file", "x/a.json", "--inventory-file", "y/a.json"}, `cluster "a" named twice`},
		{"empty path", []string{"--inventory-file", "a="}, "empty path"},
		// It was a cluster named "=pods".
		{"empty name", []string{"--inventory-file", "=pods.json"}, `--inventory-file "=pods.json": the cluster name before '=' is empty`},
		{"padded name", []string{"--inventory-file", " a=pods.json"}, "is empty or padded"},
		{"empty nodes name", []string{"--inventory-file", "a.json", "--nodes-file", "=n.json"}, `--nodes-file "=n.json": the cluster name`},
		{"nodes without files", []string{"--nodes-file", "n.json"}, "--nodes-file goes with --inventory-file"},
		{"nodes for unknown cluster", []string{"--inventory-file", "a.json", "--nodes-file", "b=n.json"}, `no --inventory-file named "b"`},
		{"two unnamed nodes files", []string{"--inventory-file", "a.json", "--nodes-file", "n.json", "--nodes-file", "m.json"}, "only one unnamed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			c.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigCheckFiles(t *testing.T) {
	dir := t.TempDir()
	c := Defaults()
	c.InventoryFiles = []string{"testdata/pods.json", "eu=" + filepath.Join(dir, "missing.json"), "d=" + dir}
	c.NodesFiles = []string{filepath.Join(dir, "no-nodes.json")}
	err := c.CheckFiles()
	for _, want := range []string{"--inventory-file " + filepath.Join(dir, "missing.json") + ": ", "--inventory-file " + dir + ": is a directory",
		"--nodes-file " + filepath.Join(dir, "no-nodes.json")} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckFiles = %v, want %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "testdata/pods.json") {
		t.Errorf("an existing file was reported: %v", err)
	}
}

func TestConfigOpenFiles(t *testing.T) {
	c := Defaults()
	c.InventoryFiles = []string{"testdata/pods.json", "eu=/data/eu-west.json", "us=/data/us.json"}
	c.NodesFiles = []string{"testdata/nodes.json", "us=/data/us-nodes.json"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	sources, failed, err := c.Open(zaptest.NewLogger(t))
	if err != nil || len(failed) != 0 {
		t.Fatalf("Open: %v %v", failed, err)
	}
	want := map[string][2]string{
		"pods": {"testdata/pods.json", "testdata/nodes.json"},
		"eu":   {"/data/eu-west.json", "testdata/nodes.json"},
		"us":   {"/data/us.json", "/data/us-nodes.json"},
	}
	if len(sources) != len(want) {
		t.Fatalf("%d sources, want %d", len(sources), len(want))
	}
	for _, s := range sources {
		fsrc := s.(*FileSource)
		if w, ok := want[fsrc.Cluster()]; !ok || fsrc.path != w[0] || fsrc.nodesPath != w[1] {
			t.Errorf("source %s: %s + %s", fsrc.Cluster(), fsrc.path, fsrc.nodesPath)
		}
	}
}

const testKubeconfig = `apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster: {server: "https://127.0.0.1:1"}
- name: prod
  cluster: {server: "https://127.0.0.1:2"}
contexts:
- name: dev
  context: {cluster: dev, user: u}
- name: prod-admin
  context: {cluster: prod, user: u}
- name: broken
  context: {cluster: missing, user: u}
users:
- name: u
  user: {token: abc}
`

func TestConfigOpenKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		cfg         Config
		wantSources []string
		wantFailed  []string
		wantErr     string
	}{
		{"current context", Config{Kubeconfig: path}, []string{"dev"}, nil, ""},
		{"current context renamed", Config{Kubeconfig: path, ClusterName: "eu-dev"}, []string{"eu-dev"}, nil, ""},
		{"named contexts", Config{Kubeconfig: path, Contexts: []string{"prod-admin", "dev", "typo"}}, []string{"prod-admin", "dev"}, []string{"typo"}, ""},
		{"all contexts", Config{Kubeconfig: path, AllContexts: true}, []string{"dev", "prod-admin"}, []string{"broken"}, ""},
		{"with files", Config{Kubeconfig: path, Contexts: []string{"dev"}, InventoryFiles: []string{"offline=x.json"}}, []string{"offline", "dev"}, nil, ""},
		{"kubeconfig and files", Config{Kubeconfig: path, InventoryFiles: []string{"offline=x.json"}}, []string{"offline", "dev"}, nil, ""},
		{"files only", Config{InventoryFiles: []string{"offline=x.json"}}, []string{"offline"}, nil, ""},
		{"name clash", Config{Kubeconfig: path, Contexts: []string{"dev"}, InventoryFiles: []string{"dev=x.json"}}, nil, nil, `cluster "dev" is named twice`},
		{"missing kubeconfig", Config{Kubeconfig: filepath.Join(t.TempDir(), "nope")}, nil, nil, "load kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.PageSize = 10
			sources, failed, err := tt.cfg.Open(zaptest.NewLogger(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names, fnames []string
			for _, s := range sources {
				names = append(names, s.Cluster())
			}
			for _, f := range failed {
				fnames = append(fnames, f.Cluster)
				if !strings.Contains(f.Error(), "cluster "+f.Cluster) {
					t.Errorf("failure %q does not name its cluster", f.Error())
				}
			}
			if strings.Join(names, ",") != strings.Join(tt.wantSources, ",") || strings.Join(fnames, ",") != strings.Join(tt.wantFailed, ",") {
				t.Fatalf("sources %v failed %v, want %v and %v", names, fnames, tt.wantSources, tt.wantFailed)
			}
		})
	}
}

func TestOpenInClusterWithoutServiceAccount(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	sources, failed, err := Config{InCluster: true, ClusterName: "here", PageSize: 10}.Open(zaptest.NewLogger(t))
	if err != nil || len(sources) != 0 || len(failed) != 1 || failed[0].Cluster != "here" || !strings.Contains(failed[0].Error(), "in-cluster config") {
		t.Fatalf("sources %v failed %v err %v", sources, failed, err)
	}
}
