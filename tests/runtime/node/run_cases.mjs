// Runs the shared cases through clients/node/tether-target.mjs and prints the outcomes as JSON.
// argv: <module path> <manifest.json>; the manifest names the case directories the Python test wrote.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const [modulePath, manifestPath] = process.argv.slice(2);
const tether = await import(pathToFileURL(modulePath).href);
const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));

const dotenv = manifest.dotenv.map((text) => tether.parseDotenv(text));
const states = manifest.states.map(({ root, env }) => {
  try {
    const active = new tether.TargetReader({ root, env }).resolve();
    return { target: active.target, url: active.url, held_back: active.heldBack !== null };
  } catch (error) {
    if (!(error instanceof tether.TetherTargetError)) throw error;
    return { error: error.name, message: error.message };
  }
});
process.stdout.write(JSON.stringify({ dotenv, states }));
