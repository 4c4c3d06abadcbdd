// The Go peer of `cargo xtask bench`: controller-runtime's webhook server with the same
// three handlers as crates/stackable-webhook/examples/bench_server.rs.
//
//   - POST /validate: a validating webhook for Pods (controller-runtime's typed Validator);
//     denies a Pod labelled bench.stackable.tech/deny=true.
//   - POST /mutate: a mutating webhook for Pods (typed Defaulter): adds the label
//     bench.stackable.tech/mutated=true; controller-runtime computes the JSON patch.
//   - POST /convert: CRD conversion between bench.stackable.tech/v1 and v2 CronTabs
//     (v2 is the Hub, v1 is Convertible), through controller-runtime's conversion handler.
//
// It serves TLS from --cert/--key through controller-runtime's webhook.Server (its certwatcher
// reloads them), HTTP/1.1 only as kubebuilder's scaffold configures it, and logs at info level.
// Built and run by xtask/src/bench.rs; not part of any shipped code.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	crconversion "sigs.k8s.io/controller-runtime/pkg/webhook/conversion"
)

const (
	denyLabel    = "bench.stackable.tech/deny"
	mutatedLabel = "bench.stackable.tech/mutated"
)

// The CronTab API group of the conversion benchmark.
var (
	groupV1 = schema.GroupVersion{Group: "bench.stackable.tech", Version: "v1"}
	groupV2 = schema.GroupVersion{Group: "bench.stackable.tech", Version: "v2"}
)

// CronTabSpecV1 is the v1 spec: a cron expression, an image and a replica count.
type CronTabSpecV1 struct {
	CronSpec string `json:"cronSpec"`
	Image    string `json:"image"`
	Replicas int32  `json:"replicas,omitempty"`
}

// CronTabV1 is bench.stackable.tech/v1 CronTab.
type CronTabV1 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              CronTabSpecV1 `json:"spec"`
}

// Schedule is v2's structured schedule.
type Schedule struct {
	Cron     string `json:"cron"`
	TimeZone string `json:"timeZone,omitempty"`
}

// CronTabSpecV2 is the v2 spec: the cron expression moved into a schedule object.
type CronTabSpecV2 struct {
	Schedule Schedule `json:"schedule"`
	Image    string   `json:"image"`
	Replicas int32    `json:"replicas,omitempty"`
}

// CronTabV2 is bench.stackable.tech/v2 CronTab, the conversion hub.
type CronTabV2 struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              CronTabSpecV2 `json:"spec"`
}

// DeepCopyObject implements runtime.Object.
func (in *CronTabV1) DeepCopyObject() runtime.Object {
	out := &CronTabV1{TypeMeta: in.TypeMeta, Spec: in.Spec}
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// DeepCopyObject implements runtime.Object.
func (in *CronTabV2) DeepCopyObject() runtime.Object {
	out := &CronTabV2{TypeMeta: in.TypeMeta, Spec: in.Spec}
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return out
}

// Hub marks v2 as the hub.
func (*CronTabV2) Hub() {}

// ConvertTo converts v1 to the hub.
func (in *CronTabV1) ConvertTo(dst conversion.Hub) error {
	hub := dst.(*CronTabV2)
	in.ObjectMeta.DeepCopyInto(&hub.ObjectMeta)
	hub.Spec = CronTabSpecV2{
		Schedule: Schedule{Cron: in.Spec.CronSpec, TimeZone: "UTC"},
		Image:    in.Spec.Image,
		Replicas: in.Spec.Replicas,
	}
	return nil
}

// ConvertFrom converts the hub to v1.
func (in *CronTabV1) ConvertFrom(src conversion.Hub) error {
	hub := src.(*CronTabV2)
	hub.ObjectMeta.DeepCopyInto(&in.ObjectMeta)
	in.Spec = CronTabSpecV1{
		CronSpec: hub.Spec.Schedule.Cron,
		Image:    hub.Spec.Image,
		Replicas: hub.Spec.Replicas,
	}
	return nil
}

type podValidator struct{}

func (podValidator) check(pod *corev1.Pod) (admission.Warnings, error) {
	if pod.Labels[denyLabel] == "true" {
		return nil, fmt.Errorf("pod %s carries %s=true", pod.Name, denyLabel)
	}
	return nil, nil
}

func (v podValidator) ValidateCreate(_ context.Context, pod *corev1.Pod) (admission.Warnings, error) {
	return v.check(pod)
}

func (v podValidator) ValidateUpdate(_ context.Context, _, pod *corev1.Pod) (admission.Warnings, error) {
	return v.check(pod)
}

func (podValidator) ValidateDelete(_ context.Context, _ *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

type podDefaulter struct{}

func (podDefaulter) Default(_ context.Context, pod *corev1.Pod) error {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[mutatedLabel] = "true"
	return nil
}

func main() {
	cert := flag.String("cert", "", "PEM certificate chain (leaf first)")
	key := flag.String("key", "", "PEM private key")
	addr := flag.String("addr", "127.0.0.1:9443", "listen address")
	flag.Parse()
	if *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "--cert and --key are required")
		os.Exit(2)
	}
	logf.SetLogger(zap.New(zap.UseDevMode(false)))
	log := logf.Log.WithName("bench-peer")

	host, portText, err := net.SplitHostPort(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad --addr %q: %v\n", *addr, err)
		os.Exit(2)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad port in --addr %q: %v\n", *addr, err)
		os.Exit(2)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	scheme.AddKnownTypeWithName(groupV1.WithKind("CronTab"), &CronTabV1{})
	scheme.AddKnownTypeWithName(groupV2.WithKind("CronTab"), &CronTabV2{})

	server := webhook.NewServer(webhook.Options{
		Host:     host,
		Port:     port,
		CertDir:  filepath.Dir(*cert),
		CertName: filepath.Base(*cert),
		KeyName:  filepath.Base(*key),
		// kubebuilder's scaffold: HTTP/2 off by default (CVE-2023-44487), as ours.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	})
	if filepath.Dir(*key) != filepath.Dir(*cert) {
		fmt.Fprintln(os.Stderr, "--cert and --key must be in the same folder (controller-runtime's CertDir)")
		os.Exit(2)
	}
	server.Register("/validate", admission.WithValidator[*corev1.Pod](scheme, podValidator{}))
	server.Register("/mutate", admission.WithDefaulter[*corev1.Pod](scheme, podDefaulter{}))
	server.Register("/convert", crconversion.NewWebhookHandler(scheme, crconversion.NewRegistry()))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("starting", "addr", *addr)
	if err := server.Start(ctx); err != nil {
		log.Error(err, "webhook server failed")
		os.Exit(1)
	}
}
