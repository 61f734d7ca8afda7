#!/usr/bin/env node
// sabot-agent-build AGENT.js [-o AGENT.wasm]
//
// Bundles an agent module (its default export; see src/index.js) with apache-arrow and this SDK
// into one ES module, then makes it a component of the `timed-agent` world with ComponentizeJS.
// The component imports only what the Sabot host offers: the agent interfaces and WASI
// (no wasi:http).

import { build } from 'esbuild';
import { componentize } from '@bytecodealliance/componentize-js';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

function usage(message) {
  if (message) console.error(`sabot-agent-build: ${message}`);
  console.error('usage: sabot-agent-build AGENT.js [-o AGENT.wasm]');
  process.exit(2);
}

function witDir() {
  const candidates = [process.env.SABOT_WIT, join(here, 'wit'), join(here, '..', '..', 'wit')];
  for (const dir of candidates) {
    if (dir && existsSync(join(dir, 'worlds.wit'))) return dir;
  }
  usage(`cannot find the Sabot WIT (looked in ${candidates.filter(Boolean).join(', ')}); set SABOT_WIT`);
}

// Ahead-of-time compilation of the JavaScript (weval) when a weval binary is at hand: $SABOT_WEVAL,
// or ~/.cache/sabot/tools/bin/weval (`cargo install weval --version 0.5.0`). ComponentizeJS would
// otherwise download one from GitHub. SABOT_JS_AOT=0 turns it off.
function aot() {
  if (process.env.SABOT_JS_AOT === '0') return {};
  const candidates = [process.env.SABOT_WEVAL, join(homedir(), '.cache', 'sabot', 'tools', 'bin', 'weval')];
  const wevalBin = candidates.find((p) => p && existsSync(p));
  return wevalBin ? { enableAot: true, wevalBin } : {};
}

const args = process.argv.slice(2);
let entry;
let output;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '-o' || args[i] === '--output') output = args[++i];
  else if (args[i] === '-h' || args[i] === '--help') usage();
  else if (entry === undefined) entry = args[i];
  else usage(`unexpected argument \`${args[i]}\``);
}
if (entry === undefined) usage('no agent module given');
entry = resolve(entry);
if (!existsSync(entry)) usage(`${entry}: no such file`);
output = resolve(output ?? join(dirname(entry), basename(entry).replace(/\.[cm]?[jt]s$/, '') + '.wasm'));

const work = await mkdtemp(join(tmpdir(), 'sabot-agent-'));
try {
  const main = join(work, 'main.js');
  await writeFile(
    main,
    `import definition from ${JSON.stringify(entry)};\n` +
      `import { exportAgent } from '@sabot/agent';\n` +
      `export const { handler, timeHandler } = exportAgent(definition);\n`,
  );
  const bundle = join(work, 'bundle.js');
  await build({
    entryPoints: [main],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    conditions: ['import', 'module'],
    target: 'es2022',
    external: ['sabot:*', 'wasi:*'],
    alias: { '@sabot/agent': join(here, 'src', 'index.js') },
    nodePaths: [join(here, 'node_modules')],
    outfile: bundle,
    logLevel: 'warning',
  });
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: witDir(),
    worldName: 'timed-agent',
    disableFeatures: ['http', 'fetch-event'],
    ...aot(),
  });
  await writeFile(output, component);
  console.error(`sabot-agent-build: wrote ${output} (${(component.byteLength / 1048576).toFixed(1)} MiB)`);
} finally {
  await rm(work, { recursive: true, force: true });
}
