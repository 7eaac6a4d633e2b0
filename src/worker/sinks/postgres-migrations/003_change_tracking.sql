-- Change tracking (TRACK_CHANGES, entry v3): each email's flags and Gmail labels as they are now,
-- where it is now (mailbox, uid_validity, uid move with message.moved) and when it left its
-- mailbox (deleted_at). The *_changed_by columns hold the stream entry id of the event that set
-- them last, so an event retried after a later one cannot put older flags or an older place back.
ALTER TABLE emails ADD COLUMN IF NOT EXISTS flags text[] NOT NULL DEFAULT '{}';
ALTER TABLE emails ADD COLUMN IF NOT EXISTS labels text[];
ALTER TABLE emails ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE emails ADD COLUMN IF NOT EXISTS flags_changed_by text;
ALTER TABLE emails ADD COLUMN IF NOT EXISTS location_changed_by text;

-- A stream entry id (`<ms>-<seq>`) as something PostgreSQL orders the way Redis does.
CREATE OR REPLACE FUNCTION mailstream_entry_order(id text) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY[split_part(id, '-', 1)::bigint, COALESCE(NULLIF(split_part(id, '-', 2), ''), '0')::bigint]
$$;

-- A JSON array of strings as text[] (anything else: empty).
CREATE OR REPLACE FUNCTION mailstream_text_array(value jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT COALESCE(ARRAY(SELECT jsonb_array_elements_text(CASE WHEN jsonb_typeof(value) = 'array' THEN value ELSE '[]'::jsonb END)), '{}')
$$;

-- Rows inserted before: their flags and labels as they were fetched.
UPDATE emails SET flags = mailstream_text_array(email->'flags'),
  labels = CASE WHEN jsonb_typeof(email->'gmail'->'labels') = 'array' THEN mailstream_text_array(email->'gmail'->'labels') END;

CREATE INDEX IF NOT EXISTS emails_deleted_at_idx ON emails (deleted_at) WHERE deleted_at IS NOT NULL;
