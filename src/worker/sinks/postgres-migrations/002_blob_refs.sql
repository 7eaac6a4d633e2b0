-- The blob store's refs as columns (entry v2): the raw message on `emails`, and one row per
-- attachment, so a query finds the attachments of an email (or every email carrying a file, by
-- sha256) and fetches their bytes with `mailstream blob get <ref>` or from the store directly.
-- Both are filled by the sink's insert, in the same statement as the email's row.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS raw_ref text;

CREATE TABLE IF NOT EXISTS email_attachments (
  idempotency_key  text NOT NULL REFERENCES emails (idempotency_key) ON DELETE CASCADE,
  attachment_index integer NOT NULL,  -- position in the email's attachments array, from 0
  filename         text,
  content_type     text,
  size_bytes       bigint,
  sha256           text,
  ref              text,              -- null when the producer ran without a blob store
  content_id       text,
  disposition      text,
  PRIMARY KEY (idempotency_key, attachment_index)
);

CREATE INDEX IF NOT EXISTS email_attachments_sha256_idx ON email_attachments (sha256);

-- Emails delivered before this migration: their attachments (metadata, refs when there are) and
-- raw refs from the stored JSON. Rows without either are not touched.
INSERT INTO email_attachments (idempotency_key, attachment_index, filename, content_type, size_bytes, sha256, ref, content_id, disposition)
SELECT e.idempotency_key, (a.ord - 1)::integer, a.att->>'filename', a.att->>'contentType', CASE WHEN jsonb_typeof(a.att->'size') = 'number' THEN (a.att->>'size')::numeric::bigint END,
  a.att->>'sha256', a.att->>'ref', a.att->>'contentId', a.att->>'disposition'
FROM emails e, jsonb_array_elements(e.email->'attachments') WITH ORDINALITY AS a(att, ord)
WHERE jsonb_typeof(e.email->'attachments') = 'array' AND jsonb_array_length(e.email->'attachments') > 0
  AND jsonb_typeof(a.att) = 'object'
ON CONFLICT DO NOTHING;

UPDATE emails SET raw_ref = email->'raw'->>'ref' WHERE raw_ref IS NULL AND email->'raw'->>'ref' IS NOT NULL;
