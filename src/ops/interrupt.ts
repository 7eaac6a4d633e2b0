// Ctrl-C and SIGTERM for the commands that run local services (demo, loadtest): the signal aborts
// the run, which then stops what it started in order, instead of the process dying mid-way.

export async function runInterruptibly<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    return await run(abort.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
