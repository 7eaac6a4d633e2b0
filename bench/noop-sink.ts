// The bench's `module://` sink: accepts every email and does nothing, so the worker's own cost
// (read, dedupe, ack) is what gets measured.
export function handle(): void {}
