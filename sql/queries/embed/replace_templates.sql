-- The learned set replaces the stored one (staged_templates: every column, learned_at kept for unchanged groups).
DELETE FROM prompt_templates;
INSERT INTO prompt_templates (template_group, template_id, prefix, suffix, n_prompts, learned_at)
SELECT template_group, template_id, prefix, suffix, n_prompts, learned_at FROM staged_templates;
