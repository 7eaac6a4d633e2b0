// Prints .env.example from the settings table: `node scripts/env-example.ts > .env.example`.
// Run it after adding a setting; test/unit/env-example.test.ts fails until you do.
import { SETTINGS } from '../src/config/settings.ts';

const SECTIONS: Array<[string, string]> = [
  ['REDIS_URL', 'Shared by every process'],
  ['IMAP_HOST', 'Producer: IMAP'],
  ['OAUTH2_CLIENT_ID', 'Producer: OAuth2 (Gmail)'],
  ['SINK_URL', 'Worker'],
];

const lines = ['# mailstream settings. Copy to .env (or pass --env-file FILE); the real environment wins.',
  '# Lines starting with # show the default; uncomment to change. Reference: README.md#configuration.', ''];
for (const [name, spec] of Object.entries(SETTINGS)) {
  const section = SECTIONS.find(([first]) => first === name);
  if (section) lines.push(`# --- ${section[1]} ---`);
  lines.push(`# ${spec.doc}`);
  const value = 'default' in spec && spec.default !== undefined ? spec.default : '';
  lines.push(`${'requiredFor' in spec ? '' : '# '}${name}=${value}`);
  lines.push('');
}
process.stdout.write(lines.join('\n'));
