-- Row-level security on the tables that belong to one profile.
--
-- The application says who is asking at the start of each transaction:
--     SELECT set_config('app.current_profile_id', '42', true);
-- Without it api_user sees none of these rows. readonly (syncs, reporting) reads every row. app_owner
-- owns the tables and is not subject to the policies (RLS is not FORCEd), so migrations can backfill.

SET LOCAL ROLE app_owner;

-- Notifications: a profile reads, marks read and deletes its own. Any signed-in profile may create one
-- for another (sharing a resource notifies its recipient).
ALTER TABLE app.notifications ENABLE ROW LEVEL SECURITY;

CREATE POLICY notifications_select_own ON app.notifications
    FOR SELECT TO api_user
    USING (profile_id = app.current_profile_id());
CREATE POLICY notifications_insert_signed_in ON app.notifications
    FOR INSERT TO api_user
    WITH CHECK (app.current_profile_id() IS NOT NULL);
CREATE POLICY notifications_update_own ON app.notifications
    FOR UPDATE TO api_user
    USING (profile_id = app.current_profile_id())
    WITH CHECK (profile_id = app.current_profile_id());
CREATE POLICY notifications_delete_own ON app.notifications
    FOR DELETE TO api_user
    USING (profile_id = app.current_profile_id());
CREATE POLICY notifications_readonly_all ON app.notifications
    FOR SELECT TO readonly
    USING (true);

-- Shares: the sharer and the recipient (directly or through a group) see a share; only the sharer
-- creates or deletes it; either may update it (the recipient accepts, the sharer revokes).
ALTER TABLE app.resource_shares ENABLE ROW LEVEL SECURITY;

CREATE POLICY resource_shares_select_party ON app.resource_shares
    FOR SELECT TO api_user
    USING (
        app.current_profile_id() IN (shared_by_profile_id, recipient_profile_id)
        OR recipient_group_id IN (
            SELECT m.group_id FROM app.group_members AS m WHERE m.profile_id = app.current_profile_id()
        )
    );
CREATE POLICY resource_shares_insert_as_sharer ON app.resource_shares
    FOR INSERT TO api_user
    WITH CHECK (shared_by_profile_id = app.current_profile_id());
CREATE POLICY resource_shares_update_party ON app.resource_shares
    FOR UPDATE TO api_user
    USING (app.current_profile_id() IN (shared_by_profile_id, recipient_profile_id))
    WITH CHECK (app.current_profile_id() IN (shared_by_profile_id, recipient_profile_id));
CREATE POLICY resource_shares_delete_as_sharer ON app.resource_shares
    FOR DELETE TO api_user
    USING (shared_by_profile_id = app.current_profile_id());
CREATE POLICY resource_shares_readonly_all ON app.resource_shares
    FOR SELECT TO readonly
    USING (true);

-- Votes: private to the voter (app.suggestion_scores publishes the totals).
ALTER TABLE app.suggestion_votes ENABLE ROW LEVEL SECURITY;

CREATE POLICY suggestion_votes_own ON app.suggestion_votes
    FOR ALL TO api_user
    USING (profile_id = app.current_profile_id())
    WITH CHECK (profile_id = app.current_profile_id());
CREATE POLICY suggestion_votes_readonly_all ON app.suggestion_votes
    FOR SELECT TO readonly
    USING (true);
