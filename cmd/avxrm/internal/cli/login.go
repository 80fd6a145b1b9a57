package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/avxrm/rm/sdk/go/avxrm"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"
)

// tokenCache is what login stores under the user's config dir.
type tokenCache struct {
	Issuer       string        `json:"issuer"`
	ClientID     string        `json:"client_id"`
	ClientSecret string        `json:"client_secret,omitempty"`
	Scopes       []string      `json:"scopes,omitempty"`
	Token        *oauth2.Token `json:"token"`
	// Servers are the root URLs the token may be sent to: those that named
	// Issuer in their protected resource metadata (RFC 9728) when asked.
	Servers []string `json:"servers,omitempty"`
}

// cachePath is $XDG_CONFIG_HOME/avxrm/token.json (or the OS's config dir).
func cachePath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "avxrm", "token.json"), nil
}

func saveCache(tc tokenCache) error {
	p, err := cachePath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(tc, "", "  ")
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// cachedTokenSource returns the stored login's token source for server,
// refreshing and storing the token as needed, or nil when nobody has logged
// in or server does not take the login's tokens: a bearer token must not go
// to whatever --server or $RM_SERVER names. A server not asked before is
// asked which issuer it takes (RFC 9728); one that names the login's issuer
// is remembered.
func cachedTokenSource(ctx context.Context, server string, stderr io.Writer) (avxrm.TokenSource, error) {
	p, err := cachePath()
	if err != nil {
		return nil, nil
	}
	tc, err := loadCache(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	root := strings.TrimRight(server, "/")
	if !slices.Contains(tc.Servers, root) {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		iss, err := avxrm.ServerIssuer(qctx, nil, root)
		cancel()
		if err != nil {
			return nil, nil // auth off there, or unreachable: the request says
		}
		if iss != tc.Issuer {
			fmt.Fprintf(stderr, "avxrm: the stored login (issuer %s) is not sent to %s, which takes tokens of %s; 'avxrm login' logs in there\n",
				tc.Issuer, root, iss)
			return nil, nil
		}
		tc.Servers = append(tc.Servers, root)
		rememberServer(ctx, p, tc.Issuer, root)
	}
	return &lazyOIDC{path: p, tc: tc}, nil
}

// rememberServer adds root to the servers of the login stored at p, under
// the cache's lock and into what the file holds then, so as not to undo a
// refresh another avxrm stored meanwhile. At worst root is asked again.
func rememberServer(ctx context.Context, p, issuer, root string) {
	unlock, err := lockFile(ctx, p+".lock")
	if err != nil {
		return
	}
	defer unlock()
	if tc, err := loadCache(p); err == nil && tc.Issuer == issuer && !slices.Contains(tc.Servers, root) {
		tc.Servers = append(tc.Servers, root)
		_ = saveCache(tc)
	}
}

func loadCache(p string) (tokenCache, error) {
	var tc tokenCache
	raw, err := os.ReadFile(p)
	if err != nil {
		return tc, err
	}
	if err := json.Unmarshal(raw, &tc); err != nil || tc.Token == nil {
		return tc, fmt.Errorf("%s is damaged: run 'avxrm login' again", p)
	}
	return tc, nil
}

// lazyOIDC serves the stored access token while it is valid and only then
// asks the issuer for a new one, storing it. A refresh holds the cache's
// lock and first reads the cache again: avxrm commands started together
// then refresh once, one after another, as issuers rotate refresh tokens
// and a command that sent a spent one would be told to log in again.
type lazyOIDC struct {
	path string

	mu sync.Mutex
	tc tokenCache
}

func (l *lazyOIDC) Token(ctx context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tc.Token.Valid() {
		return l.tc.Token.AccessToken, nil
	}
	unlock, err := lockFile(ctx, l.path+".lock")
	if err != nil {
		return "", fmt.Errorf("lock the stored token: %w", err)
	}
	defer unlock()
	stored, err := loadCache(l.path)
	ours := err == nil && stored.Issuer == l.tc.Issuer // not logged out, nor in elsewhere, meanwhile
	if ours {
		for _, s := range stored.Servers {
			if !slices.Contains(l.tc.Servers, s) {
				l.tc.Servers = append(l.tc.Servers, s)
			}
		}
		l.tc.Token = stored.Token // the latest refresh token
		if stored.Token.Valid() {
			return stored.Token.AccessToken, nil // another avxrm refreshed it meanwhile
		}
	}
	o := avxrm.OIDC{Issuer: l.tc.Issuer, ClientID: l.tc.ClientID, ClientSecret: l.tc.ClientSecret, Scopes: l.tc.Scopes}
	src, err := o.Refresh(ctx, l.tc.Token)
	if err != nil {
		return "", issuerError(o.Issuer, err)
	}
	tok, err := src.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("%w (run 'avxrm login' again)", issuerError(l.tc.Issuer, err))
	}
	l.tc.Token = src.Current()
	if !ours {
		return tok, nil
	}
	if err := saveCache(l.tc); err != nil {
		fmt.Fprintf(os.Stderr, "avxrm: the refreshed token could not be stored (%v): the next command may have to log in again\n", err)
	}
	return tok, nil
}

// lockFile creates path exclusively, waiting while another process holds
// it (one left behind for over a minute by a process that died is taken
// over), and returns its release.
func lockFile(ctx context.Context, path string) (func(), error) {
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			_ = f.Close()
			return func() { _ = os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) > time.Minute {
			_ = os.Remove(path)
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func loginCommand(g *globals) *cobra.Command {
	var o avxrm.OIDC
	var username string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login [--issuer <url>] [--client-id <id>] [--username <user> --password-stdin]",
		Short: "Log in to the OIDC issuer the server trusts and store the token",
		Long: "Log in with the password grant (--username; the password is read from stdin), or else with\n" +
			"the device code grant when the issuer offers it. Without --issuer (or $RM_OIDC_ISSUER) the\n" +
			"server is asked which issuer it trusts (/.well-known/oauth-protected-resource, RFC 9728).\n" +
			"The token is stored under the user's config dir (e.g. ~/.config/avxrm/token.json) and\n" +
			"refreshed as needed; 'avxrm logout' removes it.",
		Example: "  avxrm login --username alice --password-stdin < pw.txt\n" +
			"  avxrm login --issuer https://keycloak.example/realms/rm --client-id avxrm --username alice --password-stdin < pw.txt\n" +
			"  avxrm login --issuer https://keycloak.example/realms/rm --client-id avxrm",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var src *avxrm.OAuth2Source
			var err error
			named := o.Issuer == "" // by the server, which then takes its tokens
			if o.Issuer == "" {
				if o.Issuer, err = serverIssuer(ctx, g.server); err != nil {
					return err
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "issuer", o.Issuer, "(named by the server)")
			}
			if username != "" {
				if !passwordStdin {
					return fmt.Errorf("give the password on stdin with --password-stdin")
				}
				pw, rerr := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if rerr != nil && pw == "" {
					return fmt.Errorf("read the password from stdin: %w", rerr)
				}
				src, err = o.Password(ctx, username, strings.TrimRight(pw, "\r\n"))
			} else {
				src, err = o.Device(ctx, func(uri, code string) {
					fmt.Fprintf(cmd.ErrOrStderr(), "Open %s and enter the code %s\n", uri, code)
				})
			}
			if err != nil {
				return issuerError(o.Issuer, err)
			}
			tc := tokenCache{Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Scopes: o.Scopes, Token: src.Current()}
			if named {
				tc.Servers = []string{strings.TrimRight(g.server, "/")}
			}
			if err := saveCache(tc); err != nil {
				return err
			}
			p, _ := cachePath()
			fmt.Fprintln(cmd.OutOrStdout(), "logged in; token stored in", p)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Issuer, "issuer", os.Getenv("RM_OIDC_ISSUER"), "the OIDC issuer URL ($RM_OIDC_ISSUER)")
	f.StringVar(&o.ClientID, "client-id", envOr("RM_OIDC_CLIENT_ID", "avxrm"), "the OIDC client ($RM_OIDC_CLIENT_ID)")
	f.StringVar(&o.ClientSecret, "client-secret", os.Getenv("RM_OIDC_CLIENT_SECRET"), "the client's secret, for a confidential client")
	f.StringVar(&username, "username", "", "log in with the password grant as this user")
	f.BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	f.StringSliceVar(&o.Scopes, "scope", []string{"openid", "offline_access"}, "the scopes to ask for (offline_access gets a refresh token)")
	return cmd
}

// issuerError names the OIDC issuer when it could not be reached, so that
// ExitCode does not blame the server.
func issuerError(issuer string, err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("cannot reach the OIDC issuer at %s (%v); is --issuer, or the issuer the server names, right?", issuer, op.Err)
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return fmt.Errorf("the OIDC issuer at %s did not answer in time", issuer)
	}
	return err
}

// serverIssuer asks the server at server which issuer's tokens it takes.
func serverIssuer(ctx context.Context, server string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	iss, err := avxrm.ServerIssuer(ctx, nil, server)
	if err != nil {
		return "", fmt.Errorf("no --issuer given, and %w", err)
	}
	return iss, nil
}

func logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use: "logout", Short: "Revoke the stored refresh token at the issuer and forget the token", Args: cobra.NoArgs,
		Long: "Ask the OIDC issuer to revoke the stored refresh token (RFC 7009), so that a copy of the\n" +
			"token file is no use afterwards, and remove the file. If the issuer cannot be asked, the\n" +
			"file is removed all the same and a warning says the refresh token stays valid until it expires.",
		Example: "  avxrm logout",
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := cachePath()
			if err != nil {
				return err
			}
			tc, err := loadCache(p)
			if errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintln(cmd.OutOrStdout(), "not logged in")
				return nil
			}
			if err == nil && tc.Token.RefreshToken != "" {
				if rerr := revoke(cmd.Context(), tc); rerr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "avxrm: the refresh token was not revoked (%v); it stays valid until it expires\n", rerr)
				}
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "logged out")
			return nil
		},
	}
}

// revoke asks tc's issuer to revoke its refresh token (RFC 7009), at the
// revocation_endpoint its discovery document names.
func revoke(ctx context.Context, tc tokenCache) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d struct {
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	if err := getJSON(ctx, strings.TrimSuffix(tc.Issuer, "/")+"/.well-known/openid-configuration", &d); err != nil {
		return issuerError(tc.Issuer, err)
	}
	if d.RevocationEndpoint == "" {
		return fmt.Errorf("the issuer %s names no revocation_endpoint", tc.Issuer)
	}
	form := url.Values{"token": {tc.Token.RefreshToken}, "token_type_hint": {"refresh_token"}}
	if tc.ClientSecret == "" {
		form.Set("client_id", tc.ClientID) // a public client names itself
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if tc.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(tc.ClientID), url.QueryEscape(tc.ClientSecret))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return issuerError(tc.Issuer, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("%s answered %s %s", d.RevocationEndpoint, res.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}
