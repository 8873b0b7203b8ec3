#!/usr/bin/env node
// Test runner for Tessera: `npm test [-- extra tap args]`.
//
// Provides a PostgreSQL server to the test suite through TESSERA_TEST_PG_URL
// (an admin URL; the tests CREATE/DROP their own databases in it), then runs
// tap with the extra arguments and exits with tap's exit code.
//
//   - DATABASE_URL set      -> use it as is (needs CREATEDB rights).
//   - otherwise             -> start a throwaway cluster (initdb + pg_ctl) in a
//                              fresh temp dir on a free port, and always tear
//                              it down afterwards (also on failure/signals).
//   - no PostgreSQL at all  -> CI: hard error.  Locally: loud warning, tests
//                              run without TESSERA_TEST_PG_URL.
//
// Only node built-ins are used on purpose (the cluster code is in
// scripts/pg-cluster.mjs, shared with the benchmark harness).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, ClusterError, TEST_SETTINGS, findPgBinDir, pgVersion } from './pg-cluster.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TAP = join(ROOT, 'node_modules', '.bin', 'tap');
const IN_CI = /^(true|1)$/i.test(process.env.CI ?? '');
const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

const log = (msg) => process.stderr.write(`[test.mjs] ${msg}\n`);

function banner(lines) {
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n${lines.map((l) => `!! ${l}`).join('\n')}\n${bar}\n\n`);
}

class RunnerError extends Error {}

// ---------------------------------------------------------------------------
// DATABASE_URL handling

function redactUrl(raw) {
  try {
    const u = new URL(raw);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(DATABASE_URL is not a URL; not shown)';
  }
}

// Best-effort server version via psql (if installed). The password is passed
// through PGPASSWORD, never on the command line. Never fatal: if the server is
// unreachable the Postgres-backed tests fail loudly by themselves.
function remoteServerVersion(raw, binDir) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  const env = { ...process.env, PGCONNECT_TIMEOUT: '5' };
  if (url.password) {
    env.PGPASSWORD = decodeURIComponent(url.password);
    url.password = '';
  }
  const psql = binDir && existsSync(join(binDir, 'psql')) ? join(binDir, 'psql') : 'psql';
  const r = spawnSync(psql, ['-X', '-A', '-t', '-w', '-c', 'select version()', url.toString()], {
    encoding: 'utf8',
    env,
    timeout: 15_000,
  });
  if (r.status !== 0) return null;
  const m = /PostgreSQL [^\s,]+/.exec(r.stdout);
  return m ? m[0] : null;
}

// ---------------------------------------------------------------------------
// Main

let cluster = null;
let child = null;
let cleanedUp = false;

function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  if (cluster) {
    cluster.stop();
    cluster.remove();
  }
}

// Last-resort safety net (synchronous, so it works in 'exit').
process.on('exit', cleanup);

for (const [sig, num] of Object.entries(SIGNALS)) {
  process.on(sig, () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      // Let tap shut down its test processes; cleanup runs when it exits.
      try {
        child.kill(sig);
      } catch {}
      return;
    }
    cleanup();
    process.exit(128 + num);
  });
}

async function main() {
  if (!existsSync(TAP)) {
    throw new RunnerError(`${TAP} not found: run "npm ci" first`);
  }

  const env = { ...process.env };
  // The runner owns this variable: never let a stale value leak in.
  delete env.TESSERA_TEST_PG_URL;

  const binDir = findPgBinDir();
  const dbUrl = process.env.DATABASE_URL;

  if (dbUrl) {
    env.TESSERA_TEST_PG_URL = dbUrl;
    const remote = remoteServerVersion(dbUrl, binDir);
    const version = remote ?? 'server version unknown (could not query it with psql)';
    log(`PostgreSQL: ${version} via DATABASE_URL ${redactUrl(dbUrl)}`);
  } else if (binDir) {
    // Throwaway cluster (scripts/pg-cluster.mjs): temp dir, free port, durability off.
    cluster = new Cluster(binDir, { log, settings: TEST_SETTINGS });
    await cluster.start();
    env.TESSERA_TEST_PG_URL = `postgres://postgres@127.0.0.1:${cluster.port}/postgres`;
    log(`PostgreSQL: ${pgVersion(binDir)}, throwaway cluster on 127.0.0.1:${cluster.port} (${cluster.dir})`);
  } else if (IN_CI) {
    banner([
      'PostgreSQL is required in CI: install it (apt-get install -y postgresql) or set DATABASE_URL',
      'No PostgreSQL server binaries found (pg_config --bindir, /usr/lib/postgresql/*/bin).',
    ]);
    return 1;
  } else {
    banner([
      'WARNING: no PostgreSQL found (pg_config --bindir, /usr/lib/postgresql/*/bin) and DATABASE_URL is unset.',
      'Running the tests WITHOUT TESSERA_TEST_PG_URL: every PostgreSQL-backed test will FAIL.',
      'Install PostgreSQL (e.g. apt-get install -y postgresql) or set DATABASE_URL to an admin URL.',
    ]);
  }

  return await new Promise((res, rej) => {
    child = spawn(TAP, process.argv.slice(2), { cwd: ROOT, env, stdio: 'inherit' });
    child.on('error', rej);
    child.on('exit', (code, signal) => {
      if (code !== null) res(code);
      else res(128 + (SIGNALS[signal] ?? 1));
    });
  });
}

let exitCode = 1;
try {
  exitCode = await main();
} catch (e) {
  if (e instanceof RunnerError || e instanceof ClusterError) banner([`test runner error: ${e.message}`]);
  else process.stderr.write(`[test.mjs] unexpected error: ${e?.stack ?? e}\n`);
  exitCode = 1;
} finally {
  cleanup();
}
process.exit(exitCode);
