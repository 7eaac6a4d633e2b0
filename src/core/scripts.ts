// Loads every Lua script in ./scripts as an ioredis command. A file is named
// `<commandName>-<numberOfKeys>.lua` (BullMQ's convention), so the folder reads as the list of
// atomic state transitions and the key count is checked by Redis on every call. A script whose
// key count depends on the call (one key per email of a batch) is named `<command>-<fixed>+.lua`
// and its caller passes the key count first. Callers type their commands by augmenting ioredis'
// RedisCommander next to the code that uses them.
import { readdirSync, readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';

const SCRIPT_DIR = new URL('./scripts/', import.meta.url);

export interface ScriptFile {
  name: string;
  /** undefined: the caller passes the key count as the first argument. */
  numberOfKeys: number | undefined;
  lua: string;
}

let cache: ScriptFile[] | undefined;

export function scriptFiles(): ScriptFile[] {
  if (cache) return cache;
  cache = readdirSync(SCRIPT_DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const match = /^([A-Za-z][A-Za-z0-9]*)-(\d+)(\+?)\.lua$/.exec(file);
      if (!match) throw new Error(`Lua script ${file} must be named <command>-<numberOfKeys>.lua or <command>-<fixedKeys>+.lua`);
      return { name: match[1]!, numberOfKeys: match[3] ? undefined : Number(match[2]), lua: readFileSync(new URL(file, SCRIPT_DIR), 'utf8') };
    });
  return cache;
}

/**
 * Scripts whose caller passes the key count first. ioredis' auto-pipelining on a Cluster groups a
 * script call by the slot of its first argument, which for these is the count, not a key: batched
 * beside another account's commands on another node, the whole pipeline is refused. They are sent
 * on their own instead (routed by their real keys).
 */
export function scriptsWithCallerKeyCount(): string[] {
  return scriptFiles().filter((s) => s.numberOfKeys === undefined).map((s) => s.name);
}

export function defineScripts(client: Redis | Cluster): void {
  for (const script of scriptFiles()) {
    client.defineCommand(script.name, { numberOfKeys: script.numberOfKeys, lua: script.lua });
  }
}
