// `mailstream/sink` (package.json "exports"): what a `module://` handler imports from mailstream,
//   import { PermanentDeliveryError, TransientDeliveryError } from 'mailstream/sink';
// Node runs this file by type stripping, which it refuses under node_modules: it resolves when the
// handler sits in a clone of mailstream (self-reference) or beside `npm install /path/to/mailstream`
// (a symlink, whose real path is the clone). docs/sinks.md describes the contract.
export * from './worker/sinks/module-api.ts';
