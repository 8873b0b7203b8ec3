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
    child = spawn(TAP, process.argv.slice(2), { cwd: ROOT, env, stdio: ['inherit', 'pipe', 'inherit'] });
    const failures = new FailureCollector();
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      failures.push(chunk.toString('utf8'));
    });
    child.on('error', rej);
    child.on('close', (code, signal) => {
      // Repeat every failure after tap's own summary and coverage table, so
      // that the tail of a long CI log names what failed and why.
      failures.end();
      const report = failures.report();
      if (report) process.stdout.write(report);
      if (code !== null) res(code);
      else res(128 + (SIGNALS[signal] ?? 1));
    });
  });
}

// ---------------------------------------------------------------------------
// Failure summary: reads tap's TAP stream and remembers each failing
// assertion with the chain of subtests above it and its YAML diagnostics.

class FailureCollector {
  constructor() {
    this.rest = '';
    this.stack = []; // subtest names by depth (4 spaces per level)
    this.failures = []; // { path, lines }
    this.current = null; // the failure whose diagnostics are being read
  }
  push(text) {
    const lines = (this.rest + text).split('\n');
    this.rest = lines.pop() ?? '';
    for (const line of lines) this.line(line);
  }
  end() {
    if (this.rest) this.line(this.rest);
    this.rest = '';
  }
  line(line) {
    if (this.current) {
      if (this.current.lines.length < 40) this.current.lines.push(line);
      if (/^\s*\.\.\.\s*$/.test(line)) this.current = null;
      if (/^\s*(not )?ok \d+/.test(line) || /^\s*# Subtest:/.test(line)) this.current = null;
      else return;
    }
    const sub = /^( *)# Subtest: (.*)$/.exec(line);
    if (sub) {
      const depth = Math.floor(sub[1].length / 4);
      this.stack.length = depth;
      this.stack[depth] = sub[2];
      return;
    }
    const bad = /^( *)not ok \d+ - (.*?)(?: # time=.*)?$/.exec(line);
    if (!bad) return;
    const depth = Math.floor(bad[1].length / 4);
    const parents = this.stack.slice(0, depth);
    // A subtest that failed because an assertion in it failed is reported
    // through that assertion; keep it only when nothing inside it failed
    // (a timeout, a crash, a missing plan).
    const isSubtest = this.stack[depth] === bad[2];
    const inner = this.failures.some((f) => f.path.length > depth + 1 && f.path[depth] === bad[2]);
    if (isSubtest) this.stack.length = depth;
    if (isSubtest && inner) return;
    this.current = { path: [...parents, bad[2]], lines: [] };
    this.failures.push(this.current);
  }
  report() {
    if (this.failures.length === 0) return '';
    const out = ['', `# ${'='.repeat(70)}`, `# ${this.failures.length} failure(s), repeated from above:`];
    for (const f of this.failures.slice(0, 30)) {
      out.push(`# not ok: ${f.path.join(' > ')}`);
      for (const l of f.lines.filter((l) => !/^\s*(---|\.\.\.)\s*$/.test(l))) out.push(`#   ${l.trim()}`);
    }
    if (this.failures.length > 30) out.push(`# ... and ${this.failures.length - 30} more`);
    out.push(`# ${'='.repeat(70)}`, '');
    return out.join('\n');
  }
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
