-- 0002_self_enrollment (PostgreSQL): the same tables, columns, constraints and meaning as
-- migrations/0002_self_enrollment.sql, in PostgreSQL's types.

-- An admin's invitation to enrol oneself (`twostep-enroll invite USER --ttl 24h`).
CREATE TABLE invitations (
    username   TEXT    COLLATE "C" PRIMARY KEY,
    invited_by TEXT    NOT NULL DEFAULT '',
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);

-- A secret that `kubectl twostep enroll` made for its user, waiting for the first code (sealed).
CREATE TABLE pending_enrollments (
    username      TEXT    COLLATE "C" PRIMARY KEY,
    sealed_secret BYTEA   NOT NULL,
    issuer        TEXT    NOT NULL,
    algorithm     TEXT    NOT NULL,
    digits        INTEGER NOT NULL CHECK (digits IN (6, 8)),
    period        INTEGER NOT NULL CHECK (period BETWEEN 1 AND 3600),
    invited       BOOLEAN NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    lockouts      INTEGER NOT NULL DEFAULT 0 CHECK (lockouts >= 0),
    locked_until  BIGINT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);

-- The time-step offset at which the user's codes last verified.
ALTER TABLE users ADD COLUMN drift_steps INTEGER NOT NULL DEFAULT 0
    CHECK (drift_steps BETWEEN -10 AND 10);
