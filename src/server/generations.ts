import { takeOverTokens, type Gateway } from '../gateway.js';

/**
 * Which compiled gateway serves, and when a replaced one closes. A request holds the gateway it
 * started on until it is recorded; a gateway replaced by a reload closes (pools, token client) once
 * its last request lets go. This is the one reference count: the token validator a reload keeps
 * moves to the new gateway at the swap (takeOverTokens), and gateways close idempotently.
 */
export interface Generations {
  current(): Gateway;
  /** The gateway a new request runs on, held until `release`. */
  hold(): Gateway;
  release(gateway: Gateway): void;
  /** `next` serves from now on; the previous gateway closes once its last request is done. */
  swap(next: Gateway): Gateway;
  /** Closes the current gateway and every retiring one; afterwards nothing is left retiring. */
  closeAll(): Promise<void>;
}

export function createGenerations(initial: Gateway): Generations {
  let current = initial;
  const holds = new Map<Gateway, number>();
  const retiring = new Set<Gateway>();
  /**
   * Closes a gateway nobody holds. Its token validator, if another live gateway still uses it (a
   * chain of reloads that kept validation as it was), passes to that one first, so it is closed
   * only with the last gateway using it.
   */
  const close = (gateway: Gateway): void => {
    const heir = [current, ...retiring].find((g) => g !== gateway && g.tokens !== undefined && g.tokens === gateway.tokens);
    if (heir) takeOverTokens(heir, gateway);
    void gateway.close();
  };
  const release = (gateway: Gateway): void => {
    const left = (holds.get(gateway) ?? 1) - 1;
    if (left > 0) return void holds.set(gateway, left);
    holds.delete(gateway);
    if (retiring.delete(gateway)) close(gateway);
  };
  return {
    current: () => current,
    hold() {
      const gateway = current;
      holds.set(gateway, (holds.get(gateway) ?? 0) + 1);
      return gateway;
    },
    release,
    swap(next) {
      const previous = current;
      takeOverTokens(next, previous);
      current = next;
      if (holds.has(previous)) retiring.add(previous);
      else close(previous);
      return previous;
    },
    async closeAll() {
      const all = [current, ...retiring];
      retiring.clear();
      await Promise.allSettled(all.map((g) => g.close()));
    },
  };
}
