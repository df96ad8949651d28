package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config selects the clusters to enumerate and the pods in them.
type Config struct {
	// Kubeconfig is the kubeconfig file; empty means $KUBECONFIG or
	// ~/.kube/config.
	Kubeconfig string
	// Contexts are kubeconfig contexts to enumerate, each a cluster named
	// by its context.
	Contexts []string
	// AllContexts enumerates every context of the kubeconfig.
	AllContexts bool
	// InCluster uses the pod's service account.
	InCluster bool
	// ClusterName names the in-cluster cluster, or overrides the name of
	// the only live cluster.
	ClusterName string
	// InventoryFiles are "[name=]PATH" of `kubectl get pods -A -o json`
	// output; the name defaults to the file's base name without extension.
	InventoryFiles []string
	// NodesFiles are "[name=]PATH" of `kubectl get nodes -o json` output
	// for the inventory file of that name; an unnamed one serves every
	// inventory file without a named one.
	NodesFiles []string

	IncludeNamespaces []string
	ExcludeNamespaces []string
	// Selector is a label selector (app=web,tier!=cache).
	Selector string
	// PageSize is the Limit of each List call.
	PageSize int64
}

// Defaults returns the default configuration (current kubeconfig context,
// pages of DefaultPageSize).
func Defaults() Config { return Config{PageSize: DefaultPageSize} }

// RegisterFlags binds the source flags.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	fs.StringArrayVar(&c.Contexts, "context", c.Contexts, "kubeconfig context to enumerate, a cluster named after it (repeatable; default the current context)")
	fs.BoolVar(&c.AllContexts, "all-contexts", c.AllContexts, "enumerate every context of the kubeconfig")
	fs.BoolVar(&c.InCluster, "in-cluster", c.InCluster, "enumerate the cluster this pod runs in, with its service account (needs --cluster-name)")
	fs.StringVar(&c.ClusterName, "cluster-name", c.ClusterName, "name of the in-cluster cluster (or of the only live cluster)")
	fs.StringArrayVar(&c.InventoryFiles, "inventory-file", c.InventoryFiles, "offline source: [name=]`PATH` of the output of kubectl get pods -A -o json, or of kubectl get namespaces,pods -A -o json to record namespace labels and annotations (repeatable; the name defaults to the file name)")
	fs.StringArrayVar(&c.NodesFiles, "nodes-file", c.NodesFiles, "[name=]`PATH` of the output of kubectl get nodes -o json: node platforms for the inventory file of that name (unnamed: for all); without it linux/amd64 is assumed")
	fs.StringArrayVar(&c.IncludeNamespaces, "include-namespace", c.IncludeNamespaces, "only enumerate namespaces matching this glob (repeatable)")
	fs.StringArrayVar(&c.ExcludeNamespaces, "exclude-namespace", c.ExcludeNamespaces, "skip namespaces matching this glob (repeatable; wins over --include-namespace)")
	fs.StringVar(&c.Selector, "selector", c.Selector, "only enumerate pods matching this label selector")
	fs.Int64Var(&c.PageSize, "page-size", c.PageSize, "objects per List call (Limit); bounds memory per page")
}

// live reports whether a live API source is configured: explicitly (a
// kubeconfig, contexts, in-cluster) or by default when no file is given.
func (c Config) live() bool {
	return c.InCluster || c.AllContexts || len(c.Contexts) > 0 || c.Kubeconfig != "" || len(c.InventoryFiles) == 0
}

// Validate checks the flags that can be checked without reading files.
func (c Config) Validate() error {
	var errs []error
	if c.InCluster && (c.AllContexts || len(c.Contexts) > 0) {
		errs = append(errs, errors.New("--in-cluster excludes --context and --all-contexts"))
	}
	if c.AllContexts && len(c.Contexts) > 0 {
		errs = append(errs, errors.New("--all-contexts excludes --context"))
	}
	if c.InCluster && c.ClusterName == "" {
		errs = append(errs, errors.New("--in-cluster needs --cluster-name to name the cluster in reports"))
	}
	if c.ClusterName != "" && (c.AllContexts || len(c.Contexts) > 1) {
		errs = append(errs, errors.New("--cluster-name names a single cluster; with several contexts each is named after its context"))
	}
	if c.ClusterName != "" && !c.live() {
		errs = append(errs, errors.New("--cluster-name applies to a live cluster; name inventory files with --inventory-file NAME=PATH"))
	}
	if c.PageSize < 1 {
		errs = append(errs, fmt.Errorf("--page-size %d: want at least 1", c.PageSize))
	}
	if _, err := labels.Parse(c.Selector); err != nil {
		errs = append(errs, fmt.Errorf("--selector %q: %w", c.Selector, err))
	}
	errs = append(errs, Filter{IncludeNamespaces: c.IncludeNamespaces, ExcludeNamespaces: c.ExcludeNamespaces}.Validate())
	files, err := c.files()
	errs = append(errs, err)
	if len(c.NodesFiles) > 0 && len(c.InventoryFiles) == 0 {
		errs = append(errs, errors.New("--nodes-file goes with --inventory-file (live clusters report their nodes)"))
	}
	if err == nil {
		seen := map[string]bool{}
		for _, f := range files {
			if seen[f.name] {
				errs = append(errs, fmt.Errorf("--inventory-file: cluster %q named twice", f.name))
			}
			seen[f.name] = true
		}
	}
	return errors.Join(errs...)
}

// CheckFiles checks, before any work, that every --inventory-file and
// --nodes-file exists and is a file this process can read (a pipe such as
// <(kubectl get pods -A -o json) is fine). Their content is read when the
// cluster is enumerated; a malformed file fails that cluster, naming the
// file and the offset.
func (c Config) CheckFiles() error {
	var errs []error
	check := func(flag, spec string) {
		_, path := splitNamed(spec)
		if path == "" {
			return // Validate names it
		}
		st, err := os.Stat(path)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s %s: %w", flag, path, err))
		case st.IsDir():
			errs = append(errs, fmt.Errorf("%s %s: is a directory", flag, path))
		case st.Mode().IsRegular():
			f, err := os.Open(path)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", flag, path, err))
				return
			}
			_ = f.Close()
		}
	}
	for _, s := range c.InventoryFiles {
		check("--inventory-file", s)
	}
	for _, s := range c.NodesFiles {
		check("--nodes-file", s)
	}
	return errors.Join(errs...)
}

// Filter returns the pod filter of the configuration.
func (c Config) Filter() (Filter, error) {
	sel, err := labels.Parse(c.Selector)
	if err != nil {
		return Filter{}, fmt.Errorf("--selector %q: %w", c.Selector, err)
	}
	return Filter{IncludeNamespaces: c.IncludeNamespaces, ExcludeNamespaces: c.ExcludeNamespaces, Selector: sel}, nil
}

type fileSpec struct{ name, path, nodes string }

// splitNamed splits "[name=]PATH". A leading segment containing a path
// separator is part of the path, not a name.
func splitNamed(s string) (name, path string) {
	if n, p, ok := strings.Cut(s, "="); ok && n != "" && !strings.ContainsAny(n, `/\`) {
		return n, p
	}
	return "", s
}

func (c Config) files() ([]fileSpec, error) {
	var (
		out  []fileSpec
		errs []error
	)
	for _, s := range c.InventoryFiles {
		name, path := splitNamed(s)
		if strings.HasPrefix(s, "=") || strings.TrimSpace(name) != name {
			errs = append(errs, fmt.Errorf("--inventory-file %q: the cluster name before '=' is empty or padded (want NAME=PATH, or PATH alone)", s))
			continue
		}
		if path == "" {
			errs = append(errs, fmt.Errorf("--inventory-file %q: empty path", s))
			continue
		}
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
		out = append(out, fileSpec{name: name, path: path})
	}
	named := map[string]string{}
	unnamed := ""
	for _, s := range c.NodesFiles {
		name, path := splitNamed(s)
		switch {
		case strings.HasPrefix(s, "=") || strings.TrimSpace(name) != name:
			errs = append(errs, fmt.Errorf("--nodes-file %q: the cluster name before '=' is empty or padded (want NAME=PATH, or PATH alone)", s))
		case path == "":
			errs = append(errs, fmt.Errorf("--nodes-file %q: empty path", s))
		case name == "" && unnamed != "":
			errs = append(errs, fmt.Errorf("--nodes-file %q: only one unnamed nodes file (name the others NAME=PATH)", s))
		case name == "":
			unnamed = path
		default:
			named[name] = path
		}
	}
	for name := range named {
		found := false
		for _, f := range out {
			found = found || f.name == name
		}
		if !found {
			errs = append(errs, fmt.Errorf("--nodes-file %s=...: no --inventory-file named %q", name, name))
		}
	}
	for i := range out {
		out[i].nodes = unnamed
		if p, ok := named[out[i].name]; ok {
			out[i].nodes = p
		}
	}
	return out, errors.Join(errs...)
}

// Open builds the sources. A live cluster whose client cannot be configured
// (a context missing from the kubeconfig, no service account) is returned as
// a ClusterFailure so the others still run; err is for configurations that
// make no cluster possible (an unreadable kubeconfig with --all-contexts,
// duplicate cluster names).
func (c Config) Open(log *zap.Logger) (sources []Source, failed []ClusterFailure, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	files, err := c.files()
	if err != nil {
		return nil, nil, err
	}
	for _, f := range files {
		sources = append(sources, NewFileSource(f.name, f.path, f.nodes))
	}
	if c.live() {
		live, lfailed, err := c.openLive(log)
		if err != nil {
			return nil, nil, err
		}
		sources = append(sources, live...)
		failed = append(failed, lfailed...)
	}
	seen := map[string]bool{}
	for _, s := range sources {
		if seen[s.Cluster()] {
			return nil, nil, fmt.Errorf("cluster %q is named twice (name inventory files NAME=PATH)", s.Cluster())
		}
		seen[s.Cluster()] = true
	}
	for _, f := range failed {
		if seen[f.Cluster] {
			return nil, nil, fmt.Errorf("cluster %q is named twice", f.Cluster)
		}
		seen[f.Cluster] = true
	}
	return sources, failed, nil
}

func (c Config) openLive(log *zap.Logger) ([]Source, []ClusterFailure, error) {
	inCluster := c.InCluster
	if !inCluster && !c.AllContexts && len(c.Contexts) == 0 && c.Kubeconfig == "" &&
		os.Getenv("KUBECONFIG") == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		// No source given, running in a pod without a kubeconfig.
		inCluster = true
		if c.ClusterName == "" {
			return nil, nil, errors.New("running inside a cluster without a kubeconfig: set --cluster-name (and --in-cluster) to name it")
		}
	}
	if inCluster {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, []ClusterFailure{{Cluster: c.ClusterName, Err: fmt.Errorf("in-cluster config: %w", err)}}, nil
		}
		src, err := NewKubeSourceForConfig(c.ClusterName, cfg, c.PageSize, log)
		if err != nil {
			return nil, []ClusterFailure{{Cluster: c.ClusterName, Err: err}}, nil
		}
		return []Source{src}, nil, nil
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		rules.ExplicitPath = c.Kubeconfig
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfigName(rules), err)
	}
	contexts := c.Contexts
	switch {
	case c.AllContexts:
		for name := range raw.Contexts {
			contexts = append(contexts, name)
		}
		sort.Strings(contexts)
		if len(contexts) == 0 {
			return nil, nil, fmt.Errorf("kubeconfig %s has no contexts", kubeconfigName(rules))
		}
	case len(contexts) == 0:
		if raw.CurrentContext == "" {
			return nil, nil, fmt.Errorf("kubeconfig %s has no current context: pass --context, --all-contexts, --in-cluster or --inventory-file", kubeconfigName(rules))
		}
		contexts = []string{raw.CurrentContext}
	}
	var (
		sources []Source
		failed  []ClusterFailure
	)
	for _, name := range contexts {
		cluster := name
		if c.ClusterName != "" {
			cluster = c.ClusterName
		}
		if _, ok := raw.Contexts[name]; !ok {
			failed = append(failed, ClusterFailure{Cluster: cluster, Err: fmt.Errorf("context %q not found in kubeconfig %s", name, kubeconfigName(rules))})
			continue
		}
		cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, rules).ClientConfig()
		if err != nil {
			failed = append(failed, ClusterFailure{Cluster: cluster, Err: fmt.Errorf("context %q: %w", name, err)})
			continue
		}
		src, err := NewKubeSourceForConfig(cluster, cfg, c.PageSize, log)
		if err != nil {
			failed = append(failed, ClusterFailure{Cluster: cluster, Err: err})
			continue
		}
		sources = append(sources, src)
	}
	return sources, failed, nil
}

func kubeconfigName(rules *clientcmd.ClientConfigLoadingRules) string {
	if rules.ExplicitPath != "" {
		return rules.ExplicitPath
	}
	return strings.Join(rules.GetLoadingPrecedence(), string(os.PathListSeparator))
}
