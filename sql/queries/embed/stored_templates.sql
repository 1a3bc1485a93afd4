SELECT template_group, template_id, prefix, suffix, n_prompts, learned_at
FROM prompt_templates
ORDER BY template_group;
