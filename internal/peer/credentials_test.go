package peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Secret material used in test kubeconfigs; none of it may ever appear in an
// error message.
const (
	credToken    = "deich-test-token-0123456789abcdef-must-not-leak"
	credPassword = "deich-test-password-must-not-leak"
	credIDToken  = "deich-test-id-token-must-not-leak"
)

const credServer = "https://peer.example:6443"

// credPKI holds PEM-encoded test certificates: a CA and a client certificate
// with its key, and an unrelated key that matches no certificate.
type credPKI struct {
	caPEM, certPEM, keyPEM, otherKeyPEM []byte
}

var credTestPKI = sync.OnceValue(func() credPKI {
	newKey := func() (*ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			panic(err)
		}
		return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	newCert := func(tmpl, parent *x509.Certificate, pub, signer any) []byte {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			panic(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	now := time.Now()
	caKey, _ := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "peer-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	clientKey, clientKeyPEM := newKey()
	clientTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "deich", Organization: []string{"deich:peers"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	_, otherKeyPEM := newKey()
	return credPKI{
		caPEM:       newCert(caTmpl, caTmpl, caKey.Public(), caKey),
		certPEM:     newCert(clientTmpl, caTmpl, clientKey.Public(), caKey),
		keyPEM:      clientKeyPEM,
		otherKeyPEM: otherKeyPEM,
	}
})

// credBaseConfig is a valid kubeconfig: context "peer" uses cluster
// "peer-cluster" (with CA data) and user "deich" (with a token).
func credBaseConfig() *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.CurrentContext = "peer"
	cfg.Contexts["peer"] = &clientcmdapi.Context{Cluster: "peer-cluster", AuthInfo: "deich"}
	cfg.Clusters["peer-cluster"] = &clientcmdapi.Cluster{Server: credServer, CertificateAuthorityData: credTestPKI().caPEM}
	cfg.AuthInfos["deich"] = &clientcmdapi.AuthInfo{Token: credToken}
	return cfg
}

// credKubeconfig serializes credBaseConfig after applying mutate.
func credKubeconfig(tb testing.TB, mutate func(cfg *clientcmdapi.Config)) []byte {
	tb.Helper()
	cfg := credBaseConfig()
	if mutate != nil {
		mutate(cfg)
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		tb.Fatalf("writing kubeconfig: %v", err)
	}
	return data
}

// credTokenKubeconfig is a hand-written kubeconfig as an SRE would put it into
// a Secret: a token, no CA data (the system trust store verifies the peer).
const credTokenKubeconfig = `apiVersion: v1
kind: Config
current-context: peer
contexts:
- name: peer
  context:
    cluster: peer-cluster
    user: deich
    namespace: deich-system
clusters:
- name: peer-cluster
  cluster:
    server: https://peer.example:6443
users:
- name: deich
  user:
    token: ` + credToken + `
`

// credRESTFields is the part of a rest.Config the tests compare.
type credRESTFields struct {
	Host, BearerToken, ServerName string
	CAData, CertData, KeyData     []byte
	Impersonate                   rest.ImpersonationConfig
}

func credFieldsOf(c *rest.Config) credRESTFields {
	return credRESTFields{
		Host:        c.Host,
		BearerToken: c.BearerToken,
		ServerName:  c.ServerName,
		CAData:      c.CAData,
		CertData:    c.CertData,
		KeyData:     c.KeyData,
		Impersonate: c.Impersonate,
	}
}

func TestRESTConfigFromKubeconfigAccepts(t *testing.T) {
	p := credTestPKI()
	tests := []struct {
		name string
		data []byte
		want credRESTFields
	}{
		{
			name: "a hand-written kubeconfig with a token and no CA data is accepted",
			data: []byte(credTokenKubeconfig),
			want: credRESTFields{Host: credServer, BearerToken: credToken},
		},
		{
			name: "a kubeconfig with a token and CA data is accepted",
			data: credKubeconfig(t, nil),
			want: credRESTFields{Host: credServer, BearerToken: credToken, CAData: p.caPEM},
		},
		{
			name: "a kubeconfig with an inline client certificate, key and CA data is accepted",
			data: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
				cfg.AuthInfos["deich"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.certPEM, ClientKeyData: p.keyPEM}
			}),
			want: credRESTFields{Host: credServer, CAData: p.caPEM, CertData: p.certPEM, KeyData: p.keyPEM},
		},
		{
			name: "a kubeconfig with both a token and a client certificate is accepted",
			data: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
				cfg.AuthInfos["deich"].ClientCertificateData = p.certPEM
				cfg.AuthInfos["deich"].ClientKeyData = p.keyPEM
			}),
			want: credRESTFields{Host: credServer, BearerToken: credToken, CAData: p.caPEM, CertData: p.certPEM, KeyData: p.keyPEM},
		},
		{
			name: "tls-server-name and impersonation are passed through",
			data: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
				cfg.Clusters["peer-cluster"].TLSServerName = "kubernetes.default.svc"
				cfg.AuthInfos["deich"].Impersonate = "system:serviceaccount:deich-system:deich"
				cfg.AuthInfos["deich"].ImpersonateGroups = []string{"deich:peers"}
			}),
			want: credRESTFields{
				Host: credServer, BearerToken: credToken, CAData: p.caPEM, ServerName: "kubernetes.default.svc",
				Impersonate: rest.ImpersonationConfig{UserName: "system:serviceaccount:deich-system:deich", Groups: []string{"deich:peers"}},
			},
		},
		{
			name: "a server URL with a path (as behind Rancher) is accepted",
			data: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
				cfg.Clusters["peer-cluster"].Server = "https://rancher.example/k8s/clusters/c-m-abc"
			}),
			want: credRESTFields{Host: "https://rancher.example/k8s/clusters/c-m-abc", BearerToken: credToken, CAData: p.caPEM},
		},
		{
			name: "unused but harmless contexts, clusters and users do not matter",
			data: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
				cfg.Contexts["other"] = &clientcmdapi.Context{Cluster: "other", AuthInfo: "other"}
				cfg.Clusters["other"] = &clientcmdapi.Cluster{}
				cfg.AuthInfos["other"] = &clientcmdapi.AuthInfo{}
			}),
			want: credRESTFields{Host: credServer, BearerToken: credToken, CAData: p.caPEM},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RESTConfigFromKubeconfig(tt.data)
			if err != nil {
				t.Fatalf("RESTConfigFromKubeconfig() error = %v, want none", err)
			}
			if diff := cmp.Diff(tt.want, credFieldsOf(got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("RESTConfigFromKubeconfig() mismatch (-want +got):\n%s", diff)
			}
			if cerr := checkRESTConfig(got); cerr != nil {
				t.Errorf("checkRESTConfig() = %v, want nil", cerr)
			}
		})
	}
}

func TestRESTConfigFromKubeconfigAcceptsProxyURL(t *testing.T) {
	for _, proxy := range []string{"http://proxy.example:3128", "https://proxy.example", "socks5://proxy.example:1080"} {
		t.Run("a proxy-url of "+proxy+" is used for requests to the peer", func(t *testing.T) {
			got, err := RESTConfigFromKubeconfig(credKubeconfig(t, func(cfg *clientcmdapi.Config) {
				cfg.Clusters["peer-cluster"].ProxyURL = proxy
			}))
			if err != nil {
				t.Fatalf("RESTConfigFromKubeconfig() error = %v, want none", err)
			}
			if got.Proxy == nil {
				t.Fatal("rest.Config.Proxy is nil, want the proxy-url")
			}
			req, err := http.NewRequest(http.MethodGet, credServer+"/version", nil)
			if err != nil {
				t.Fatal(err)
			}
			u, err := got.Proxy(req)
			if err != nil {
				t.Fatalf("Proxy() error = %v", err)
			}
			if diff := cmp.Diff(proxy, u.String()); diff != "" {
				t.Errorf("Proxy() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

type credRefusalCase struct {
	name string
	data []byte
	// reason is the expected CredentialError.Reason.
	reason string
	// inMessage, if set, must appear in the message (e.g. the entry named).
	inMessage string
}

func credRefusalCases(tb testing.TB) []credRefusalCase {
	p := credTestPKI()
	withCluster := func(mutate func(c *clientcmdapi.Cluster)) []byte {
		return credKubeconfig(tb, func(cfg *clientcmdapi.Config) { mutate(cfg.Clusters["peer-cluster"]) })
	}
	withUser := func(mutate func(u *clientcmdapi.AuthInfo)) []byte {
		return credKubeconfig(tb, func(cfg *clientcmdapi.Config) { mutate(cfg.AuthInfos["deich"]) })
	}
	withExtraUser := func(u *clientcmdapi.AuthInfo) []byte {
		return credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.AuthInfos["unused"] = u })
	}
	withExtraCluster := func(c *clientcmdapi.Cluster) []byte {
		return credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.Clusters["unused"] = c })
	}
	execPlugin := func() *clientcmdapi.ExecConfig {
		return &clientcmdapi.ExecConfig{
			Command:         "/bin/sh",
			Args:            []string{"-c", "echo " + credPassword},
			Env:             []clientcmdapi.ExecEnvVar{{Name: "PASSWORD", Value: credPassword}},
			APIVersion:      "client.authentication.k8s.io/v1",
			InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
		}
	}
	authProvider := func() *clientcmdapi.AuthProviderConfig {
		return &clientcmdapi.AuthProviderConfig{Name: "oidc", Config: map[string]string{"id-token": credIDToken, "client-secret": credPassword}}
	}

	return []credRefusalCase{
		// Parsing.
		{name: "empty input is refused as invalid", data: nil, reason: ReasonInvalidKubeconfig},
		{name: "whitespace-only input is refused as invalid", data: []byte(" \n\t\n"), reason: ReasonInvalidKubeconfig},
		{
			name: "unparseable YAML is refused as invalid and the line is named",
			data: []byte("apiVersion: v1\nkind: Config\nusers: [\n  token: " + credToken + "\n"), reason: ReasonInvalidKubeconfig,
		},
		{
			name:   "a value of the wrong type is refused as invalid and the field is named",
			data:   []byte("apiVersion: v1\nkind: Config\nusers:\n- name: deich\n  user:\n    token: y\n"),
			reason: ReasonInvalidKubeconfig, inMessage: "users.user.token",
		},
		{
			name:   "data that is not base64 is refused as invalid",
			data:   []byte("apiVersion: v1\nkind: Config\nusers:\n- name: deich\n  user:\n    client-key-data: '" + credPassword + "'\n"),
			reason: ReasonInvalidKubeconfig, inMessage: "base64",
		},
		{
			name: "a document that is not a kubeconfig is refused as invalid",
			data: []byte("apiVersion: v1\nkind: Secret\nstringData:\n  token: " + credToken + "\n"), reason: ReasonInvalidKubeconfig,
		},
		{
			name:   "two users with the same name are refused without quoting them",
			data:   []byte(credTokenKubeconfig + "- name: deich\n  user:\n    password: " + credPassword + "\n    token: " + credToken + "\n"),
			reason: ReasonInvalidKubeconfig, inMessage: "users",
		},

		// Exec plugins and auth providers, on any user.
		{
			name: "an exec plugin on the current user is refused",
			data: []byte(credTokenKubeconfig + `    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args: ["-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/token"]
      interactiveMode: Never
`),
			reason: ReasonExecPluginNotAllowed, inMessage: `"deich"`,
		},
		{name: "an exec plugin on an unused user is refused", data: withExtraUser(&clientcmdapi.AuthInfo{Exec: execPlugin()}), reason: ReasonExecPluginNotAllowed, inMessage: `"unused"`},
		{name: "an empty exec block is refused", data: withUser(func(u *clientcmdapi.AuthInfo) { u.Exec = &clientcmdapi.ExecConfig{} }), reason: ReasonExecPluginNotAllowed},
		{
			name: "an exec plugin is reported even if the kubeconfig is otherwise broken",
			data: credKubeconfig(tb, func(cfg *clientcmdapi.Config) {
				cfg.CurrentContext = ""
				cfg.AuthInfos["deich"].Exec = execPlugin()
				cfg.Clusters["peer-cluster"].InsecureSkipTLSVerify = true
			}),
			reason: ReasonExecPluginNotAllowed,
		},
		{name: "an auth-provider on the current user is refused", data: withUser(func(u *clientcmdapi.AuthInfo) { u.AuthProvider = authProvider() }), reason: ReasonAuthProviderNotAllowed, inMessage: `"oidc"`},
		{name: "an auth-provider on an unused user is refused", data: withExtraUser(&clientcmdapi.AuthInfo{AuthProvider: authProvider()}), reason: ReasonAuthProviderNotAllowed, inMessage: `"unused"`},

		// TLS verification, on any cluster.
		{
			name:   "insecure-skip-tls-verify on the current cluster is refused",
			data:   withCluster(func(c *clientcmdapi.Cluster) { c.InsecureSkipTLSVerify = true; c.CertificateAuthorityData = nil }),
			reason: ReasonInsecureTLSNotAllowed, inMessage: `"peer-cluster"`,
		},
		{
			name:   "insecure-skip-tls-verify on an unused cluster is refused",
			data:   withExtraCluster(&clientcmdapi.Cluster{Server: "https://other.example", InsecureSkipTLSVerify: true}),
			reason: ReasonInsecureTLSNotAllowed, inMessage: `"unused"`,
		},

		// File references, on any entry.
		{
			name: "a certificate-authority file is refused",
			data: withCluster(func(c *clientcmdapi.Cluster) {
				c.CertificateAuthority = "/etc/kubernetes/pki/ca.crt"
				c.CertificateAuthorityData = nil
			}),
			reason: ReasonFileReferenceNotAllowed, inMessage: "certificate-authority-data",
		},
		{
			name:   "a certificate-authority file on an unused cluster is refused",
			data:   withExtraCluster(&clientcmdapi.Cluster{Server: "https://other.example", CertificateAuthority: "ca.crt"}),
			reason: ReasonFileReferenceNotAllowed, inMessage: `"unused"`,
		},
		{
			name:   "a client-certificate file is refused",
			data:   withUser(func(u *clientcmdapi.AuthInfo) { u.ClientCertificate = "/etc/deich/tls.crt"; u.ClientKeyData = p.keyPEM }),
			reason: ReasonFileReferenceNotAllowed, inMessage: "client-certificate-data",
		},
		{
			name: "a client-key file is refused",
			data: withUser(func(u *clientcmdapi.AuthInfo) {
				u.ClientCertificateData = p.certPEM
				u.ClientKey = "/etc/deich/tls.key"
			}),
			reason: ReasonFileReferenceNotAllowed, inMessage: "client-key-data",
		},
		{
			name:   "a tokenFile is refused",
			data:   []byte(strings.Replace(credTokenKubeconfig, "token: "+credToken, "tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token", 1)),
			reason: ReasonFileReferenceNotAllowed, inMessage: "tokenFile",
		},

		// Plain HTTP and basic authentication.
		{name: "an http:// server is refused", data: withCluster(func(c *clientcmdapi.Cluster) { c.Server = "http://peer.example:8080" }), reason: ReasonPlainHTTPNotAllowed},
		{name: "an HTTP:// server in capitals is refused", data: withCluster(func(c *clientcmdapi.Cluster) { c.Server = "HTTP://peer.example:8080" }), reason: ReasonPlainHTTPNotAllowed},
		{name: "an http:// server on an unused cluster is refused", data: withExtraCluster(&clientcmdapi.Cluster{Server: "http://other.example"}), reason: ReasonPlainHTTPNotAllowed, inMessage: `"unused"`},
		{name: "username and password are refused", data: withUser(func(u *clientcmdapi.AuthInfo) { u.Username = "admin"; u.Password = credPassword }), reason: ReasonBasicAuthNotAllowed},
		{name: "a password alone is refused", data: withExtraUser(&clientcmdapi.AuthInfo{Password: credPassword}), reason: ReasonBasicAuthNotAllowed, inMessage: `"unused"`},
		{
			name:   "a server URL with user information is refused",
			data:   withCluster(func(c *clientcmdapi.Cluster) { c.Server = "https://admin:" + credPassword + "@peer.example:6443" }),
			reason: ReasonBasicAuthNotAllowed,
		},

		// The current context and its cluster and user.
		{name: "a kubeconfig without current-context is refused as invalid", data: credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.CurrentContext = "" }), reason: ReasonInvalidKubeconfig, inMessage: "current-context"},
		{name: "a current-context that is not defined is refused as invalid", data: credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.CurrentContext = "missing" }), reason: ReasonInvalidKubeconfig, inMessage: `"missing"`},
		{name: "a context without cluster is refused as invalid", data: credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.Contexts["peer"].Cluster = "" }), reason: ReasonInvalidKubeconfig, inMessage: "no cluster"},
		{name: "a context whose cluster is not defined is refused as invalid", data: credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.Contexts["peer"].Cluster = "missing" }), reason: ReasonInvalidKubeconfig, inMessage: `"missing"`},
		{name: "a context without user is refused as invalid", data: credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.Contexts["peer"].AuthInfo = "" }), reason: ReasonInvalidKubeconfig, inMessage: "no user"},
		{name: "a context whose user is not defined is refused as invalid", data: credKubeconfig(tb, func(cfg *clientcmdapi.Config) { cfg.Contexts["peer"].AuthInfo = "missing" }), reason: ReasonInvalidKubeconfig, inMessage: `"missing"`},
		{name: "a cluster without server is refused as invalid", data: withCluster(func(c *clientcmdapi.Cluster) { c.Server = "" }), reason: ReasonInvalidKubeconfig, inMessage: "no server"},
		{name: "a server without scheme is refused as invalid", data: withCluster(func(c *clientcmdapi.Cluster) { c.Server = "peer.example:6443" }), reason: ReasonInvalidKubeconfig, inMessage: "https://"},
		{name: "a server with another scheme is refused as invalid", data: withCluster(func(c *clientcmdapi.Cluster) { c.Server = "unix:///var/run/k8s.sock" }), reason: ReasonInvalidKubeconfig},
		{name: "a server without host is refused as invalid", data: withCluster(func(c *clientcmdapi.Cluster) { c.Server = "https:///api" }), reason: ReasonInvalidKubeconfig},
		{name: "a server with a query is refused as invalid", data: withCluster(func(c *clientcmdapi.Cluster) { c.Server = credServer + "?token=" + credToken }), reason: ReasonInvalidKubeconfig},
		{name: "a proxy-url with an unsupported scheme is refused as invalid", data: withCluster(func(c *clientcmdapi.Cluster) { c.ProxyURL = "ftp://proxy.example" }), reason: ReasonInvalidKubeconfig, inMessage: "proxy-url"},
		{
			name:   "a malformed proxy-url is refused without quoting its password",
			data:   withCluster(func(c *clientcmdapi.Cluster) { c.ProxyURL = "gopher://user:" + credPassword + "@proxy.example" }),
			reason: ReasonInvalidKubeconfig, inMessage: "proxy-url",
		},
		{name: "certificate-authority-data that is not PEM is refused as invalid", data: withCluster(func(c *clientcmdapi.Cluster) { c.CertificateAuthorityData = []byte("not a certificate") }), reason: ReasonInvalidKubeconfig, inMessage: "certificate-authority-data"},
		{name: "a client certificate without key is refused as invalid", data: withUser(func(u *clientcmdapi.AuthInfo) { u.ClientCertificateData = p.certPEM }), reason: ReasonInvalidKubeconfig, inMessage: "no client-key-data"},
		{name: "a client key without certificate is refused as invalid", data: withUser(func(u *clientcmdapi.AuthInfo) { u.ClientKeyData = p.keyPEM }), reason: ReasonInvalidKubeconfig, inMessage: "no client-certificate-data"},
		{
			name:   "a client certificate with a key that does not match is refused as invalid",
			data:   withUser(func(u *clientcmdapi.AuthInfo) { u.ClientCertificateData = p.certPEM; u.ClientKeyData = p.otherKeyPEM }),
			reason: ReasonInvalidKubeconfig, inMessage: "matching",
		},
		{name: "a token with a trailing newline is refused as invalid", data: withUser(func(u *clientcmdapi.AuthInfo) { u.Token = credToken + "\n" }), reason: ReasonInvalidKubeconfig, inMessage: "newline"},
		{name: "a blank token is refused as invalid", data: withUser(func(u *clientcmdapi.AuthInfo) { u.Token = "   " }), reason: ReasonInvalidKubeconfig, inMessage: "blank"},
		{name: "a user without any credentials is refused", data: withUser(func(u *clientcmdapi.AuthInfo) { u.Token = "" }), reason: ReasonNoCredentials, inMessage: `"deich"`},
		{
			name:   "a user that only impersonates is refused for lack of credentials",
			data:   withUser(func(u *clientcmdapi.AuthInfo) { u.Token = ""; u.Impersonate = "system:admin" }),
			reason: ReasonNoCredentials,
		},
	}
}

func TestRESTConfigFromKubeconfigRefuses(t *testing.T) {
	for _, tt := range credRefusalCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RESTConfigFromKubeconfig(tt.data)
			if got != nil {
				t.Errorf("RESTConfigFromKubeconfig() returned a config for Host %q, want nil", got.Host)
			}
			var cerr *CredentialError
			if !errors.As(err, &cerr) {
				t.Fatalf("RESTConfigFromKubeconfig() error = %v (%T), want a *CredentialError", err, err)
			}
			if diff := cmp.Diff(tt.reason, cerr.Reason); diff != "" {
				t.Errorf("Reason mismatch (-want +got):\n%s\nmessage: %s", diff, cerr.Message)
			}
			if cerr.Message == "" {
				t.Error("Message is empty")
			}
			if tt.inMessage != "" && !strings.Contains(cerr.Message, tt.inMessage) {
				t.Errorf("Message = %q, want it to contain %q", cerr.Message, tt.inMessage)
			}
			if !strings.Contains(err.Error(), cerr.Reason) || !strings.Contains(err.Error(), cerr.Message) {
				t.Errorf("Error() = %q, want it to contain reason and message", err.Error())
			}
		})
	}
}

// credSecretStrings returns the secret material of the test kubeconfigs in the
// forms it could leak in: raw, and for keys each PEM line and the base64 of
// the whole PEM (as in client-key-data).
func credSecretStrings() []string {
	p := credTestPKI()
	secrets := []string{credToken, credPassword, credIDToken}
	for _, key := range [][]byte{p.keyPEM, p.otherKeyPEM} {
		secrets = append(secrets, base64.StdEncoding.EncodeToString(key))
		for line := range strings.Lines(string(key)) {
			if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line)
			}
		}
	}
	return secrets
}

func TestRESTConfigFromKubeconfigNeverPutsSecretsIntoErrors(t *testing.T) {
	secrets := credSecretStrings()
	for _, tt := range credRefusalCases(t) {
		t.Run("when "+tt.name+", the error quotes no secret", func(t *testing.T) {
			_, err := RESTConfigFromKubeconfig(tt.data)
			if err == nil {
				t.Fatal("RESTConfigFromKubeconfig() error = nil, want a refusal")
			}
			for _, secret := range secrets {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("Error() = %q contains secret material %q", err.Error(), secret)
				}
			}
		})
	}
}

func TestCheckRESTConfigCatchesWhatTheKubeconfigChecksMiss(t *testing.T) {
	valid := func() *rest.Config { return &rest.Config{Host: credServer, BearerToken: credToken} }
	tests := []struct {
		name   string
		mutate func(c *rest.Config)
	}{
		{"an exec provider is caught", func(c *rest.Config) { c.ExecProvider = &clientcmdapi.ExecConfig{Command: "sh"} }},
		{"an auth provider is caught", func(c *rest.Config) { c.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "oidc"} }},
		{"insecure TLS is caught", func(c *rest.Config) { c.Insecure = true }},
		{"a CA file is caught", func(c *rest.Config) { c.CAFile = "/ca.crt" }},
		{"a certificate file is caught", func(c *rest.Config) { c.CertFile = "/tls.crt" }},
		{"a key file is caught", func(c *rest.Config) { c.KeyFile = "/tls.key" }},
		{"a token file is caught", func(c *rest.Config) { c.BearerTokenFile = "/token" }},
		{"basic authentication is caught", func(c *rest.Config) { c.Username, c.Password = "admin", credPassword }},
		{"a plain http host is caught", func(c *rest.Config) { c.Host = "http://peer.example" }},
		{"missing credentials are caught", func(c *rest.Config) { c.BearerToken = "" }},
	}
	if cerr := checkRESTConfig(valid()); cerr != nil {
		t.Fatalf("checkRESTConfig(valid) = %v, want nil", cerr)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			cerr := checkRESTConfig(c)
			if cerr == nil {
				t.Fatal("checkRESTConfig() = nil, want an error")
			}
			if diff := cmp.Diff(ReasonInvalidKubeconfig, cerr.Reason); diff != "" {
				t.Errorf("Reason mismatch (-want +got):\n%s", diff)
			}
			if strings.Contains(cerr.Message, credPassword) {
				t.Errorf("Message %q contains the password", cerr.Message)
			}
		})
	}
}

func TestQuoteName(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"a short name is quoted unchanged", "peer-cluster", `"peer-cluster"`},
		{"control characters are escaped", "a\nb", `"a\nb"`},
		{"a long name is shortened", strings.Repeat("a", 100), `"` + strings.Repeat("a", 63) + `…"`},
		{"a long name is never cut inside a character", strings.Repeat("a", 62) + "äöü", `"` + strings.Repeat("a", 62) + `…"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, quoteName(tt.in)); diff != "" {
				t.Errorf("quoteName() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

var credKnownReasons = map[string]bool{
	ReasonInvalidKubeconfig:       true,
	ReasonExecPluginNotAllowed:    true,
	ReasonAuthProviderNotAllowed:  true,
	ReasonInsecureTLSNotAllowed:   true,
	ReasonFileReferenceNotAllowed: true,
	ReasonPlainHTTPNotAllowed:     true,
	ReasonBasicAuthNotAllowed:     true,
	ReasonNoCredentials:           true,
}

const (
	credSentinelToken    = "fuzz-sentinel-token-7f3a9c1e5b2d4086"
	credSentinelPassword = "fuzz-sentinel-password-c4e8a2f61b9d3057"
)

func FuzzRESTConfigFromKubeconfig(f *testing.F) {
	// Seeds are kept small (see also testdata/fuzz): the fuzzer minimizes
	// every input that finds new coverage, which takes time quadratic in
	// its length. Certificates and keys are covered by the table tests.
	f.Add([]byte(credTokenKubeconfig))
	f.Add([]byte(strings.Replace(credTokenKubeconfig, "    token: ", "    exec: {command: sh, apiVersion: client.authentication.k8s.io/v1}\n    token: ", 1)))

	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := RESTConfigFromKubeconfig(data)
		if (got == nil) == (err == nil) {
			t.Fatalf("RESTConfigFromKubeconfig() = (%v, %v), want exactly one of config and error", got, err)
		}
		reason := ""
		if err != nil {
			var cerr *CredentialError
			if !errors.As(err, &cerr) {
				t.Fatalf("error %v (%T) is not a *CredentialError", err, err)
			}
			if !credKnownReasons[cerr.Reason] || cerr.Message == "" {
				t.Fatalf("CredentialError{Reason: %q, Message: %q}, want a known reason and a message", cerr.Reason, cerr.Message)
			}
			reason = cerr.Reason
		} else if cerr := checkRESTConfig(got); cerr != nil {
			t.Fatalf("accepted config fails the final check: %v", cerr)
		}

		parsed, perr := clientcmd.Load(data)
		if perr != nil {
			if got != nil {
				t.Fatalf("returned a config for input clientcmd cannot parse: %v", perr)
			}
			return
		}
		for name, user := range parsed.AuthInfos {
			if user == nil {
				continue
			}
			if user.Exec != nil && reason != ReasonExecPluginNotAllowed {
				t.Fatalf("user %q has an exec plugin, but the result is (%v, %v)", name, got, err)
			}
			if got != nil && (user.AuthProvider != nil || user.ClientCertificate != "" || user.ClientKey != "" ||
				user.TokenFile != "" || user.Username != "" || user.Password != "") {
				t.Fatalf("user %q is not acceptable, but a config was returned", name)
			}
		}
		for name, cluster := range parsed.Clusters {
			if got != nil && cluster != nil && (cluster.InsecureSkipTLSVerify || cluster.CertificateAuthority != "") {
				t.Fatalf("cluster %q is not acceptable, but a config was returned", name)
			}
		}

		// Replace all secret values by sentinels; whatever the outcome,
		// the error must not quote them.
		if len(parsed.AuthInfos) == 0 {
			return
		}
		for _, user := range parsed.AuthInfos {
			if user == nil {
				continue
			}
			user.Token, user.Password = credSentinelToken, credSentinelPassword
			if user.AuthProvider != nil {
				user.AuthProvider.Config = map[string]string{"id-token": credSentinelToken}
			}
			if user.Exec != nil {
				user.Exec.Env = []clientcmdapi.ExecEnvVar{{Name: "TOKEN", Value: credSentinelToken}}
			}
		}
		rewritten, werr := clientcmd.Write(*parsed)
		if werr != nil {
			return
		}
		if _, err := RESTConfigFromKubeconfig(rewritten); err != nil {
			for _, secret := range []string{credSentinelToken, credSentinelPassword} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("Error() = %q contains secret material", err.Error())
				}
			}
		}
	})
}

// expiryTestJWT returns a JWT in compact serialization whose payload is claims (JSON). The
// signature is a placeholder: CredentialsExpiry does not verify it.
func expiryTestJWT(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"test"}`)) + "." +
		enc.EncodeToString([]byte(claims)) + "." + enc.EncodeToString([]byte("not-a-signature"))
}

// expiryTestCertificate returns a PEM-encoded self-signed client certificate valid until
// notAfter, and its key.
func expiryTestCertificate(tb testing.TB, notAfter time.Time) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(notAfter.Unix()),
		Subject:      pkix.Name{CommonName: "deich", Organization: []string{"deich:peers"}},
		NotBefore:    notAfter.Add(-90 * 24 * time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func TestCredentialsExpiry(t *testing.T) {
	tokenExp := time.Date(2031, time.March, 1, 12, 0, 0, 0, time.UTC)
	certExp := time.Date(2030, time.June, 30, 23, 59, 59, 0, time.UTC)
	certPEM, keyPEM := expiryTestCertificate(t, certExp)
	intermediatePEM, _ := expiryTestCertificate(t, certExp.Add(-24*time.Hour))
	jwt := expiryTestJWT(fmt.Sprintf(`{"aud":["https://kubernetes.default.svc"],"exp":%d,"sub":"system:serviceaccount:deich-system:deich-peer"}`, tokenExp.Unix()))
	withToken := func(token string) func(cfg *clientcmdapi.Config) {
		return func(cfg *clientcmdapi.Config) { cfg.AuthInfos["deich"].Token = token }
	}
	withCertificate := func(token string) func(cfg *clientcmdapi.Config) {
		return func(cfg *clientcmdapi.Config) {
			cfg.AuthInfos["deich"] = &clientcmdapi.AuthInfo{Token: token, ClientCertificateData: certPEM, ClientKeyData: keyPEM}
		}
	}

	tests := []struct {
		name       string
		kubeconfig []byte
		want       Expiry
		wantKnown  bool
	}{{
		name:       "a JWT bearer token expires at its exp claim",
		kubeconfig: credKubeconfig(t, withToken(jwt)),
		want:       Expiry{At: tokenExp, Credential: CredentialBearerToken},
		wantKnown:  true,
	}, {
		name:       "a JWT with a fractional exp is read to the second",
		kubeconfig: credKubeconfig(t, withToken(expiryTestJWT(fmt.Sprintf(`{"exp":%d.75}`, tokenExp.Unix())))),
		want:       Expiry{At: tokenExp, Credential: CredentialBearerToken},
		wantKnown:  true,
	}, {
		name:       "a JWT whose payload keeps its base64 padding is read too",
		kubeconfig: credKubeconfig(t, withToken(strings.Replace(expiryTestJWT(fmt.Sprintf(`{"exp":%d}`, tokenExp.Unix())), ".", "==.", 2))),
		want:       Expiry{At: tokenExp, Credential: CredentialBearerToken},
		wantKnown:  true,
	}, {
		name:       "the token's expiry comes before the client certificate's",
		kubeconfig: credKubeconfig(t, withCertificate(jwt)),
		want:       Expiry{At: tokenExp, Credential: CredentialBearerToken},
		wantKnown:  true,
	}, {
		name:       "a client certificate expires at its notAfter",
		kubeconfig: credKubeconfig(t, withCertificate("")),
		want:       Expiry{At: certExp, Credential: CredentialClientCertificate},
		wantKnown:  true,
	}, {
		name: "the client certificate is the first of a chain",
		kubeconfig: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
			withCertificate("")(cfg)
			cfg.AuthInfos["deich"].ClientCertificateData = append(append([]byte{}, certPEM...), intermediatePEM...)
		}),
		want:      Expiry{At: certExp, Credential: CredentialClientCertificate},
		wantKnown: true,
	}, {
		name:       "an opaque token next to a client certificate leaves the certificate's expiry",
		kubeconfig: credKubeconfig(t, withCertificate(credToken)),
		want:       Expiry{At: certExp, Credential: CredentialClientCertificate},
		wantKnown:  true,
	}, {
		name:       "a JWT without exp next to a client certificate leaves the certificate's expiry",
		kubeconfig: credKubeconfig(t, withCertificate(expiryTestJWT(`{"sub":"system:serviceaccount:deich-system:deich-peer"}`))),
		want:       Expiry{At: certExp, Credential: CredentialClientCertificate},
		wantKnown:  true,
	}, {
		name: "only the current context's user counts",
		kubeconfig: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.AuthInfos["other"] = &clientcmdapi.AuthInfo{Token: jwt}
			withCertificate("")(cfg)
		}),
		want:      Expiry{At: certExp, Credential: CredentialClientCertificate},
		wantKnown: true,
	}, {
		name:       "an opaque token alone says nothing",
		kubeconfig: credKubeconfig(t, nil),
	}, {
		name:       "a JWT without exp says nothing",
		kubeconfig: credKubeconfig(t, withToken(expiryTestJWT(`{"sub":"system:serviceaccount:deich-system:deich-peer"}`))),
	}, {
		name:       "a JWT whose exp is not a number says nothing",
		kubeconfig: credKubeconfig(t, withToken(expiryTestJWT(`{"exp":"next year"}`))),
	}, {
		name:       "a JWT whose exp is not positive says nothing",
		kubeconfig: credKubeconfig(t, withToken(expiryTestJWT(`{"exp":-1}`))),
	}, {
		name:       "a JWT that expires after the year 9999 says nothing",
		kubeconfig: credKubeconfig(t, withToken(expiryTestJWT(`{"exp":1e15}`))),
	}, {
		name:       "a JWT whose payload is not JSON says nothing",
		kubeconfig: credKubeconfig(t, withToken(expiryTestJWT(`exp=1900000000`))),
	}, {
		name:       "a token whose payload is not base64url says nothing",
		kubeconfig: credKubeconfig(t, withToken("eyJhbGciOiJub25lIn0.!!!.c2ln")),
	}, {
		name:       "a token of two parts says nothing",
		kubeconfig: credKubeconfig(t, withToken(strings.Join(strings.Split(jwt, ".")[:2], "."))),
	}, {
		name:       "an encrypted JWT (five parts) says nothing",
		kubeconfig: credKubeconfig(t, withToken(jwt+".a.b")),
	}, {
		name: "a client certificate that is not PEM says nothing",
		kubeconfig: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
			cfg.AuthInfos["deich"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("not a certificate"), ClientKeyData: keyPEM}
		}),
	}, {
		name: "a current context without a user says nothing",
		kubeconfig: credKubeconfig(t, func(cfg *clientcmdapi.Config) {
			withToken(jwt)(cfg)
			cfg.Contexts["peer"].AuthInfo = "missing"
		}),
	}, {
		name:       "a kubeconfig that cannot be parsed says nothing",
		kubeconfig: []byte("users: [:"),
	}, {
		name: "an empty kubeconfig says nothing",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, known := CredentialsExpiry(tc.kubeconfig)
			if known != tc.wantKnown {
				t.Errorf("CredentialsExpiry() known = %t, want %t", known, tc.wantKnown)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("CredentialsExpiry() (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzTokenExpiry(f *testing.F) {
	f.Add(expiryTestJWT(`{"exp":1900000000}`))
	f.Add(expiryTestJWT(`{"exp":1.9e9}`))
	f.Add(expiryTestJWT(`{"exp":"1900000000"}`))
	f.Add(credToken)
	f.Fuzz(func(t *testing.T, token string) {
		at, ok := tokenExpiry(token)
		if !ok {
			if !at.IsZero() {
				t.Fatalf("tokenExpiry(%q) = %v, false; want the zero time with false", token, at)
			}
			return
		}
		if at.Unix() <= 0 || at.After(maxExpiry) || at.Nanosecond() != 0 || at.Location() != time.UTC {
			t.Fatalf("tokenExpiry(%q) = %v, want a whole second in UTC after the epoch and before year 10000", token, at)
		}
	})
}
