// The Go peer of `cargo xtask bench-cainjector`: cert-manager's cainjector.
//
// cert-manager's cmd/cainjector is a module of its own (with replace directives) that is not
// on the Go module proxy, so this wrapper does what its app package does, with the library
// code of the released github.com/cert-manager/cert-manager module (pkg/controller/cainjector):
//
//   - a controller-runtime manager over the scheme cert-manager's cainjector uses (client-go,
//     apiextensions v1, apiregistration v1, cert-manager v1);
//   - the client reads Secrets straight from the API server (DisableFor: Secret), as
//     cert-manager does so that Secret data is never cached; the Secret watches of the
//     reconcilers are metadata-only (builder.OnlyMetadata, inside cainjector.RegisterAllInjectors);
//   - cainjector.RegisterAllInjectors registers one reconciler per enabled injectable kind,
//     exactly as cert-manager's binary does.
//
// Flags mirror the real binary's (same names, same defaults): --kubeconfig (controller-runtime's
// flag, else $KUBECONFIG), --namespace,
// --leader-elect (default here: false), --enable-certificates-data-source,
// --enable-{customresourcedefinitions,apiservices,mutatingwebhookconfigurations,
// validatingwebhookconfigurations}-injectable. Metrics and health probes are off.
// Built and run by xtask/src/bench_cainjector_peer.rs; not part of any shipped code.
package main

import (
	"flag"
	"fmt"
	"os"

	apiext "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	apireg "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	corev1 "k8s.io/api/core/v1"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
)

func main() {
	namespace := flag.String("namespace", "", "watch only this namespace (default: all)")
	leaderElect := flag.Bool("leader-elect", false, "use leader election")
	certificates := flag.Bool("enable-certificates-data-source", true, "watch Certificates (cert-manager.io/inject-ca-from)")
	crds := flag.Bool("enable-customresourcedefinitions-injectable", true, "inject into CRDs")
	apiServices := flag.Bool("enable-apiservices-injectable", true, "inject into APIServices")
	mutating := flag.Bool("enable-mutatingwebhookconfigurations-injectable", true, "inject into mutating webhook configurations")
	validating := flag.Bool("enable-validatingwebhookconfigurations-injectable", true, "inject into validating webhook configurations")
	logOptions := zap.Options{}
	logOptions.BindFlags(flag.CommandLine) // --zap-log-level etc.; the default is info
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&logOptions)))
	if err := run(*namespace, *leaderElect, cainjector.SetupOptions{
		Namespace:                    *namespace,
		EnableCertificatesDataSource: *certificates,
		EnabledReconcilersFor: map[string]bool{
			cainjector.CustomResourceDefinitionName:       *crds,
			cainjector.APIServiceName:                     *apiServices,
			cainjector.MutatingWebhookConfigurationName:   *mutating,
			cainjector.ValidatingWebhookConfigurationName: *validating,
		},
	}); err != nil {
		fmt.Fprintf(os.Stderr, "cainjector-peer: %v\n", err)
		os.Exit(1)
	}
}

func run(namespace string, leaderElect bool, opts cainjector.SetupOptions) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiext.AddToScheme(scheme))
	utilruntime.Must(apireg.AddToScheme(scheme))
	utilruntime.Must(cmapi.AddToScheme(scheme))

	// --kubeconfig is controller-runtime's own flag (pkg/client/config), as in cert-manager's binary.
	config, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	config.UserAgent = "cert-manager-cainjector"

	cacheOptions := cache.Options{ReaderFailOnMissingInformer: true}
	if namespace != "" {
		cacheOptions.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                  scheme,
		Cache:                   cacheOptions,
		LeaderElection:          leaderElect,
		LeaderElectionID:        "cert-manager-cainjector-leader-election",
		LeaderElectionNamespace: "kube-system",
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		Client: client.Options{
			Cache: &client.CacheOptions{
				// As cert-manager: Secrets are read from the API server, never cached.
				DisableFor: []client.Object{&corev1.Secret{}},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := cainjector.RegisterAllInjectors(ctx, mgr, opts); err != nil {
		return fmt.Errorf("registering the injectors: %w", err)
	}
	return mgr.Start(ctx)
}
