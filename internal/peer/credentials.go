package peer

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Reasons a peer kubeconfig is refused. Each is CamelCase so that it can be
// used unchanged as the Reason of a Kubernetes condition.
//
// When a kubeconfig breaks several rules, the reason reported is the first
// one in this list that applies (parse errors first, then the security rules,
// then completeness), so that the same Secret always yields the same reason.
const (
	// ReasonInvalidKubeconfig: the kubeconfig cannot be used as written. It
	// is empty or not parseable, has no current-context, its current context
	// is not defined or lacks a cluster or user, or the selected cluster or
	// user is incomplete or malformed (missing or malformed server URL,
	// malformed proxy-url, certificate-authority-data without a PEM
	// certificate, client certificate without key or vice versa, a token with
	// a line break, ...).
	ReasonInvalidKubeconfig = "InvalidKubeconfig"

	// ReasonExecPluginNotAllowed: a user entry has an exec credential plugin.
	// Exec plugins would make the manager run a command chosen by whoever can
	// write the Secret.
	ReasonExecPluginNotAllowed = "ExecPluginNotAllowed"

	// ReasonAuthProviderNotAllowed: a user entry has an auth-provider (oidc,
	// gcp, azure, ...). Auth providers are deprecated plugins that may run
	// commands, read files and write refreshed tokens back to a kubeconfig.
	ReasonAuthProviderNotAllowed = "AuthProviderNotAllowed"

	// ReasonInsecureTLSNotAllowed: a cluster entry sets
	// insecure-skip-tls-verify, which would turn off verification of the
	// peer API server's certificate.
	ReasonInsecureTLSNotAllowed = "InsecureTLSNotAllowed"

	// ReasonFileReferenceNotAllowed: a cluster or user entry refers to a file
	// (certificate-authority, client-certificate, client-key, tokenFile)
	// instead of carrying the content inline. The manager never reads its own
	// filesystem because of a Secret's content.
	ReasonFileReferenceNotAllowed = "FileReferenceNotAllowed"

	// ReasonPlainHTTPNotAllowed: a cluster entry's server URL uses http://,
	// which would send the credentials unencrypted.
	ReasonPlainHTTPNotAllowed = "PlainHTTPNotAllowed"

	// ReasonBasicAuthNotAllowed: a user entry sets username/password, or a
	// cluster's server URL carries user information (user:password@host).
	// Kubernetes API servers no longer support basic authentication (removed
	// in 1.19), and the password would be a long-lived shared secret.
	ReasonBasicAuthNotAllowed = "BasicAuthNotAllowed"

	// ReasonNoCredentials: the user of the current context has neither a
	// token nor a client certificate. An anonymous connection cannot do
	// anything useful on a peer.
	ReasonNoCredentials = "NoCredentials"
)

// CredentialError says why a kubeconfig was refused. Reason is a CamelCase
// machine-readable reason (one of the Reason constants) usable as a
// Kubernetes condition reason, Message a sentence an SRE can act on. Message
// never contains secret material such as tokens, keys or passwords; it only
// names entries (contexts, clusters, users) and fields of the kubeconfig.
type CredentialError struct {
	Reason, Message string
}

// Error implements error.
func (e *CredentialError) Error() string {
	return "peer kubeconfig refused (" + e.Reason + "): " + e.Message
}

func refuse(reason, format string, args ...any) *CredentialError {
	return &CredentialError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// RESTConfigFromKubeconfig parses kubeconfig bytes and returns a *rest.Config
// for its current context, or a *CredentialError.
//
// The kubeconfig comes from a Secret, so whoever can write that Secret must
// not be able to make the manager run commands, read its own files or talk
// to the peer without verifying TLS. The following is refused:
//
//   - exec credential plugins and auth-providers;
//   - insecure-skip-tls-verify;
//   - file references: certificate-authority, client-certificate,
//     client-key and tokenFile (use certificate-authority-data,
//     client-certificate-data, client-key-data and token instead);
//   - http:// server URLs (the server must be an absolute https:// URL);
//   - basic authentication (username/password, or user:password@ in the
//     server URL).
//
// These rules are checked for every cluster and user in the file, not only
// for those the current context uses: a Secret is acceptable or not as a
// whole, whatever its current-context says.
//
// The current context must then name a defined cluster and user; the user
// must carry a token and/or an inline client certificate with its key.
//
// Allowed as harmless: tls-server-name, certificate-authority-data (without
// it the system trust store is used, so TLS is still verified),
// disable-compression, impersonation (act-as*), a namespace in the context
// (ignored), and proxy-url with scheme http, https or socks5 (the schemes
// client-go supports). A proxy only relays the connection: TLS to the peer is still
// end-to-end and verified, so the credentials never travel in clear, even
// through an http:// proxy.
func RESTConfigFromKubeconfig(data []byte) (*rest.Config, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, refuse(ReasonInvalidKubeconfig,
			"the kubeconfig is empty; put a complete kubeconfig (apiVersion: v1, kind: Config) into the Secret")
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, parseError(err)
	}
	if cerr := checkAllEntries(cfg); cerr != nil {
		return nil, cerr
	}
	contextName, context, cerr := resolveCurrentContext(cfg)
	if cerr != nil {
		return nil, cerr
	}
	cluster, user := cfg.Clusters[context.Cluster], cfg.AuthInfos[context.AuthInfo]
	if cerr := checkCurrentCluster(context.Cluster, cluster); cerr != nil {
		return nil, cerr
	}
	if cerr := checkCurrentUser(context.AuthInfo, user); cerr != nil {
		return nil, cerr
	}

	// Build from a config holding only the validated context, cluster and
	// user. Nothing in it refers to a file, and without ConfigAccess and a
	// fallback reader clientcmd neither persists nor prompts.
	minimal := clientcmdapi.Config{
		CurrentContext: contextName,
		Contexts:       map[string]*clientcmdapi.Context{contextName: context.DeepCopy()},
		Clusters:       map[string]*clientcmdapi.Cluster{context.Cluster: cluster.DeepCopy()},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{context.AuthInfo: user.DeepCopy()},
	}
	restConfig, err := clientcmd.NewDefaultClientConfig(minimal, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		// client-go errors may quote values from the kubeconfig, so the
		// cause is deliberately not included.
		return nil, refuse(ReasonInvalidKubeconfig,
			"client-go could not build a client configuration from context %s; check the kubeconfig with kubectl against the peer",
			quoteName(contextName))
	}
	if cerr := checkRESTConfig(restConfig); cerr != nil {
		return nil, cerr
	}
	return restConfig, nil
}

// checkAllEntries applies the security rules to every cluster and user of
// cfg, in a fixed order (by rule, then by name).
func checkAllEntries(cfg *clientcmdapi.Config) *CredentialError {
	userNames := sortedEntryNames(cfg.AuthInfos)
	clusterNames := sortedEntryNames(cfg.Clusters)

	for _, name := range userNames {
		if cfg.AuthInfos[name].Exec != nil {
			return refuse(ReasonExecPluginNotAllowed,
				"user %s uses an exec credential plugin, which would make the Deich manager run a command; "+
					"replace it with a token or an inline client certificate (every user in the kubeconfig is checked, even unused ones)",
				quoteName(name))
		}
	}
	for _, name := range userNames {
		if ap := cfg.AuthInfos[name].AuthProvider; ap != nil {
			return refuse(ReasonAuthProviderNotAllowed,
				"user %s uses the auth-provider %s, which may run commands or read files inside the Deich manager; "+
					"replace it with a token or an inline client certificate (every user in the kubeconfig is checked, even unused ones)",
				quoteName(name), quoteName(ap.Name))
		}
	}
	for _, name := range clusterNames {
		if cfg.Clusters[name].InsecureSkipTLSVerify {
			return refuse(ReasonInsecureTLSNotAllowed,
				"cluster %s sets insecure-skip-tls-verify, which disables verification of the peer API server's certificate; "+
					"remove it and put the peer's CA bundle into certificate-authority-data (or rely on a publicly trusted server certificate)",
				quoteName(name))
		}
	}
	for _, name := range clusterNames {
		if cfg.Clusters[name].CertificateAuthority != "" {
			return refuseFileReference("cluster", name, "certificate-authority", "certificate-authority-data")
		}
	}
	for _, name := range userNames {
		user := cfg.AuthInfos[name]
		switch {
		case user.ClientCertificate != "":
			return refuseFileReference("user", name, "client-certificate", "client-certificate-data")
		case user.ClientKey != "":
			return refuseFileReference("user", name, "client-key", "client-key-data")
		case user.TokenFile != "":
			return refuseFileReference("user", name, "tokenFile", "token")
		}
	}
	for _, name := range clusterNames {
		if u, err := url.Parse(cfg.Clusters[name].Server); err == nil && u.Scheme == "http" {
			return refuse(ReasonPlainHTTPNotAllowed,
				"cluster %s has an http:// server URL, which would send the credentials unencrypted; use the peer API server's https:// URL",
				quoteName(name))
		}
	}
	for _, name := range userNames {
		if user := cfg.AuthInfos[name]; user.Username != "" || user.Password != "" {
			return refuse(ReasonBasicAuthNotAllowed,
				"user %s sets username/password (basic authentication), which Kubernetes API servers no longer support; "+
					"use a token or an inline client certificate instead",
				quoteName(name))
		}
	}
	for _, name := range clusterNames {
		if u, err := url.Parse(cfg.Clusters[name].Server); err == nil && u.User != nil {
			return refuse(ReasonBasicAuthNotAllowed,
				"the server URL of cluster %s contains user information (user:password@host), which would be sent as basic authentication; "+
					"remove it and authenticate with a token or an inline client certificate",
				quoteName(name))
		}
	}
	return nil
}

func refuseFileReference(kind, name, field, inline string) *CredentialError {
	return refuse(ReasonFileReferenceNotAllowed,
		"%s %s refers to a file with %s, but the Deich manager never reads files because of a Secret's content; "+
			"embed the content inline with %s instead",
		kind, quoteName(name), field, inline)
}

// resolveCurrentContext returns the current context of cfg, provided that it names
// a cluster and a user that are defined.
func resolveCurrentContext(cfg *clientcmdapi.Config) (string, *clientcmdapi.Context, *CredentialError) {
	name := cfg.CurrentContext
	if name == "" {
		return "", nil, refuse(ReasonInvalidKubeconfig,
			"the kubeconfig sets no current-context; set current-context to the context the Deich manager should use")
	}
	context := cfg.Contexts[name]
	if context == nil {
		return "", nil, refuse(ReasonInvalidKubeconfig,
			"current-context %s is not defined under contexts; add that context or fix current-context",
			quoteName(name))
	}
	switch {
	case context.Cluster == "":
		return "", nil, refuse(ReasonInvalidKubeconfig,
			"context %s names no cluster; set its cluster to an entry under clusters", quoteName(name))
	case cfg.Clusters[context.Cluster] == nil:
		return "", nil, refuse(ReasonInvalidKubeconfig,
			"context %s uses cluster %s, which is not defined under clusters", quoteName(name), quoteName(context.Cluster))
	case context.AuthInfo == "":
		return "", nil, refuse(ReasonInvalidKubeconfig,
			"context %s names no user; set its user to an entry under users", quoteName(name))
	case cfg.AuthInfos[context.AuthInfo] == nil:
		return "", nil, refuse(ReasonInvalidKubeconfig,
			"context %s uses user %s, which is not defined under users", quoteName(name), quoteName(context.AuthInfo))
	}
	return name, context, nil
}

// checkCurrentCluster checks that the cluster of the current context is complete
// and well-formed. The security rules were checked before.
func checkCurrentCluster(name string, cluster *clientcmdapi.Cluster) *CredentialError {
	if cluster.Server == "" {
		return refuse(ReasonInvalidKubeconfig,
			"cluster %s has no server; set server to the peer API server's https:// URL", quoteName(name))
	}
	u, err := url.Parse(cluster.Server)
	if err != nil || u.Scheme != "https" || u.Opaque != "" || u.Hostname() == "" {
		return refuse(ReasonInvalidKubeconfig,
			"the server of cluster %s is not an absolute https:// URL with a host name (for example https://api.peer.example:6443)",
			quoteName(name))
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return refuse(ReasonInvalidKubeconfig,
			"the server URL of cluster %s has a query or fragment; remove everything from ? or #", quoteName(name))
	}
	if cluster.ProxyURL != "" {
		p, err := url.Parse(cluster.ProxyURL)
		if err != nil || !slices.Contains([]string{"http", "https", "socks5"}, p.Scheme) || p.Hostname() == "" {
			return refuse(ReasonInvalidKubeconfig,
				"the proxy-url of cluster %s is not an http://, https:// or socks5:// URL with a host name; fix or remove it",
				quoteName(name))
		}
	}
	if len(cluster.CertificateAuthorityData) > 0 && !x509.NewCertPool().AppendCertsFromPEM(cluster.CertificateAuthorityData) {
		return refuse(ReasonInvalidKubeconfig,
			"the certificate-authority-data of cluster %s contains no PEM-encoded certificate; it must be the base64 encoding of the PEM CA bundle",
			quoteName(name))
	}
	return nil
}

// checkCurrentUser checks that the user of the current context carries usable
// credentials. The security rules were checked before.
func checkCurrentUser(name string, user *clientcmdapi.AuthInfo) *CredentialError {
	if user.Token != "" {
		if strings.ContainsFunc(user.Token, isControlRune) {
			return refuse(ReasonInvalidKubeconfig,
				"the token of user %s contains a line break or another control character (often a trailing newline left over from decoding); remove it",
				quoteName(name))
		}
		if strings.TrimSpace(user.Token) == "" {
			return refuse(ReasonInvalidKubeconfig, "the token of user %s is blank", quoteName(name))
		}
	}
	hasCert, hasKey := len(user.ClientCertificateData) > 0, len(user.ClientKeyData) > 0
	switch {
	case hasCert && !hasKey:
		return refuse(ReasonInvalidKubeconfig,
			"user %s has client-certificate-data but no client-key-data; add the private key of the client certificate", quoteName(name))
	case hasKey && !hasCert:
		return refuse(ReasonInvalidKubeconfig,
			"user %s has client-key-data but no client-certificate-data; add the client certificate", quoteName(name))
	case hasCert && hasKey:
		// The tls error is not included: it is safe today, but the
		// message must not depend on that.
		if _, err := tls.X509KeyPair(user.ClientCertificateData, user.ClientKeyData); err != nil {
			return refuse(ReasonInvalidKubeconfig,
				"client-certificate-data and client-key-data of user %s are not a matching PEM-encoded certificate and private key",
				quoteName(name))
		}
	case user.Token == "":
		return refuse(ReasonNoCredentials,
			"user %s has no credentials (neither token nor client-certificate-data with client-key-data), and an anonymous connection "+
				"cannot do anything useful on the peer; add a token or an inline client certificate",
			quoteName(name))
	}
	return nil
}

func isControlRune(r rune) bool { return r < 0x20 || r == 0x7f }

// checkRESTConfig is a last line of defence: it re-checks on the result of
// clientcmd what the kubeconfig checks should already have guaranteed.
func checkRESTConfig(c *rest.Config) *CredentialError {
	var problem string
	switch {
	case c.ExecProvider != nil:
		problem = "an exec provider"
	case c.AuthProvider != nil:
		problem = "an auth provider"
	case c.Insecure:
		problem = "TLS verification turned off"
	case c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.BearerTokenFile != "":
		problem = "a file reference"
	case c.Username != "" || c.Password != "":
		problem = "basic authentication"
	case !strings.HasPrefix(c.Host, "https://"):
		problem = "a server that is not https://"
	case c.BearerToken == "" && len(c.CertData) == 0:
		problem = "no credentials"
	default:
		return nil
	}
	return refuse(ReasonInvalidKubeconfig,
		"the client configuration built from the kubeconfig unexpectedly has %s; this is a bug in the Deich manager, please report it", problem)
}

var (
	// The patterns are anchored so that only errors produced entirely by
	// the decoders match, never text that merely quotes the kubeconfig.
	yamlLineError  = regexp.MustCompile(`^(?:error converting YAML to JSON: )?yaml: line (\d{1,9}): `)
	jsonTypeError  = regexp.MustCompile(`^(?:couldn't get version/kind; json parse error: )?json: cannot unmarshal (\w{1,20}) into Go struct field \w{1,50}\.([\w.\-]{1,200}) of type [\w.\[\]*]{1,100}$`)
	base64Error    = regexp.MustCompile(`^illegal base64 data at input byte \d+$`)
	duplicateError = regexp.MustCompile(`^error converting \*\[\]Named(Cluster|AuthInfo|Context|Extension) into `)
)

// parseError turns an error of clientcmd.Load into a CredentialError. The
// decoders' messages can quote the kubeconfig, in the case of duplicate names
// even whole user entries with their tokens, so only known, fixed parts of
// them are used.
func parseError(err error) *CredentialError {
	msg := err.Error()
	const hint = "; check it with kubectl config view --kubeconfig=FILE"
	if m := yamlLineError.FindStringSubmatch(msg); m != nil {
		return refuse(ReasonInvalidKubeconfig, "the kubeconfig is not valid YAML: syntax error in line %s%s", m[1], hint)
	}
	if m := jsonTypeError.FindStringSubmatch(msg); m != nil {
		return refuse(ReasonInvalidKubeconfig,
			"the kubeconfig could not be parsed: %s has the wrong type (found %s; quote values such as yes, no, y, n or numbers)%s",
			m[2], m[1], hint)
	}
	if base64Error.MatchString(msg) {
		return refuse(ReasonInvalidKubeconfig,
			"the kubeconfig could not be parsed: a *-data field is not valid base64%s", hint)
	}
	if m := duplicateError.FindStringSubmatch(msg); m != nil {
		list := map[string]string{"Cluster": "clusters", "AuthInfo": "users", "Context": "contexts", "Extension": "extensions"}[m[1]]
		return refuse(ReasonInvalidKubeconfig,
			"the kubeconfig could not be parsed: two entries under %s have the same name%s", list, hint)
	}
	if strings.Contains(msg, "is registered for version") {
		return refuse(ReasonInvalidKubeconfig,
			"the Secret does not hold a kubeconfig: it must have apiVersion: v1 and kind: Config")
	}
	return refuse(ReasonInvalidKubeconfig, "the kubeconfig could not be parsed%s", hint)
}

func sortedEntryNames[V any](m map[string]*V) []string {
	names := make([]string, 0, len(m))
	for name, v := range m {
		if v != nil {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// quoteName quotes a name from the kubeconfig for a message, shortened so that
// a condition message stays readable.
func quoteName(name string) string {
	const limit = 63
	if len(name) <= limit {
		return strconv.Quote(name)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return strconv.Quote(name[:cut] + "…")
}

// Credentials whose expiry CredentialsExpiry reports, as Expiry.Credential.
const (
	// CredentialBearerToken is the token of the kubeconfig's user, when it is a JWT with an exp
	// claim (a service account token from the TokenRequest API, an OIDC ID token).
	CredentialBearerToken = "bearer token"
	// CredentialClientCertificate is the client certificate of the kubeconfig's user.
	CredentialClientCertificate = "client certificate"
)

// maxExpiry is the latest expiry CredentialsExpiry reports: the end of year 9999, the last
// instant a Kubernetes timestamp can hold. A later one is no expiry an SRE has to plan for.
var maxExpiry = time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)

// Expiry is when the credentials of a peer's kubeconfig stop being accepted.
type Expiry struct {
	// At is the instant the credential expires, to the second, in UTC.
	At time.Time
	// Credential says which credential expires at At: CredentialBearerToken or
	// CredentialClientCertificate.
	Credential string
}

// CredentialsExpiry returns when the credentials of the current context's user in kubeconfig
// expire: the exp claim of its bearer token when that is a JWT, else the notAfter of its
// client certificate. It returns false when neither tells: a token that is no JWT or has no
// exp (a long-lived service account token from a Secret), no client certificate, or a
// kubeconfig it cannot read (RESTConfigFromKubeconfig says why).
//
// The token is decoded without verifying its signature, which is the peer API server's job:
// only the expiry is read, to warn before the peer starts refusing the token. Nothing of the
// token is returned.
func CredentialsExpiry(kubeconfig []byte) (Expiry, bool) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return Expiry{}, false
	}
	context := cfg.Contexts[cfg.CurrentContext]
	if context == nil {
		return Expiry{}, false
	}
	user := cfg.AuthInfos[context.AuthInfo]
	if user == nil {
		return Expiry{}, false
	}
	if at, ok := tokenExpiry(user.Token); ok {
		return Expiry{At: at, Credential: CredentialBearerToken}, true
	}
	if at, ok := certificateExpiry(user.ClientCertificateData); ok {
		return Expiry{At: at, Credential: CredentialClientCertificate}, true
	}
	return Expiry{}, false
}

// tokenExpiry reads the exp claim (RFC 7519, seconds since the epoch) from the payload of a
// JWT in compact serialization (header.payload.signature, base64url without padding).
func tokenExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[1] == "" {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Exp == "" {
		return time.Time{}, false
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 || exp > float64(maxExpiry.Unix()) {
		return time.Time{}, false
	}
	return time.Unix(int64(math.Floor(exp)), 0).UTC(), true
}

// certificateExpiry returns the notAfter of the first certificate in PEM data: the client
// certificate itself, which precedes any intermediates in a kubeconfig.
func certificateExpiry(data []byte) (time.Time, bool) {
	for len(data) > 0 {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return time.Time{}, false
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil || cert.NotAfter.After(maxExpiry) {
			return time.Time{}, false
		}
		return cert.NotAfter.UTC(), true
	}
	return time.Time{}, false
}
