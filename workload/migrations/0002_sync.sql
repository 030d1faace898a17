-- Livepatch server schema, version 2: patch sync (issue 5).

-- One row per sync run, kept as the sync report. Counters count only what the run itself
-- downloaded: patches already present are `patches_skipped`, never `patches_done`.
CREATE TABLE sync_run (
    id               uuid PRIMARY KEY,
    trigger          text NOT NULL CHECK (trigger IN ('schedule', 'admin')),
    state            text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    upstream         text NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    patches_total    integer NOT NULL DEFAULT 0,
    patches_done     integer NOT NULL DEFAULT 0,
    patches_skipped  integer NOT NULL DEFAULT 0,
    bytes_total      bigint NOT NULL DEFAULT 0,
    bytes_done       bigint NOT NULL DEFAULT 0,
    error            text,
    -- [{"filename": …, "reason": …}] for files that were refused (hash mismatch, …).
    failures         jsonb NOT NULL DEFAULT '[]',
    -- Things the operator should know that did not fail the run (a tier kept under sync-tiers).
    warnings         jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX sync_run_started_idx ON sync_run (started_at DESC);

-- Who blocklisted a version: an administrator here ('local') or the upstream ('upstream'). A
-- blocklist refresh only ever lifts what the upstream set.
ALTER TABLE patch ADD COLUMN blocklist_source text CHECK (blocklist_source IN ('local', 'upstream'));
UPDATE patch SET blocklist_source = 'local' WHERE blocklisted;

-- Downstream servers that report to this one (as an upstream): the last machine count each sent.
CREATE TABLE downstream_server (
    deployment_id    text PRIMARY KEY,
    sync_token_name  text NOT NULL,
    machine_count    integer NOT NULL CHECK (machine_count >= 0),
    strategy         text NOT NULL CHECK (strategy IN ('unit', 'bucket')),
    last_report_at   timestamptz NOT NULL DEFAULT now()
);

-- The latest state of each machine of a downstream, by obfuscated machine id.
CREATE TABLE downstream_machine_report (
    deployment_id   text NOT NULL REFERENCES downstream_server (deployment_id) ON DELETE CASCADE,
    machine_id      text NOT NULL,
    kernel          text,
    cpu_model       text,
    architecture    text,
    boot_time       timestamptz,
    uptime_seconds  bigint,
    client_version  text,
    patch_state     text,
    patch_version   text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, machine_id)
);
