-- The emails table: the fields people query as columns, the whole email as jsonb.
CREATE OR REPLACE FUNCTION mailstream_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN value::timestamptz;
EXCEPTION WHEN others THEN
  RETURN NULL;  -- a malformed Date header must not refuse the whole email
END;
$$;

CREATE TABLE IF NOT EXISTS emails (
  idempotency_key  text PRIMARY KEY,
  account          text NOT NULL,
  mailbox          text NOT NULL,
  uid_validity     text,
  uid              bigint,
  message_id       text,
  from_address     text,
  to_addresses     text[] NOT NULL DEFAULT '{}',
  subject          text,
  sent_at          timestamptz,
  internal_date    timestamptz,
  size_bytes       bigint,
  attachment_count integer NOT NULL DEFAULT 0,
  ingested_at      timestamptz,
  delivered_at     timestamptz NOT NULL DEFAULT now(),
  stream_entry_id  text NOT NULL,
  email            jsonb NOT NULL
);

CREATE INDEX IF NOT EXISTS emails_account_mailbox_idx ON emails (account, mailbox);
CREATE INDEX IF NOT EXISTS emails_message_id_idx ON emails (message_id);
CREATE INDEX IF NOT EXISTS emails_from_idx ON emails (from_address);
CREATE INDEX IF NOT EXISTS emails_sent_at_idx ON emails (sent_at);
