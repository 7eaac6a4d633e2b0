// .env.example documents every setting the code reads, with its default.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SETTINGS } from '../../src/config/settings.ts';

describe('.env.example', () => {
  const text = readFileSync(new URL('../../.env.example', import.meta.url), 'utf8');
  it('names every setting with its default', () => {
    for (const [name, spec] of Object.entries(SETTINGS)) {
      const line = text.split('\n').find((l) => new RegExp(`^#?\\s*${name}=`).test(l));
      expect(line, name).toBeDefined();
      if ('default' in spec && spec.default !== undefined) expect(line, name).toContain(`${name}=${spec.default}`);
    }
  });
  it('names nothing the code does not read', () => {
    const names = [...text.matchAll(/^#?\s*([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!);
    for (const name of names) expect(Object.keys(SETTINGS), name).toContain(name);
  });
});
