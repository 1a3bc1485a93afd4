-- Template-aware embedding (router.templates, router.representation): every vector records the representation it
-- was computed under (settings key) and the template stripped from its prompt (NULL: none), so a change of either
-- re-embeds exactly the prompts it affects. Vectors stored before are the raw text cut at the encoder's window.
ALTER TABLE embeddings ADD COLUMN representation VARCHAR DEFAULT 'raw+chunks(1)';
ALTER TABLE embeddings ADD COLUMN template_id VARCHAR;

-- The templates learned from the stored prompts at the last embed step, one per group (a prompt's task, else its
-- source) that has one; learned_at changes only when the group's template does.
CREATE TABLE prompt_templates (
    template_group VARCHAR PRIMARY KEY,
    template_id    VARCHAR NOT NULL,         -- router.templates.template_id(prefix, suffix)
    prefix         VARCHAR NOT NULL,         -- '' when only a suffix is shared
    suffix         VARCHAR NOT NULL,         -- '' when only a prefix is shared
    n_prompts      BIGINT NOT NULL,          -- distinct prompts of the group when learned
    learned_at     TIMESTAMP NOT NULL
);
