package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Defaults of the global flags.
const (
	// defaultDeichNamespace is where Deich's manager runs and where its site ConfigMap
	// (deich-site, key "site") tells which site a cluster is.
	defaultDeichNamespace = "deich-system"
	// defaultSiteTimeout bounds each read from one site, so that a site that does not answer
	// becomes a row saying so instead of a hanging command.
	defaultSiteTimeout = 10 * time.Second
)

// options are the plugin's global flags and what every command shares: kubectl's own flags
// (--kubeconfig, --context, --namespace, ...), the other sites, the output streams and the
// clock that ages are read from.
type options struct {
	configFlags *genericclioptions.ConfigFlags
	streams     genericiooptions.IOStreams

	// peerContexts are the kubeconfig contexts of the other sites (--peer-context); when
	// empty, the other sites are found through the ReplicationPeers of the first site.
	peerContexts []string
	// deichNamespace is where the manager's site ConfigMap and peer Secrets live.
	deichNamespace string
	// siteTimeout bounds each read from one site.
	siteTimeout time.Duration

	// now is the clock that relative times and ages are computed with.
	now func() time.Time
}

// newOptions returns the options of a plugin that writes to out and errOut and reads the
// real clock.
func newOptions(in io.Reader, out, errOut io.Writer) *options {
	return &options{
		configFlags:    genericclioptions.NewConfigFlags(true),
		streams:        genericiooptions.IOStreams{In: in, Out: out, ErrOut: errOut},
		deichNamespace: defaultDeichNamespace,
		siteTimeout:    defaultSiteTimeout,
		now:            time.Now,
	}
}

// newRootCommand builds `kubectl deich` with its commands.
func newRootCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deich",
		Short: "See and move Deich's shared services at every site at once",
		Long: `kubectl deich reads Deich's SharedServices at both sites of a service side by side
and moves them with one command.

The current context (or --context) is one site. The other sites are the contexts named with
--peer-context, or, without it, the partners the first site's ReplicationPeers name, reached
with the kubeconfig of their peer Secret (when you may read it). Each site is named as its
own objects name it (the manager's site ConfigMap, or the roles in the services' status), not
after the context. A site that cannot be reached is shown as such.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl deich",
		},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	cmd.SetOut(o.streams.Out)
	cmd.SetErr(o.streams.ErrOut)
	cmd.SetIn(o.streams.In)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help' for usage", err, c.CommandPath())
	})

	flags := cmd.PersistentFlags()
	o.configFlags.AddFlags(flags)
	flags.StringArrayVar(&o.peerContexts, "peer-context", nil,
		"kubeconfig context of another site (repeatable); default: the partners named by the ReplicationPeers of the first site")
	flags.StringVar(&o.deichNamespace, "deich-namespace", o.deichNamespace,
		"namespace of Deich's manager, where its site ConfigMap and peer Secrets live")
	flags.DurationVar(&o.siteTimeout, "site-timeout", o.siteTimeout,
		"how long to wait for each site to answer before showing it as unreachable")

	cmd.AddCommand(
		newStatusCommand(o),
		newSwitchoverCommand(o),
		newHistoryCommand(o),
		newDrillsCommand(o),
	)
	return cmd
}

// namespace is the namespace the commands work in: --namespace, or the current context's.
func (o *options) namespace() (string, error) {
	ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("read the namespace from the kubeconfig: %w", err)
	}
	return ns, nil
}

// addOutputFlag adds -o/--output to cmd.
func addOutputFlag(cmd *cobra.Command, output *string) {
	cmd.Flags().StringVarP(output, "output", "o", "", "output format: json or yaml (default: a table)")
}
