import { hash } from 'node:crypto';
import type { ReplayStore } from '../dpop/replay.js';
import type { SharedStore } from './types.js';

/**
 * DPoP replays across replicas (issue 14): a proof's (jkt, jti) is claimed with SET NX PX in the
 * shared store, so a proof replayed to another replica is refused there. The local store answers
 * first (a replay to the same replica costs no round trip) and is the answer when Redis cannot
 * give one: Redis down never fails a request, it only narrows replay protection to one replica.
 */
export function createSharedReplayStore(shared: SharedStore, local: ReplayStore, clock: () => number): ReplayStore {
  return {
    firstUse(jkt, jti, untilMs) {
      const here = local.firstUse(jkt, jti, untilMs);
      if (here === false) return false;
      const key = `dpop:${hash('sha256', `${jkt}:${jti}`, 'base64url')}`;
      return shared.setIfAbsent(key, Buffer.from('1'), Math.max(1, untilMs - clock())).then(async (first) => first ?? (await here));
    },
    get size() {
      return local.size;
    },
  };
}
