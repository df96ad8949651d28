package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/reporter"
)

const vexExportHead = `Usage: fleetscan vex export --accept-file FILE [-o FILE] [flags]

Writes the risk acceptances that carry a vex_status (and vex_justification)
as one OpenVEX document, so Trivy (--vex), grype and Harbor honour the same
decisions. Acceptances in force at --now are exported for their repository
(pkg:oci/<name>?repository_url=<repository>), with the package PURL as the
subcomponent. Acceptances that need the fleet to be exported — scoped to
clusters, namespaces or workloads, a repository glob, or a package given by
name — are named on stderr: the reporter's --vex-out exports them as applied
to the digests and packages of the report.

Flags:
`

func runVEX(env cli.Env) error {
	if len(env.Args) == 0 || env.Args[0] != "export" {
		return cli.Usage(fmt.Errorf("fleetscan vex: want the subcommand export\n\n%s", vexExportHead))
	}
	env.Args = env.Args[1:]
	fs := pflag.NewFlagSet("fleetscan vex export", pflag.ContinueOnError)
	cfg := reporter.VEXExportDefaults()
	cfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(env.Stderr, vexExportHead)
		fs.PrintDefaults()
	}
	if err := cli.Parse(fs, env, "fleetscan", nil); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return cli.Usage(err)
	}
	return reporter.RunVEXExport(cfg, time.Now(), env.Stdout, env.Stderr)
}
