-- Rows the lower-bound write stored: outcomes, which must equal prompts (one distinct prompt per bench record).
SELECT CASE WHEN (SELECT count(*) FROM prompts) = (SELECT count(*) FROM outcomes)
            THEN (SELECT count(*) FROM outcomes) END;
