-- Settings administrators change at run time (feature switches, limits). The key is the natural
-- primary key: the application looks settings up by name, and names are stable.

SET LOCAL ROLE app_owner;

CREATE TABLE app.admin_configs (
    key                   text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$'),
    value                 jsonb NOT NULL,
    description           text,
    updated_by_profile_id bigint REFERENCES app.profiles (id) ON DELETE SET NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX admin_configs_updated_by_profile_id_idx ON app.admin_configs (updated_by_profile_id)
    WHERE updated_by_profile_id IS NOT NULL;

CREATE TRIGGER admin_configs_touch_updated_at
    BEFORE UPDATE ON app.admin_configs
    FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

INSERT INTO app.admin_configs (key, value, description) VALUES
    ('sharing.max_recipients', '25', 'How many recipients a single share may name.'),
    ('suggestions.auto_approve_score', '5', 'Score at which a tag suggestion is approved without review.'),
    ('features', '{"ratings": true, "group_sharing": true}', 'Feature switches.');
