import { sql, type Kysely } from 'kysely'

/**
 * Refresh-token rotation as one server-side function, so that a refresh is one statement and
 * one round trip, and every decision about a family is taken under its row lock.
 *
 * The caller passes the SHA-256 of the presented token and the hashes of the token's only
 * possible successors (derived from it with a keyed HMAC by the application, one per
 * key-encryption key it knows; the first is the current one). Outcomes:
 *
 *   not_found | wrong_client | revoked | expired | user_disabled | invalid_scope
 *       nothing written (an expired token is refused before anything else is decided about it:
 *       expiry beats both the grace window and reuse detection);
 *   reused          a used token that is not a retry: the family is revoked and audited;
 *   retried         the immediate parent of the family's newest token, within the grace
 *                   window: the same successor again (`successor` = index of the matching
 *                   hash), the family's last use is updated and audited;
 *   retry_mismatch  a retry whose successor none of the given keys derives (the keys changed
 *                   within the window): nothing written, nothing revoked;
 *   rotated         the successor (hash 1) is inserted, the token marked used, audited.
 *
 * All times are the database's (`now()`), so instances with skewed clocks agree.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create function tessera_rotate_refresh_token(
      p_hash bytea,
      p_client_id text,
      p_successor_hashes bytea[],
      p_scope text[],
      p_grace_seconds integer,
      p_idle_seconds integer,
      p_ip text,
      p_user_agent text
    ) returns table (
      outcome text,
      family_id uuid,
      user_id uuid,
      scope text,
      auth_time timestamptz,
      expires_at timestamptz,
      username text,
      roles text[],
      successor integer
    )
    language plpgsql
    as $fn$
    #variable_conflict use_column
    declare
      r record;
      s_id uuid;
      s_hash bytea;
      s_used_at timestamptz;
      s_in_grace boolean;
      idx integer := 1;
    begin
      -- Lock the token and its family. Waiting on either lock re-reads both rows (READ COMMITTED
      -- re-check), so a rotation or revocation that committed meanwhile is what we decide on.
      select t.id as token_id, t.used_at, t.successor_id, t.expires_at <= now() as token_expired,
             f.id, f.client_id, f.user_id, f.scope, f.auth_time, f.expires_at,
             f.revoked_at, f.expires_at <= now() as family_expired,
             u.username, u.roles, u.disabled_at
        into r
        from refresh_token t
        join refresh_token_family f on f.id = t.family_id
        join app_user u on u.id = f.user_id
       where t.token_hash = p_hash
         for update of t, f;
      if not found then
        return query select 'not_found', null::uuid, null::uuid, null::text, null::timestamptz, null::timestamptz, null::text, null::text[], null::integer;
        return;
      end if;

      -- Decide.
      if r.used_at is not null and p_grace_seconds > 0 then
        select c.id, c.token_hash, c.used_at, c.created_at > now() - make_interval(secs => p_grace_seconds)
          into s_id, s_hash, s_used_at, s_in_grace
          from refresh_token c
         where c.id = r.successor_id;
      end if;
      -- Another client's token is refused but not revoked (RFC 6749 §10.4): nobody can end a
      -- victim's session just by presenting its token.
      if r.client_id <> p_client_id then outcome := 'wrong_client';
      elsif r.revoked_at is not null then outcome := 'revoked';
      elsif r.family_expired then outcome := 'expired';
      elsif r.disabled_at is not null then outcome := 'user_disabled';
      -- Expiry beats grace and reuse: an expired token is dead, whatever happened to it before.
      elsif r.token_expired then outcome := 'expired';
      -- A used token is a retry when it is the immediate parent of the family's newest (unused)
      -- token and that successor was issued less than the grace window ago; otherwise it is
      -- reuse (RFC 9700 §4.14.2: a used token presented again means a copy was stolen).
      elsif r.used_at is not null and not (s_id is not null and s_used_at is null and s_in_grace) then outcome := 'reused';
      -- RFC 6749 §6: a refresh may narrow the scope, never widen it.
      elsif p_scope is not null and not (p_scope <@ string_to_array(r.scope, ' ')) then outcome := 'invalid_scope';
      elsif r.used_at is not null then
        idx := array_position(p_successor_hashes, s_hash);
        outcome := case when idx is null then 'retry_mismatch' else 'retried' end;
      else outcome := 'rotated';
      end if;

      -- Act.
      if outcome = 'reused' then
        update refresh_token_family set revoked_at = now(), revoked_reason = 'reuse_detected' where id = r.id;
      elsif outcome = 'rotated' then
        -- Successors inherit the family's absolute expiry.
        insert into refresh_token (family_id, token_hash, parent_id, expires_at)
        values (r.id, p_successor_hashes[1], r.token_id, least(now() + make_interval(secs => p_idle_seconds), r.expires_at))
        returning id into s_id;
        update refresh_token set used_at = now(), successor_id = s_id where id = r.token_id;
      end if;
      if outcome in ('rotated', 'retried') then
        update refresh_token_family
           set last_used_at = now(), last_ip = p_ip, last_user_agent = p_user_agent
         where id = r.id;
      end if;
      if outcome in ('rotated', 'retried', 'reused') then
        insert into audit_event (type, client_id, user_id, family_id, ip, user_agent, detail)
        values ('refresh_token.' || case outcome when 'reused' then 'reuse_detected' else outcome end,
                r.client_id, r.user_id, r.id, p_ip, p_user_agent,
                jsonb_strip_nulls(jsonb_build_object('token_id', r.token_id, 'successor_id', case when outcome = 'reused' then null else s_id end)));
      end if;

      if outcome in ('rotated', 'retried') then
        return query select outcome, r.id, r.user_id, r.scope, r.auth_time, r.expires_at, r.username, r.roles, idx;
      else
        return query select outcome, r.id, r.user_id, null::text, null::timestamptz, null::timestamptz, null::text, null::text[], null::integer;
      end if;
    end
    $fn$
  `.execute(db)
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop function tessera_rotate_refresh_token(bytea, text, bytea[], text[], integer, integer, text, text)`.execute(db)
}
