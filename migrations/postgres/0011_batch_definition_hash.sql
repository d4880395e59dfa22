-- A step may move an instance to another version of its process (instance migration):
-- the batch function now writes each updated instance's definition hash too. The rest is
-- as in 0009.
CREATE OR REPLACE FUNCTION opsflow_write_batch(
    answers jsonb, replaces_before bigint, creates jsonb, updates jsonb,
    link_clears jsonb, link_adds jsonb, traces jsonb
) RETURNS void LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    done bigint;
BEGIN
    IF jsonb_array_length(answers) > 0 THEN
        INSERT INTO idempotency_keys (actor, key, fingerprint, status, response, created_at)
        SELECT r->>'actor', r->>'key', r->>'fingerprint', (r->>'status')::integer,
               r->>'response', (r->>'created_at')::bigint
        FROM jsonb_array_elements(answers) AS r
        ON CONFLICT (actor, key) DO UPDATE SET fingerprint = excluded.fingerprint,
            status = excluded.status, response = excluded.response,
            created_at = excluded.created_at
        WHERE idempotency_keys.created_at < replaces_before;
        GET DIAGNOSTICS done = ROW_COUNT;
        IF done <> jsonb_array_length(answers) THEN
            RAISE EXCEPTION 'opsflow_batch_refused: answers' USING ERRCODE = 'P0001';
        END IF;
    END IF;

    IF jsonb_array_length(creates) > 0 THEN
        INSERT INTO instances (id, process, definition_hash, state, data, version,
            created_by, created_at, updated_at, votes, slas, timers, next_due_at, trace_hash)
        SELECT r->>'id', r->>'process', r->>'definition_hash', r->>'state', r->'data',
               (r->>'version')::bigint, r->>'created_by', (r->>'created_at')::bigint,
               (r->>'updated_at')::bigint, r->'votes', r->'slas', r->'timers',
               (r->>'next_due_at')::bigint, r->>'trace_hash'
        FROM jsonb_array_elements(creates) AS r;
    END IF;

    IF jsonb_array_length(updates) > 0 THEN
        -- Lock in id order first, so that two nodes' batches never wait on each other in a
        -- cycle.
        PERFORM 1 FROM instances i
            JOIN jsonb_array_elements(updates) AS r ON i.id = r->>'id'
            ORDER BY i.id FOR UPDATE OF i;
        UPDATE instances SET definition_hash = r->>'definition_hash',
            state = r->>'state', data = r->'data',
            version = (r->>'version')::bigint, updated_at = (r->>'updated_at')::bigint,
            votes = r->'votes', slas = r->'slas', timers = r->'timers',
            next_due_at = (r->>'next_due_at')::bigint, claimed_by = NULL,
            claimed_until = NULL, trace_hash = r->>'trace_hash'
        FROM jsonb_array_elements(updates) AS r
        WHERE instances.id = r->>'id' AND instances.version = (r->>'previous')::bigint;
        GET DIAGNOSTICS done = ROW_COUNT;
        IF done <> jsonb_array_length(updates) THEN
            RAISE EXCEPTION 'opsflow_batch_refused: instance updates' USING ERRCODE = 'P0001';
        END IF;
    END IF;

    IF jsonb_array_length(link_clears) > 0 THEN
        DELETE FROM links l USING jsonb_array_elements(link_clears) AS r
        WHERE l.from_id = r->>'from_id' AND l.relation = r->>'relation';
    END IF;

    IF jsonb_array_length(link_adds) > 0 THEN
        INSERT INTO links (from_id, relation, to_id)
        SELECT r->>'from_id', r->>'relation', r->>'to_id'
        FROM jsonb_array_elements(link_adds) AS r;
    END IF;

    IF jsonb_array_length(traces) > 0 THEN
        INSERT INTO trace (instance_id, seq, at, actor, roles, channel, kind, transition,
            from_state, to_state, data, detail, comment, definition_hash, prev_hash, hash)
        SELECT r->>'instance_id', (r->>'seq')::bigint, (r->>'at')::bigint, r->>'actor',
               r->'roles', r->>'channel', r->>'kind', r->>'transition', r->>'from_state',
               r->>'to_state', r->'data', NULLIF(r->'detail', 'null'), r->>'comment',
               r->>'definition_hash', r->>'prev_hash', r->>'hash'
        FROM jsonb_array_elements(traces) AS r;
    END IF;
END
$$;
