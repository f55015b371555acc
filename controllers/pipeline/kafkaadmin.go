package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
)

// errAdminCredentials marks a Secret the operator's Kafka admin client needs that is missing or
// incomplete.
var errAdminCredentials = errors.New("kafka admin credentials")

// adminCluster is where and as whom the operator's own Kafka admin client connects for a
// topics: Direct Pipeline: the bootstrap address observed, with the TLS and SASL of the
// executors' listener and the credentials of the Secret the Pipeline names
// (render.AdminClientOf). The Secrets are read with the uncached reader each time: the operator
// keeps no informer on Secrets (which would hold every Secret of the cluster in memory and need
// list and watch on all of them), only get on the few a Pipeline names, and a rotated password
// is used at the next reconcile.
func (r *Reconciler) adminCluster(ctx context.Context, s *scope, bootstrap string) (topics.Cluster, error) {
	c := topics.Cluster{Bootstrap: bootstrap}
	a := render.AdminClientOf(s.p, s.facts)
	read := func(name string, keys ...string) (map[string][]byte, error) {
		secret := &corev1.Secret{}
		if err := r.reader.Get(ctx, client.ObjectKey{Namespace: s.p.Namespace, Name: name}, secret); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("%w: Secret %s/%s does not exist: create it, or fix spec.kafka.authentication.adminSecretName", errAdminCredentials, s.p.Namespace, name)
			}
			return nil, fmt.Errorf("%w: read Secret %s/%s: %w", errAdminCredentials, s.p.Namespace, name, err)
		}
		var missing []string
		for _, k := range keys {
			if len(secret.Data[k]) == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("%w: Secret %s/%s has no %s", errAdminCredentials, s.p.Namespace, name, strings.Join(missing, ", "))
		}
		return secret.Data, nil
	}
	if a.TLS {
		c.TLS = &topics.TLS{}
		if a.CASecret != "" && a.CASecret != a.Secret {
			data, err := read(a.CASecret, render.SecretKeyCA)
			if err != nil {
				return c, err
			}
			c.TLS.CA = data[render.SecretKeyCA]
		}
	}
	if a.Secret == "" {
		return c, nil
	}
	var keys []string
	switch {
	case a.SASLMechanism != "" && a.Username == "":
		keys = []string{render.SecretKeyUsername, render.SecretKeyPassword}
	case a.SASLMechanism != "":
		keys = []string{render.SecretKeyPassword}
	case a.ClientCertificate:
		keys = []string{render.SecretKeyUserCert, render.SecretKeyUserKey}
	}
	data, err := read(a.Secret, keys...)
	if err != nil {
		return c, err
	}
	if c.TLS != nil && a.CASecret == a.Secret {
		c.TLS.CA = data[render.SecretKeyCA] // optional: the system's roots without it
	}
	if a.ClientCertificate && c.TLS != nil {
		c.TLS.Cert, c.TLS.Key = data[render.SecretKeyUserCert], data[render.SecretKeyUserKey]
	}
	if a.SASLMechanism != "" {
		user := a.Username
		if user == "" {
			user = strings.TrimSpace(string(data[render.SecretKeyUsername]))
		}
		c.SASL = &topics.SASL{Mechanism: a.SASLMechanism, User: user, Password: strings.TrimSpace(string(data[render.SecretKeyPassword]))}
	}
	return c, nil
}

// adminRefused reports whether err is the admin client's credentials failing: a Secret missing,
// or the broker refusing to authenticate or authorize the operator's user. Retrying does not
// help; the user must fix the Secret or the ACLs.
func adminRefused(err error) bool {
	for _, target := range []error{
		errAdminCredentials,
		kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism, kerr.IllegalSaslState,
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
