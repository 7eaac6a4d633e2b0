// A private Dovecot for tests: the product's local Dovecot (src/ops/local/local-dovecot.ts),
// started through spawnTracked so a suite can check that it stopped it.
import { startDovecot as startLocalDovecot, type Dovecot, type DovecotOptions as LocalDovecotOptions } from '../../src/ops/local/local-dovecot.ts';
import { spawnTracked } from './processes.ts';

export type { Dovecot, DovecotUser } from '../../src/ops/local/local-dovecot.ts';
export type DovecotOptions = Omit<LocalDovecotOptions, 'spawn'>;

export function startDovecot(options: DovecotOptions = {}): Promise<Dovecot> {
  return startLocalDovecot({ ...options, spawn: spawnTracked });
}
