package jetstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// ErrInvalidAuth is wrapped by the errors AuthConfig.Validate and
// AuthConfig.Options return for settings that cannot work.
var ErrInvalidAuth = errors.New("jetstream: invalid NATS authentication settings")

// AuthConfig says how the worker proves who it is to an external NATS
// server, and which TLS files it uses. Each field is named after the
// environment variable the worker reads it from. The zero value means no
// authentication and no client TLS.
//
// At most one authentication method may be set: a credentials file
// (NATS_CREDS), an nkey seed file (NATS_NKEY_SEED), a user and password
// (NATS_USER and NATS_PASSWORD, both required), or a token (NATS_TOKEN). TLS
// (NATS_TLS_CA, NATS_TLS_CERT with NATS_TLS_KEY) combines with any of them,
// and a client certificate alone is also a way to authenticate to a server
// that maps certificates to users.
//
// Secrets are read from files where NATS allows it, so that a Kubernetes
// Secret can be mounted as files; the password and the token are values.
// String and GoString never show the password or the token, and no error
// this type returns quotes a secret or the contents of a file.
type AuthConfig struct {
	// CredsFile (NATS_CREDS) is the path of a .creds file: a user JWT and
	// the user's nkey seed, as written by `nsc generate creds`, for servers
	// in operator (decentralised JWT) mode.
	CredsFile string
	// NKeySeedFile (NATS_NKEY_SEED) is the path of a file holding a user
	// nkey seed (a line starting with "SU"), not the seed itself, for
	// servers configured with `authorization { users: [{nkey: U...}] }`.
	NKeySeedFile string
	// User (NATS_USER) and Password (NATS_PASSWORD) authenticate with a
	// user name and password; both are required together.
	User     string
	Password string
	// Token (NATS_TOKEN) authenticates with an authorization token.
	Token string
	// TLSCA (NATS_TLS_CA) is the path of a PEM file of CA certificates the
	// server's certificate must chain to. Setting it requires TLS.
	TLSCA string
	// TLSCert (NATS_TLS_CERT) and TLSKey (NATS_TLS_KEY) are the paths of the
	// client certificate and its private key in PEM, for servers that
	// verify clients (mutual TLS); both are required together. Setting them
	// requires TLS.
	TLSCert string
	TLSKey  string
}

// Authentication method names returned by AuthConfig.Method.
const (
	AuthNone  = "none"
	AuthCreds = "creds"
	AuthNKey  = "nkey"
	AuthUser  = "user"
	AuthToken = "token"
)

// Method returns the authentication method the settings select: AuthCreds,
// AuthNKey, AuthUser, AuthToken, or AuthNone. With more than one method set
// it returns the first of that list; Validate reports the conflict.
func (a AuthConfig) Method() string {
	switch {
	case a.CredsFile != "":
		return AuthCreds
	case a.NKeySeedFile != "":
		return AuthNKey
	case a.User != "" || a.Password != "":
		return AuthUser
	case a.Token != "":
		return AuthToken
	}
	return AuthNone
}

// TLS reports whether the settings ask for a TLS connection (a CA file or a
// client certificate).
func (a AuthConfig) TLS() bool {
	return a.TLSCA != "" || a.TLSCert != "" || a.TLSKey != ""
}

// Validate checks the settings without connecting: at most one
// authentication method, NATS_USER with NATS_PASSWORD, NATS_TLS_CERT with
// NATS_TLS_KEY, and every named file exists and is a regular file. It does
// not read the files; Options does. Every problem is reported, each wrapping
// ErrInvalidAuth and naming its environment variable.
func (a AuthConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidAuth}, args...)...))
	}
	var methods []string
	if a.CredsFile != "" {
		methods = append(methods, "NATS_CREDS")
	}
	if a.NKeySeedFile != "" {
		methods = append(methods, "NATS_NKEY_SEED")
	}
	if a.User != "" || a.Password != "" {
		methods = append(methods, "NATS_USER/NATS_PASSWORD")
	}
	if a.Token != "" {
		methods = append(methods, "NATS_TOKEN")
	}
	if len(methods) > 1 {
		bad("%s are all set: choose one authentication method", strings.Join(methods, ", "))
	}
	if a.User != "" && a.Password == "" {
		bad("NATS_USER is set without NATS_PASSWORD: set both, or neither")
	}
	if a.User == "" && a.Password != "" {
		bad("NATS_PASSWORD is set without NATS_USER: set both, or neither")
	}
	if a.TLSCert != "" && a.TLSKey == "" {
		bad("NATS_TLS_CERT is set without NATS_TLS_KEY: a client certificate needs its private key")
	}
	if a.TLSCert == "" && a.TLSKey != "" {
		bad("NATS_TLS_KEY is set without NATS_TLS_CERT: a private key needs its client certificate")
	}
	for _, f := range []struct{ env, path string }{
		{"NATS_CREDS", a.CredsFile},
		{"NATS_NKEY_SEED", a.NKeySeedFile},
		{"NATS_TLS_CA", a.TLSCA},
		{"NATS_TLS_CERT", a.TLSCert},
		{"NATS_TLS_KEY", a.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		st, err := os.Stat(f.path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			bad("%s=%s: no such file", f.env, f.path)
		case err != nil:
			bad("%s=%s: %w", f.env, f.path, err)
		case !st.Mode().IsRegular():
			bad("%s=%s: not a regular file", f.env, f.path)
		}
	}
	return errors.Join(errs...)
}

// Options validates the settings and returns the nats.go connect options
// that apply them: nats.UserCredentials, nats.NkeyOptionFromSeed,
// nats.UserInfo or nats.Token, then nats.RootCAs and nats.ClientCert. It
// reads every file once so that a malformed one fails here, at start-up,
// naming its variable, rather than at the first connect: the creds file must
// hold a user JWT and the matching user seed, the seed file a user seed, the
// CA file PEM certificates, and the certificate and key must be a pair. The
// seeds are not kept in memory: nats.go reads the files again on each
// connect, so a rotated file takes effect on the next reconnect. The zero
// AuthConfig returns no options.
func (a AuthConfig) Options() ([]nats.Option, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	switch a.Method() {
	case AuthCreds:
		if err := checkCreds(a.CredsFile); err != nil {
			return nil, fmt.Errorf("%w: NATS_CREDS=%s: %w", ErrInvalidAuth, a.CredsFile, err)
		}
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case AuthNKey:
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("%w: NATS_NKEY_SEED=%s: want a file holding a user nkey seed (SU...): %w", ErrInvalidAuth, a.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	case AuthUser:
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case AuthToken:
		opts = append(opts, nats.Token(a.Token))
	}
	if a.TLSCA != "" {
		opt := nats.RootCAs(a.TLSCA)
		if err := tryOption(opt); err != nil {
			return nil, fmt.Errorf("%w: NATS_TLS_CA=%s: want PEM CA certificates: %w", ErrInvalidAuth, a.TLSCA, err)
		}
		opts = append(opts, opt)
	}
	if a.TLSCert != "" {
		opt := nats.ClientCert(a.TLSCert, a.TLSKey)
		if err := tryOption(opt); err != nil {
			return nil, fmt.Errorf("%w: NATS_TLS_CERT=%s, NATS_TLS_KEY=%s: want a PEM certificate and its PEM private key: %w", ErrInvalidAuth, a.TLSCert, a.TLSKey, err)
		}
		opts = append(opts, opt)
	}
	return opts, nil
}

// tryOption applies opt to throw-away options: nats.RootCAs and
// nats.ClientCert load their files when applied, so this surfaces a bad file
// before any connection is attempted.
func tryOption(opt nats.Option) error {
	o := nats.GetDefaultOptions()
	return opt(&o)
}

// checkCreds reads a creds file and checks it holds a user JWT and the user
// seed that JWT was issued to. The file's contents are overwritten in memory
// before it returns, and no error quotes them.
func checkCreds(path string) error {
	contents, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read credentials: %w", err)
	}
	defer func() {
		for i := range contents {
			contents[i] = 'x'
		}
	}()
	token, err := jwt.ParseDecoratedJWT(contents)
	if err != nil {
		return fmt.Errorf("want a user JWT: %w", err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return fmt.Errorf("want a user JWT block as written by nsc: %w", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(contents)
	if err != nil {
		return fmt.Errorf("want a user nkey seed block: %w", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("read the public key of the seed: %w", err)
	}
	if pub != claims.Subject {
		return errors.New("the seed does not belong to the JWT's user: the JWT and the seed come from different credentials")
	}
	return nil
}

// redacted stands in for a secret that is set.
const redacted = "[redacted]"

// String describes the settings for logs: the method, the user name and the
// file paths. The password and the token appear as [redacted] when set.
func (a AuthConfig) String() string {
	var b strings.Builder
	b.WriteString("auth=" + a.Method())
	field := func(name, v string) {
		if v != "" {
			b.WriteString(" " + name + "=" + strconv.Quote(v))
		}
	}
	secret := func(name, v string) {
		if v != "" {
			b.WriteString(" " + name + "=" + redacted)
		}
	}
	field("NATS_CREDS", a.CredsFile)
	field("NATS_NKEY_SEED", a.NKeySeedFile)
	field("NATS_USER", a.User)
	secret("NATS_PASSWORD", a.Password)
	secret("NATS_TOKEN", a.Token)
	field("NATS_TLS_CA", a.TLSCA)
	field("NATS_TLS_CERT", a.TLSCert)
	field("NATS_TLS_KEY", a.TLSKey)
	return b.String()
}

// GoString is String for the %#v verb, so that printing the struct with Go
// syntax does not reveal the password or the token either.
func (a AuthConfig) GoString() string {
	return "jetstream.AuthConfig{" + a.String() + "}"
}

// MarshalJSON encodes the settings as String describes them, keyed by
// environment variable, so that a logger that encodes structs as JSON (such
// as zap.Reflect) does not reveal the password or the token either.
func (a AuthConfig) MarshalJSON() ([]byte, error) {
	m := map[string]string{"method": a.Method()}
	set := func(name, v string, secret bool) {
		switch {
		case v == "":
		case secret:
			m[name] = redacted
		default:
			m[name] = v
		}
	}
	set("NATS_CREDS", a.CredsFile, false)
	set("NATS_NKEY_SEED", a.NKeySeedFile, false)
	set("NATS_USER", a.User, false)
	set("NATS_PASSWORD", a.Password, true)
	set("NATS_TOKEN", a.Token, true)
	set("NATS_TLS_CA", a.TLSCA, false)
	set("NATS_TLS_CERT", a.TLSCert, false)
	set("NATS_TLS_KEY", a.TLSKey, false)
	return json.Marshal(m)
}
