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
// Only node built-ins are used on purpose.

import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TAP = join(ROOT, 'node_modules', '.bin', 'tap');
const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0;
const IN_CI = /^(true|1)$/i.test(process.env.CI ?? '');
const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

const log = (msg) => process.stderr.write(`[test.mjs] ${msg}\n`);

function banner(lines) {
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n${lines.map((l) => `!! ${l}`).join('\n')}\n${bar}\n\n`);
}

class RunnerError extends Error {}

// ---------------------------------------------------------------------------
// Locating PostgreSQL server binaries

function isServerBinDir(dir) {
  return ['initdb', 'pg_ctl', 'postgres'].every((b) => {
    try {
      accessSync(join(dir, b), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function findPgBinDir() {
  // 1. pg_config --bindir. On Debian, pg_config may come from libpq-dev and
  //    point at a bindir without a server in it, so verify before trusting it.
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (r.status === 0) {
    const dir = r.stdout.trim();
    if (dir && isServerBinDir(dir)) return dir;
  }
  // 2. newest /usr/lib/postgresql/<version>/bin
  const base = '/usr/lib/postgresql';
  let versions = [];
  try {
    versions = readdirSync(base);
  } catch {
    return null;
  }
  versions.sort((a, b) => parseFloat(b) - parseFloat(a) || b.localeCompare(a));
  for (const v of versions) {
    const dir = join(base, v, 'bin');
    if (isServerBinDir(dir)) return dir;
  }
  return null;
}

function pgVersion(binDir) {
  const r = spawnSync(join(binDir, 'postgres'), ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().replace(/^postgres\s+\(PostgreSQL\)\s+/, 'PostgreSQL ') : 'PostgreSQL (unknown version)';
}

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
// Throwaway cluster

function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

// A directory is usable as parent of the temp dir when running as root if
// every ancestor is traversable by "others" (the postgres user).
function traversableByOthers(dir) {
  let d = resolve(dir);
  for (;;) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    const parent = dirname(d);
    if (parent === d) return true;
    d = parent;
  }
}

function pickTmpParent() {
  const t = tmpdir();
  if (!IS_ROOT || traversableByOthers(t)) return t;
  if (traversableByOthers('/tmp')) {
    log(`${t} is not traversable by the postgres user; using /tmp instead`);
    return '/tmp';
  }
  throw new RunnerError(`neither ${t} nor /tmp is traversable by the postgres user`);
}

// Single-quote for the /bin/sh command line that pg_ctl builds from -o.
const shq = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`;

class Cluster {
  constructor(binDir) {
    this.binDir = binDir;
    this.dir = null;
    this.dataDir = null;
    this.started = false;
    this.port = null;
  }

  // Run a PostgreSQL binary, as the postgres OS user when we are root.
  run(bin, args, { allowFail = false } = {}) {
    const exe = join(this.binDir, bin);
    const [cmd, argv] = IS_ROOT ? ['runuser', ['-u', 'postgres', '--', exe, ...args]] : [exe, args];
    const r = spawnSync(cmd, argv, {
      cwd: this.dir ?? '/',
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
    });
    if (r.error) {
      if (allowFail) return r;
      throw new RunnerError(`could not run ${cmd}: ${r.error.message}`);
    }
    if (r.status !== 0 && !allowFail) {
      throw new RunnerError(`${bin} ${args.join(' ')} failed (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
    }
    return r;
  }

  async start() {
    if (IS_ROOT) {
      const id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
      if (id.status !== 0) {
        throw new RunnerError('running as root, but there is no "postgres" OS user to run PostgreSQL as');
      }
    }
    this.dir = mkdtempSync(join(pickTmpParent(), 'tessera-pg-'));
    this.dataDir = join(this.dir, 'data');
    const sockDir = join(this.dir, 'sock');
    mkdirSync(sockDir);
    if (IS_ROOT) {
      const r = spawnSync('chown', ['-R', 'postgres:postgres', this.dir], { encoding: 'utf8' });
      if (r.status !== 0) throw new RunnerError(`chown -R postgres:postgres ${this.dir} failed: ${r.stderr}`);
    }

    this.run('initdb', ['-D', this.dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);

    const logFile = join(this.dir, 'postgres.log');
    // Retry a few times in case another process grabs the port between
    // freePort() closing it and postgres binding it.
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      const opts = [
        `-k ${shq(sockDir)}`,
        `-p ${this.port}`,
        '-c listen_addresses=127.0.0.1',
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
        '-c max_connections=300',
      ].join(' ');
      // -l: the server must not inherit our stdio, or it would keep the pipe open.
      const r = this.run('pg_ctl', ['-w', '-t', '60', '-D', this.dataDir, '-l', logFile, '-o', opts, 'start'], { allowFail: true });
      if (!r.error && r.status === 0) {
        this.started = true;
        return;
      }
      // pg_ctl may have started a server that then failed the wait; make sure it is gone.
      this.started = true;
      this.stop();
      if (attempt >= 3) {
        let serverLog = '';
        try {
          serverLog = readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n');
        } catch {}
        throw new RunnerError(`pg_ctl start failed (exit ${r.status ?? r.signal ?? r.error?.message}):\n${r.stdout ?? ''}${r.stderr ?? ''}\n--- server log ---\n${serverLog}`);
      }
    }
  }

  stop() {
    if (this.started) {
      this.started = false;
      const r = this.run('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop'], { allowFail: true });
      // exit 1 with "PID file does not exist" means it is not running: fine.
      if (r.status !== 0 && !/PID file .* does not exist|Is server running\?/.test(`${r.stdout}${r.stderr}`)) {
        log(`warning: pg_ctl stop failed: ${r.stdout ?? ''}${r.stderr ?? r.error?.message ?? ''}`);
      }
    }
  }

  remove() {
    if (this.dir) {
      try {
        rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
      } catch (e) {
        log(`warning: could not remove ${this.dir}: ${e.message}`);
      }
      this.dir = null;
    }
  }
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
    cluster = new Cluster(binDir);
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
  if (e instanceof RunnerError) banner([`test runner error: ${e.message}`]);
  else process.stderr.write(`[test.mjs] unexpected error: ${e?.stack ?? e}\n`);
  exitCode = 1;
} finally {
  cleanup();
}
process.exit(exitCode);
