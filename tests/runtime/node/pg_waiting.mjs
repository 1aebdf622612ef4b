// node-postgres through pgPool: a query in flight and one waiting in the old pool's queue at the switch
// both finish on the old target; the next goes to the new one; the old pool ends once they are done.
// argv: <module path> <state file> <production state JSON>. Run from a directory where `pg` is installed.
import { renameSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import pg from 'pg';

const [modulePath, stateFile, productionState] = process.argv.slice(2);
const { pgPool } = await import(pathToFileURL(modulePath).href);
const db = pgPool(pg.Pool, { max: 1 });
const database = async (query) => (await query).rows[0].current_database;

const oldPool = db.pool();
const inFlight = database(db.query('SELECT current_database() FROM pg_sleep(0.5)'));
const waiting = database(db.query('SELECT current_database()')); // queued: max is 1
await new Promise((done) => setTimeout(done, 100));
const waitingBefore = oldPool.waitingCount;
writeFileSync(`${stateFile}.tmp`, productionState);
renameSync(`${stateFile}.tmp`, stateFile);
const next = await database(db.query('SELECT current_database()'));
const results = await Promise.allSettled([inFlight, waiting]);
await new Promise((done) => setTimeout(done, 100));
const appName = (await db.query("SELECT current_setting('application_name') AS name")).rows[0].name;
process.stdout.write(JSON.stringify({
  waitingBefore, next, appName,
  oldQueries: results.map((result) => result.status === 'fulfilled' ? result.value : `failed: ${result.reason}`),
  oldPoolEnded: oldPool.ended, oldPoolClients: oldPool.totalCount,
}));
await db.end();
