package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/ingest/event"
)

// Errors callers test for.
var (
	ErrNoUser        = errors.New("no such user")
	ErrUserExists    = errors.New("a user with that username exists")
	ErrNoToken       = errors.New("no such token")
	ErrBadLogin      = errors.New("wrong username or password")
	ErrDisabled      = errors.New("account disabled")
	ErrNoCredentials = errors.New("session or token unknown, expired or revoked")
)

// User is an account.
type User struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	Role        Role      `json:"role"`
	Region      string    `json:"region"`
	Department  string    `json:"department,omitempty"`
	Disabled    bool      `json:"disabled"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Token describes an API token (never its secret, which is shown once).
type Token struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	Name      string    `json:"name"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	Revoked   bool      `json:"revoked"`
}

// store is the SQL behind the service; it works on SQLite and PostgreSQL.
type store struct {
	db *casedb.DB
}

const userCols = "id, username, display_name, role, region, department, disabled, created_at, updated_at"

type scanner interface{ Scan(...any) error }

func scanUser(s scanner, extra ...any) (User, error) {
	var u User
	var role string
	var disabled int
	var created, updated int64
	err := s.Scan(append([]any{&u.ID, &u.Username, &u.DisplayName, &role, &u.Region, &u.Department, &disabled, &created, &updated}, extra...)...)
	u.Role, u.Disabled = Role(role), disabled != 0
	u.CreatedAt, u.UpdatedAt = casedb.FromMillis(created), casedb.FromMillis(updated)
	return u, err
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *store) createUser(ctx context.Context, u User, hash string) (User, error) {
	now := time.Now()
	u.ID = event.NewID().String()
	u.CreatedAt, u.UpdatedAt = now.UTC().Truncate(time.Millisecond), now.UTC().Truncate(time.Millisecond)
	_, err := s.db.Exec(ctx, "INSERT INTO users (id, username, display_name, password_hash, role, region, department, disabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		u.ID, u.Username, u.DisplayName, hash, string(u.Role), u.Region, u.Department, b2i(u.Disabled), casedb.Millis(now), casedb.Millis(now))
	if casedb.IsUniqueViolation(err) {
		return User{}, ErrUserExists
	}
	if err != nil {
		return User{}, fmt.Errorf("insert user: %w", err)
	}
	return u, nil
}

func (s *store) user(ctx context.Context, id string) (User, error) {
	u, err := scanUser(s.db.QueryRow(ctx, "SELECT "+userCols+" FROM users WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNoUser
	}
	return u, err
}

func (s *store) userByName(ctx context.Context, username string) (User, string, error) {
	var hash string
	u, err := scanUser(s.db.QueryRow(ctx, "SELECT "+userCols+", password_hash FROM users WHERE username = ?", username), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", ErrNoUser
	}
	return u, hash, err
}

func (s *store) users(ctx context.Context, scope Scope) ([]User, error) {
	cond, args := scope.SQL("region", "department")
	rows, err := s.db.Query(ctx, "SELECT "+userCols+" FROM users WHERE "+cond+" ORDER BY username", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

func (s *store) updateUser(ctx context.Context, u User) (User, error) {
	now := time.Now()
	res, err := s.db.Exec(ctx, "UPDATE users SET display_name = ?, role = ?, region = ?, department = ?, disabled = ?, updated_at = ? WHERE id = ?",
		u.DisplayName, string(u.Role), u.Region, u.Department, b2i(u.Disabled), casedb.Millis(now), u.ID)
	if err != nil {
		return User{}, fmt.Errorf("update user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return User{}, ErrNoUser
	}
	return s.user(ctx, u.ID)
}

func (s *store) setPassword(ctx context.Context, userID, hash string) error {
	res, err := s.db.Exec(ctx, "UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?", hash, casedb.Millis(time.Now()), userID)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNoUser
	}
	return nil
}

// newSecret returns a random credential with a readable prefix, and the
// hash stored in its place.
func newSecret(prefix string) (secret, hash string) {
	secret = prefix + rand.Text() + rand.Text() // 2 × 128+ bits, base32
	return secret, hashSecret(secret)
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func (s *store) createSession(ctx context.Context, userID string, ttl time.Duration, remote, agent string) (string, time.Time, error) {
	secret, hash := newSecret("")
	now := time.Now()
	exp := now.Add(ttl)
	_, err := s.db.Exec(ctx, "INSERT INTO sessions (token_hash, user_id, created_at, last_seen, expires_at, remote, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
		hash, userID, casedb.Millis(now), casedb.Millis(now), casedb.Millis(exp), truncate(remote, 64), truncate(agent, 256))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("insert session: %w", err)
	}
	return secret, exp, nil
}

// session resolves a session cookie to its user; idle is the longest gap
// allowed since the session was last seen.
func (s *store) session(ctx context.Context, secret string, idle time.Duration) (User, string, time.Time, error) {
	hash := hashSecret(secret)
	var expires, lastSeen int64
	u, err := scanUser(s.db.QueryRow(ctx, "SELECT u.id, u.username, u.display_name, u.role, u.region, u.department, u.disabled, u.created_at, u.updated_at, s.expires_at, s.last_seen FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?", hash), &expires, &lastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", time.Time{}, ErrNoCredentials
	}
	if err != nil {
		return User{}, "", time.Time{}, err
	}
	now := time.Now()
	if now.UnixMilli() >= expires || now.Sub(casedb.FromMillis(lastSeen)) > idle {
		_, _ = s.db.Exec(ctx, "DELETE FROM sessions WHERE token_hash = ?", hash)
		return User{}, "", time.Time{}, ErrNoCredentials
	}
	return u, hash, casedb.FromMillis(lastSeen), nil
}

func (s *store) touchSession(ctx context.Context, hash string) error {
	_, err := s.db.Exec(ctx, "UPDATE sessions SET last_seen = ? WHERE token_hash = ?", casedb.Millis(time.Now()), hash)
	return err
}

func (s *store) deleteSession(ctx context.Context, secret string) error {
	_, err := s.db.Exec(ctx, "DELETE FROM sessions WHERE token_hash = ?", hashSecret(secret))
	return err
}

// deleteSessions ends every session of a user except keepHash's.
func (s *store) deleteSessions(ctx context.Context, userID, keepHash string) error {
	_, err := s.db.Exec(ctx, "DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?", userID, keepHash)
	return err
}

func (s *store) deleteExpiredSessions(ctx context.Context, idle time.Duration) (int64, error) {
	now := time.Now()
	res, err := s.db.Exec(ctx, "DELETE FROM sessions WHERE expires_at <= ? OR last_seen < ?", casedb.Millis(now), casedb.Millis(now.Add(-idle)))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// TokenPrefix starts every API token, so that leaked tokens are easy to
// recognise in code and logs.
const TokenPrefix = "sey_"

func (s *store) createToken(ctx context.Context, userID, name string, ttl time.Duration) (string, Token, error) {
	secret, hash := newSecret(TokenPrefix)
	now := time.Now().UTC().Truncate(time.Millisecond)
	t := Token{ID: event.NewID().String(), UserID: userID, Name: name, Prefix: secret[:len(TokenPrefix)+6], CreatedAt: now}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	_, err := s.db.Exec(ctx, "INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		t.ID, userID, name, hash, t.Prefix, casedb.Millis(now), casedb.Millis(t.ExpiresAt))
	if err != nil {
		return "", Token{}, fmt.Errorf("insert token: %w", err)
	}
	return secret, t, nil
}

const tokenCols = "id, user_id, name, prefix, created_at, expires_at, last_used, revoked"

func scanToken(s scanner) (Token, error) {
	var t Token
	var created, expires, used int64
	var revoked int
	err := s.Scan(&t.ID, &t.UserID, &t.Name, &t.Prefix, &created, &expires, &used, &revoked)
	t.CreatedAt, t.ExpiresAt, t.LastUsed, t.Revoked = casedb.FromMillis(created), casedb.FromMillis(expires), casedb.FromMillis(used), revoked != 0
	return t, err
}

// tokenUser resolves a bearer token to its user.
func (s *store) tokenUser(ctx context.Context, secret string) (User, Token, error) {
	hash := hashSecret(secret)
	row := s.db.QueryRow(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE token_hash = ?", hash)
	t, err := scanToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, Token{}, ErrNoCredentials
	}
	if err != nil {
		return User{}, Token{}, err
	}
	if t.Revoked || (!t.ExpiresAt.IsZero() && time.Now().After(t.ExpiresAt)) {
		return User{}, Token{}, ErrNoCredentials
	}
	u, err := s.user(ctx, t.UserID)
	if errors.Is(err, ErrNoUser) {
		return User{}, Token{}, ErrNoCredentials
	}
	return u, t, err
}

func (s *store) touchToken(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, "UPDATE api_tokens SET last_used = ? WHERE id = ?", casedb.Millis(time.Now()), id)
	return err
}

func (s *store) token(ctx context.Context, id string) (Token, error) {
	t, err := scanToken(s.db.QueryRow(ctx, "SELECT "+tokenCols+" FROM api_tokens WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, ErrNoToken
	}
	return t, err
}

func (s *store) tokens(ctx context.Context, userID string) ([]Token, error) {
	q := "SELECT " + tokenCols + " FROM api_tokens"
	var args []any
	if userID != "" {
		q += " WHERE user_id = ?"
		args = append(args, userID)
	}
	rows, err := s.db.Query(ctx, q+" ORDER BY created_at DESC", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *store) revokeToken(ctx context.Context, id string) error {
	res, err := s.db.Exec(ctx, "UPDATE api_tokens SET revoked = 1 WHERE id = ?", id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNoToken
	}
	return nil
}

func (s *store) revokeUserTokens(ctx context.Context, userID string) error {
	_, err := s.db.Exec(ctx, "UPDATE api_tokens SET revoked = 1 WHERE user_id = ?", userID)
	return err
}

// AuditEntry is one security-relevant action.
type AuditEntry struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	Remote string    `json:"remote,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

func (s *store) audit(ctx context.Context, e AuditEntry) error {
	_, err := s.db.Exec(ctx, "INSERT INTO audit_log (id, at, actor, action, target, remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
		event.NewID().String(), casedb.Millis(time.Now()), truncate(e.Actor, 128), e.Action, truncate(e.Target, 128), truncate(e.Remote, 64), truncate(e.Detail, 512))
	return err
}

func (s *store) auditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	rows, err := s.db.Query(ctx, "SELECT id, at, actor, action, target, remote, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT ?", limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &e.Remote, &e.Detail); err != nil {
			return nil, err
		}
		e.At = casedb.FromMillis(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
