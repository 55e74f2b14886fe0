package jetstream_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"

	ajs "github.com/aibatch/aibatch/jetstream"
)

// authCase is one connection attempt against a server that requires some
// authentication method.
type authCase struct {
	name string
	auth ajs.AuthConfig
	// wantErr is nil when the connection must succeed; otherwise it says
	// whether err is the expected refusal.
	wantErr func(error) bool
	// secrets must not appear in any error text.
	secrets []string
}

// isAuthViolation is the server refusing the credentials.
func isAuthViolation(err error) bool { return errors.Is(err, nats.ErrAuthorization) }

// runAuthCases connects to ns with each case's settings, in parallel.
func runAuthCases(t *testing.T, ns *server.Server, cases []authCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := connectWith(ns.ClientURL(), tc.auth)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("connect with %v: %v", tc.auth, err)
			case tc.wantErr != nil && err == nil:
				t.Fatalf("connect with %v succeeded; want it refused", tc.auth)
			case tc.wantErr != nil && !tc.wantErr(err):
				t.Fatalf("connect with %v: got %v; want a different refusal", tc.auth, err)
			}
			if err != nil {
				t.Logf("refused as expected: %v", err)
				assertNoSecret(t, err.Error(), tc.secrets...)
			}
		})
	}
}

// connectWith connects to url with the options auth returns and makes one
// round trip, so a connection the server would drop after CONNECT counts as
// refused.
func connectWith(url string, auth ajs.AuthConfig) error {
	opts, err := auth.Options()
	if err != nil {
		return err
	}
	opts = append(opts, nats.Timeout(5*time.Second), nats.NoReconnect())
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	if _, err := nc.RTT(); err != nil {
		return err
	}
	// The worker needs JetStream in the account it authenticated to.
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = js.AccountInfo(ctx)
	return err
}

// startAuthServer runs an embedded server with opts as the base of its
// options, on a free port, until the test ends.
func startAuthServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := ajs.RunServer(ajs.ServerConfig{Port: -1, StoreDir: t.TempDir(), Options: opts})
	if err != nil {
		t.Fatalf("start embedded NATS server: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

func assertNoSecret(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("text reveals a secret (%d bytes): %s", len(s), text)
		}
	}
}

// secret returns a fresh random secret, different in every run.
func secret(prefix string) string { return prefix + "-" + nuid.Next() }

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return p
}

func TestAuthUserPassword(t *testing.T) {
	t.Parallel()
	user, password := "worker", secret("pw")
	ns := startAuthServer(t, &server.Options{Users: []*server.User{{Username: user, Password: password}}})
	wrong := secret("wrong")
	runAuthCases(t, ns, []authCase{
		{name: "right password", auth: ajs.AuthConfig{User: user, Password: password}},
		{name: "wrong password", auth: ajs.AuthConfig{User: user, Password: wrong}, wantErr: isAuthViolation, secrets: []string{wrong, password}},
		{name: "unknown user", auth: ajs.AuthConfig{User: "nobody", Password: password}, wantErr: isAuthViolation, secrets: []string{password}},
		{name: "no credentials", wantErr: isAuthViolation},
	})
}

func TestAuthToken(t *testing.T) {
	t.Parallel()
	token := secret("tok")
	ns := startAuthServer(t, &server.Options{Authorization: token})
	wrong := secret("wrong")
	runAuthCases(t, ns, []authCase{
		{name: "right token", auth: ajs.AuthConfig{Token: token}},
		{name: "wrong token", auth: ajs.AuthConfig{Token: wrong}, wantErr: isAuthViolation, secrets: []string{wrong, token}},
		{name: "no credentials", wantErr: isAuthViolation},
	})
}

func TestAuthNKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	right, rightSeed := userSeedFile(t, dir, "right.nk")
	_, wrongSeed := userSeedFile(t, dir, "wrong.nk")
	pub, err := right.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ns := startAuthServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	runAuthCases(t, ns, []authCase{
		{name: "right seed", auth: ajs.AuthConfig{NKeySeedFile: filepath.Join(dir, "right.nk")}},
		{name: "seed of another user", auth: ajs.AuthConfig{NKeySeedFile: filepath.Join(dir, "wrong.nk")}, wantErr: isAuthViolation, secrets: []string{wrongSeed, rightSeed}},
		{name: "no credentials", wantErr: isAuthViolation},
	})
}

// userSeedFile writes a new user's nkey seed to dir/name and returns the
// key pair and the seed text.
func userSeedFile(t *testing.T, dir, name string) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, name, seed)
	return kp, string(seed)
}

// operator is a NATS operator, its system account and one account with
// JetStream, as nsc would create them, for a server in operator (JWT) mode.
type operator struct {
	pub        string
	sysPub     string
	sysJWT     string
	accountPub string
	accountJWT string
	account    nkeys.KeyPair
}

// resolver returns an account resolver that knows op's accounts.
func (op operator) resolver(t *testing.T) server.AccountResolver {
	t.Helper()
	r := &server.MemAccResolver{}
	for pub, claims := range map[string]string{op.sysPub: op.sysJWT, op.accountPub: op.accountJWT} {
		if err := r.Store(pub, claims); err != nil {
			t.Fatalf("store account JWT: %v", err)
		}
	}
	return r
}

func newOperator(t *testing.T) operator {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, err := okp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	account := func(jetStream bool) (nkeys.KeyPair, string, string) {
		akp, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		apub, err := akp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		ac := jwt.NewAccountClaims(apub)
		if jetStream {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		if err != nil {
			t.Fatalf("sign account JWT: %v", err)
		}
		return akp, apub, ajwt
	}
	// The server needs a system account in operator mode when JetStream is
	// on; JetStream may not be enabled in it.
	_, sysPub, sysJWT := account(false)
	akp, apub, ajwt := account(true)
	return operator{pub: opub, sysPub: sysPub, sysJWT: sysJWT, accountPub: apub, accountJWT: ajwt, account: akp}
}

// credsFile writes a creds file for a new user of op's account to dir/name
// and returns the user's seed. With seedFrom set, the file carries that
// key's seed instead of the user's own.
func (op operator) credsFile(t *testing.T, dir, name string, seedFrom nkeys.KeyPair) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, err := ukp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ujwt, err := jwt.NewUserClaims(upub).Encode(op.account)
	if err != nil {
		t.Fatalf("sign user JWT: %v", err)
	}
	if seedFrom == nil {
		seedFrom = ukp
	}
	seed, err := seedFrom.Seed()
	if err != nil {
		t.Fatal(err)
	}
	// jwt.FormatUserConfig refuses a seed that is not the JWT's; write the
	// mismatched file by hand.
	creds := fmt.Sprintf("-----BEGIN NATS USER JWT-----\n%s\n------END NATS USER JWT------\n\n"+
		"-----BEGIN USER NKEY SEED-----\n%s\n------END USER NKEY SEED------\n", ujwt, seed)
	writeFile(t, dir, name, []byte(creds))
	return string(seed)
}

func TestAuthCreds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	trusted, untrusted := newOperator(t), newOperator(t)
	ns := startAuthServer(t, &server.Options{
		TrustedKeys:     []string{trusted.pub},
		AccountResolver: trusted.resolver(t),
		SystemAccount:   trusted.sysPub,
	})

	rightSeed := trusted.credsFile(t, dir, "right.creds", nil)
	otherSeed := untrusted.credsFile(t, dir, "untrusted.creds", nil)
	runAuthCases(t, ns, []authCase{
		{name: "user of a trusted account", auth: ajs.AuthConfig{CredsFile: filepath.Join(dir, "right.creds")}},
		{name: "user of an account the server does not know", auth: ajs.AuthConfig{CredsFile: filepath.Join(dir, "untrusted.creds")}, wantErr: isAuthViolation, secrets: []string{otherSeed, rightSeed}},
		{name: "no credentials", wantErr: isAuthViolation},
	})
}

func TestAuthTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t, dir, "ca")
	otherCA := newCA(t, dir, "other-ca")
	serverCert, serverKey := ca.issue(t, dir, "server", true)
	clientCert, clientKey := ca.issue(t, dir, "client", false)
	strangerCert, strangerKey := otherCA.issue(t, dir, "stranger", false)

	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: serverCert, KeyFile: serverKey, CaFile: ca.certPath, Verify: true})
	if err != nil {
		t.Fatalf("server TLS config: %v", err)
	}
	ns := startAuthServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5})

	keyPEM, err := os.ReadFile(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	keyBody := pemBody(t, keyPEM)
	// The handshake fails on either side ("nats: tls error: ...", "remote
	// error: tls: certificate required", a connection closed after the
	// handshake): any TLS failure, but not a bad option or a refused login.
	isTLSRefusal := func(err error) bool {
		return strings.Contains(strings.ToLower(err.Error()), "tls") &&
			!isAuthViolation(err) && !errors.Is(err, ajs.ErrInvalidAuth)
	}
	var unknownCA x509.UnknownAuthorityError
	runAuthCases(t, ns, []authCase{
		{name: "client certificate from the trusted CA", auth: ajs.AuthConfig{TLSCA: ca.certPath, TLSCert: clientCert, TLSKey: clientKey}},
		{name: "client certificate from another CA", auth: ajs.AuthConfig{TLSCA: ca.certPath, TLSCert: strangerCert, TLSKey: strangerKey}, wantErr: isTLSRefusal, secrets: []string{keyBody}},
		{name: "no client certificate", auth: ajs.AuthConfig{TLSCA: ca.certPath}, wantErr: isTLSRefusal},
		{name: "server certificate not from the configured CA", auth: ajs.AuthConfig{TLSCA: otherCA.certPath, TLSCert: clientCert, TLSKey: clientKey},
			wantErr: func(err error) bool { return errors.As(err, &unknownCA) }, secrets: []string{keyBody}},
		{name: "no TLS settings", wantErr: isTLSRefusal},
	})
}

// pemBody returns the base64 text of the first PEM block in data.
func pemBody(t *testing.T, data []byte) string {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM block")
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return lines[1] // the first line of base64: enough to recognise a leak
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certPath string
}

func newCA(t *testing.T, dir, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return testCA{cert: cert, key: key, certPath: p}
}

// issue writes a certificate signed by ca and its key to dir, for a server
// on 127.0.0.1 or for a client, and returns their paths.
func (ca testCA) issue(t *testing.T, dir, name string, forServer bool) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if forServer {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("create certificate %s: %v", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath = writeFile(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPath = writeFile(t, dir, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certPath, keyPath
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAuthConfigValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := writeFile(t, dir, "file", []byte("x"))
	missing := filepath.Join(dir, "missing")
	password, token := secret("pw"), secret("tok")

	tests := []struct {
		name string
		auth ajs.AuthConfig
		want []string // each must appear in the error; none means valid
	}{
		{name: "nothing set", auth: ajs.AuthConfig{}},
		{name: "user and password", auth: ajs.AuthConfig{User: "u", Password: password}},
		{name: "token with mutual TLS", auth: ajs.AuthConfig{Token: token, TLSCA: file, TLSCert: file, TLSKey: file}},
		{name: "client certificate alone", auth: ajs.AuthConfig{TLSCert: file, TLSKey: file}},
		{name: "token and password", auth: ajs.AuthConfig{User: "u", Password: password, Token: token},
			want: []string{"NATS_USER/NATS_PASSWORD", "NATS_TOKEN", "choose one"}},
		{name: "creds and nkey seed", auth: ajs.AuthConfig{CredsFile: file, NKeySeedFile: file},
			want: []string{"NATS_CREDS", "NATS_NKEY_SEED", "choose one"}},
		{name: "creds and token", auth: ajs.AuthConfig{CredsFile: file, Token: token},
			want: []string{"NATS_CREDS", "NATS_TOKEN"}},
		{name: "user without password", auth: ajs.AuthConfig{User: "u"},
			want: []string{"NATS_USER is set without NATS_PASSWORD"}},
		{name: "password without user", auth: ajs.AuthConfig{Password: password},
			want: []string{"NATS_PASSWORD is set without NATS_USER"}},
		{name: "certificate without key", auth: ajs.AuthConfig{TLSCert: file},
			want: []string{"NATS_TLS_CERT is set without NATS_TLS_KEY"}},
		{name: "key without certificate", auth: ajs.AuthConfig{TLSKey: file},
			want: []string{"NATS_TLS_KEY is set without NATS_TLS_CERT"}},
		{name: "creds file missing", auth: ajs.AuthConfig{CredsFile: missing},
			want: []string{"NATS_CREDS=" + missing + ": no such file"}},
		{name: "seed file missing", auth: ajs.AuthConfig{NKeySeedFile: missing},
			want: []string{"NATS_NKEY_SEED=" + missing + ": no such file"}},
		{name: "CA file missing", auth: ajs.AuthConfig{TLSCA: missing},
			want: []string{"NATS_TLS_CA=" + missing + ": no such file"}},
		{name: "certificate and key missing", auth: ajs.AuthConfig{TLSCert: missing, TLSKey: missing},
			want: []string{"NATS_TLS_CERT=" + missing + ": no such file", "NATS_TLS_KEY=" + missing + ": no such file"}},
		{name: "directory instead of a file", auth: ajs.AuthConfig{CredsFile: dir},
			want: []string{"NATS_CREDS=" + dir + ": not a regular file"}},
		{name: "every problem reported", auth: ajs.AuthConfig{Token: token, Password: password, TLSCA: missing},
			want: []string{"choose one", "NATS_PASSWORD is set without NATS_USER", "NATS_TLS_CA="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.auth.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil; want an error mentioning %q", tt.want)
			}
			if !errors.Is(err, ajs.ErrInvalidAuth) {
				t.Errorf("error %v does not wrap ErrInvalidAuth", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			assertNoSecret(t, err.Error(), password, token)
			if _, oerr := tt.auth.Options(); oerr == nil || oerr.Error() != err.Error() {
				t.Errorf("Options error %v; want the Validate error", oerr)
			}
		})
	}
}

func TestAuthConfigOptionsRejectsBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	op := newOperator(t)
	otherUser, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	mismatchedSeed := op.credsFile(t, dir, "mismatched.creds", otherUser)
	accountSeed, err := op.account.Seed()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "account.nk", accountSeed)
	// Garbage that looks like it could hold a secret: none of it may be
	// quoted back.
	garbage := "password=" + secret("garbage") + "\nnot a seed\n"
	writeFile(t, dir, "garbage", []byte(garbage))
	ca := newCA(t, dir, "ca")
	certA, _ := ca.issue(t, dir, "a", false)
	_, keyB := ca.issue(t, dir, "b", false)
	keyBPEM, err := os.ReadFile(keyB)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		auth    ajs.AuthConfig
		want    string
		secrets []string
	}{
		{name: "creds file that is not creds", auth: ajs.AuthConfig{CredsFile: filepath.Join(dir, "garbage")},
			want: "NATS_CREDS=" + filepath.Join(dir, "garbage"), secrets: []string{garbage, "password="}},
		{name: "creds whose seed is another user's", auth: ajs.AuthConfig{CredsFile: filepath.Join(dir, "mismatched.creds")},
			want: "the seed does not belong to the JWT's user", secrets: []string{mismatchedSeed}},
		{name: "seed file that is not a seed", auth: ajs.AuthConfig{NKeySeedFile: filepath.Join(dir, "garbage")},
			want: "NATS_NKEY_SEED=" + filepath.Join(dir, "garbage"), secrets: []string{garbage, "password="}},
		{name: "account seed instead of a user seed", auth: ajs.AuthConfig{NKeySeedFile: filepath.Join(dir, "account.nk")},
			want: "NATS_NKEY_SEED=", secrets: []string{string(accountSeed)}},
		{name: "CA file that is not PEM", auth: ajs.AuthConfig{TLSCA: filepath.Join(dir, "garbage")},
			want: "NATS_TLS_CA=" + filepath.Join(dir, "garbage"), secrets: []string{garbage, "password="}},
		{name: "key of another certificate", auth: ajs.AuthConfig{TLSCert: certA, TLSKey: keyB},
			want: "NATS_TLS_CERT=" + certA, secrets: []string{pemBody(t, keyBPEM)}},
		{name: "key file that is not a key", auth: ajs.AuthConfig{TLSCert: certA, TLSKey: filepath.Join(dir, "garbage")},
			want: "NATS_TLS_KEY=" + filepath.Join(dir, "garbage"), secrets: []string{garbage, "password="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.auth.Validate(); err != nil {
				t.Fatalf("Validate: %v; want nil (the files exist)", err)
			}
			opts, err := tt.auth.Options()
			if err == nil {
				t.Fatalf("Options returned %d options; want an error", len(opts))
			}
			if !errors.Is(err, ajs.ErrInvalidAuth) {
				t.Errorf("error %v does not wrap ErrInvalidAuth", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			assertNoSecret(t, err.Error(), tt.secrets...)
		})
	}
}

func TestAuthConfigNoneConnectsToOpenServer(t *testing.T) {
	t.Parallel()
	ns := startAuthServer(t, nil)
	opts, err := ajs.AuthConfig{}.Options()
	if err != nil || len(opts) != 0 {
		t.Fatalf("Options() = %d options, %v; want none", len(opts), err)
	}
	if err := connectWith(ns.ClientURL(), ajs.AuthConfig{}); err != nil {
		t.Fatalf("connect without authentication: %v", err)
	}
}

func TestAuthConfigStringRedacts(t *testing.T) {
	t.Parallel()
	password, token := secret("pw"), secret("tok")
	tests := []struct {
		name string
		auth ajs.AuthConfig
		want []string
	}{
		{name: "user", auth: ajs.AuthConfig{User: "worker", Password: password, TLSCA: "/etc/nats/ca.pem"},
			want: []string{"auth=user", `NATS_USER="worker"`, "NATS_PASSWORD=[redacted]", `NATS_TLS_CA="/etc/nats/ca.pem"`}},
		{name: "token", auth: ajs.AuthConfig{Token: token},
			want: []string{"auth=token", "NATS_TOKEN=[redacted]"}},
		{name: "creds", auth: ajs.AuthConfig{CredsFile: "/var/run/nats/user.creds"},
			want: []string{"auth=creds", `NATS_CREDS="/var/run/nats/user.creds"`}},
		{name: "conflicting", auth: ajs.AuthConfig{User: "u", Password: password, Token: token},
			want: []string{"NATS_PASSWORD=[redacted]", "NATS_TOKEN=[redacted]"}},
		{name: "none", auth: ajs.AuthConfig{}, want: []string{"auth=none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js, err := json.Marshal(tt.auth)
			if err != nil {
				t.Fatalf("json.Marshal: %v", err)
			}
			nested := struct{ Auth ajs.AuthConfig }{tt.auth}
			outputs := map[string]string{
				"String":      tt.auth.String(),
				"%v":          fmt.Sprintf("%v", tt.auth),
				"%+v":         fmt.Sprintf("%+v", tt.auth),
				"%#v":         fmt.Sprintf("%#v", tt.auth),
				"%s pointer":  fmt.Sprintf("%s", &tt.auth),
				"%+v nested":  fmt.Sprintf("%+v", nested),
				"%#v nested":  fmt.Sprintf("%#v", nested),
				"json":        string(js),
				"json nested": mustJSON(t, nested),
			}
			for how, out := range outputs {
				assertNoSecret(t, out, password, token)
				if how == "json" || how == "json nested" {
					if tt.auth.Password != "" && !strings.Contains(out, `"NATS_PASSWORD":"[redacted]"`) {
						t.Errorf("%s: %s does not show the password as redacted", how, out)
					}
					continue
				}
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("%s: %q does not contain %q", how, out, w)
					}
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	return string(b)
}
