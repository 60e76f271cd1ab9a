package auth

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"sharpeye/configs/conf"
	"sharpeye/console/api"
)

// Routes registers the login, account, user and token endpoints.
func (s *Service) Routes(rt *api.Router) {
	rt.Handle("POST", "/api/v1/auth/login", s.handleLogin, api.Public(), api.MaxBody(4<<10))
	rt.Handle("POST", "/api/v1/auth/logout", s.handleLogout)
	rt.Handle("GET", "/api/v1/auth/me", s.handleMe)
	rt.Handle("PUT", "/api/v1/auth/password", s.handleChangePassword, api.MaxBody(4<<10))

	rt.Handle("GET", "/api/v1/users", Require(s.handleListUsers, Admin))
	rt.Handle("POST", "/api/v1/users", Require(s.handleCreateUser, Admin), api.MaxBody(16<<10))
	rt.Handle("GET", "/api/v1/users/{id}", Require(s.handleGetUser, Admin))
	rt.Handle("PATCH", "/api/v1/users/{id}", Require(s.handleUpdateUser, Admin), api.MaxBody(16<<10))
	rt.Handle("DELETE", "/api/v1/users/{id}", Require(s.handleDisableUser, Admin))

	rt.Handle("GET", "/api/v1/tokens", s.handleListTokens)
	rt.Handle("POST", "/api/v1/tokens", s.handleCreateToken, api.MaxBody(4<<10))
	rt.Handle("DELETE", "/api/v1/tokens/{id}", s.handleRevokeToken)

	rt.Handle("GET", "/api/v1/audit", Require(s.handleAudit, Admin))
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	User      User      `json:"user"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Service) handleLogin(w http.ResponseWriter, r *http.Request) error {
	// Login CSRF: a login form posted from another site is refused too.
	if err := s.csrf.Check(r); err != nil {
		return api.Errorf(http.StatusForbidden, api.CodeForbidden, "cross-origin login refused")
	}
	var req loginRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Username == "" || len(req.Username) > 64 {
		return api.BadRequest("username", "required, at most 64 characters")
	}
	if req.Password == "" || len(req.Password) > 256 {
		return api.BadRequest("password", "required, at most 256 bytes")
	}
	secret, u, exp, err := s.Login(r.Context(), req.Username, req.Password, s.clientAddr(r), r.UserAgent())
	switch {
	case errors.Is(err, ErrBadLogin):
		return &api.Error{Status: http.StatusUnauthorized, Code: api.CodeUnauthenticated, Message: "wrong username or password"}
	case errors.Is(err, ErrDisabled):
		return &api.Error{Status: http.StatusForbidden, Code: api.CodeForbidden, Message: "this account is disabled; ask an administrator"}
	case err != nil:
		return err
	}
	s.setCookie(w, r, secret, exp)
	api.WriteJSON(w, http.StatusOK, loginResponse{User: u, ExpiresAt: exp})
	return nil
}

func (s *Service) handleLogout(w http.ResponseWriter, r *http.Request) error {
	if c, err := r.Cookie(s.cfg.CookieName); err == nil && c.Value != "" {
		if err := s.store.deleteSession(r.Context(), c.Value); err != nil {
			return err
		}
	}
	s.clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleMe(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	api.WriteJSON(w, http.StatusOK, p)
	return nil
}

type passwordRequest struct {
	Current string `json:"current"`
	New     string `json:"new"`
}

func (s *Service) handleChangePassword(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	var req passwordRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if err := s.checkPassword(req.New, "new"); err != nil {
		return err
	}
	if ok, _ := s.byName.allow("user:"+p.Username, time.Now()); !ok {
		return rateLimited(time.Minute)
	}
	_, hash, err := s.store.userByName(r.Context(), p.Username)
	if err != nil {
		return err
	}
	if ok, _ := CheckPassword(hash, req.Current); !ok {
		return api.BadRequest("current", "the current password is wrong")
	}
	newHash, err := HashPassword(req.New)
	if err != nil {
		return err
	}
	if err := s.store.setPassword(r.Context(), p.UserID, newHash); err != nil {
		return err
	}
	keep := ""
	if c, err := r.Cookie(s.cfg.CookieName); err == nil && p.Via == "session" {
		keep = hashSecret(c.Value)
	}
	if err := s.store.deleteSessions(r.Context(), p.UserID, keep); err != nil {
		return err
	}
	s.auditf(r.Context(), p.Username, "password.changed", p.Username, s.clientAddr(r), "other sessions ended")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// userInScope loads a user the admin may manage (within the admin's region).
func (s *Service) userInScope(r *http.Request) (User, error) {
	p, _ := FromContext(r.Context())
	u, err := s.store.user(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNoUser) || (err == nil && !p.Scope().AllowsRegion(u.Region)) {
		return User{}, api.NotFound("no user %q in your region", r.PathValue("id"))
	}
	return u, err
}

func (s *Service) handleListUsers(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	users, err := s.store.users(r.Context(), Scope{Region: p.Region})
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"users": users})
	return nil
}

func (s *Service) handleCreateUser(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	var n NewUser
	if err := api.DecodeJSON(r, &n); err != nil {
		return err
	}
	if CheckRegion(n.Region) == nil && !InRegion(n.Region, p.Region) {
		return api.BadRequest("region", "must lie within your own region %q", p.Region)
	}
	u, err := s.CreateUser(r.Context(), n)
	if errors.Is(err, ErrUserExists) {
		return api.Conflict("a user named %q exists", n.Username)
	}
	if err != nil {
		return err
	}
	s.auditf(r.Context(), p.Username, "user.created", u.Username, s.clientAddr(r), string(u.Role)+" in "+u.Region)
	w.Header().Set("Location", "/api/v1/users/"+u.ID)
	api.WriteJSON(w, http.StatusCreated, u)
	return nil
}

func (s *Service) handleGetUser(w http.ResponseWriter, r *http.Request) error {
	u, err := s.userInScope(r)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, u)
	return nil
}

type userPatch struct {
	DisplayName *string `json:"display_name"`
	Role        *Role   `json:"role"`
	Region      *string `json:"region"`
	Department  *string `json:"department"`
	Disabled    *bool   `json:"disabled"`
	Password    *string `json:"password"`
}

func (s *Service) handleUpdateUser(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	u, err := s.userInScope(r)
	if err != nil {
		return err
	}
	var patch userPatch
	if err := api.DecodeJSON(r, &patch); err != nil {
		return err
	}
	n := NewUser{Username: u.Username, DisplayName: u.DisplayName, Role: u.Role, Region: u.Region, Department: u.Department}
	if patch.DisplayName != nil {
		n.DisplayName = *patch.DisplayName
	}
	if patch.Role != nil {
		n.Role = *patch.Role
	}
	if patch.Region != nil {
		n.Region = *patch.Region
		if CheckRegion(n.Region) == nil && !InRegion(n.Region, p.Region) {
			return api.BadRequest("region", "must lie within your own region %q", p.Region)
		}
	}
	if patch.Department != nil {
		n.Department = *patch.Department
	}
	if u.ID == p.UserID && ((patch.Disabled != nil && *patch.Disabled) || (patch.Role != nil && *patch.Role != Admin)) {
		return api.Conflict("you cannot disable yourself or take away your own admin role")
	}
	if err := checkProfile(n); err != nil {
		return err
	}
	if patch.Password != nil {
		if n.Role == ServiceAccount {
			return api.BadRequest("password", "service accounts use API tokens, not passwords")
		}
		if err := s.checkPassword(*patch.Password, "password"); err != nil {
			return err
		}
		hash, err := HashPassword(*patch.Password)
		if err != nil {
			return err
		}
		if err := s.store.setPassword(r.Context(), u.ID, hash); err != nil {
			return err
		}
		if err := s.store.deleteSessions(r.Context(), u.ID, ""); err != nil {
			return err
		}
	}
	u.DisplayName, u.Role, u.Region, u.Department = n.DisplayName, n.Role, n.Region, n.Department
	if patch.Disabled != nil {
		u.Disabled = *patch.Disabled
	}
	if u, err = s.store.updateUser(r.Context(), u); err != nil {
		return err
	}
	if u.Disabled {
		if err := s.endAccess(r, u.ID); err != nil {
			return err
		}
	}
	s.auditf(r.Context(), p.Username, "user.updated", u.Username, s.clientAddr(r), "")
	api.WriteJSON(w, http.StatusOK, u)
	return nil
}

func (s *Service) endAccess(r *http.Request, userID string) error {
	if err := s.store.deleteSessions(r.Context(), userID, ""); err != nil {
		return err
	}
	return s.store.revokeUserTokens(r.Context(), userID)
}

// handleDisableUser disables rather than deletes: cases and the audit log
// keep pointing at the account.
func (s *Service) handleDisableUser(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	u, err := s.userInScope(r)
	if err != nil {
		return err
	}
	if u.ID == p.UserID {
		return api.Conflict("you cannot disable yourself")
	}
	u.Disabled = true
	if _, err := s.store.updateUser(r.Context(), u); err != nil {
		return err
	}
	if err := s.endAccess(r, u.ID); err != nil {
		return err
	}
	s.auditf(r.Context(), p.Username, "user.disabled", u.Username, s.clientAddr(r), "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleListTokens(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	user := p.UserID
	if q := r.URL.Query().Get("user_id"); q != "" && q != p.UserID {
		if !p.Is(Admin) {
			return api.ErrForbidden
		}
		user = q
		if q == "all" {
			user = ""
		}
	}
	tokens, err := s.store.tokens(r.Context(), user)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"tokens": tokens})
	return nil
}

type tokenRequest struct {
	Name      string        `json:"name"`
	ExpiresIn conf.Duration `json:"expires_in"`
	UserID    string        `json:"user_id"`
}

type tokenResponse struct {
	Token
	// Secret is shown only in this answer.
	Secret string `json:"token"`
}

func (s *Service) handleCreateToken(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	var req tokenRequest
	if err := api.DecodeJSON(r, &req); err != nil {
		return err
	}
	if req.Name == "" || !validText(req.Name, 64) {
		return api.BadRequest("name", "required, at most 64 characters (say what the token is for)")
	}
	ttl := req.ExpiresIn.D()
	if ttl < 0 {
		return api.BadRequest("expires_in", "must not be negative")
	}
	if max := s.cfg.TokenMaxTTL.D(); max > 0 && (ttl == 0 || ttl > max) {
		return api.BadRequest("expires_in", "must be set and at most %s", max)
	}
	user := p.UserID
	if req.UserID != "" && req.UserID != p.UserID {
		if !p.Is(Admin) {
			return api.Errorf(http.StatusForbidden, api.CodeForbidden, "only an admin may create tokens for another account")
		}
		u, err := s.store.user(r.Context(), req.UserID)
		if errors.Is(err, ErrNoUser) || (err == nil && !p.Scope().AllowsRegion(u.Region)) {
			return api.BadRequest("user_id", "no such user in your region")
		}
		if err != nil {
			return err
		}
		user = u.ID
	}
	secret, t, err := s.CreateToken(r.Context(), user, req.Name, ttl)
	if err != nil {
		return err
	}
	s.auditf(r.Context(), p.Username, "token.created", t.Prefix, s.clientAddr(r), "for user "+user+": "+t.Name)
	w.Header().Set("Location", "/api/v1/tokens/"+t.ID)
	api.WriteJSON(w, http.StatusCreated, tokenResponse{Token: t, Secret: secret})
	return nil
}

func (s *Service) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	p, _ := FromContext(r.Context())
	t, err := s.store.token(r.Context(), r.PathValue("id"))
	if errors.Is(err, ErrNoToken) || (err == nil && t.UserID != p.UserID && !p.Is(Admin)) {
		return api.NotFound("no token %q", r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	if err := s.store.revokeToken(r.Context(), t.ID); err != nil {
		return err
	}
	s.auditf(r.Context(), p.Username, "token.revoked", t.Prefix, s.clientAddr(r), "")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) handleAudit(w http.ResponseWriter, r *http.Request) error {
	limit := 200
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 || n > 5000 {
			return api.BadRequest("limit", "must be a number from 1 to 5000")
		}
		limit = n
	}
	entries, err := s.store.auditLog(r.Context(), limit)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"entries": entries})
	return nil
}
