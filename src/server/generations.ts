import { takeOver, type Gateway } from '../gateway.js';

/**
 * Which compiled gateway serves, and when a replaced one closes. A request holds the gateway it
 * started on until it is recorded; a gateway replaced by a reload closes (pools, token client) once
 * its last request lets go. This is the one reference count: the token validator and revocation
 * checker a reload keeps move to the new gateway at the swap (takeOver), and gateways close
 * idempotently.
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
   * Closes a gateway nobody holds. What it owns that another live gateway still uses (a chain of
   * reloads that kept validation or revocation as they were) passes to that one first, so each
   * part is closed only with the last gateway using it.
   */
  const close = (gateway: Gateway): void => {
    for (const heir of [current, ...retiring]) if (heir !== gateway) takeOver(heir, gateway);
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
      takeOver(next, previous);
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
