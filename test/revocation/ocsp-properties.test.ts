import t from 'tap';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { buildOcspRequest, readOcspResponse, type OcspCheck, type OcspRequest } from '../../src/revocation/ocsp.js';
import { RevocationError, type RevocationFailure, type SourceAnswer } from '../../src/revocation/types.js';
import { createOpensslCa } from '../fixtures/openssl-ca.js';
import { certIdOf, parseRequest, signedResponse, signerOf, wrap } from './fixtures/fake-ocsp.js';

// Each openssl child (a CA, a certificate, a responder) takes milliseconds, or seconds on a busy
// machine: the file gets its own generous limit instead of tap's 30 s.
t.setTimeout(180_000);

const MINUTE = 60_000;
const DAY = 86_400_000;

const ca = createOpensslCa('OCSP Property CA');
t.teardown(() => ca.remove());
const tpp = ca.issue('TPP');
const responder = ca.issue('OCSP Responder', { eku: ['OCSPSigning'] });
const caSigner = signerOf(ca.pem, readFileSync(ca.keyPath, 'utf8'));
const delegate = signerOf(responder.pem, responder.keyPem);
// A frozen clock, in whole seconds (GeneralizedTime carries no more here), taken once the
// certificates exist: on a busy machine issuing them takes seconds, and the delegated responder's
// certificate must be valid at this time (its notBefore is when openssl issued it).
const NOW = Math.ceil(Date.now() / 1000) * 1000;

/** What readOcspResponse may fail with: never a transport code, never another error type. */
const READ_FAILURES: ReadonlySet<RevocationFailure> = new Set([
  'malformed', 'responder_error', 'bad_signature', 'untrusted_signer', 'wrong_certificate', 'not_yet_valid', 'stale', 'nonce_mismatch', 'unsupported',
]);

function outcome(der: Uint8Array, check: OcspCheck): SourceAnswer | RevocationFailure {
  try {
    return readOcspResponse(der, check);
  } catch (e) {
    if (e instanceof RevocationError) return e.reason;
    throw e;
  }
}

const checkOf = (request: OcspRequest, overrides: Partial<OcspCheck> = {}): OcspCheck => ({ request, issuer: ca.x509, now: NOW, clockSkewMs: 5 * MINUTE, maxAgeMs: DAY, ...overrides });

const request = buildOcspRequest(tpp.x509, ca.x509, { nonce: true });
const nonce = parseRequest(request.der).nonce;
const certId = certIdOf(tpp.x509, ca.x509);
const single = { certId, thisUpdate: new Date(NOW - MINUTE), nextUpdate: new Date(NOW + 60 * MINUTE) };
/** Valid signed answers: by the CA, and by a delegated responder whose certificate is attached (more unsigned bytes to hit). */
const VALID = [
  { name: 'CA-signed', der: signedResponse({ signer: caSigner, responses: [single], ...(nonce ? { nonce } : {}) }) },
  { name: 'delegated', der: signedResponse({ signer: delegate, certs: [delegate.cert], responses: [single], ...(nonce ? { nonce } : {}) }) },
];
const EXPECTED: SourceAnswer = { status: 'good', thisUpdate: NOW - MINUTE, nextUpdate: NOW + 60 * MINUTE };

type Mutation = { kind: 'flip'; at: number; mask: number } | { kind: 'truncate'; at: number } | { kind: 'insert'; at: number; byte: number };
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
);

function mutate(bytes: Buffer, m: Mutation): Buffer {
  if (bytes.length === 0) return bytes;
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(bytes);
      const i = m.at % out.length;
      out[i] = (out[i] ?? 0) ^ m.mask;
      return out;
    }
    case 'truncate':
      return bytes.subarray(0, m.at % bytes.length);
    case 'insert': {
      const i = m.at % (bytes.length + 1);
      return Buffer.concat([bytes.subarray(0, i), Buffer.from([m.byte]), bytes.subarray(i)]);
    }
  }
}

t.test('the unmutated answers are read as good', async (t) => {
  for (const v of VALID) t.same(outcome(v.der, checkOf(request)), EXPECTED, v.name);
});

t.test('a mutated response fails with a read code, or (its signed part untouched) reads exactly as the original', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom(...VALID), fc.array(mutation, { minLength: 1, maxLength: 3 }), (valid, mutations) => {
      const result = outcome(mutations.reduce(mutate, valid.der), checkOf(request));
      return typeof result === 'string' ? READ_FAILURES.has(result) : isDeepStrictEqual(result, EXPECTED);
    }),
    { numRuns: 300, seed: 6960 },
  );
  t.pass('300 mutated responses');
});

t.test('arbitrary bytes, bare or as the body of a successful OCSPResponse, only ever fail with a read code', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, wrapped) => {
      const result = outcome(wrapped ? wrap(bytes) : bytes, checkOf(request));
      return typeof result === 'string' && READ_FAILURES.has(result);
    }),
    { numRuns: 300, seed: 8954 },
  );
  t.pass('300 random bodies');
});

t.test('the time checks follow the rules for any thisUpdate, nextUpdate, skew and maximum age', async (t) => {
  const plain = buildOcspRequest(tpp.x509, ca.x509);
  const seconds = (min: number, max: number) => fc.integer({ min: min / 1000, max: max / 1000 }).map((s) => s * 1000);
  fc.assert(
    fc.property(
      seconds(-3 * DAY, 3 * DAY),
      fc.option(seconds(1000, 3 * DAY), { nil: undefined }),
      seconds(0, 10 * MINUTE),
      seconds(MINUTE, 2 * DAY),
      (thisOffset, span, clockSkewMs, maxAgeMs) => {
        const thisUpdate = NOW + thisOffset;
        const nextUpdate = span === undefined ? undefined : thisUpdate + span;
        const der = signedResponse({ signer: caSigner, responses: [{ certId, thisUpdate: new Date(thisUpdate), ...(nextUpdate ? { nextUpdate: new Date(nextUpdate) } : {}) }] });
        const expected =
          thisUpdate > NOW + clockSkewMs
            ? 'not_yet_valid'
            : nextUpdate !== undefined && nextUpdate <= NOW
              ? 'stale'
              : nextUpdate === undefined && thisUpdate < NOW - maxAgeMs
                ? 'stale'
                : { status: 'good', thisUpdate, ...(nextUpdate === undefined ? {} : { nextUpdate }) };
        return isDeepStrictEqual(outcome(der, checkOf(plain, { clockSkewMs, maxAgeMs })), expected);
      },
    ),
    { numRuns: 300, seed: 5019 },
  );
  t.pass('300 time windows');
});
