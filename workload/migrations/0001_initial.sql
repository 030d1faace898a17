-- Livepatch server schema, version 1.
-- Naming follows the product we replace where its tables are known (patch, patch_file,
-- patch_file_tier, kernel, patch_file_data); every secret is stored as a SHA-256 hash.

-- Tiers in promotion order. `position` is unique but deferrable so a tier can be inserted in
-- the middle by shifting the others in one statement.
CREATE TABLE tier (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    position    integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tier_position_unique UNIQUE (position) DEFERRABLE INITIALLY IMMEDIATE
);
INSERT INTO tier (name, position) VALUES ('edge', 1), ('beta', 2), ('candidate', 3), ('stable', 4);

CREATE TABLE kernel (
    id            bigserial PRIMARY KEY,
    version       text NOT NULL,   -- 5.15.0-107.117
    flavour       text NOT NULL,   -- generic
    architecture  text NOT NULL,   -- amd64
    UNIQUE (version, flavour, architecture)
);

-- A patch version (e.g. 107.1) groups the files built for every kernel and architecture; the
-- blocklist applies to the version as a whole.
CREATE TABLE patch (
    version           text PRIMARY KEY,
    major             integer NOT NULL,
    minor             integer NOT NULL,
    blocklisted       boolean NOT NULL DEFAULT false,
    blocklist_reason  text,
    blocklisted_at    timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE patch_file (
    id             bigserial PRIMARY KEY,
    filename       text NOT NULL UNIQUE,
    patch_version  text NOT NULL REFERENCES patch (version),
    kernel_id      bigint NOT NULL REFERENCES kernel (id),
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size           bigint NOT NULL CHECK (size >= 0),
    released       timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX patch_file_kernel_idx ON patch_file (kernel_id);
CREATE INDEX patch_file_version_idx ON patch_file (patch_version);

-- Which tiers hold which files. A sync with sync-tiers mirrors rows of this table.
CREATE TABLE patch_file_tier (
    tier_id        integer NOT NULL REFERENCES tier (id) ON DELETE CASCADE,
    patch_file_id  bigint NOT NULL REFERENCES patch_file (id) ON DELETE CASCADE,
    placed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tier_id, patch_file_id)
);
CREATE INDEX patch_file_tier_file_idx ON patch_file_tier (patch_file_id);

-- PostgreSQL patch storage: each object is a run of chunks. Uploads in progress live under
-- a ".upload-<uuid>" name and are renamed in one statement when complete.
CREATE TABLE patch_file_data (
    filename  text NOT NULL,
    chunk     integer NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (filename, chunk)
);

-- Machine enrolment tokens: `id` is the administrator's free label.
CREATE TABLE auth_token (
    id          text PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    tier_id     integer NOT NULL REFERENCES tier (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);

CREATE TABLE machine (
    id              text PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    tier_id         integer NOT NULL REFERENCES tier (id),
    auth_token_id   text,   -- the label it enrolled with (kept when the token is revoked)
    architecture    text NOT NULL,
    kernel          text NOT NULL,
    hostname        text,
    client_version  text,
    enrolled_at     timestamptz NOT NULL DEFAULT now(),
    last_check_in   timestamptz,
    patch_state     text,
    patch_version   text
);
CREATE INDEX machine_tier_idx ON machine (tier_id, patch_version, patch_state);

-- Tokens that downstream servers sync with, scoped to one tier.
CREATE TABLE sync_token (
    name        text PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    tier_id     integer NOT NULL REFERENCES tier (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);

-- Macaroon root keys: minted with for at most a day, kept until the last token signed with
-- them expires.
CREATE TABLE macaroon_root_key (
    id          uuid PRIMARY KEY,
    root_key    bytea NOT NULL CHECK (length(root_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    mint_until  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- One row per admin login; a token names its session, so a session can be ended.
CREATE TABLE admin_session (
    id           uuid PRIMARY KEY,
    username     text NOT NULL,
    root_key_id  uuid NOT NULL REFERENCES macaroon_root_key (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked      boolean NOT NULL DEFAULT false
);

-- Per-check-in reports (machine-reports.database.enabled); machine ids are HMAC-hashed.
CREATE TABLE machine_report (
    id              bigserial PRIMARY KEY,
    machine_hash    text NOT NULL,
    tier            text NOT NULL,
    architecture    text NOT NULL,
    cpu_model       text,
    kernel          text NOT NULL,
    boot_time       timestamptz,
    uptime_seconds  bigint,
    patch_version   text,
    patch_state     text,
    client_version  text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX machine_report_created_idx ON machine_report (created_at);

-- Server-wide secrets generated once (e.g. the key that hashes machine ids in reports).
CREATE TABLE server_secret (
    name   text PRIMARY KEY,
    value  bytea NOT NULL
);
