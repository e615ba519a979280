// The CPU cost of one DPoP proof check, in its own process (`npm run bench` phase dpop): node:crypto
// ES256 verification alone, against certbound's whole proof check (`createProofVerifier` from
// src/dpop/proof.ts) on the same pre-made proofs, and the check plus the replay store's first-use
// record. The three are interleaved in blocks of BLOCK calls (a slow stretch of machine noise
// falls on all three alike); each pass checks every proof once with each, and gives CPU time (user
// + system, process.cpuUsage) per call. The median pass is reported. Prints one JSON line.
import { createPublicKey, verify } from 'node:crypto';
import { createProofVerifier, type ProofInput } from '../../src/dpop/proof.js';
import { createLocalReplayStore, type ReplayStore } from '../../src/dpop/replay.js';
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

const BLOCK = 250;
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const verifier = createProofVerifier({ algorithms: spec.algorithms, iatLeewaySeconds: spec.iatLeewaySeconds, clock: Date.now });
const checkSignatures = (from: number, to: number) => {
  for (let i = from; i < to; i++) {
    const s = signed[i] as (typeof signed)[number];
    if (!verify('sha256', s.input, verifyInput, s.signature)) throw new Error('a signature did not verify');
  }
};
const checkProofs = (from: number, to: number) => {
  for (let i = from; i < to; i++) if (verifier(inputs[i] as ProofInput).jkt !== key.jkt) throw new Error('the proof check returned another thumbprint');
};
const checkProofsAndReplay = (replay: ReplayStore, from: number, to: number) => {
  for (let i = from; i < to; i++) {
    const proof = verifier(inputs[i] as ProofInput);
    if (replay.firstUse(proof.jkt, proof.jti, proof.replayableUntilMs) !== true) throw new Error('a fresh proof was taken for a replay');
  }
};
/** One pass: every proof through each of the three, interleaved by block; µs of CPU per call of each. */
const pass = (): [number, number, number] => {
  // A fresh store each pass: every proof is a first use, as on the gateway's DPoP route.
  const replay = createLocalReplayStore(spec.replayCacheEntries, Date.now);
  const spent: [number, number, number] = [0, 0, 0];
  for (let from = 0; from < spec.iterations; from += BLOCK) {
    const to = Math.min(spec.iterations, from + BLOCK);
    let t = cpuNow();
    checkSignatures(from, to);
    const u = cpuNow();
    spent[0] += u - t;
    checkProofs(from, to);
    t = cpuNow();
    spent[1] += t - u;
    checkProofsAndReplay(replay, from, to);
    spent[2] += cpuNow() - t;
  }
  return spent.map((x) => x / spec.iterations) as [number, number, number];
};

// One untimed pass warms the JIT and the key cache.
pass();
const verifyUs: number[] = [];
const proofUs: number[] = [];
const proofReplayUs: number[] = [];
for (let i = 0; i < spec.passes; i++) {
  const [v, p, r] = pass();
  verifyUs.push(v);
  proofUs.push(p);
  proofReplayUs.push(r);
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
