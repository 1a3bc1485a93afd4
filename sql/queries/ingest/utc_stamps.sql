-- First pass of timestamp parsing (router.ingest._as_timestamp): ISO-8601 UTC stamps of the form
-- YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z with an hour of 00-23, cast by DuckDB (cheaper than polars' format
-- parser). Anything else is NULL here and left to the polars passes after it (7+ fraction digits, offsets,
-- naive forms; and hour 24, which DuckDB's cast reads as the next midnight but polars refuses).
SELECT _i,
       CASE WHEN regexp_full_match(ts, '\d{4}-\d{2}-\d{2}T([01]\d|2[0-3]):\d{2}:\d{2}(\.\d{1,6})?Z')
            THEN try_cast(ts AS TIMESTAMPTZ) END AS ts
FROM stamps;
