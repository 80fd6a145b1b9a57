// Package kubeserver starts a real etcd and kube-apiserver on free loopback
// ports for tests, and stops them (apiserver first, then etcd).
//
// The binaries come from tools/kubeserver/build.sh (kube-apiserver and
// etcd built from the Go module proxy and cached in the user's cache
// directory): $AVXRM_KUBE_BIN_DIR when set (make test-kube sets it), else
// the script is run, which builds them once per machine.
//
// The server trusts a fresh CA for its serving certificate and for the
// kubelet certificate a test's fake kubelet presents; an admin token (group
// system:masters) is accepted through --token-auth-file; service-account
// tokens are signed with a fresh key so that the TokenRequest API works;
// authorization is RBAC. No controller-manager, scheduler or kubelet runs:
// nothing binds or runs pods, no namespace is ever finalized, no default
// service account is made and nothing is garbage-collected.
package kubeserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Server is a running etcd + kube-apiserver pair.
type Server struct {
	// URL is the API server's https URL on 127.0.0.1.
	URL string
	// EtcdURL is etcd's client URL (http, loopback).
	EtcdURL string
	// CAPEM is the certificate of the CA that signed the serving certificate.
	CAPEM []byte
	// AdminToken authenticates as user "admin" in system:masters.
	AdminToken string
	// StartTime is how long it took from launching etcd to /readyz ok.
	StartTime time.Duration

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	dir    string
	etcd   *exec.Cmd
	apisrv *exec.Cmd
	done   map[*exec.Cmd]chan struct{}
	stop   sync.Once
}

// Options change how the API server runs.
type Options struct {
	// ExtraArgs are appended to the kube-apiserver flags.
	ExtraArgs []string
}

// BinDir returns the directory holding kube-apiserver and etcd, building
// them if needed.
func BinDir() (string, error) {
	if dir := os.Getenv("AVXRM_KUBE_BIN_DIR"); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		script := filepath.Join(dir, "tools", "kubeserver", "build.sh")
		if _, err := os.Stat(script); err == nil {
			var stderr bytes.Buffer
			cmd := exec.Command(script)
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				return "", fmt.Errorf("kubeserver: %s: %w\n%s", script, err, stderr.String())
			}
			return strings.TrimSpace(string(out)), nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("kubeserver: tools/kubeserver/build.sh not found above " + wd + " and AVXRM_KUBE_BIN_DIR unset")
		}
	}
}

// Start launches etcd, then kube-apiserver, and waits for /readyz.
func Start(opts Options) (*Server, error) {
	bins, err := BinDir()
	if err != nil {
		return nil, err
	}
	// A free port found here may be taken by another process before etcd
	// or the API server binds it: try again with new ports.
	for attempt := 1; ; attempt++ {
		dir, err := os.MkdirTemp("", "avxrm-kubeserver-")
		if err != nil {
			return nil, err
		}
		s := &Server{dir: dir, done: map[*exec.Cmd]chan struct{}{}}
		began := time.Now()
		err = s.start(bins, opts)
		if err == nil {
			s.StartTime = time.Since(began)
			return s, nil
		}
		s.Stop()
		if attempt == 3 {
			return nil, err
		}
	}
}

func (s *Server) start(bins string, opts Options) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	s.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	s.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	s.etcd, err = s.launch(filepath.Join(bins, "etcd"), "etcd",
		"--name=test", "--data-dir="+filepath.Join(s.dir, "etcd"),
		"--listen-client-urls="+s.EtcdURL, "--advertise-client-urls="+s.EtcdURL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=test="+peer, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	if err := s.waitHTTP(s.EtcdURL+"/health", nil, s.etcd, 30*time.Second); err != nil {
		return err
	}

	if err := s.writeCredentials(); err != nil {
		return err
	}
	f := func(name string) string { return filepath.Join(s.dir, name) }
	args := []string{
		"--etcd-servers=" + s.EtcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--endpoint-reconciler-type=none",
		"--tls-cert-file=" + f("serving.crt"), "--tls-private-key-file=" + f("serving.key"),
		"--client-ca-file=" + f("ca.crt"),
		"--kubelet-certificate-authority=" + f("ca.crt"),
		"--token-auth-file=" + f("tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + f("sa.key"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--disable-admission-plugins=ServiceAccount",
		"--cert-dir=" + f("certs"),
		"--v=0",
	}
	args = append(args, opts.ExtraArgs...)
	s.apisrv, err = s.launch(filepath.Join(bins, "kube-apiserver"), "kube-apiserver", args...)
	if err != nil {
		return err
	}
	return s.waitHTTP(s.URL+"/readyz", s.httpClient(), s.apisrv, 60*time.Second)
}

// launch starts a binary with its output in <dir>/<name>.log. The child
// gets SIGKILL if the test process dies without stopping it.
func (s *Server) launch(bin, name string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(s.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("kubeserver: start %s: %w", name, err)
	}
	done := make(chan struct{})
	s.done[cmd] = done
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	return cmd, nil
}

// Log returns the tail of a process's log ("etcd" or "kube-apiserver").
func (s *Server) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (s *Server) waitHTTP(url string, c *http.Client, cmd *exec.Cmd, timeout time.Duration) error {
	if c == nil {
		c = http.DefaultClient
	}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-s.done[cmd]:
			return fmt.Errorf("kubeserver: %s exited: %v\n%s", filepath.Base(cmd.Path), cmd.ProcessState, s.Log(filepath.Base(cmd.Path)))
		default:
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if s.AdminToken != "" {
			req.Header.Set("Authorization", "Bearer "+s.AdminToken)
		}
		resp, err := c.Do(req)
		if err == nil {
			b := make([]byte, 512)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status + " " + string(b[:n])
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("kubeserver: %s not ready after %s (last: %s)\n%s", url, timeout, last, s.Log(filepath.Base(cmd.Path)))
}

// Stop stops kube-apiserver, then etcd, and removes their files.
func (s *Server) Stop() {
	s.stop.Do(func() {
		for _, cmd := range []*exec.Cmd{s.apisrv, s.etcd} {
			if cmd == nil || cmd.Process == nil {
				continue
			}
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done[cmd]:
			case <-time.After(15 * time.Second):
				cmd.Process.Kill()
				<-s.done[cmd]
			}
		}
		os.RemoveAll(s.dir)
	})
}

// Config returns a client config for the admin user.
func (s *Server) Config() *rest.Config {
	return s.ConfigWithToken(s.AdminToken)
}

// ConfigWithToken returns a client config that authenticates with token.
func (s *Server) ConfigWithToken(token string) *rest.Config {
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CAPEM},
		QPS:             200, Burst: 400,
	}
}

// Kubeconfig returns kubeconfig file content for token, as a user of the
// driver would paste it into the plugin config.
func (s *Server) Kubeconfig(token, namespace string) string {
	ca := base64.StdEncoding.EncodeToString(s.CAPEM)
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: test
  user:
    token: %s
contexts:
- name: test
  context:
    cluster: test
    user: test
    namespace: %s
current-context: test
`, s.URL, ca, token, namespace)
}

// Clientset returns an admin clientset.
func (s *Server) Clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(s.Config())
}

func (s *Server) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CAPEM)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// KubeletCert returns a TLS certificate for 127.0.0.1 signed by the CA the
// API server trusts for kubelets, for a fake kubelet's HTTPS server.
func (s *Server) KubeletCert() (tls.Certificate, error) {
	certPEM, keyPEM, err := s.issue("fake-kubelet", []net.IP{net.ParseIP("127.0.0.1")}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func (s *Server) writeCredentials() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "avxrm-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	s.ca, err = x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	s.caKey = caKey
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	servingCert, servingKey, err := s.issue("kube-apiserver", []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saDER, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		return err
	}
	s.AdminToken = randomToken()
	files := map[string][]byte{
		"ca.crt":      s.CAPEM,
		"serving.crt": servingCert,
		"serving.key": servingKey,
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: saDER}),
		"tokens.csv":  []byte(s.AdminToken + `,admin,admin,"system:masters"` + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

var serial struct {
	sync.Mutex
	n int64
}

func (s *Server) issue(cn string, ips []net.IP, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial.Lock()
	serial.n++
	sn := serial.n + 1
	serial.Unlock()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(sn), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: ips, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return fmt.Sprintf("%x", b)
}

// freePorts asks the kernel for n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Ready reports whether the API server answers /readyz now.
func (s *Server) Ready(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+s.AdminToken)
	resp, err := s.httpClient().Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
