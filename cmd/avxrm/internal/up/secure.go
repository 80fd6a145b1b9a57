package up

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"

	"github.com/avxrm/rm/cmd/avxrm/internal/devidp"
	"github.com/avxrm/rm/pkg/embedded/natsembed"
	"github.com/nats-io/nats.go"
)

// secure settles auth before anything listens: it starts the dev IdP when
// asked (and points cfg.Auth at it), refuses to serve without auth on a
// non-loopback address unless RM_AUTH=off, says loudly when auth is off,
// and returns the embedded NATS server's users and the options the services
// connect to NATS with.
func (s *System) secure(ctx context.Context, cfg *Config) ([]natsembed.User, []nats.Option, error) {
	if cfg.DevIdP {
		idp, err := devidp.Start(ctx, devidp.Config{Addr: cfg.DevIdPAddr})
		if err != nil {
			return nil, nil, inUse(err, "dev-idp-addr", cfg.DevIdPAddr)
		}
		s.closers = append(s.closers, idp.Close)
		s.DevIdP = idp
		cfg.Auth.Issuer = idp.Issuer
		s.log.Warn("DEVELOPMENT IDENTITY PROVIDER: for local use only", "issuer", idp.Issuer, "token_url", idp.TokenURL, "client_id", idp.ClientID)
		for _, u := range idp.Users {
			s.log.Warn("dev IdP user", "username", u.Username, "password", u.Password, "roles", u.Roles)
		}
	}
	if !cfg.Auth.Enabled() {
		if !loopback(cfg.HTTPAddr) && !cfg.AuthOff {
			return nil, nil, fmt.Errorf("refusing to serve the API on %s without auth: set RM_OIDC_ISSUER, use --dev-idp, listen on 127.0.0.1, or set RM_AUTH=off to accept that anyone who reaches it may do anything", cfg.HTTPAddr)
		}
		s.log.Warn("AUTH IS OFF: anyone who can reach the API may do anything; set RM_OIDC_ISSUER or use --dev-idp", "http_addr", cfg.HTTPAddr)
	}
	if cfg.NATSURL != "" {
		// An external NATS: the credentials given, if any.
		switch {
		case cfg.NATSCreds != "":
			return nil, []nats.Option{nats.UserCredentials(cfg.NATSCreds)}, nil
		case cfg.NATSUser != "":
			return nil, []nats.Option{nats.UserInfo(cfg.NATSUser, cfg.NATSPassword)}, nil
		}
		return nil, nil, nil
	}
	if !cfg.Auth.Enabled() && cfg.NATSUser == "" {
		return nil, nil, nil
	}
	// The embedded NATS takes only the services' account while auth is on.
	user, pass := cfg.NATSUser, cfg.NATSPassword
	if user == "" {
		user = "rm"
	}
	if pass == "" {
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		pass = base64.RawURLEncoding.EncodeToString(b)
	}
	return []natsembed.User{{Name: user, Password: pass}}, []nats.Option{nats.UserInfo(user, pass)}, nil
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
