// Checks that the test runner (scripts/test.mjs) provides a reachable
// PostgreSQL server through TESSERA_TEST_PG_URL. Fails (never skips) without it.
import t from 'tap';
import pg from 'pg';

t.test('test runner provides PostgreSQL via TESSERA_TEST_PG_URL', async (t) => {
  const url = process.env.TESSERA_TEST_PG_URL;
  if (!url) {
    t.fail(
      'TESSERA_TEST_PG_URL is not set: run the tests with `npm test` ' +
        '(scripts/test.mjs starts a throwaway PostgreSQL or uses DATABASE_URL)',
    );
    return;
  }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    const res = await client.query<{ version: string }>('select version() as version');
    const version = res.rows[0]?.version ?? '';
    t.match(version, /PostgreSQL/, 'server reports a PostgreSQL version');
  } finally {
    await client.end();
  }
});
