// The runbooks' commands are real: every `mailstream ...` in a shell block names an existing
// command with options it has, and its `--help` runs; every scripts/, config/, grafana/ or
// runbooks/ path exists; every link between runbooks points to a heading that exists.
import { accessSync, constants, existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main.ts';
import { ROOT, runCli } from '../helpers/cli.ts';

const DIR = join(ROOT, 'runbooks');
const FILES = readdirSync(DIR).filter((f) => f.endsWith('.md')).sort();
const SHELL = new Set(['sh', 'bash', 'shell', 'console']);

interface Block { file: string; lang: string; body: string }

function blocks(file: string): Block[] {
  const text = readFileSync(join(DIR, file), 'utf8');
  return [...text.matchAll(/^ *```(\S*)\n([\s\S]*?)^ *```$/gm)].map((m) => ({ file, lang: m[1]!, body: m[2]! }));
}

/** Shell lines with continuations joined and a `$ ` prompt removed. */
function shellLines(block: Block): string[] {
  return block.body.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim().replace(/^\$ /, '')).filter((l) => l && !l.startsWith('#'));
}

interface Invocation { file: string; line: string; path: string[]; options: string[] }

/**
 * Each `npx mailstream ...` or `.../bin/mailstream.js ...` in a line, up to the next shell operator.
 * A bare `mailstream` word is not a command here (`sudo -u mailstream`, `-g mailstream`).
 */
export function invocations(file: string, line: string): Invocation[] {
  const out: Invocation[] = [];
  for (const match of line.matchAll(/(?:^|[\s'"])(?:npx mailstream|\S*bin\/mailstream\.js)\s+([^|;&><'"]*)/g)) {
    const words = match[1]!.trim().split(/\s+/).filter(Boolean);
    const path: string[] = [];
    const options: string[] = [];
    for (let i = 0; i < words.length; i++) {
      const word = words[i]!;
      if (word === '--env-file') { i++; continue; }
      if (word.startsWith('-')) options.push(word.split('=')[0]!);
      else if (options.length === 0) path.push(word);
    }
    out.push({ file, line, path, options });
  }
  return out;
}

/** Walks the real command tree: the command path (e.g. dlq list) and its remaining arguments. */
function resolve(program: Command, words: string[]): { command: Command; path: string[] } {
  let command = program;
  const path: string[] = [];
  for (const word of words) {
    const sub = command.commands.find((c) => c.name() === word);
    if (!sub) break;
    command = sub;
    path.push(word);
  }
  return { command, path };
}

const all = FILES.flatMap(blocks);
const shellBlocks = all.filter((b) => SHELL.has(b.lang));
const calls = shellBlocks.flatMap((b) => shellLines(b).flatMap((l) => invocations(b.file, l)));

describe('runbooks', () => {
  it('cover the seven topics, and every code block says its language', () => {
    expect(FILES).toEqual(['blob-store.md', 'dlq.md', 'gmail-oauth2-setup.md', 'incident-response.md', 'microsoft365-oauth2-setup.md', 'redis-operations.md', 'scaling.md', 'troubleshooting.md']);
    for (const block of all) expect(block.lang, `${block.file}: a code block without a language`).not.toBe('');
  });

  it('finds mailstream commands the way a shell would read them', () => {
    expect(invocations('x', "cd /opt && npx mailstream --env-file /etc/p.env dlq list --json --limit 5 | jq '.[]'"))
      .toEqual([{ file: 'x', line: expect.any(String), path: ['dlq', 'list'], options: ['--json', '--limit'] }]);
    expect(invocations('x', 'sudo -u mailstream /usr/bin/node -- /opt/mailstream/bin/mailstream.js --env-file f auth setup').map((c) => c.path)).toEqual([['auth', 'setup']]);
  });

  it('name only commands and options that exist', () => {
    expect(calls.length).toBeGreaterThan(25);
    const program = buildProgram();
    const globalOptions = new Set(program.options.map((o) => o.long));
    const problems: string[] = [];
    for (const call of calls) {
      const { command, path } = resolve(program, call.path);
      if (path.length === 0) { problems.push(`${call.file}: no such command in \`${call.line}\``); continue; }
      if (command.commands.length > 0) problems.push(`${call.file}: \`mailstream ${path.join(' ')}\` needs a subcommand in \`${call.line}\``);
      // Commander takes a parent's options after the subcommand too (`dlq list --account x`).
      const inherited: string[] = [];
      for (let c: Command | null = command; c; c = c.parent) inherited.push(...c.options.map((o) => o.long ?? ''));
      const known = new Set([...inherited, ...globalOptions, '--help']);
      for (const option of call.options) if (!known.has(option)) problems.push(`${call.file}: \`mailstream ${path.join(' ')}\` has no ${option} in \`${call.line}\``);
    }
    expect(problems).toEqual([]);
  });

  it('every command used runs with --help through the real CLI', async () => {
    const program = buildProgram();
    const paths = [...new Set(calls.map((c) => resolve(program, c.path).path.join(' ')))].filter(Boolean).sort();
    expect(paths).toEqual(expect.arrayContaining(['status', 'dlq list', 'dlq replay', 'backup', 'restore', 'auth setup', 'mailbox reset']));
    const results = await Promise.all(paths.map(async (path) => ({ path, result: await runCli([...path.split(' '), '--help']) })));
    for (const { path, result } of results) {
      expect(result.code, `${path}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain(`Usage: mailstream ${path}`);
    }
  });

  it('every scripts/, config/, grafana/ and runbooks/ path in a command exists (scripts executable)', () => {
    const paths = new Set(shellBlocks.flatMap((b) => [...b.body.matchAll(/(?:^|[\s'"(=])((?:scripts|config|grafana|runbooks)\/[\w.@/-]*[\w@])/gm)].map((m) => m[1]!)));
    expect([...paths]).toEqual(expect.arrayContaining(['scripts/health_check.sh']));
    for (const path of paths) {
      expect(existsSync(join(ROOT, path)), path).toBe(true);
      if (path.startsWith('scripts/')) accessSync(join(ROOT, path), constants.X_OK);
    }
  });

  it('links between runbooks and to the repository point to files and headings that exist', () => {
    const anchorsOf = (file: string) => [...readFileSync(file, 'utf8').matchAll(/^#+\s+(.+)$/gm)]
      .map((m) => m[1]!.trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-'));
    for (const file of FILES) {
      const text = readFileSync(join(DIR, file), 'utf8');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^https?:/.test(target!)) continue;
        const [path, anchor] = target!.split('#');
        const resolved = path ? join(dirname(join(DIR, file)), path) : join(DIR, file);
        expect(existsSync(resolved), `${file} -> ${target}`).toBe(true);
        if (anchor) expect(anchorsOf(resolved), `${file} -> ${target}`).toContain(anchor);
      }
    }
  });
});
