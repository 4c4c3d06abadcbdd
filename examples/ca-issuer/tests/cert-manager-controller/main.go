// cert-manager's own Certificate controllers, for the Tier-2 test of the CA issuer
// (examples/ca-issuer/tests/e2e_cert_manager.rs): built from the public packages of the
// released github.com/cert-manager/cert-manager module (pkg/controller/...), wired here as a
// controller manager would wire them; no code of cert-manager's cmd/ is copied.
//
// It runs the controllers that turn a Certificate into a signed Secret through an external
// issuer: certificates-trigger, -key-manager, -request-manager, -issuing, -readiness,
// -revision-manager, and the certificaterequests-approver (which approves requests for any
// issuer its user may approve for; the test runs it as the cluster admin).
//
// Flags: --kubeconfig, --cluster-resource-namespace, --request-min-backoff (cert-manager's
// --certificate-request-minimum-backoff-duration, default 1h there; short here so that a
// failed issuance is retried within a test).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
)

var controllers = []string{
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-issuing",
	"certificates-readiness",
	"certificates-revision-manager",
	"certificaterequests-approver",
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the API server")
	clusterResourceNamespace := flag.String("cluster-resource-namespace", "cert-manager", "namespace of ClusterIssuer resources")
	minBackoff := flag.Duration("request-min-backoff", 2*time.Second, "minimum backoff after a failed issuance")
	klog.InitFlags(nil) // -v and klog's other flags
	flag.Parse()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	ctx = logf.NewContext(ctx, klog.Background(), "cert-manager-controller")
	if err := run(ctx, *kubeconfig, *clusterResourceNamespace, *minBackoff); err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, clusterResourceNamespace string, minBackoff time.Duration) error {
	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   100,
		KubernetesAPIBurst: 200,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace: clusterResourceNamespace,
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: minBackoff,
			CertificateRequestMaximumBackoffDuration: 4 * minBackoff,
		},
	})
	if err != nil {
		return fmt.Errorf("context: %w", err)
	}
	var loops []controllerpkg.Interface
	for _, name := range controllers {
		constructor, ok := controllerpkg.Known()[name]
		if !ok {
			return fmt.Errorf("controller %s is not registered", name)
		}
		loop, err := constructor(factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
		loops = append(loops, loop)
	}
	// The informers the controllers asked for, started once every controller is built.
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	errs := make(chan error, len(loops))
	for i, loop := range loops {
		go func(name string, loop controllerpkg.Interface) {
			errs <- loop.Run(2, ctx)
		}(controllers[i], loop)
	}
	fmt.Fprintln(os.Stderr, "cert-manager-controller: running", controllers)
	<-ctx.Done()
	for range loops {
		<-errs
	}
	return nil
}
