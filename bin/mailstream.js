#!/usr/bin/env -S node --
// Entry point of `npx mailstream`. The sources are TypeScript run by Node's own type stripping
// (Node >= 22.18), so there is no build step. On an older Node this re-runs itself with the Node
// that `npm run setup` put in ~/.cache/mailstream/node, or says how to get one.
// The `--` in the shebang stops Node from taking our `--env-file` option as its own (Node reads
// that flag even after the script name).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
const supported = major > 22 || (major === 22 && minor >= 18);

if (supported) {
  const { main } = await import('../src/cli/main.ts');
  await main(process.argv);
} else {
  const cacheDir = process.env.MAILSTREAM_NODE_DIR ?? join(homedir(), '.cache', 'mailstream', 'node');
  const cached = join(cacheDir, 'node_modules', 'node', 'bin', 'node');
  if (!existsSync(cached)) {
    console.error(`mailstream needs Node.js >= 22.18 (this is ${process.version}); run \`npm run setup\` once to fetch one.`);
    process.exit(1);
  }
  const child = spawnSync(cached, [...process.execArgv.filter((a) => a !== '--'), '--', fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(child.status ?? 1);
}
