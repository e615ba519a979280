// The CPU cost of one DPoP proof check, in its own process (`npm run bench` phase dpop): node:crypto
// ES256 verification alone, against certbound's whole proof check (`createProofVerifier` from
// src/dpop/proof.ts) on the same pre-made proofs, and the check plus the replay store's first-use
// record. Passes alternate; CPU time (user + system, process.cpuUsage) per call, median of the
// passes. Prints one JSON line.
import { createPublicKey, verify } from 'node:crypto';
import { createProofVerifier, type ProofInput } from '../../src/dpop/proof.js';
import { createLocalReplayStore } from '../../src/dpop/replay.js';
import { newDpopKey, proofSigner } from '../lib/dpop-proofs.js';

export interface MicroSpec {
  /** Proofs made, each checked once per pass. */
  readonly iterations: number;
  readonly passes: number;
  readonly algorithms: readonly string[];
  readonly iatLeewaySeconds: number;
  readonly replayCacheEntries: number;
  /** listen.public_url, normalized (no trailing slash). */
  readonly origin: string;
  readonly path: string;
  readonly accessToken: string;
}

export interface MicroResult {
  readonly iterations: number;
  readonly passes: number;
  /** µs of CPU per call, one figure per pass. */
  readonly verifyUs: readonly number[];
  readonly proofUs: readonly number[];
  readonly proofReplayUs: readonly number[];
  readonly signUs: number;
  /** Bytes of the signed input (header.payload) and of the whole proof. */
  readonly signingInputBytes: number;
  readonly proofBytes: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as MicroSpec;
const key = newDpopKey();
const sign = proofSigner(key.privateJwk, { htm: 'GET', htu: `${spec.origin}${spec.path}`, accessToken: spec.accessToken });
const signStart = process.cpuUsage();
const proofs = Array.from({ length: spec.iterations }, () => sign());
const signCpu = process.cpuUsage(signStart);

// ES256 alone: the same signed inputs and signatures, decoded beforehand, with a KeyObject imported once
// (as the verifier's key cache holds it).
const publicKey = createPublicKey({ key: { ...key.publicJwk }, format: 'jwk' });
const signed = proofs.map((jws) => {
  const dot = jws.lastIndexOf('.');
  return { input: Buffer.from(jws.slice(0, dot), 'latin1'), signature: Buffer.from(jws.slice(dot + 1), 'base64url') };
});
const verifyInput = { key: publicKey, dsaEncoding: 'ieee-p1363' as const };
const inputs: ProofInput[] = proofs.map((jws) => ({ proofs: [jws], method: 'GET', origin: spec.origin, encodedPath: spec.path, accessToken: spec.accessToken }));

const cpuUs = (run: () => void): number => {
  const before = process.cpuUsage();
  run();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / spec.iterations;
};
const verifier = createProofVerifier({ algorithms: spec.algorithms, iatLeewaySeconds: spec.iatLeewaySeconds, clock: Date.now });
const passVerify = () => {
  let ok = 0;
  for (const s of signed) if (verify('sha256', s.input, verifyInput, s.signature)) ok++;
  if (ok !== signed.length) throw new Error(`${signed.length - ok} signatures did not verify`);
};
const passProof = () => {
  for (const input of inputs) if (verifier(input).jkt !== key.jkt) throw new Error('the proof check returned another thumbprint');
};
const passProofReplay = () => {
  // A fresh store each pass: every proof is a first use, as on the gateway's DPoP route.
  const replay = createLocalReplayStore(spec.replayCacheEntries, Date.now);
  for (const input of inputs) {
    const proof = verifier(input);
    if (replay.firstUse(proof.jkt, proof.jti, proof.replayableUntilMs) !== true) throw new Error('a fresh proof was taken for a replay');
  }
};

// One untimed pass of each warms the JIT and the key cache.
passVerify();
passProof();
passProofReplay();
const verifyUs: number[] = [];
const proofUs: number[] = [];
const proofReplayUs: number[] = [];
for (let i = 0; i < spec.passes; i++) {
  verifyUs.push(cpuUs(passVerify));
  proofUs.push(cpuUs(passProof));
  proofReplayUs.push(cpuUs(passProofReplay));
}
const round = (x: number) => Math.round(x * 100) / 100;
const result: MicroResult = {
  iterations: spec.iterations,
  passes: spec.passes,
  verifyUs: verifyUs.map(round),
  proofUs: proofUs.map(round),
  proofReplayUs: proofReplayUs.map(round),
  signUs: round((signCpu.user + signCpu.system) / spec.iterations),
  signingInputBytes: signed[0]?.input.length ?? 0,
  proofBytes: proofs[0]?.length ?? 0,
};
process.stdout.write(`${JSON.stringify(result)}\n`);
