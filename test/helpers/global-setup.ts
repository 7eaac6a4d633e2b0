// Runs once before the suite: fail early and clearly when a service binary is missing, instead
// of dozens of confusing failures (`npm run setup` installs them).
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  const missing = ['redis-server', 'dovecot', 'doveadm', 'openssl'].filter((bin) => {
    try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' }); return false; } catch { return true; }
  });
  if (missing.length > 0) throw new Error(`missing ${missing.join(', ')}: run \`npm run setup\` first`);
}
