package db

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the files in migrations/, in order: version i+1 at index i.
var migrations = loadMigrationsFrom(migrationFS, "migrations/*.sql")

// SchemaVersion is the schema version this package writes: the number of
// its migrations.
func SchemaVersion() int { return len(migrations) }

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	applied_at INTEGER NOT NULL
)`

// schemaVersion returns the highest applied migration, 0 for a new file.
func schemaVersion(ctx context.Context, conn *sql.Conn) (int, error) {
	var v int
	err := conn.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v)
	return v, err
}

// migrate applies migrations 1..upto that the database lacks, each in its
// own immediate transaction together with its schema_migrations row. A
// database with a version above len(migrations) is refused with
// ErrSchemaTooNew.
func migrate(ctx context.Context, conn *sql.Conn, upto int) error {
	if _, err := conn.ExecContext(ctx, createMigrationsTable); err != nil {
		return err
	}
	for _, m := range migrations[:upto] {
		if err := applyMigration(ctx, conn, m); err != nil {
			return err
		}
	}
	v, err := schemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("file has schema version %d, this program knows up to %d: %w", v, len(migrations), ErrSchemaTooNew)
	}
	return nil
}

// applyMigration applies m unless it is already recorded. The check is
// inside the transaction, so two processes opening a new file at once
// apply each migration once.
func applyMigration(ctx context.Context, conn *sql.Conn, m migration) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			conn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	v, err := schemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("file has schema version %d, this program knows up to %d: %w", v, len(migrations), ErrSchemaTooNew)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		_, err = conn.ExecContext(ctx, "COMMIT")
		return err
	}
	if _, err := conn.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
		m.version, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	_, err = conn.ExecContext(ctx, "COMMIT")
	return err
}
