// PostgreSQL adapter for node-oidc-provider (v9), written to its documented adapter interface:
//   new Adapter(name); upsert(id, payload, expiresIn); find(id); findByUserCode(userCode);
//   findByUid(uid); consume(id); destroy(id); revokeByGrantId(grantId)
// One table for every model, keyed by (id, type) where type is the model name ("RefreshToken",
// "Grant", ...). Durable: every upsert / consume / destroy is its own autocommitted statement on a
// pg Pool, nothing is cached in memory, so a refresh-token rotation is committed before the
// response is written (same contract as Tessera's PostgreSQL store).
import pg from 'pg'

export const TABLE = 'oidc_payload'

// Models whose rows carry a grantId and are deleted by revokeByGrantId (same set as oidc-provider's
// own in-memory adapter).
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
])

/** A pg Pool with the size the benchmark uses for this peer (10 unless told otherwise). */
export function createPool(connectionString, max = 10, extra = {}) {
  const pool = new pg.Pool({ connectionString, max, ...extra })
  // An idle client losing its connection must not crash the process (pg emits 'error' on the pool).
  pool.on('error', () => {})
  return pool
}

/** Creates the table and its secondary indexes if they do not exist. */
export async function ensureSchema(pool) {
  await pool.query(`
    CREATE TABLE IF NOT EXISTS ${TABLE} (
      id          text        NOT NULL,
      type        text        NOT NULL,
      payload     jsonb       NOT NULL,
      grant_id    text,
      user_code   text,
      uid         text,
      expires_at  timestamptz,
      consumed_at timestamptz,
      PRIMARY KEY (id, type)
    )`)
  await pool.query(`CREATE INDEX IF NOT EXISTS ${TABLE}_grant_id_idx ON ${TABLE} (grant_id)`)
  await pool.query(`CREATE INDEX IF NOT EXISTS ${TABLE}_user_code_idx ON ${TABLE} (user_code)`)
  await pool.query(`CREATE INDEX IF NOT EXISTS ${TABLE}_uid_idx ON ${TABLE} (uid)`)
}

/** Empties the table (the benchmark starts every run from a clean store). */
export async function truncate(pool) {
  await pool.query(`TRUNCATE ${TABLE}`)
}

// Named (prepared) statements: parsed once per connection.
const SQL = {
  upsert: {
    name: 'oidc_upsert',
    text: `INSERT INTO ${TABLE} (id, type, payload, grant_id, user_code, uid, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::int IS NULL THEN NULL ELSE now() + make_interval(secs => $7::int) END)
           ON CONFLICT (id, type) DO UPDATE SET
             payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
             uid = excluded.uid, expires_at = excluded.expires_at`,
  },
  find: {
    name: 'oidc_find',
    text: `SELECT payload, extract(epoch FROM consumed_at)::bigint AS consumed FROM ${TABLE}
           WHERE id = $1 AND type = $2 AND (expires_at IS NULL OR expires_at > now())`,
  },
  findByUid: {
    name: 'oidc_find_uid',
    text: `SELECT payload, extract(epoch FROM consumed_at)::bigint AS consumed FROM ${TABLE}
           WHERE uid = $1 AND type = $2 AND (expires_at IS NULL OR expires_at > now()) LIMIT 1`,
  },
  findByUserCode: {
    name: 'oidc_find_user_code',
    text: `SELECT payload, extract(epoch FROM consumed_at)::bigint AS consumed FROM ${TABLE}
           WHERE user_code = $1 AND type = $2 AND (expires_at IS NULL OR expires_at > now()) LIMIT 1`,
  },
  consume: {
    name: 'oidc_consume',
    text: `UPDATE ${TABLE} SET consumed_at = now() WHERE id = $1 AND type = $2`,
  },
  destroy: {
    name: 'oidc_destroy',
    text: `DELETE FROM ${TABLE} WHERE id = $1 AND type = $2`,
  },
  revokeByGrantId: {
    name: 'oidc_revoke_grant',
    text: `DELETE FROM ${TABLE} WHERE grant_id = $1 AND type = $2`,
  },
}

/**
 * Bulk variant of upsert for setup work (pre-minting): rows are { type, id, payload, expiresIn }.
 * One committed multi-row INSERT; same columns and conflict rule as `upsert`.
 */
export async function upsertMany(pool, rows) {
  if (rows.length === 0) return
  const cols = [[], [], [], [], [], [], []]
  for (const { type, id, payload, expiresIn } of rows) {
    cols[0].push(id)
    cols[1].push(type)
    cols[2].push(JSON.stringify(payload))
    cols[3].push(payload.grantId ?? null)
    cols[4].push(payload.userCode ?? null)
    cols[5].push(payload.uid ?? null)
    cols[6].push(typeof expiresIn === 'number' && Number.isFinite(expiresIn) ? Math.ceil(expiresIn) : null)
  }
  await pool.query(
    `INSERT INTO ${TABLE} (id, type, payload, grant_id, user_code, uid, expires_at)
     SELECT id, type, payload, grant_id, user_code, uid,
            CASE WHEN ttl IS NULL THEN NULL ELSE now() + make_interval(secs => ttl) END
     FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::int[])
          AS t(id, type, payload, grant_id, user_code, uid, ttl)
     ON CONFLICT (id, type) DO UPDATE SET
       payload = excluded.payload, grant_id = excluded.grant_id, user_code = excluded.user_code,
       uid = excluded.uid, expires_at = excluded.expires_at`,
    cols,
  )
}

function toPayload(rows) {
  const row = rows[0]
  if (!row) return undefined
  const payload = row.payload
  // oidc-provider reads `consumed` (truthy = already used) from the found payload.
  if (row.consumed !== null && row.consumed !== undefined) payload.consumed = Number(row.consumed)
  return payload
}

/**
 * Returns an adapter class bound to `pool`, to pass as the Provider's `adapter` configuration
 * (oidc-provider instantiates it once per model with `new Adapter(modelName)`).
 */
export function createPgAdapter(pool) {
  return class PgOidcAdapter {
    constructor(name) {
      this.name = name
      this.grantable = GRANTABLE.has(name)
    }

    async upsert(id, payload, expiresIn) {
      const ttl = typeof expiresIn === 'number' && Number.isFinite(expiresIn) ? Math.ceil(expiresIn) : null
      await pool.query({
        ...SQL.upsert,
        values: [
          id,
          this.name,
          JSON.stringify(payload),
          payload.grantId ?? null,
          payload.userCode ?? null,
          payload.uid ?? null,
          ttl,
        ],
      })
    }

    async find(id) {
      const { rows } = await pool.query({ ...SQL.find, values: [id, this.name] })
      return toPayload(rows)
    }

    async findByUid(uid) {
      const { rows } = await pool.query({ ...SQL.findByUid, values: [uid, this.name] })
      return toPayload(rows)
    }

    async findByUserCode(userCode) {
      const { rows } = await pool.query({ ...SQL.findByUserCode, values: [userCode, this.name] })
      return toPayload(rows)
    }

    async consume(id) {
      await pool.query({ ...SQL.consume, values: [id, this.name] })
    }

    async destroy(id) {
      await pool.query({ ...SQL.destroy, values: [id, this.name] })
    }

    async revokeByGrantId(grantId) {
      await pool.query({ ...SQL.revokeByGrantId, values: [grantId, this.name] })
    }
  }
}

export default createPgAdapter
