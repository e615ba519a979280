import { GatewayError } from '../errors.js';
import { checkKeyBinding } from '../binding.js';
import type { DpopConfig } from '../config/types.js';
import type { TokenClaims } from '../token/types.js';
import { createNonces, type Nonces } from './nonce.js';
import { createProofVerifier, type Proof, type ProofInput, type ProofVerifier } from './proof.js';
import { createLocalReplayStore, type ReplayStore } from './replay.js';

/**
 * The DPoP stage of a request whose Authorization uses the DPoP scheme: the proof (synchronous,
 * before the token is looked up, so a bad proof costs no introspection call), the nonce, then,
 * once the token is validated, the key binding and the jti's first use.
 */
export interface DpopParts {
  readonly verifyProof: ProofVerifier;
  /** When dpop.nonce is required. */
  readonly nonces?: Nonces;
  /** Kept across reloads: a proof seen before a reload is still a replay after it. */
  readonly replay: ReplayStore;
}

/** What a checked proof gives the rest of the request. */
export interface ProvenKey {
  readonly proof: Proof;
  /** A fresh nonce for the response, once the presented one has lived half its life (§8.2). */
  readonly freshNonce?: string;
}

export interface DpopDeps {
  readonly clock: () => number;
  /** The previous gateway's store, kept when it holds as many entries. */
  readonly replay?: ReplayStore;
  readonly evicted?: () => void;
  /** Shares the store across replicas (shared_state.redis_url): wraps the local one. */
  readonly share?: (local: ReplayStore) => ReplayStore;
}

export function createDpopParts(config: DpopConfig, deps: DpopDeps): DpopParts {
  const { clock } = deps;
  return {
    verifyProof: createProofVerifier({ algorithms: config.algorithms, iatLeewaySeconds: config.iatLeewaySeconds, clock }),
    ...(config.nonce === 'required'
      ? { nonces: createNonces({ secret: config.nonceSecret, lifetimeSeconds: config.nonceLifetimeSeconds, leewaySeconds: config.iatLeewaySeconds, clock }) }
      : {}),
    replay: deps.replay ?? (deps.share ?? ((local: ReplayStore) => local))(createLocalReplayStore(config.replayCacheEntries, clock, deps.evicted)),
  };
}

/** The proof and, with nonces required, its nonce: `use_dpop_nonce` with a fresh one when it has none that is valid. */
export function proveKey(parts: DpopParts, input: ProofInput): ProvenKey {
  const proof = parts.verifyProof(input);
  const { nonces } = parts;
  if (nonces === undefined) return { proof };
  const verdict = nonces.check(proof.nonce);
  if (!verdict.valid) {
    const why = proof.nonce === undefined ? 'a DPoP nonce is required' : 'the DPoP nonce is invalid or expired';
    throw new GatewayError('use_dpop_nonce', why, { nonce: nonces.current() });
  }
  return verdict.refresh ? { proof, freshNonce: nonces.current() } : { proof };
}

/** Claims the proof's (jkt, jti) in the replay store: true on its first use. A shared store answers with a promise (never rejected). */
export function claimFirstUse(parts: DpopParts, proven: ProvenKey): boolean | Promise<boolean> {
  const { jkt, jti, replayableUntilMs } = proven.proof;
  return parts.replay.firstUse(jkt, jti, replayableUntilMs);
}

/**
 * After the token: bound to this proof's key, and the proof's first use. The use is claimed here,
 * after the binding holds, unless `claimed` is the answer of a claimFirstUse made earlier (while
 * the token was being looked up). Synchronous while the replay store is (the local one).
 */
export function bindKey(parts: DpopParts, claims: TokenClaims, proven: ProvenKey, claimed?: boolean | Promise<boolean>): void | Promise<void> {
  checkKeyBinding(claims, proven.proof);
  const first = claimed ?? claimFirstUse(parts, proven);
  if (first === true) return undefined;
  if (first === false) throw replayed();
  return first.then((fresh) => {
    if (!fresh) throw replayed();
  });
}

const replayed = (): GatewayError => new GatewayError('dpop_replay', 'DPoP proof has been used before');
