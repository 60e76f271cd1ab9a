package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sharpeye/alerts/casedb"
	"sharpeye/configs/conf"
	"sharpeye/console/api"
)

// Config is the auth section of the configuration.
type Config struct {
	// SessionTTL is the longest a browser session lasts.
	SessionTTL conf.Duration `yaml:"session_ttl"`
	// SessionIdle ends a session unused for this long.
	SessionIdle conf.Duration `yaml:"session_idle"`
	// CookieName names the session cookie.
	CookieName string `yaml:"cookie_name"`
	// CookieSecure is auto (Secure when the listener serves TLS), always
	// (behind a TLS-terminating proxy) or never.
	CookieSecure string `yaml:"cookie_secure"`
	// LoginPerMinute and LoginBurst limit login attempts per username; each
	// client address may make four times as many.
	LoginPerMinute float64 `yaml:"login_per_minute"`
	LoginBurst     int     `yaml:"login_burst"`
	// MinPasswordLength is enforced when passwords are set.
	MinPasswordLength int `yaml:"min_password_length"`
	// TrustedOrigins may send cookie-authenticated state-changing requests
	// from another origin (e.g. https://wall.example.org); same-origin
	// requests are always allowed.
	TrustedOrigins []string `yaml:"trusted_origins"`
	// TrustProxy takes the client address from X-Forwarded-For (set only
	// behind a proxy that overwrites that header).
	TrustProxy bool `yaml:"trust_proxy"`
	// TokenMaxTTL bounds how long an API token may live; 0 allows tokens
	// that never expire.
	TokenMaxTTL conf.Duration `yaml:"token_max_ttl"`
}

// Defaults returns the compiled defaults.
func Defaults() Config {
	return Config{
		SessionTTL:        conf.Duration(24 * time.Hour),
		SessionIdle:       conf.Duration(8 * time.Hour),
		CookieName:        "sharpeye_session",
		CookieSecure:      "auto",
		LoginPerMinute:    5,
		LoginBurst:        5,
		MinPasswordLength: 10,
		TrustedOrigins:    []string{},
	}
}

// Validate implements conf.Validator.
func (c *Config) Validate(v *conf.V) {
	if c.SessionTTL.D() < time.Minute {
		v.Errorf("session_ttl", "must be at least 1m")
	}
	if c.SessionIdle.D() < time.Minute || c.SessionIdle.D() > c.SessionTTL.D() {
		v.Errorf("session_idle", "must be at least 1m and at most session_ttl")
	}
	if c.CookieName == "" || strings.ContainsAny(c.CookieName, " ;,=\t\r\n") {
		v.Errorf("cookie_name", "must be a non-empty cookie name")
	}
	switch c.CookieSecure {
	case "auto", "always", "never":
	default:
		v.Errorf("cookie_secure", "must be auto, always or never")
	}
	if c.LoginPerMinute <= 0 || math.IsInf(c.LoginPerMinute, 0) || math.IsNaN(c.LoginPerMinute) {
		v.Errorf("login_per_minute", "must be positive")
	}
	if c.LoginBurst < 1 {
		v.Errorf("login_burst", "must be at least 1")
	}
	if c.MinPasswordLength < 8 || c.MinPasswordLength > 128 {
		v.Errorf("min_password_length", "must be between 8 and 128")
	}
	for i, o := range c.TrustedOrigins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			v.Errorf(fmt.Sprintf("trusted_origins[%d]", i), "must be an origin such as https://wall.example.org")
		}
	}
	if c.TokenMaxTTL.D() < 0 {
		v.Errorf("token_max_ttl", "must not be negative")
	}
}

// Service authenticates requests and serves the login, user and token API.
type Service struct {
	cfg     Config
	tls     bool
	store   store
	log     *slog.Logger
	csrf    *http.CrossOriginProtection
	byName  *limiter
	byAddr  *limiter
	checked verified // password checks of the RTSP re-serve, remembered
	logins  *prometheus.CounterVec
	authn   *prometheus.CounterVec
	touchIv time.Duration
}

// NewService builds the service on an open case database; tls says whether
// the listener serves HTTPS (for the cookie's Secure flag).
func NewService(cfg Config, db *casedb.DB, tls bool, reg prometheus.Registerer, log *slog.Logger) (*Service, error) {
	csrf := http.NewCrossOriginProtection()
	for _, o := range cfg.TrustedOrigins {
		if err := csrf.AddTrustedOrigin(strings.TrimSuffix(o, "/")); err != nil {
			return nil, fmt.Errorf("auth.trusted_origins: %w", err)
		}
	}
	s := &Service{
		cfg:    cfg,
		tls:    tls,
		store:  store{db: db},
		log:    log,
		csrf:   csrf,
		byName: newLimiter(cfg.LoginPerMinute, cfg.LoginBurst, 10000),
		byAddr: newLimiter(4*cfg.LoginPerMinute, 4*cfg.LoginBurst, 10000),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_auth_logins_total",
			Help: "Login attempts by result (ok, bad_credentials, disabled, rate_limited, invalid).",
		}, []string{"result"}),
		authn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sharpeye_auth_requests_total",
			Help: "Authentication of API requests by method (session, token, none) and result (ok, refused).",
		}, []string{"via", "result"}),
		touchIv: time.Minute,
	}
	reg.MustRegister(s.logins, s.authn)
	return s, nil
}

// Run sweeps expired sessions until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := s.store.deleteExpiredSessions(ctx, s.cfg.SessionIdle.D()); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep expired sessions", "err", err)
		} else if n > 0 {
			s.log.Debug("expired sessions swept", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Authenticate implements api.Authenticator: a bearer token, or else the
// session cookie (whose state-changing requests must come from this origin
// or a trusted one).
func (s *Service) Authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			s.authn.WithLabelValues("token", "refused").Inc()
			return nil, s.unauthenticated(w, "the Authorization header must be 'Bearer <token>'")
		}
		u, t, err := s.store.tokenUser(ctx, strings.TrimSpace(tok))
		if err != nil {
			s.authn.WithLabelValues("token", "refused").Inc()
			if errors.Is(err, ErrNoCredentials) {
				return nil, s.unauthenticated(w, "the API token is unknown, expired or revoked")
			}
			return nil, fmt.Errorf("look up token: %w", err)
		}
		if u.Disabled {
			s.authn.WithLabelValues("token", "refused").Inc()
			return nil, s.unauthenticated(w, "the token's account is disabled")
		}
		if time.Since(t.LastUsed) > s.touchIv {
			if err := s.store.touchToken(ctx, t.ID); err != nil {
				s.log.Warn("record token use", "token", t.Prefix, "err", err)
			}
		}
		s.authn.WithLabelValues("token", "ok").Inc()
		return r.WithContext(WithPrincipal(ctx, principal(u, "token", t.ID))), nil
	}
	c, err := r.Cookie(s.cfg.CookieName)
	if err != nil || c.Value == "" {
		s.authn.WithLabelValues("none", "refused").Inc()
		return nil, s.unauthenticated(w, "")
	}
	u, hash, lastSeen, err := s.store.session(ctx, c.Value, s.cfg.SessionIdle.D())
	if err != nil {
		s.authn.WithLabelValues("session", "refused").Inc()
		if errors.Is(err, ErrNoCredentials) {
			s.clearCookie(w, r)
			return nil, s.unauthenticated(w, "your session has ended; log in again")
		}
		return nil, fmt.Errorf("look up session: %w", err)
	}
	if u.Disabled {
		s.authn.WithLabelValues("session", "refused").Inc()
		return nil, s.unauthenticated(w, "your account is disabled")
	}
	if err := s.csrf.Check(r); err != nil {
		s.authn.WithLabelValues("session", "refused").Inc()
		return nil, api.Errorf(http.StatusForbidden, api.CodeForbidden, "cross-origin request refused: a state-changing request with a session cookie must come from this site (add the origin to auth.trusted_origins to allow it)")
	}
	if time.Since(lastSeen) > s.touchIv {
		if err := s.store.touchSession(ctx, hash); err != nil {
			s.log.Warn("record session use", "err", err)
		}
	}
	s.authn.WithLabelValues("session", "ok").Inc()
	return r.WithContext(WithPrincipal(ctx, principal(u, "session", hash[:12]))), nil
}

func (s *Service) unauthenticated(w http.ResponseWriter, msg string) error {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sharpeye"`)
	if msg == "" {
		return api.ErrUnauthenticated
	}
	return &api.Error{Status: http.StatusUnauthorized, Code: api.CodeUnauthenticated, Message: msg}
}

func principal(u User, via, cred string) *Principal {
	return &Principal{UserID: u.ID, Username: u.Username, DisplayName: u.DisplayName, Role: u.Role, Region: u.Region, Department: u.Department, Via: via, CredentialID: cred}
}

// Require wraps h so that only callers with one of roles reach it.
func Require(h api.HandlerFunc, roles ...Role) api.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, ok := FromContext(r.Context())
		if !ok {
			return api.ErrUnauthenticated
		}
		if !p.Is(roles...) {
			names := make([]string, len(roles))
			for i, r := range roles {
				names[i] = string(r)
			}
			return api.Errorf(http.StatusForbidden, api.CodeForbidden, "this needs the role %s; you are %s", strings.Join(names, " or "), p.Role)
		}
		return h(w, r)
	}
}

// RequireHandler is Require for a plain http.Handler (metrics).
func RequireHandler(h http.Handler, roles ...Role) http.Handler {
	f := Require(func(w http.ResponseWriter, r *http.Request) error { h.ServeHTTP(w, r); return nil }, roles...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			api.WriteError(w, err)
		}
	})
}

// clientAddr is the caller's address for rate limiting and the audit log.
func (s *Service) clientAddr(r *http.Request) string {
	if s.cfg.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Service) secureCookie(r *http.Request) bool {
	switch s.cfg.CookieSecure {
	case "always":
		return true
	case "never":
		return false
	}
	return s.tls || r.TLS != nil
}

func (s *Service) setCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.CookieName, Value: value, Path: "/", Expires: expires,
		MaxAge: int(time.Until(expires).Seconds()), HttpOnly: true, Secure: s.secureCookie(r), SameSite: http.SameSiteStrictMode,
	})
}

func (s *Service) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: s.cfg.CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secureCookie(r), SameSite: http.SameSiteStrictMode})
}

// Login checks a username and password and opens a session. It is rate
// limited per username and per client address.
func (s *Service) Login(ctx context.Context, username, password, remote, agent string) (string, User, time.Time, error) {
	now := time.Now()
	if ok, wait := s.byAddr.allow("addr:"+remote, now); !ok {
		s.logins.WithLabelValues("rate_limited").Inc()
		return "", User{}, time.Time{}, rateLimited(wait)
	}
	if ok, wait := s.byName.allow("user:"+strings.ToLower(username), now); !ok {
		s.logins.WithLabelValues("rate_limited").Inc()
		return "", User{}, time.Time{}, rateLimited(wait)
	}
	u, hash, err := s.store.userByName(ctx, username)
	if errors.Is(err, ErrNoUser) {
		hash = dummyHash
	} else if err != nil {
		return "", User{}, time.Time{}, fmt.Errorf("look up user: %w", err)
	}
	match, err := CheckPassword(hash, password)
	if err != nil {
		s.log.Error("stored password hash unreadable", "user", username, "err", err)
	}
	if !match || u.ID == "" {
		s.logins.WithLabelValues("bad_credentials").Inc()
		s.auditf(ctx, username, "login.failed", "", remote, "")
		return "", User{}, time.Time{}, ErrBadLogin
	}
	if u.Disabled {
		s.logins.WithLabelValues("disabled").Inc()
		s.auditf(ctx, username, "login.refused", "", remote, "account disabled")
		return "", User{}, time.Time{}, ErrDisabled
	}
	if u.Role == ServiceAccount {
		s.logins.WithLabelValues("invalid").Inc()
		return "", User{}, time.Time{}, ErrBadLogin
	}
	secret, exp, err := s.store.createSession(ctx, u.ID, s.cfg.SessionTTL.D(), remote, agent)
	if err != nil {
		return "", User{}, time.Time{}, err
	}
	s.logins.WithLabelValues("ok").Inc()
	s.auditf(ctx, username, "login", "", remote, "")
	return secret, u, exp, nil
}

func rateLimited(wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	return &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeRateLimited, Message: fmt.Sprintf("too many login attempts; try again in %d s", secs)}
}

func (s *Service) auditf(ctx context.Context, actor, action, target, remote, detail string) {
	if err := s.store.audit(ctx, AuditEntry{Actor: actor, Action: action, Target: target, Remote: remote, Detail: detail}); err != nil {
		s.log.Warn("write audit log", "action", action, "err", err)
	}
}

// NewUser is what creating a user takes.
type NewUser struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Password    string `json:"password"`
	Role        Role   `json:"role"`
	Region      string `json:"region"`
	Department  string `json:"department"`
}

func (s *Service) checkNewUser(n NewUser) error {
	if err := checkProfile(n); err != nil {
		return err
	}
	if n.Role == ServiceAccount {
		if n.Password != "" {
			return api.BadRequest("password", "service accounts use API tokens, not passwords")
		}
		return nil
	}
	return s.checkPassword(n.Password, "password")
}

// checkProfile checks everything of an account but its password.
func checkProfile(n NewUser) error {
	if !validUsername(n.Username) {
		return api.BadRequest("username", "must be 2-64 characters of letters, digits, '.', '_' or '-'")
	}
	if !validText(n.DisplayName, 128) {
		return api.BadRequest("display_name", "must be at most 128 characters, without control characters")
	}
	if !n.Role.Valid() {
		_, err := ParseRole(string(n.Role))
		return api.BadRequest("role", "%v", err)
	}
	if err := CheckRegion(n.Region); err != nil {
		return api.BadRequest("region", "%v", err)
	}
	if !validText(n.Department, 64) {
		return api.BadRequest("department", "must be at most 64 characters, without control characters")
	}
	return nil
}

func (s *Service) checkPassword(pw, field string) error {
	if len([]rune(pw)) < s.cfg.MinPasswordLength {
		return api.BadRequest(field, "must be at least %d characters", s.cfg.MinPasswordLength)
	}
	if len(pw) > 256 {
		return api.BadRequest(field, "must be at most 256 bytes")
	}
	return nil
}

func validUsername(s string) bool {
	if len(s) < 2 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CreateUser adds an account.
func (s *Service) CreateUser(ctx context.Context, n NewUser) (User, error) {
	if err := s.checkNewUser(n); err != nil {
		return User{}, err
	}
	hash := noPassword
	if n.Role != ServiceAccount {
		var err error
		if hash, err = HashPassword(n.Password); err != nil {
			return User{}, err
		}
	}
	return s.store.createUser(ctx, User{Username: n.Username, DisplayName: n.DisplayName, Role: n.Role, Region: n.Region, Department: n.Department}, hash)
}

// EnsureUser creates the user, or if it exists sets its password, role
// and region to those given (the demo's admin).
func (s *Service) EnsureUser(ctx context.Context, n NewUser) (User, error) {
	u, _, err := s.store.userByName(ctx, n.Username)
	if errors.Is(err, ErrNoUser) {
		return s.CreateUser(ctx, n)
	}
	if err != nil {
		return User{}, err
	}
	if err := s.checkNewUser(n); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(n.Password)
	if err != nil {
		return User{}, err
	}
	if err := s.store.setPassword(ctx, u.ID, hash); err != nil {
		return User{}, err
	}
	u.DisplayName, u.Role, u.Region, u.Department, u.Disabled = n.DisplayName, n.Role, n.Region, n.Department, false
	return s.store.updateUser(ctx, u)
}

// CreateToken issues an API token for a user; the secret is returned once.
func (s *Service) CreateToken(ctx context.Context, userID, name string, ttl time.Duration) (string, Token, error) {
	return s.store.createToken(ctx, userID, name, ttl)
}

// Verify checks credentials given outside HTTP (RTSP Basic): secret is an
// API token (the username is then only informative) or the user's own
// password, rate limited like a login. A password that passed is
// remembered for verifiedTTL, still checked against the user's current
// password hash and account, so that a player's every request does not
// count as a login.
func (s *Service) Verify(ctx context.Context, username, secret, remote string) (*Principal, error) {
	if strings.HasPrefix(secret, TokenPrefix) {
		u, t, err := s.store.tokenUser(ctx, secret)
		if err != nil || u.Disabled {
			return nil, ErrNoCredentials
		}
		return principal(u, "token", t.ID), nil
	}
	now := time.Now()
	key := verifiedKey(username, secret)
	if e, ok := s.checked.get(key, now); ok {
		u, hash, err := s.store.userByName(ctx, username)
		if err == nil && u.ID == e.userID && hash == e.hash && !u.Disabled {
			return principal(u, "password", ""), nil
		}
		s.checked.drop(key)
	}
	if ok, _ := s.byAddr.allow("addr:"+remote, now); !ok {
		return nil, ErrBadLogin
	}
	if ok, _ := s.byName.allow("user:"+strings.ToLower(username), now); !ok {
		return nil, ErrBadLogin
	}
	u, hash, err := s.store.userByName(ctx, username)
	if err != nil {
		hash = dummyHash
	}
	if ok, _ := CheckPassword(hash, secret); !ok || u.ID == "" || u.Disabled {
		s.auditf(ctx, username, "rtsp.refused", "", remote, "")
		return nil, ErrBadLogin
	}
	s.checked.put(key, verifiedEntry{userID: u.ID, hash: hash, until: now.Add(verifiedTTL)}, now)
	return principal(u, "password", ""), nil
}

// CheckRTSP implements the RTSP re-serve's Authorizer.
func (s *Service) CheckRTSP(ctx context.Context, username, secret, remote string) (func(region string) bool, error) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	p, err := s.Verify(ctx, username, secret, host)
	if err != nil {
		return nil, err
	}
	return p.Scope().AllowsRegion, nil
}
