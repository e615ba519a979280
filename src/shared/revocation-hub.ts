import { hash } from 'node:crypto';
import type { Metrics } from '../observability/metrics.js';
import type { Logger } from '../observability/logger.js';
import type { Sealer } from './seal.js';
import type { SharedStore } from './types.js';
import { createRevocationList, type Revocation, type RevocationEntry, type RevocationList } from './revocations.js';

/**
 * Revocation in one second across replicas (issue 14). A revocation accepted here is applied at
 * once, added to the shared list (a sorted set scored by expiry, for replicas that start or
 * reconnect later) and published (for the replicas that are up). What goes through Redis is
 * sealed (./seal.ts): a token is named by its SHA-256 only inside the seal, so reading Redis gives
 * nothing to test a token against, and writing it cannot revoke or un-revoke anything.
 * Without a store the list is this process's alone.
 */
export interface RevocationHub {
  readonly list: RevocationList;
  /** Applies `revocation` here for `ttlMs` and shares it; resolves once shared (or sharing failed). */
  revoke(revocation: Revocation, ttlMs: number): Promise<void>;
  /**
   * Subscribes and loads the shared list; resolves once loaded or when Redis could not answer
   * (ready either way: the load is retried every second until it succeeds).
   */
  start(): Promise<void>;
  close(): void;
}

/** How often a failed load of the shared list, or a revocation the store did not take, is tried again. */
export const LOAD_RETRY_MS = 1000;
/** Revocations kept for sharing later while the store cannot take them; beyond this, applied here only. */
export const MAX_UNSHARED = 10_000;

export interface RevocationHubOptions {
  readonly clock: () => number;
  readonly metrics?: Metrics;
  readonly log?: Logger;
  readonly shared?: { readonly store: SharedStore; readonly sealer: Sealer };
}

const LIST = 'revocations';
/** The seal's "token": the list has one key, derived from the secret alone. */
const LIST_SEAL = '\u0000revocations';
const KINDS = new Set(['token', 'client', 'certificate']);

/** A token's name in the list: its cache key (token/claims.ts keyOf). */
export const tokenKeyOf = (token: string): string => hash('sha256', token, 'base64url');

interface Message {
  readonly entry: RevocationEntry;
  /** When it was accepted, epoch ms (for the lag histogram). */
  readonly at: number;
}

function parseMessage(text: string, sealer: Sealer): Message | undefined {
  const plaintext = sealer.open(LIST_SEAL, Buffer.from(text, 'base64'));
  if (plaintext === undefined) return undefined;
  try {
    const m = JSON.parse(plaintext.toString('utf8')) as Message;
    const e = m.entry as Partial<Record<string, unknown>>;
    if (typeof m.at !== 'number' || typeof e['until'] !== 'number' || !KINDS.has(e['kind'] as string)) return undefined;
    const ok = e['kind'] === 'token' ? typeof e['key'] === 'string'
      : e['kind'] === 'certificate' ? typeof e['thumbprint'] === 'string'
        : typeof e['clientId'] === 'string' && typeof e['issuedBefore'] === 'number';
    return ok ? m : undefined;
  } catch {
    return undefined;
  }
}

export function createRevocationHub(options: RevocationHubOptions): RevocationHub {
  const { clock, metrics, log, shared } = options;
  const list = createRevocationList(clock);
  const apply = (entry: RevocationEntry, origin: 'api' | 'peer' | 'loaded'): void => {
    if (list.add(entry)) metrics?.revocations.inc({ kind: entry.kind, origin });
  };
  const seal = (message: Message): string => (shared as NonNullable<typeof shared>).sealer.seal(LIST_SEAL, Buffer.from(JSON.stringify(message))).toString('base64');

  let retry: NodeJS.Timeout | undefined;
  let closed = false;

  /** Adds a sealed revocation to the shared list and publishes it: true when the store took both. */
  const share = async (text: string, until: number): Promise<boolean> => {
    const store = (shared as NonNullable<typeof shared>).store;
    const [added, published] = await Promise.all([store.addScored(LIST, text, until), store.publish(LIST, text)]);
    return added && published;
  };
  // Revocations accepted while the store could not take them: shared once it answers again (the
  // replicas that are up then refuse the tokens too), until they expire. Oldest first.
  const unshared: Array<{ readonly text: string; readonly until: number }> = [];
  let sharing: NodeJS.Timeout | undefined;
  let retrying = false;
  const shareLater = (): void => {
    if (sharing === undefined && !retrying && !closed) sharing = setTimeout(() => void shareUnshared(), LOAD_RETRY_MS).unref();
  };
  const shareUnshared = async (): Promise<void> => {
    sharing = undefined;
    retrying = true;
    let done = 0;
    while (unshared.length > 0 && !closed) {
      const next = unshared[0] as (typeof unshared)[number];
      if (next.until > clock() && !(await share(next.text, next.until))) break;
      if (next.until > clock()) done++;
      unshared.shift();
    }
    retrying = false;
    if (done > 0) log?.info({ msg: 'revocations applied here while the shared store was unavailable are shared now', count: done });
    if (unshared.length > 0) shareLater();
  };
  const load = async (): Promise<void> => {
    if (!shared || closed) return;
    clearTimeout(retry);
    const members = await shared.store.scoredAbove(LIST, clock());
    if (members === undefined) {
      if (retry === undefined) log?.warn({ msg: 'shared revocation list not loaded; it will be once the shared store answers' });
      retry = setTimeout(() => void load(), LOAD_RETRY_MS).unref();
      return;
    }
    retry = undefined;
    for (const member of members) {
      const message = parseMessage(member, shared.sealer);
      if (message) apply(message.entry, 'loaded');
    }
  };

  return {
    list,
    async revoke(revocation, ttlMs) {
      const now = clock();
      const entry = { ...revocation, until: now + ttlMs } as RevocationEntry;
      apply(entry, 'api');
      if (!shared) return;
      const text = seal({ entry, at: now });
      // Behind revocations still waiting to be shared: shared in order, after them.
      if (unshared.length === 0 && (await share(text, entry.until))) return;
      if (unshared.length >= MAX_UNSHARED) return void log?.warn({ msg: 'revocation applied here only: the shared store did not take it', kind: entry.kind });
      unshared.push({ text, until: entry.until });
      log?.warn({ msg: 'revocation applied here only for now: shared once the shared store answers', kind: entry.kind });
      shareLater();
    },
    async start() {
      if (!shared) return;
      shared.store.subscribe(
        LIST,
        (text) => {
          const message = parseMessage(text, shared.sealer);
          if (message === undefined) return void log?.warn({ msg: 'unreadable revocation message ignored' });
          metrics?.revocationLag.observe(Math.max(0, clock() - message.at) / 1000);
          apply(message.entry, 'peer');
        },
        () => {
          void load();
          if (unshared.length > 0 && !retrying) void shareUnshared();
        },
      );
      await load();
    },
    close() {
      closed = true;
      clearTimeout(retry);
      clearTimeout(sharing);
    },
  };
}
