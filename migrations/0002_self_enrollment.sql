-- 0002_self_enrollment: invitations, self-enrolments waiting for their first code, and each
-- user's clock drift (docs/admin-guide.md, "Users enrol themselves").

-- An admin's invitation to enrol oneself (`twostep-enroll invite USER --ttl 24h`). It ends when it
-- expires, when an admin runs `uninvite`, or when the user confirms a new secret. Not a foreign
-- key to users: a new user is invited before they have a row there.
CREATE TABLE invitations (
    username   TEXT    PRIMARY KEY NOT NULL,
    invited_by TEXT    NOT NULL DEFAULT '',  -- the admin's local account, for list and show
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- A secret that `kubectl twostep enroll` made for its user, waiting for the first code. Sealed
-- like users.sealed_secret (the username is the associated data), and kept apart from users, so an
-- enrolled user's current secret keeps working until the new one is confirmed. A second begin
-- replaces the secret but keeps the failure counters, which count wrong confirmation codes of a
-- user who has no row in users yet (an enrolled user's count in users, as for any code).
CREATE TABLE pending_enrollments (
    username      TEXT    PRIMARY KEY NOT NULL,
    sealed_secret BLOB    NOT NULL,
    issuer        TEXT    NOT NULL,
    algorithm     TEXT    NOT NULL,  -- "SHA1", "SHA256", "SHA512" (checked when read)
    digits        INTEGER NOT NULL CHECK (digits IN (6, 8)),
    period        INTEGER NOT NULL CHECK (period BETWEEN 1 AND 3600),
    invited       INTEGER NOT NULL CHECK (invited IN (0, 1)),  -- begun under an invitation
    failures      INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    lockouts      INTEGER NOT NULL DEFAULT 0 CHECK (lockouts >= 0),
    locked_until  INTEGER,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL  -- the invitation's end, or the open-mode time limit
) STRICT;

-- The time-step offset at which the user's codes last verified (a phone whose clock is off):
-- the next check is centred on it. Bounded by the server (core::MaxDriftSteps); the CHECK is a
-- wider safety net.
ALTER TABLE users ADD COLUMN drift_steps INTEGER NOT NULL DEFAULT 0
    CHECK (drift_steps BETWEEN -10 AND 10);
