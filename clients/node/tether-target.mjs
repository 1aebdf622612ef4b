// tether-target.mjs: a running Node app follows `invoke target.*` without a restart.
//
// One dependency-free ES module; copy it into the app or import it from the tether checkout. It reads the
// files tether writes (.runtime/db-target.json and .env, see docs/app-integration.md) the same way
// tether.runtime does in Python:
//
//   import { databaseUrl, activeTarget, getPrismaClient, pgPool } from './tether-target.mjs';
//   const prisma = () => getPrismaClient(PrismaClient);   // one client per URL, the old one disconnected
//   const db = pgPool(pg.Pool);                            // node-postgres: db.query(...) on the active target
//
// Each call stats the state file once and re-reads the files only when tether changed them.

import { closeSync, fstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** The newest state file format this reader knows; a newer one is refused. */
export const STATE_FORMAT = 1;
/** The marker only `invoke target.production` writes; production is refused without it. */
export const PRODUCTION_GUARD = 'target.production';
/** How often .env alone is checked for a change (the state file is checked on every call). */
export const ENV_RECHECK_MS = 1000;
export const APPLICATION_PREFIX = 'tether-app:';

const TARGETS = ['local', 'production'];
const URL_VARIABLES = { local: 'DATABASE_URL_LOCAL', production: 'DATABASE_URL_PRODUCTION' };
const MANAGED_BEGIN = '# >>> tether managed block >>>';

/** An error whose `name` says what is wrong (the same names as tether.runtime's Python classes). */
export class TetherTargetError extends Error {
  constructor(name, message) {
    super(message);
    this.name = name;
  }
}

// ---------------------------------------------------------------------------------------------------------
// .env, read as python-dotenv and dotenv read what tether writes (the last assignment wins, no ${} expansion)

const BLANK_OR_COMMENT = /[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r)/y;
const KEY = /[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.]*)[ \t]*=[ \t]*/y;
const SINGLE = /'((?:\\'|[^'])*)'/y;
const DOUBLE = /"((?:\\"|[^"])*)"/y;
const UNQUOTED = /[^\r\n]*/y;
const END_OF_LINE = /[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)/y;
const REST_OF_LINE = /[^\r\n]*(?:\r\n|\n|\r|$)/y;
const ESCAPES = { '\\\\': '\\', "\\'": "'", '\\"': '"', '\\a': '\x07', '\\b': '\b', '\\f': '\f', '\\n': '\n',
  '\\r': '\r', '\\t': '\t', '\\v': '\v' };

function matchAt(pattern, text, position) {
  pattern.lastIndex = position;
  return pattern.exec(text);
}

function skipLine(text, position) {
  const match = matchAt(REST_OF_LINE, text, position);
  return Math.max(match.index + match[0].length, position + 1);
}

/** The variables of a .env text. */
export function parseDotenv(text) {
  const values = {};
  let position = 0;
  while (position < text.length) {
    const blank = matchAt(BLANK_OR_COMMENT, text, position);
    if (blank && blank[0].length > 0) {
      position += blank[0].length;
      continue;
    }
    const key = matchAt(KEY, text, position);
    if (!key) {
      position = skipLine(text, position);
      continue;
    }
    position += key[0].length;
    let match;
    let value;
    if ((match = matchAt(SINGLE, text, position))) {
      value = match[1].replace(/\\[\\']/g, (escape) => ESCAPES[escape]);
    } else if ((match = matchAt(DOUBLE, text, position))) {
      value = match[1].replace(/\\[\\'"abfnrtv]/g, (escape) => ESCAPES[escape]);
    } else {
      match = matchAt(UNQUOTED, text, position);
      value = match[0].replace(/[ \t]+#.*/, '').trimEnd();
    }
    const valueEnd = position + match[0].length;
    const end = matchAt(END_OF_LINE, text, valueEnd);
    if (!end) {
      position = skipLine(text, valueEnd);
      continue;
    }
    position = valueEnd + end[0].length;
    values[key[1]] = value;
  }
  return values;
}

// ---------------------------------------------------------------------------------------------------------
// The state file and the guards

/** Parse .runtime/db-target.json; a newer format, or anything tether does not write, throws. */
export function parseState(text, path = 'db-target.json') {
  const damaged = `${path} is damaged (not the JSON tether writes). Run \`invoke target.local\` (or ` +
    '`invoke target.production`) to rewrite it.';
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new TetherTargetError('StateUnreadable', damaged);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new TetherTargetError('StateUnreadable', damaged);
  }
  const format = data.format === undefined ? 0 : data.format;
  if (!Number.isInteger(format) || format < 0) throw new TetherTargetError('StateUnreadable', damaged);
  if (format > STATE_FORMAT) {
    throw new TetherTargetError('StateFormatTooNew', `${path} has format ${format}, written by a newer tether; ` +
      `this reader knows format ${STATE_FORMAT} at most. Update tether (the Python package, or copy the ` +
      'newer clients/node/tether-target.mjs into the app), then try again.');
  }
  if (!TARGETS.includes(data.target)) throw new TetherTargetError('StateUnreadable', damaged);
  const fields = {};
  for (const name of ['user', 'when', 'guard']) {
    const value = data[name] === undefined ? null : data[name];
    if (value !== null && typeof value !== 'string') throw new TetherTargetError('StateUnreadable', damaged);
    fields[name] = value;
  }
  return { format, target: data.target, ...fields };
}

/** True for a test run: NODE_ENV=test, or the environment .env.test gives (DATABASE_URL = TEST_DATABASE_URL). */
export function isTestProcess(env = process.env) {
  if (env.NODE_ENV === 'test') return true;
  return Boolean(env.DATABASE_URL) && env.DATABASE_URL === env.TEST_DATABASE_URL;
}

/** The target this process uses: { target, heldBack } (heldBack says why a test process stays local). */
export function decideTarget(state, env = process.env, statePath = 'db-target.json') {
  if (state.target !== 'production') return { target: state.target, heldBack: null };
  if (isTestProcess(env)) {
    return { target: 'local', heldBack: 'this is a test process (NODE_ENV=test, or the environment of ' +
      '.env.test), which never follows a switch to production' };
  }
  if (state.guard !== PRODUCTION_GUARD) {
    throw new TetherTargetError('ProductionRefused', `${statePath} says production but was not written by ` +
      '`invoke target.production` (it lacks that command\'s confirmation marker), so this app refuses to ' +
      'connect there. Run `invoke target.production` to switch with the confirmation, or `invoke target.local`.');
  }
  return { target: 'production', heldBack: null };
}

// ---------------------------------------------------------------------------------------------------------
// Where the project is

function isFile(path) {
  return statSync(path, { throwIfNoEntry: false })?.isFile() ?? false;
}

function isProjectRoot(directory) {
  if (isFile(join(directory, '.runtime', 'db-target.json'))) return true;
  try {
    return readFileSync(join(directory, '.env'), 'utf8').split(/\r\n|\n|\r/).some((line) => line.trim() === MANAGED_BEGIN);
  } catch {
    return false;
  }
}

/** TETHER_ROOT (else TETHER_PROJECT_ROOT), else the nearest directory from `cwd` up that tether manages. */
export function findRoot({ env = process.env, cwd = process.cwd() } = {}) {
  for (const name of ['TETHER_ROOT', 'TETHER_PROJECT_ROOT']) {
    const value = env[name];
    if (value) {
      const root = resolve(value);
      if (!(statSync(root, { throwIfNoEntry: false })?.isDirectory() ?? false)) {
        throw new TetherTargetError('ProjectRootNotFound', `${name}=${value} is not a directory. Point it at ` +
          'the tether project (the directory holding .env and .runtime/), or unset it.');
      }
      return root;
    }
  }
  const start = resolve(cwd);
  for (let directory = start; ; directory = dirname(directory)) {
    if (isProjectRoot(directory)) return directory;
    if (dirname(directory) === directory) break;
  }
  throw new TetherTargetError('ProjectRootNotFound', `No tether project found from ${start} upwards (a directory ` +
    'with .runtime/db-target.json or a .env written by `invoke env`). Run `invoke env` in the project, or set ' +
    'TETHER_ROOT to its directory.');
}

// ---------------------------------------------------------------------------------------------------------
// The reader

function fileKey(stats) {
  return stats ? `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}` : null;
}

function statKey(path) {
  return fileKey(statSync(path, { bigint: true, throwIfNoEntry: false }));
}

function readWithKey(path) {
  let fd;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    if (error.code === 'ENOENT') return [null, null];
    throw new TetherTargetError('TargetError', `${path} cannot be read (${error.message}). Check its owner and ` +
      'permissions (tether writes it mode 0600, readable by the user who ran `invoke`).');
  }
  try {
    const key = fileKey(fstatSync(fd, { bigint: true }));
    return [readFileSync(fd, 'utf8'), key];
  } finally {
    closeSync(fd);
  }
}

export class TargetReader {
  /** @param {{root?: string, env?: object, cwd?: string}} [options] */
  constructor({ root, env = process.env, cwd } = {}) {
    this.env = env;
    this.cwd = cwd;
    this._root = root ? resolve(root) : null;
    this._paths = null;
    this._snapshot = null;
  }

  get root() {
    if (this._root === null) this._root = findRoot({ env: this.env, cwd: this.cwd ?? process.cwd() });
    return this._root;
  }

  get statePath() {
    const runtime = this.env.TETHER_RUNTIME_DIR;
    return join(runtime ? runtime : join(this.root, '.runtime'), 'db-target.json');
  }

  get envPath() {
    return join(this.root, '.env');
  }

  /** { target, url, state, heldBack }, or throws a TetherTargetError. */
  resolve() {
    this._paths ??= { state: this.statePath, env: this.envPath }; // fixed once the root is known
    const statePath = this._paths.state;
    const key = statKey(statePath); // the one stat of a call that finds nothing changed
    let snapshot = this._snapshot;
    if (!snapshot || snapshot.stateKey !== key || (Date.now() - snapshot.envChecked >= ENV_RECHECK_MS &&
        statKey(this._paths.env) !== snapshot.envKey)) {
      snapshot = this._reload(statePath, snapshot);
      this._snapshot = snapshot;
    } else if (Date.now() - snapshot.envChecked >= ENV_RECHECK_MS && snapshot.envChecked !== -Infinity) {
      snapshot.envChecked = Date.now();
    }
    if (snapshot.error) throw new TetherTargetError(snapshot.error.name, snapshot.error.message);
    return snapshot.result;
  }

  databaseUrl() {
    return this.resolve().url;
  }

  activeTarget() {
    return this.resolve().target;
  }

  _reload(statePath, previous) {
    const envChecked = Date.now();
    let stateKey = null;
    let envKey = null;
    try {
      let stateText;
      [stateText, stateKey] = readWithKey(statePath);
      let envText;
      [envText, envKey] = readWithKey(this.envPath);
      const state = stateText === null ? { format: STATE_FORMAT, target: 'local', user: null, when: null, guard: null }
        : parseState(stateText, statePath);
      const decision = decideTarget(state, this.env, statePath);
      if (envText === null) {
        throw new TetherTargetError('DatabaseUrlMissing', `${this.envPath} does not exist. Run \`invoke env\` in ` +
          'the project to write it.');
      }
      const values = parseDotenv(envText);
      const before = previous?.result;
      if (before && (values.TETHER_DB_TARGET ?? state.target) !== state.target) {
        // A switch writes the state, then .env: until .env agrees (milliseconds later, or after `invoke env`
        // repairs a crash in between) keep the answer given so far, and look at .env again at every call.
        return { stateKey, envKey, envChecked: -Infinity, result: before, error: null };
      }
      const name = URL_VARIABLES[decision.target];
      const url = values[name];
      if (!url) {
        throw new TetherTargetError('DatabaseUrlMissing', `${this.envPath} has no ${name}. Run \`invoke env\` in ` +
          'the project to rewrite it (tether writes DATABASE_URL_LOCAL and DATABASE_URL_PRODUCTION there).');
      }
      const result = { target: decision.target, url, state, heldBack: decision.heldBack };
      if (result.heldBack && (!before || before.state.target !== state.target)) {
        process.emitWarning(`tether: the state says ${state.target}; staying on local: ${result.heldBack}`,
          { code: 'TETHER_TARGET_HELD_BACK' });
      }
      return { stateKey, envKey, envChecked, result, error: null };
    } catch (error) {
      if (!(error instanceof TetherTargetError)) throw error;
      if (stateKey === null) stateKey = statKey(statePath);
      return { stateKey, envKey, envChecked, result: null, error: { name: error.name, message: error.message } };
    }
  }
}

let defaultReaderInstance = null;

/** The process-wide reader (root from TETHER_ROOT or the working directory, at its first use). */
export function defaultReader() {
  if (defaultReaderInstance === null) defaultReaderInstance = new TargetReader();
  return defaultReaderInstance;
}

/** The URL of the database this process should use now. */
export function databaseUrl() {
  return defaultReader().databaseUrl();
}

/** 'local' or 'production': the target this process uses now. */
export function activeTarget() {
  return defaultReader().activeTarget();
}

/** The application_name the helpers give their connections (`invoke target` lists them). */
export function applicationName(pid = process.pid) {
  return `${APPLICATION_PREFIX}${pid}`;
}

/** `url` with application_name=tether-app:<pid> in its query string (replacing one already there). */
export function withApplicationName(url, name = applicationName()) {
  const hashAt = url.indexOf('#');
  const base = hashAt === -1 ? url : url.slice(0, hashAt);
  const fragment = hashAt === -1 ? '' : url.slice(hashAt);
  const queryAt = base.indexOf('?');
  const path = queryAt === -1 ? base : base.slice(0, queryAt);
  const query = queryAt === -1 ? [] : base.slice(queryAt + 1).split('&').filter(
    (item) => item && !item.startsWith('application_name='));
  query.push(`application_name=${encodeURIComponent(name)}`);
  return `${path}?${query.join('&')}${fragment}`;
}

// ---------------------------------------------------------------------------------------------------------
// Clients that follow the target

function warnRetireFailure(error) {
  process.emitWarning(`tether: closing the old target's client failed: ${error?.message ?? error}`,
    { code: 'TETHER_TARGET_RETIRE' });
}

/**
 * Keep one resource (a pool, a client) for the active target's URL: `create(url)` makes it, `retire(old)`
 * closes the previous one when the target moves. Returns { current(), close() }.
 */
export function followTarget({ create, retire, reader = defaultReader() }) {
  let current = null;
  const retireSafely = (resource) => {
    try {
      Promise.resolve(retire(resource)).catch(warnRetireFailure);
    } catch (error) {
      warnRetireFailure(error);
    }
  };
  return {
    current() {
      const url = reader.databaseUrl();
      if (current && current.url === url) return current.resource;
      const previous = current;
      current = { url, resource: create(url) };
      if (previous) retireSafely(previous.resource);
      return current.resource;
    },
    /** Close the current resource with `closer` (default: `retire`); the next current() makes a new one. */
    close(closer = retire) {
      const previous = current;
      current = null;
      return previous ? Promise.resolve(closer(previous.resource)) : Promise.resolve();
    },
  };
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** End a node-postgres pool once no request waits in its queue (pg.Pool.end() would leave waiters hanging). */
async function endPgPool(pool) {
  while (pool.waitingCount > 0) await sleep(10);
  await pool.end(); // closes idle clients now, the ones checked out when they are released
}

/**
 * node-postgres on the active target: `pgPool(pg.Pool, poolOptions)` returns { query, connect, pool, end }.
 * A query in flight finishes on the pool it started on; that pool is ended when the target moves.
 */
export function pgPool(Pool, { reader, ...poolOptions } = {}) {
  const follower = followTarget({
    create: (url) => new Pool({ ...poolOptions, connectionString: withApplicationName(url) }),
    retire: endPgPool,
    reader: reader ?? defaultReader(),
  });
  return {
    pool: () => follower.current(),
    query: (...args) => follower.current().query(...args),
    connect: () => follower.current().connect(),
    end: () => follower.close(),
  };
}

// Kept on globalThis so that a dev server's hot reload, which evaluates this module again, finds the clients
// it already made instead of opening more (the usual `globalForPrisma` pattern).
const prismaFollowers = (globalThis[Symbol.for('tether-target.prisma')] ??= new WeakMap());

/**
 * The Prisma client of the active target: one client per URL, made with
 * `new PrismaClient({ ...clientOptions, datasources: { db: { url } } })` (or `create(url)` when given, e.g.
 * for a driver adapter). The old client is disconnected `graceMs` after the switch (default 5000 ms), so a
 * request in flight can finish: Prisma's $disconnect() interrupts queries still running. The options of the
 * first call for a PrismaClient class are the ones used.
 */
export function getPrismaClient(PrismaClient, { graceMs = 5000, create, reader, ...clientOptions } = {}) {
  let follower = prismaFollowers.get(PrismaClient);
  if (!follower) {
    follower = followTarget({
      create: create ? (url) => create(withApplicationName(url))
        : (url) => new PrismaClient({ ...clientOptions, datasources: { db: { url: withApplicationName(url) } } }),
      retire: (client) => new Promise((done, fail) => {
        const timer = setTimeout(() => Promise.resolve(client.$disconnect()).then(done, fail), graceMs);
        timer.unref?.();
      }),
      reader: reader ?? defaultReader(),
    });
    prismaFollowers.set(PrismaClient, follower);
  }
  return follower.current();
}

/** Disconnect the current Prisma client of `PrismaClient` (at shutdown). */
export async function disconnectPrisma(PrismaClient) {
  const follower = prismaFollowers.get(PrismaClient);
  prismaFollowers.delete(PrismaClient);
  if (follower) await follower.close((client) => client.$disconnect());
}
