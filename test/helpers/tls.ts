// The certificates now come from the product's local services (src/ops/local/tls-certs.ts).
export { makeCertificates, type LocalCertificates as TestCertificates } from '../../src/ops/local/tls-certs.ts';
