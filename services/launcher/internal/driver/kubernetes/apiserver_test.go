//go:build kube

// The tests in this file run the driver against a real kube-apiserver and
// etcd (make test-kube: go test -tags kube). The fake-clientset tests in
// the other files run in make test as before.

package kubernetes_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/avxrm/rm/services/launcher/internal/driver"
	"github.com/avxrm/rm/services/launcher/internal/driver/drivertest"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes"
	"github.com/avxrm/rm/services/launcher/internal/driver/kubernetes/internal/kubeserver"
)

// srv is the package's API server, started by TestMain.
var (
	srv   *kubeserver.Server
	admin *k8s.Clientset
)

// watchTimeout is the server's --min-request-timeout: every watch ends
// after 4 to 8 seconds, so the driver's informer must resume its watch
// (from its resource version) many times during the suite.
const watchTimeout = 4

func TestMain(m *testing.M) {
	var err error
	srv, err = kubeserver.Start(kubeserver.Options{
		MinRequestTimeout: watchTimeout,
		// As on clusters that enforce it (OpenShift): an owner reference
		// with blockOwnerDeletion needs update on the owner's finalizers.
		ExtraArgs: []string{"--enable-admission-plugins=OwnerReferencesPermissionEnforcement"},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("kube-apiserver %s ready in %s\n", srv.URL, srv.StartTime.Round(time.Millisecond))
	admin, err = srv.Clientset()
	code := 1
	if err == nil {
		code = m.Run()
	} else {
		fmt.Fprintln(os.Stderr, err)
	}
	began := time.Now()
	srv.Stop()
	fmt.Printf("kube-apiserver and etcd stopped in %s\n", time.Since(began).Round(time.Millisecond))
	os.Exit(code)
}

// realEnv is one test's share of the server: a fresh namespace (deleted
// namespaces stay Terminating without a controller-manager, so names are
// never reused), the RBAC objects of testdata/rbac.yaml in it, a fake
// kubelet, and the kubeconfig of the launcher's ServiceAccount.
type realEnv struct {
	ns         string
	kubelet    *kubelet
	kubeconfig string
}

const launcherSA = "avxrm-launcher"

func newNamespace(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	ns := "t-" + hex.EncodeToString(b)
	if _, err := admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		// The pods must be gone (the driver's cleanup, or the kubelet's
		// final delete); whatever is left is removed with grace 0, since
		// no namespace controller would.
		zero := int64(0)
		admin.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
		admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return ns
}

var envFor = drivertest.PerTest(func(t *testing.T) *realEnv {
	return newRealEnv(t, nodeShape{}, nil)
})

// newRealEnv makes a namespace with the launcher's RBAC objects (edit may
// change them first), a kubelet with the node shape, and a token for the
// ServiceAccount.
func newRealEnv(t *testing.T, shape nodeShape, edit func(*rbacv1.Role)) *realEnv {
	t.Helper()
	ns := newNamespace(t)
	applyRBAC(t, ns, edit)
	return &realEnv{ns: ns, kubelet: startKubeletOn(t, srv, admin, ns, shape), kubeconfig: srv.Kubeconfig(saToken(t, ns), ns)}
}

// applyRBAC creates testdata/rbac.yaml's objects in ns.
func applyRBAC(t *testing.T, ns string, edit func(*rbacv1.Role)) {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile("testdata/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("testdata/rbac.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			if edit != nil {
				edit(o)
			}
			_, err = admin.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			for i := range o.Subjects {
				o.Subjects[i].Namespace = ns
			}
			_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("testdata/rbac.yaml: unexpected %T", obj)
		}
		if err != nil {
			t.Fatalf("apply %T: %v", obj, err)
		}
	}
}

// saToken asks the TokenRequest API for a token of the launcher's
// ServiceAccount, as a projected token volume gives one in a pod.
func saToken(t *testing.T, ns string) string {
	t.Helper()
	secs := int64(3600)
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), launcherSA,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", launcherSA, err)
	}
	return tr.Status.Token
}

// newLauncherDriver builds the driver the way the launcher does, from a
// plugin config whose kubeconfig authenticates as the ServiceAccount.
func newLauncherDriver(t *testing.T, e *realEnv) (driver.Driver, error) {
	cfg, _ := json.Marshal(driver.KubernetesConfig{Namespace: e.ns, Kubeconfig: e.kubeconfig})
	d, err := kubernetes.New(cfg, driver.Options{})
	if err == nil {
		t.Cleanup(func() { d.Close() })
	}
	return d, err
}

func newRealDriver(t *testing.T) driver.Driver {
	d, err := newLauncherDriver(t, envFor(t))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	return d
}

func realBehave(_ *testing.T, s *driver.Spec, b drivertest.Behaviour) {
	s.Image = "registry.example/sim:1"
	s.Env["RM_TEST_SLEEP"] = strconv.FormatFloat(b.RunFor.Seconds(), 'f', 3, 64)
	s.Env["RM_TEST_EXIT"] = strconv.Itoa(b.Exit)
	s.Env["RM_TEST_PRINT"] = b.Print
}

// TestConformanceAPIServer runs the whole conformance suite against the
// real API server, the driver authenticated as the launcher's
// ServiceAccount with only testdata/rbac.yaml's Role.
func TestConformanceAPIServer(t *testing.T) {
	began := time.Now()
	t.Cleanup(func() {
		t.Logf("conformance suite against kube-apiserver took %s", time.Since(began).Round(time.Millisecond))
	})
	drivertest.Run(t, newRealDriver, drivertest.Features{
		Behave: realBehave, ExitCodes: true, Reattach: true, Logs: true, Timeout: 30 * time.Second,
	})
}
