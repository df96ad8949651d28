package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/fleetscan/fleetscan/internal/metrics"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/throttle"
)

// Config selects owners and endpoints.
type Config struct {
	// OwnersFile maps clusters and namespaces to owners (YAML).
	OwnersFile string
	// Webhook receives every owner's digest as generic JSON.
	Webhook string
	// SlackWebhook receives every owner's digest as Block Kit.
	SlackWebhook string
	// ConfigFile routes owners to their own endpoints (YAML).
	ConfigFile string
	// OwnerLabel is the namespace label (else annotation) key naming a
	// workload's owner; the owners file is the fallback.
	OwnerLabel string
}

// Defaults returns the documented defaults (no notifications).
func Defaults() Config { return Config{} }

// RegisterFlags binds the notification flags.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.OwnersFile, "owners-file", c.OwnersFile, "owners YAML: rules of owner, cluster globs and namespace globs (first match wins; the rest is \"unowned\")")
	fs.StringVar(&c.Webhook, "notify-webhook", c.Webhook, "POST each owner's digest (new breaches, deadlines within 7 days, expired acceptances, coverage gaps) as JSON to this URL")
	fs.StringVar(&c.SlackWebhook, "notify-slack-webhook", c.SlackWebhook, "post each owner's digest to this Slack incoming webhook (Block Kit)")
	fs.StringVar(&c.OwnerLabel, "owner-label", c.OwnerLabel, "a workload's owner is its namespace's label of this key, else its annotation of this key (recorded by the dispatcher), else --owners-file's")
	fs.StringVar(&c.ConfigFile, "notify-config", c.ConfigFile, "notification routing YAML: routes of owner with webhook and/or slack URLs, and a default route")
}

// Route is one owner's endpoints.
type Route struct {
	Owner   string `json:"owner,omitempty"`
	Webhook string `json:"webhook,omitempty"`
	Slack   string `json:"slack,omitempty"`
}

// routing is the notify config file.
type routing struct {
	Routes  []Route `json:"routes"`
	Default *Route  `json:"default,omitempty"`
}

type ownersFile struct {
	Owners Owners `json:"owners"`
}

// Enabled reports whether any endpoint is configured.
func (c Config) Enabled() bool { return c.Webhook != "" || c.SlackWebhook != "" || c.ConfigFile != "" }

// Validate checks the URLs and parses the files, before any work.
func (c Config) Validate() error {
	var errs []error
	for flag, u := range map[string]string{"--notify-webhook": c.Webhook, "--notify-slack-webhook": c.SlackWebhook} {
		if u == "" {
			continue
		}
		if err := metrics.CheckHTTPURL(u); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s", flag, Endpoint{Kind: "webhook", URL: u}.Name()+": must be an http(s) URL with a host"))
		}
	}
	if _, err := c.owners(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.routing(); err != nil {
		errs = append(errs, err)
	}
	if c.OwnersFile != "" && !c.Enabled() {
		errs = append(errs, errors.New("--owners-file needs --notify-webhook, --notify-slack-webhook or --notify-config"))
	}
	if err := validOwnerLabel(c.OwnerLabel); err != nil {
		errs = append(errs, err)
	} else if c.OwnerLabel != "" && !c.Enabled() {
		errs = append(errs, errors.New("--owner-label needs --notify-webhook, --notify-slack-webhook or --notify-config"))
	}
	return errors.Join(errs...)
}

// validOwnerLabel checks that key is a Kubernetes label key, which is also
// the syntax of an annotation key: an optional DNS subdomain prefix and "/",
// then a name of at most 63 alphanumerics, '-', '_' or '.'.
func validOwnerLabel(key string) error {
	if key == "" {
		return nil
	}
	if errs := validation.IsQualifiedName(key); len(errs) > 0 {
		return fmt.Errorf("--owner-label %q: not a Kubernetes label or annotation key: %s", key, strings.Join(errs, "; "))
	}
	return nil
}

func (c Config) owners() (Owners, error) {
	if c.OwnersFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.OwnersFile)
	if err != nil {
		return nil, fmt.Errorf("--owners-file: %w", err)
	}
	var f ownersFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("--owners-file %s: %w", c.OwnersFile, err)
	}
	for i, r := range f.Owners {
		if r.Owner == "" {
			return nil, fmt.Errorf("--owners-file %s: rule %d has no owner", c.OwnersFile, i+1)
		}
	}
	return f.Owners, nil
}

func (c Config) routing() (routing, error) {
	var rt routing
	if c.ConfigFile == "" {
		return rt, nil
	}
	data, err := os.ReadFile(c.ConfigFile)
	if err != nil {
		return rt, fmt.Errorf("--notify-config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &rt); err != nil {
		return rt, fmt.Errorf("--notify-config %s: %w", c.ConfigFile, err)
	}
	routes := append([]Route{}, rt.Routes...)
	if rt.Default != nil {
		routes = append(routes, *rt.Default)
	}
	for i, r := range routes {
		for _, u := range []string{r.Webhook, r.Slack} {
			if u != "" && metrics.CheckHTTPURL(u) != nil {
				return rt, fmt.Errorf("--notify-config %s: route %d: %s is not an http(s) URL", c.ConfigFile, i+1, Endpoint{Kind: "endpoint", URL: u}.Name())
			}
		}
	}
	return rt, nil
}

// endpoints are where an owner's digest goes: the global endpoints, then
// the owner's route (else the default route).
func (c Config) endpoints(rt routing, owner string) []Endpoint {
	var out []Endpoint
	add := func(kind, u string) {
		if u != "" {
			out = append(out, Endpoint{Kind: kind, URL: u})
		}
	}
	add("webhook", c.Webhook)
	add("slack", c.SlackWebhook)
	route := rt.Default
	for i := range rt.Routes {
		if rt.Routes[i].Owner == owner {
			route = &rt.Routes[i]
		}
	}
	if route != nil {
		add("webhook", route.Webhook)
		add("slack", route.Slack)
	}
	return out
}

// Deliver sends every owner's digest to its endpoints (rate limits and
// Retry-After honoured, bounded); owners come from ns by --owner-label,
// else from the owners file. It returns how many were sent and the
// failures joined; a failure does not stop the other deliveries.
func Deliver(ctx context.Context, c Config, r *report.Report, ns Namespaces, hc *http.Client, log *zap.Logger) (int, error) {
	owners, err := c.owners()
	if err != nil {
		return 0, err
	}
	rt, err := c.routing()
	if err != nil {
		return 0, err
	}
	base := http.DefaultTransport
	if hc != nil && hc.Transport != nil {
		base = hc.Transport
	}
	client := &http.Client{Transport: throttle.New(base)}
	sent := 0
	var errs []error
	for _, d := range DigestsBy(r, Resolver{Label: c.OwnerLabel, Namespaces: ns, Owners: owners}) {
		for _, e := range c.endpoints(rt, d.Owner) {
			if err := e.Send(ctx, client, d); err != nil {
				errs = append(errs, err)
				log.Warn("digest not delivered", zap.String("owner", d.Owner), zap.String("endpoint", e.Name()), zap.Error(err))
				continue
			}
			sent++
		}
	}
	return sent, errors.Join(errs...)
}
