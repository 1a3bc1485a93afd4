-- Model prices (`routerctl ingest prices FILE`): one row per (model, effective_from). A price is in force from its
-- effective date (00:00 UTC) until the model's next effective date. Routing rescales the champion's cost
-- predictions by current price / price in force in its training data (router.prices, docs/pipeline.md).

CREATE TABLE prices (
    model            VARCHAR NOT NULL,
    effective_from   DATE NOT NULL,
    pricing          VARCHAR NOT NULL,     -- per_call | per_token
    input_per_1k     DOUBLE,               -- USD per 1,000 input tokens (per_token)
    output_per_1k    DOUBLE,               -- USD per 1,000 output tokens (per_token)
    per_call         DOUBLE,               -- USD per call (per_call)
    currency         VARCHAR NOT NULL,     -- USD
    ingest_run_id    VARCHAR NOT NULL,
    ingested_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (model, effective_from)
);

-- Every stored price with the date its successor takes over (NULL: still in force).
CREATE VIEW price_history AS
SELECT model, effective_from,
       lead(effective_from) OVER (PARTITION BY model ORDER BY effective_from) AS superseded_on,
       pricing, input_per_1k, output_per_1k, per_call, currency, ingest_run_id
FROM prices
ORDER BY model, effective_from;
