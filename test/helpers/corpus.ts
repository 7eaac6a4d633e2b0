// The generated mail now comes from the product's local services (src/ops/local/sample-mail.ts),
// which the demo and the bench use too.
export * from '../../src/ops/local/sample-mail.ts';
