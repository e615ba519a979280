// The CPU cost of one DPoP proof check, in its own process (`npm run bench` phase dpop): node:crypto
// ES256 verification alone, against certbound's whole proof check (`createProofVerifier` from
// src/dpop/proof.ts) on the same pre-made proofs, and the check plus the replay store's first-use
// record. Passes alternate among the three, each checks every proof once, after a full GC (run
// with --expose-gc), and gives CPU time (user + system, process.cpuUsage) per call. (Interleaving
// them in blocks instead charged one block's scavenges for another's garbage: the proof check
// looked ~10 µs dearer than in a loop of its own.) Prints one JSON line.
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

const gc = (globalThis as { gc?: () => void }).gc;
const cpuUs = async (work: () => void): Promise<number> => {
  // A full GC first (node --expose-gc), and a pause for its concurrent sweeping to end: no pass
  // pays for another's garbage or live data (process.cpuUsage counts every thread).
  gc?.();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const before = process.cpuUsage();
  work();
  const d = process.cpuUsage(before);
  return (d.user + d.system) / spec.iterations;
};
const verifier = createProofVerifier({ algorithms: spec.algorithms, iatLeewaySeconds: spec.iatLeewaySeconds, clock: Date.now });
const checkSignatures = () => {
  for (const s of signed) if (!verify('sha256', s.input, verifyInput, s.signature)) throw new Error('a signature did not verify');
};
const checkProofs = () => {
  for (const input of inputs) if (verifier(input).jkt !== key.jkt) throw new Error('the proof check returned another thumbprint');
};
// One long-lived store, as the gateway's (a fresh LRU of 100,000 entries per pass cost ~15 ms of
// setup CPU, ~5 µs a call over 3,000 calls). The proofs are checked again each pass, so each pass
// records their jti with its own suffix (made beforehand): every record is a first use.
const replay: ReplayStore = createLocalReplayStore(Math.max(spec.replayCacheEntries, (spec.passes + 1) * spec.iterations), Date.now);
const jtis = (pass: number): string[] => proofs.map((jws) => `${(JSON.parse(Buffer.from(jws.split('.')[1] as string, 'base64url').toString()) as { jti: string }).jti}.${pass}`);
const checkProofsAndReplay = (pass: number) => {
  const ids = jtis(pass);
  return () => {
    for (let i = 0; i < inputs.length; i++) {
      const proof = verifier(inputs[i] as ProofInput);
      if (replay.firstUse(proof.jkt, ids[i] as string, proof.replayableUntilMs) !== true) throw new Error('a fresh proof was taken for a replay');
    }
  };
};

// One untimed pass of each warms the JIT and the key cache; then the three alternate, pass by pass.
checkSignatures();
checkProofs();
checkProofsAndReplay(-1)();
const verifyUs: number[] = [];
const proofUs: number[] = [];
const proofReplayUs: number[] = [];
for (let i = 0; i < spec.passes; i++) {
  verifyUs.push(await cpuUs(checkSignatures));
  proofUs.push(await cpuUs(checkProofs));
  proofReplayUs.push(await cpuUs(checkProofsAndReplay(i)));
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
