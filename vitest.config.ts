import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    // Each integration file starts its own Redis/Dovecot; two at a time suits a 2-core machine.
    maxWorkers: 2,
    // Hang guards only: no test asserts on elapsed time.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
