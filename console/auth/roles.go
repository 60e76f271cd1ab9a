package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Role is what a user does in the governance centre (see DOMAIN.md).
type Role string

// The roles.
const (
	Admin      Role = "admin"       // users, regions, departments, cameras, devices, rules
	Commander  Role = "commander"   // duty commander 值班指挥长: watches the wall, dispatches
	Clerk      Role = "clerk"       // window clerk 受理员: registers reports
	Analyst    Role = "analyst"     // 研判员: daily/weekly/monthly analysis
	Handler    Role = "handler"     // department handler 承办人
	Supervisor Role = "supervisor"  // 督办员: chases overdue cases
	GridWorker Role = "grid_worker" // 网格员: reports from a grid
	Leader     Role = "leader"      // 领导: red-level risks and reports
	// Service is a machine (an AI box, an analyser, an integration): it
	// authenticates with API tokens only and never logs in to the console.
	ServiceAccount Role = "service"
)

// Roles lists every role.
var Roles = []Role{Admin, Commander, Clerk, Analyst, Handler, Supervisor, GridWorker, Leader, ServiceAccount}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		names := make([]string, len(Roles))
		for i, r := range Roles {
			names[i] = string(r)
		}
		return "", fmt.Errorf("unknown role %q (one of %s)", s, strings.Join(names, ", "))
	}
	return r, nil
}

// MaxRegionDepth bounds a region path: county/township/village/grid and a
// few levels above for cities and provinces.
const MaxRegionDepth = 8

// CheckRegion validates a region path: segments separated by "/", each made
// of letters (any script), digits, "-" and "_". The empty path is the whole
// jurisdiction.
func CheckRegion(path string) error {
	if path == "" {
		return nil
	}
	if len(path) > 256 {
		return fmt.Errorf("region path longer than 256 bytes")
	}
	segs := strings.Split(path, "/")
	if len(segs) > MaxRegionDepth {
		return fmt.Errorf("region path deeper than %d levels", MaxRegionDepth)
	}
	for _, s := range segs {
		if s == "" {
			return fmt.Errorf("region path %q has an empty segment (write county/township/village)", path)
		}
		for _, c := range s {
			if !(unicode.IsLetter(c) || unicode.IsDigit(c) || c == '-' || c == '_') {
				return fmt.Errorf("region path %q: character %q not allowed (letters, digits, - and _ only)", path, c)
			}
		}
	}
	return nil
}

// InRegion reports whether region lies within the subtree rooted at within
// (the empty root contains every region).
func InRegion(region, within string) bool {
	return within == "" || region == within || strings.HasPrefix(region, within+"/")
}

// Principal is the authenticated caller of a request.
type Principal struct {
	UserID      string `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        Role   `json:"role"`
	Region      string `json:"region"`
	Department  string `json:"department,omitempty"`
	// Via is "session" or "token".
	Via string `json:"via"`
	// CredentialID identifies the token (its id) or session (a prefix of its hash).
	CredentialID string `json:"-"`
}

// Is reports whether the caller has one of roles.
func (p *Principal) Is(roles ...Role) bool { return slices.Contains(roles, p.Role) }

// Scope is what the caller may see.
func (p *Principal) Scope() Scope { return Scope{Region: p.Region, Department: p.Department} }

// Scope limits what a caller sees: everything within a region subtree, plus
// whatever is assigned to the caller's department wherever it is.
type Scope struct {
	Region     string
	Department string
}

// Allows reports whether an object in region, assigned to department (may
// be empty), is visible within the scope.
func (s Scope) Allows(region, department string) bool {
	if InRegion(region, s.Region) {
		return true
	}
	return s.Department != "" && department == s.Department
}

// AllowsRegion reports whether an object in region, not assigned to any
// department, is visible.
func (s Scope) AllowsRegion(region string) bool { return InRegion(region, s.Region) }

// SQL returns a WHERE condition (with "?" placeholders) limiting rows to the
// scope, given the region column and the department column (deptCol may be
// empty when the table has none). The condition is "1=1" for the root.
func (s Scope) SQL(regionCol, deptCol string) (string, []any) {
	if s.Region == "" {
		return "1=1", nil
	}
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s.Region) + "/%"
	cond := fmt.Sprintf(`(%s = ? OR %s LIKE ? ESCAPE '\')`, regionCol, regionCol)
	args := []any{s.Region, like}
	if deptCol != "" && s.Department != "" {
		cond = fmt.Sprintf("(%s OR %s = ?)", cond, deptCol)
		args = append(args, s.Department)
	}
	return cond, args
}

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the caller, if the request was authenticated.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(*Principal)
	return p, ok
}

func validText(s string, max int) bool {
	if len(s) > max || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return false
		}
	}
	return true
}
