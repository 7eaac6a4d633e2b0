-- One row per email and account. The idempotency key names a message (its Message-ID, Gmail id
-- or content hash), not a mailbox's copy of it: the same newsletter in two accounts has one key.
-- Keyed by the key alone, the second account's copy was taken for a redelivery of the first and
-- never stored; keyed by (account, key) each account keeps its own row, and a redelivery within
-- an account is still a no-op.
ALTER TABLE email_attachments ADD COLUMN IF NOT EXISTS account text;
UPDATE email_attachments a SET account = e.account FROM emails e WHERE a.account IS NULL AND a.idempotency_key = e.idempotency_key;
ALTER TABLE email_attachments ALTER COLUMN account SET NOT NULL;

ALTER TABLE email_attachments DROP CONSTRAINT IF EXISTS email_attachments_idempotency_key_fkey;
ALTER TABLE email_attachments DROP CONSTRAINT IF EXISTS email_attachments_pkey;
ALTER TABLE emails DROP CONSTRAINT IF EXISTS emails_pkey;
ALTER TABLE emails ADD CONSTRAINT emails_pkey PRIMARY KEY (account, idempotency_key);
ALTER TABLE email_attachments ADD CONSTRAINT email_attachments_pkey PRIMARY KEY (account, idempotency_key, attachment_index);
ALTER TABLE email_attachments ADD CONSTRAINT email_attachments_email_fkey FOREIGN KEY (account, idempotency_key)
  REFERENCES emails (account, idempotency_key) ON DELETE CASCADE;

-- Finding every account's copy of one message.
CREATE INDEX IF NOT EXISTS emails_idempotency_key_idx ON emails (idempotency_key);
