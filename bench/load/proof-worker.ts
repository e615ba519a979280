// A worker thread of the load generator: makes `count` DPoP proofs (bench/lib/dpop-proofs.ts) and
// posts them back, so that a large pool is made on every core before the run starts.
import type { JsonWebKey } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { proofSigner } from '../lib/dpop-proofs.js';

export interface ProofWork {
  readonly privateJwk: JsonWebKey;
  readonly htu: string;
  readonly accessToken: string;
  readonly count: number;
}

const work = workerData as ProofWork;
const next = proofSigner(work.privateJwk, { htm: 'GET', htu: work.htu, accessToken: work.accessToken });
parentPort?.postMessage(Array.from({ length: work.count }, () => next()));
