// Package auth is who may do what: users with a role, a region and
// optionally a department; browser sessions (an HttpOnly cookie) and API
// tokens for machines (Authorization: Bearer); argon2id password hashes;
// rate-limited login; cross-origin request protection for cookie sessions;
// and the scope (region subtree, department) every other capability uses to
// filter what a caller sees.
//
// Users, sessions and tokens live in the case database. Session cookies and
// tokens are random 256-bit values; only their SHA-256 is stored, so a copy
// of the database does not let anyone in.
package auth
