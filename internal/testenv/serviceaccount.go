package testenv

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// ServiceAccountKubeconfig writes a kubeconfig for the site as the ServiceAccount
// namespace/name, with the token and the CA inline, as the install guides tell a site's
// administrators to write one for another site. The token comes from the TokenRequest API and
// expires after ttl: envtest runs no token controller, which would fill the long-lived token
// Secrets of config/. It stays valid across [Site.StopAPIServer] and [Site.StartAPIServer],
// which keep the site's service-account signing key.
func (s *Site) ServiceAccountKubeconfig(ctx context.Context, namespace, name string, ttl time.Duration) ([]byte, error) {
	return s.ServiceAccountKubeconfigFor(ctx, s.URL(), namespace, name, ttl)
}

// ServiceAccountKubeconfigFor is like [Site.ServiceAccountKubeconfig] but points at server,
// e.g. the [Link.Proxy] another site reaches this one through. TLS is verified against the
// site's serving CA, as with [Site.KubeconfigFor].
func (s *Site) ServiceAccountKubeconfigFor(ctx context.Context, server, namespace, name string, ttl time.Duration) ([]byte, error) {
	if err := s.checkServer(server); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		return nil, fmt.Errorf("clientset for %s: %w", s.Name, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request a token for %s/%s at %s: %w", namespace, name, s.Name, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[s.Name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: s.Config.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts[s.Name] = &clientcmdapi.Context{Cluster: s.Name, AuthInfo: name}
	cfg.CurrentContext = s.Name
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("serialize kubeconfig for %s/%s at %s: %w", namespace, name, s.Name, err)
	}
	return out, nil
}
