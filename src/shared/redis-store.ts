// The SharedStore over Redis (node-redis): every call bounded by timeout_ms, nothing queued while
// disconnected, every failure resolved as a miss, one log line per outage.
import { createClient, RESP_TYPES } from 'redis';
import type { SharedStore } from './types.js';

export interface RedisStoreOptions {
  /** redis:// or rediss:// (TLS), credentials and database number included. */
  readonly url: string;
  /** Put before every key and channel. */
  readonly keyPrefix: string;
  /** Bounds every call; a connection that leaves a call unanswered this long is dropped and made again. */
  readonly timeoutMs: number;
  /** The CAs a rediss:// server's certificate is verified against; default Node's. */
  readonly ca?: Buffer;
  /** How often an idle connection is checked with PING; default 5 s. */
  readonly pingMs?: number;
  readonly log?: { warn(obj: object): void; info(obj: object): void };
  /** Called once per failed call (certbound_shared_state_errors_total{op}). */
  readonly errors?: (op: StoreOp) => void;
}

export type StoreOp = 'get' | 'set' | 'set_nx' | 'zadd' | 'zrange' | 'publish' | 'subscribe';

/** Reconnecting: the first retry after this, doubling up to MAX_BACKOFF_MS, with jitter. */
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;
const TIMED_OUT = Symbol('timed out');

type Client = ReturnType<typeof clientFor>;

/** One connection, made again (after a backoff) whenever it fails: node-redis's own reconnection is off. */
interface Link {
  /** The client when it is ready, else undefined. */
  ready(): Client | undefined;
  /** Drops `client` (when it is still the current one) and schedules the next connection. */
  drop(client: Client, err: unknown): void;
  close(): void;
}

function clientFor(url: string, ca: Buffer | undefined) {
  const tls = url.startsWith('rediss:');
  return createClient({
    url,
    socket: tls ? { tls, ...(ca ? { ca } : {}), reconnectStrategy: false } : { tls, reconnectStrategy: false },
    // Calls made while disconnected fail at once instead of waiting for the next connection.
    disableOfflineQueue: true,
  });
}

/**
 * Returns at once: connecting happens in the background, and calls made before it is up miss. A
 * malformed `url` throws here (a configuration error), without the URL in the message.
 */
export function createRedisStore(options: RedisStoreOptions): SharedStore {
  const { keyPrefix, timeoutMs, log, errors } = options;
  if (!/^rediss?:\/\//.test(options.url) || !URL.canParse(options.url)) throw new TypeError('the shared state url must be redis:// or rediss://');
  const { username, password } = new URL(options.url);
  const secrets = [username, password, decodeURIComponent(username), decodeURIComponent(password)].filter((s) => s !== '');
  const connectMs = Math.max(timeoutMs, 1000);
  const pingMs = options.pingMs ?? 5000;
  let down = false;
  let closed = false;

  /** An error's message without the URL's credentials. */
  const messageOf = (err: unknown): string =>
    secrets.reduce((m, s) => m.split(s).join('***'), err instanceof Error ? err.message : String(err)).replace(/\/\/[^/@\s]*@/g, '//***@');

  /** Closes at once (pending commands reject); node-redis throws when its socket already closed itself. */
  const end = (client: Client): void => {
    try {
      client.destroy();
    } catch {
      // closed already
    }
  };

  /** `run`'s result, or TIMED_OUT after timeoutMs; rejects as `run` does. */
  async function within<T>(run: Promise<T>): Promise<T | typeof TIMED_OUT> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(resolve, timeoutMs, TIMED_OUT)));
    try {
      return await Promise.race([run, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs one command on `link`: its result, or `failure` (counted) when not connected, on an error or a timeout. */
  async function call<T, F>(link: Link, op: StoreOp, failure: F, run: (client: Client) => Promise<T>): Promise<T | F> {
    const client = link.ready();
    try {
      if (!client) throw new Error('not connected');
      const result = await within(run(client));
      if (result !== TIMED_OUT) return result;
      link.drop(client, new Error(`no answer within ${timeoutMs} ms`));
    } catch {
      // The cause is the outage's, logged once by the link.
    }
    errors?.(op);
    return failure;
  }

  function connect(onReady: (link: Link) => void, onDown: (err: unknown) => void): Link {
    let current: Client | undefined;
    let attempt = 0;
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    let ping: NodeJS.Timeout | undefined;
    const open = (): void => {
      const client = clientFor(options.url, options.ca);
      current = client;
      // Connecting and the handshake are bounded too: a server that accepts and never answers is retried.
      timer = setTimeout(() => link.drop(client, new Error(`no answer within ${connectMs} ms of connecting`)), connectMs);
      // Every error ends this client, later ones included (they find it dropped): node-redis emits them.
      client.on('error', (err: unknown) => link.drop(client, err));
      client.on('ready', () => {
        clearTimeout(timer);
        attempt = 0;
        ping = setInterval(() => {
          within(client.ping()).then(
            (reply) => reply === TIMED_OUT && link.drop(client, new Error(`no answer to PING within ${timeoutMs} ms`)),
            (err: unknown) => link.drop(client, err),
          );
        }, pingMs);
        onReady(link);
      });
      client.connect().catch((err: unknown) => link.drop(client, err));
    };
    const link: Link = {
      ready: () => (current?.isReady ? current : undefined),
      drop(client, err) {
        if (client !== current) return;
        current = undefined;
        clearTimeout(timer);
        clearInterval(ping);
        end(client);
        onDown(err);
        const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** attempt++);
        if (!closed) timer = setTimeout(open, base / 2 + (Math.random() * base) / 2);
      },
      close() {
        closed = true;
        clearTimeout(timer);
        clearInterval(ping);
        if (current) end(current);
        current = undefined;
      },
    };
    open();
    return link;
  }

  const main = connect(
    () => {
      if (down) log?.info({ msg: 'shared state available again' });
      down = false;
    },
    (err) => {
      if (!down) log?.warn({ msg: 'shared state unavailable', err: messageOf(err) });
      down = true;
    },
  );

  /** Subscribers of each (prefixed) channel, with the client each one's subscription was last made on. */
  const channels = new Map<string, { onMessage: (message: string) => void; onReconnect?: () => void; on?: Client }[]>();
  let subscriber: Link | undefined;
  const guarded = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      log?.warn({ msg: 'shared state subscriber failed', err: messageOf(err) });
    }
  };
  const dispatchers = new Map<string, (message: string) => void>();
  const dispatcher = (name: string): ((message: string) => void) => {
    let fn = dispatchers.get(name);
    if (!fn) dispatchers.set(name, (fn = (message) => channels.get(name)?.forEach((s) => guarded(() => s.onMessage(message)))));
    return fn;
  };
  /** Subscribes on `client` (a new connection each time): then onReconnect for whom it is not the first. */
  async function listen(link: Link, name: string): Promise<void> {
    const on = await call(link, 'subscribe', undefined, (client) => client.subscribe(name, dispatcher(name)).then(() => client));
    for (const s of channels.get(name) ?? []) {
      if (!on || s.on === on) continue;
      const again = s.on !== undefined;
      s.on = on;
      if (again && s.onReconnect) guarded(s.onReconnect);
    }
  }

  const key = (k: string): string => keyPrefix + k;
  const px = (ttlMs: number) => ({ expiration: { type: 'PX' as const, value: Math.max(1, Math.ceil(ttlMs)) } });
  return {
    get: (k) =>
      call(main, 'get', undefined, async (c) => (await c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer }).get(key(k))) ?? undefined),
    set: (k, value, ttlMs) => call(main, 'set', false, async (c) => (await c.set(key(k), value, px(ttlMs))) === 'OK'),
    setIfAbsent: (k, value, ttlMs) =>
      call(main, 'set_nx', undefined, async (c) => (await c.set(key(k), value, { ...px(ttlMs), condition: 'NX' })) === 'OK'),
    addScored: (k, member, score) => call(main, 'zadd', false, async (c) => typeof (await c.zAdd(key(k), { score, value: member })) === 'number'),
    scoredAbove: (k, minScore) => call(main, 'zrange', undefined, (c) => c.zRange(key(k), `(${minScore}`, '+inf', { BY: 'SCORE' })),
    publish: (channel, message) => call(main, 'publish', false, async (c) => typeof (await c.publish(key(channel), message)) === 'number'),
    subscribe(channel, onMessage, onReconnect) {
      if (closed) return;
      const name = key(channel);
      const list = channels.get(name) ?? [];
      channels.set(name, list);
      list.push({ onMessage, ...(onReconnect ? { onReconnect } : {}) });
      subscriber ??= connect((link) => channels.forEach((_, n) => void listen(link, n)), () => undefined);
      if (subscriber.ready()) void listen(subscriber, name);
    },
    connected: () => main.ready() !== undefined,
    async close() {
      closed = true;
      main.close();
      subscriber?.close();
    },
  };
}
