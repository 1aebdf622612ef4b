// A long-running Node app on node-postgres through tether-target.mjs's pgPool, for the hot-swap tests.
// argv: <tether-target.mjs path> <stop file>. Prints one JSON line per answer, like app_loop.py.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import pg from 'pg';

const [modulePath, stopFile] = process.argv.slice(2);
const { pgPool } = await import(pathToFileURL(modulePath).href);
const db = pgPool(pg.Pool, { max: 6 });
const MAX_MS = 120_000;
const deadline = Date.now() + MAX_MS;
let stopped = false;
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function loop(kind, sql, pause) {
  while (!stopped) {
    const start = Date.now() / 1000;
    let port = null;
    let error = null;
    try {
      port = (await db.query(sql)).rows[0].port;
    } catch (failure) {
      error = `${failure.name}: ${failure.message}`;
    }
    process.stdout.write(JSON.stringify({ kind, start, end: Date.now() / 1000, port, error }) + '\n');
    await sleep(pause);
  }
}

const loops = [
  loop('quick', "SELECT current_setting('port') AS port", 10),
  loop('quick', "SELECT current_setting('port') AS port", 10),
  loop('long', "SELECT current_setting('port') AS port FROM pg_sleep(0.6)", 0),
];
while (!existsSync(stopFile) && Date.now() < deadline) await sleep(20);
stopped = true;
await Promise.all(loops);
await db.end();
