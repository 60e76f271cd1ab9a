package analytics

import "context"

// ExecSQL runs raw SQL on the read-only connection without CheckSQL: tests
// show that the server refuses writes by itself.
func (q *Questions) ExecSQL(ctx context.Context, query string) (Table, error) {
	return q.execSQL(ctx, query)
}
