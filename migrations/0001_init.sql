-- 0001_init: the first schema of twostep.
--
-- Rules for every migration file:
-- * forward-only; a released file is never edited, a change is a new NNNN_name.sql;
-- * no BEGIN/COMMIT here: the runner applies each file inside its own BEGIN IMMEDIATE
--   transaction and records the version in schema_version in that same transaction;
-- * all times are Unix seconds (INTEGER), like core::Seconds.
--
-- Tables are STRICT (SQLite >= 3.37; Debian 12 ships 3.40) so a value of the wrong type is an
-- error instead of being stored: a TEXT last_step, for example, would compare greater than every
-- INTEGER and silently break the replay check.

-- The applied schema steps. A table rather than PRAGMA user_version: an administrator can see with
-- plain SQL which steps ran and when, and a partially upgraded database is easy to diagnose. The
-- runner reads MAX(version); a database without this table is at version 0.
CREATE TABLE schema_version (
    version    INTEGER PRIMARY KEY NOT NULL,
    name       TEXT    NOT NULL,
    applied_at INTEGER NOT NULL
) STRICT;

-- Enrolled users. The TOTP secret is sealed (AES-256-GCM, username as associated data) and never
-- stored in the clear.
CREATE TABLE users (
    username      TEXT    PRIMARY KEY NOT NULL,
    sealed_secret BLOB    NOT NULL,
    issuer        TEXT    NOT NULL,
    algorithm     TEXT    NOT NULL,  -- "SHA1", "SHA256", "SHA512" (checked when read)
    digits        INTEGER NOT NULL CHECK (digits IN (6, 8)),
    period        INTEGER NOT NULL CHECK (period BETWEEN 1 AND 3600),
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'disabled')),
    last_step     INTEGER,           -- newest accepted time step (replay protection); NULL = none
    failures      INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    lockouts      INTEGER NOT NULL DEFAULT 0 CHECK (lockouts >= 0),
    locked_until  INTEGER,
    grant_until   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- For countLocked() on /metrics.
CREATE INDEX users_locked_until ON users (locked_until) WHERE locked_until IS NOT NULL;

-- Unused recovery codes as "salt$hash" (see core/RecoveryCodes.hpp). A code is deleted when it is
-- used (the audit log records the use), so every row here is still valid.
CREATE TABLE recovery_codes (
    id         INTEGER PRIMARY KEY NOT NULL,
    username   TEXT    NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
    hash       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX recovery_codes_username ON recovery_codes (username);

-- Every decision except exempt ones (never a code). username is not a foreign key: the history of
-- a removed user stays. AUTOINCREMENT keeps ids increasing even after old rows are pruned.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    time        INTEGER NOT NULL,
    username    TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    resource    TEXT    NOT NULL DEFAULT '',
    subresource TEXT    NOT NULL DEFAULT '',
    namespace   TEXT    NOT NULL DEFAULT '',
    name        TEXT    NOT NULL DEFAULT '',
    decision    TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    uid         TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX audit_events_username_time ON audit_events (username, time);
CREATE INDEX audit_events_time ON audit_events (time);

-- Database-wide settings, e.g. key_fingerprint: the fingerprint of the master key the secrets are
-- sealed with, so a wrong key is refused before any secret is opened.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
