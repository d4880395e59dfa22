-- JSON values are kept as the text the engine wrote (json) instead of as a parsed tree
-- (jsonb). No query looks inside them: every read takes their text, and the trace's hashes
-- are computed by the engine over its own canonical form, so the parsed form bought
-- nothing. It cost about twice the parse of plain json on every value written (a step
-- writes about eleven), and jsonb refuses the escape \u0000, which a client may send in
-- its data: such a step failed as a database error. Rewrites both tables once.
--
-- The trace's foreign key to instances goes too. Its check ran per trace row, took a key
-- share lock on the instance row the same transaction had just written, and logged that
-- lock: a batch's trace rows took over three times as long to insert with it. Every
-- trace row is written in the same statement or transaction as its instance (created,
-- or updated at its previous version), and no instance is ever deleted;
-- opsflow_write_steps and the step-by-step path check the first.
ALTER TABLE trace DROP CONSTRAINT trace_instance_id_fkey;

ALTER TABLE instances
    ALTER COLUMN votes DROP DEFAULT,
    ALTER COLUMN slas DROP DEFAULT,
    ALTER COLUMN timers DROP DEFAULT;
ALTER TABLE instances
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN votes TYPE json USING votes::json,
    ALTER COLUMN slas TYPE json USING slas::json,
    ALTER COLUMN timers TYPE json USING timers::json;
ALTER TABLE instances
    ALTER COLUMN votes SET DEFAULT '[]',
    ALTER COLUMN slas SET DEFAULT '[]',
    ALTER COLUMN timers SET DEFAULT '[]';

ALTER TABLE trace
    ALTER COLUMN roles TYPE json USING roles::json,
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN detail TYPE json USING detail::json;

-- opsflow_write_rows with json arrays; the older functions stay, for nodes that have not
-- been upgraded yet (their jsonb values are stored as text on the way in).
CREATE FUNCTION opsflow_write_steps(
    a_actor text[], a_key text[], a_fingerprint text[], a_status integer[],
    a_response text[], a_created_at bigint[], replaces_before bigint,
    i_id text[], i_process text[], i_definition_hash text[], i_state text[],
    i_data json[], i_version bigint[], i_previous bigint[], i_created_by text[],
    i_created_at bigint[], i_updated_at bigint[], i_votes json[], i_slas json[],
    i_timers json[], i_next_due_at bigint[], i_trace_hash text[],
    l_clear_from text[], l_clear_relation text[],
    l_add_from text[], l_add_relation text[], l_add_to text[],
    t_instance_id text[], t_seq bigint[], t_at bigint[], t_actor text[], t_roles json[],
    t_channel text[], t_kind text[], t_transition text[], t_from_state text[],
    t_to_state text[], t_data json[], t_detail json[], t_comment text[],
    t_definition_hash text[], t_prev_hash text[], t_hash text[]
) RETURNS void LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    done bigint;
    updates bigint;
BEGIN
    IF cardinality(a_actor) > 0 THEN
        INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at)
        SELECT * FROM unnest(a_actor, a_key, a_fingerprint, a_status, a_response, a_created_at)
        ON CONFLICT (actor, key) DO UPDATE SET fingerprint = excluded.fingerprint,
            status = excluded.status, response = excluded.response,
            created_at = excluded.created_at
        WHERE idempotency_keys.created_at < replaces_before;
        GET DIAGNOSTICS done = ROW_COUNT;
        IF done <> cardinality(a_actor) THEN
            RAISE EXCEPTION 'opsflow_batch_refused: answers' USING ERRCODE = 'P0001';
        END IF;
    END IF;

    updates := cardinality(array_remove(i_previous, NULL));
    IF cardinality(i_id) > updates THEN
        INSERT INTO instances (id, process, definition_hash, state, data, version,
            created_by, created_at, updated_at, votes, slas, timers, next_due_at, trace_hash)
        SELECT r.id, r.process, r.definition_hash, r.state, r.data, r.version, r.created_by,
               r.created_at, r.updated_at, r.votes, r.slas, r.timers, r.next_due_at,
               r.trace_hash
        FROM unnest(i_id, i_process, i_definition_hash, i_state, i_data, i_version,
                    i_previous, i_created_by, i_created_at, i_updated_at, i_votes, i_slas,
                    i_timers, i_next_due_at, i_trace_hash)
             AS r(id, process, definition_hash, state, data, version, previous, created_by,
                  created_at, updated_at, votes, slas, timers, next_due_at, trace_hash)
        WHERE r.previous IS NULL;
    END IF;

    IF updates > 0 THEN
        -- Lock in id order first, so that two nodes' batches never wait on each other in a
        -- cycle.
        PERFORM 1 FROM instances i
            JOIN unnest(i_id, i_previous) AS r(id, previous) ON i.id = r.id
            WHERE r.previous IS NOT NULL
            ORDER BY i.id FOR UPDATE OF i;
        UPDATE instances SET definition_hash = r.definition_hash, state = r.state,
            data = r.data, version = r.version, updated_at = r.updated_at, votes = r.votes,
            slas = r.slas, timers = r.timers, next_due_at = r.next_due_at,
            claimed_by = NULL, claimed_until = NULL, trace_hash = r.trace_hash
        FROM unnest(i_id, i_definition_hash, i_state, i_data, i_version, i_previous,
                    i_updated_at, i_votes, i_slas, i_timers, i_next_due_at, i_trace_hash)
             AS r(id, definition_hash, state, data, version, previous, updated_at, votes,
                  slas, timers, next_due_at, trace_hash)
        WHERE r.previous IS NOT NULL AND instances.id = r.id
          AND instances.version = r.previous;
        GET DIAGNOSTICS done = ROW_COUNT;
        IF done <> updates THEN
            RAISE EXCEPTION 'opsflow_batch_refused: instance updates' USING ERRCODE = 'P0001';
        END IF;
    END IF;

    IF cardinality(l_clear_from) > 0 THEN
        DELETE FROM links l USING unnest(l_clear_from, l_clear_relation) AS r(from_id, relation)
        WHERE l.from_id = r.from_id AND l.relation = r.relation;
    END IF;

    IF cardinality(l_add_from) > 0 THEN
        INSERT INTO links (from_id, relation, to_id)
        SELECT * FROM unnest(l_add_from, l_add_relation, l_add_to);
    END IF;

    IF cardinality(t_instance_id) > 0 THEN
        -- In place of the dropped foreign key: a trace row belongs to an instance written
        -- by the same batch (created, or updated at its previous version just above).
        IF NOT t_instance_id <@ i_id THEN
            RAISE EXCEPTION 'opsflow_batch_refused: trace without its instance'
                USING ERRCODE = 'P0001';
        END IF;
        INSERT INTO trace (instance_id, seq, at, actor, roles, channel, kind, transition,
            from_state, to_state, data, detail, comment, definition_hash, prev_hash, hash)
        SELECT * FROM unnest(t_instance_id, t_seq, t_at, t_actor, t_roles, t_channel, t_kind,
                             t_transition, t_from_state, t_to_state, t_data, t_detail,
                             t_comment, t_definition_hash, t_prev_hash, t_hash);
    END IF;
END
$$;
