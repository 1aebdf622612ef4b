// The Prisma helper with a stand-in client of Prisma's interface (its engines cannot be downloaded here):
// `new PrismaClient({ datasources: { db: { url } } })` and `$disconnect()`.
// argv: <module path> <state file> <production state JSON> <local state JSON>. Prints observations as JSON.
import { renameSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [modulePath, stateFile, productionState, localState] = process.argv.slice(2);
const { getPrismaClient, disconnectPrisma } = await import(pathToFileURL(modulePath).href);

class StandInPrismaClient {
  static made = [];

  constructor(options) {
    this.options = options;
    this.url = options.datasources.db.url;
    this.disconnectedAt = null;
    StandInPrismaClient.made.push(this);
  }

  async $disconnect() {
    this.disconnectedAt = performance.now();
  }
}

class AdapterClient {
  constructor(url) {
    this.url = url;
    this.disconnected = false;
  }

  async $disconnect() {
    this.disconnected = true;
  }
}

function switchTo(text) {
  writeFileSync(`${stateFile}.tmp`, text);
  renameSync(`${stateFile}.tmp`, stateFile);
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
const graceMs = 300;
const out = {};

const first = getPrismaClient(StandInPrismaClient, { graceMs, log: ['warn'] });
out.sameClientWhileUnchanged = getPrismaClient(StandInPrismaClient) === first;
out.firstUrl = first.url;
out.optionsKept = first.options.log;

switchTo(productionState);
const switchedAt = performance.now();
const second = getPrismaClient(StandInPrismaClient);
out.newClientOnSwitch = second !== first;
out.secondUrl = second.url;
out.secondOptionsKept = second.options.log;
out.oldDisconnectedAtOnce = first.disconnectedAt !== null;
await sleep(graceMs + 200);
out.oldDisconnectedAfterMs = first.disconnectedAt === null ? null : first.disconnectedAt - switchedAt;
out.newStillConnected = second.disconnectedAt === null;
out.clientsMade = StandInPrismaClient.made.length;

await disconnectPrisma(StandInPrismaClient);
out.disconnectedAtShutdown = second.disconnectedAt !== null;

const viaAdapter = getPrismaClient(AdapterClient, { create: (url) => new AdapterClient(url), graceMs: 0 });
switchTo(localState);
const adapterSecond = getPrismaClient(AdapterClient);
await sleep(50);
out.adapterUrls = [viaAdapter.url, adapterSecond.url];
out.adapterOldDisconnected = viaAdapter.disconnected;
// A hot reload evaluates the module again: the client made before is still the one handed out.
const reloaded = await import(`${pathToFileURL(modulePath).href}?reload=1`);
const beforeReload = getPrismaClient(AdapterClient);
out.sameClientAfterReload = reloaded.getPrismaClient(AdapterClient) === beforeReload;
process.stdout.write(JSON.stringify(out));
