import type { SharedStore } from './types.js';

/**
 * Single flight across replicas (issue 14): the replica that takes a token's short lock in Redis
 * introspects it and announces the sealed answer on one channel; the others, waiting for that
 * token, take it from the announcement instead of asking the authorization server too. A waiter
 * gives up after its bound and asks the server itself: a lock holder that dies costs at most that
 * wait. One subscription per process, made at start, so no announcement is missed.
 */
export interface FillBus {
  /** The sealed answer announced for `key` within `ms`, or undefined. Call before trying the lock. */
  wait(key: string, ms: number): { readonly answer: Promise<Buffer | undefined>; cancel(): void };
  announce(key: string, sealed: Buffer): void;
}

const CHANNEL = 'fills';

export function createFillBus(store: SharedStore): FillBus {
  const waiting = new Map<string, Set<(answer: Buffer | undefined) => void>>();
  store.subscribe(CHANNEL, (message) => {
    const space = message.indexOf(' ');
    const resolvers = space === -1 ? undefined : waiting.get(message.slice(0, space));
    if (resolvers === undefined) return;
    const answer = Buffer.from(message.slice(space + 1), 'base64');
    for (const resolve of resolvers) resolve(answer);
  });
  return {
    wait(key, ms) {
      let resolve!: (answer: Buffer | undefined) => void;
      const answer = new Promise<Buffer | undefined>((r) => (resolve = r));
      const done = (value: Buffer | undefined): void => {
        clearTimeout(timer);
        const set = waiting.get(key);
        set?.delete(done);
        if (set?.size === 0) waiting.delete(key);
        resolve(value);
      };
      const timer = setTimeout(() => done(undefined), ms);
      timer.unref();
      const set = waiting.get(key) ?? new Set();
      set.add(done);
      waiting.set(key, set);
      return { answer, cancel: () => done(undefined) };
    },
    announce(key, sealed) {
      void store.publish(CHANNEL, `${key} ${sealed.toString('base64')}`);
    },
  };
}
