// The SharedStore over Redis (node-redis 5): every call bounded by timeout_ms, nothing queued while
// disconnected, every failure resolved as a miss, one log line when an outage starts and one when
// it ends.
import { createClient, RESP_TYPES } from 'redis';
import type { SharedStore } from './types.js';

export interface RedisStoreOptions {
  /** redis:// or rediss:// (TLS), with credentials and a database number when needed. */
  readonly url: string;
  /** Put before every key and channel. */
  readonly keyPrefix: string;
  /**
   * Bounds every call. A call left unanswered this long misses, and the connection is checked with
   * a PING at once: one that leaves the PING unanswered this long too is dropped and made again.
   */
  readonly timeoutMs: number;
  /** The CAs a rediss:// server's certificate is verified against; default Node's. */
  readonly ca?: Buffer;
  /** Bounds connecting (TCP, TLS and the client's first commands) to a server that accepts and does not answer; default 5 s. */
  readonly connectTimeoutMs?: number;
  /** How often each connection is checked with PING, so that a silent one is noticed while idle; default 5 s. */
  readonly pingMs?: number;
  readonly log?: { warn(obj: object): void; info(obj: object): void };
  /** Called once per failed call (certbound_shared_state_errors_total{op}); `subscribe` once per failed (re)subscription. */
  readonly errors?: (op: StoreOp) => void;
}

export type StoreOp = 'get' | 'set' | 'set_nx' | 'zadd' | 'zrange' | 'publish' | 'subscribe';

/** Reconnecting: the first attempt after about this, doubling up to MAX_BACKOFF_MS, each jittered down to half. */
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 5000;
const TIMED_OUT = Symbol('timed out');
const BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer };

type Client = ReturnType<typeof clientFor>;

/**
 * One connection, made again after a backoff whenever it fails. node-redis's own reconnection is
 * off: its retry sleeps cannot be cancelled, and it cannot be told to drop a connection that stopped
 * answering; a new client per connection can.
 */
interface Link {
  /** The client when it is ready, else undefined. */
  ready(): Client | undefined;
  /** Drops `client` when it is still the current one, and schedules the next connection. */
  drop(client: Client, err: unknown): void;
  /** PINGs `client` (once at a time) and drops it when the PING is unanswered within timeout_ms or refused. */
  check(client: Client): void;
  close(): void;
}

interface Subscriber {
  readonly onMessage: (message: string) => void;
  readonly onReconnect?: () => void;
  /** The client this subscription was last made on. */
  on?: Client;
}

function clientFor(url: string, ca: Buffer | undefined, connectTimeout: number) {
  const tls = url.startsWith('rediss:');
  const common = { connectTimeout, reconnectStrategy: false } as const;
  return createClient({
    url,
    socket: tls ? { tls, ...(ca ? { ca } : {}), ...common } : { tls, ...common },
    // Calls made while disconnected fail at once instead of waiting for the next connection.
    disableOfflineQueue: true,
  });
}

/** The URL's password as written and decoded (as sent), to keep out of the log; a TypeError without the URL when it is malformed. */
function passwordOf(url: string): string[] {
  try {
    const { protocol, username, password } = new URL(url);
    decodeURIComponent(username);
    if (protocol === 'redis:' || protocol === 'rediss:') return [password, decodeURIComponent(password)].filter((s) => s !== '');
  } catch {
    // said below
  }
  throw new TypeError('the shared state url must be redis:// or rediss://');
}

/**
 * Returns at once: connecting happens in the background, and calls made before it is up miss. A
 * malformed `url` throws here (a configuration error), without the URL in the message.
 */
export function createRedisStore(options: RedisStoreOptions): SharedStore {
  const { url, keyPrefix, timeoutMs, log, errors } = options;
  const secrets = passwordOf(url);
  const connectMs = options.connectTimeoutMs ?? 5000;
  const pingMs = options.pingMs ?? 5000;
  let down = false;
  let closed = false;

  /** An error's message for the log: no credentials, nothing quoted from a reply. */
  const messageOf = (err: unknown): string =>
    secrets
      .reduce((m, s) => m.split(s).join('***'), err instanceof Error ? err.message : String(err))
      .replace(/\/\/[^/@\s]*@/g, '//***@')
      .replace(/"[^"]*"|'[^']*'/g, '…');

  /**
   * `run`'s result, or TIMED_OUT after timeoutMs; rejects as `run` does. The timeout is decided one
   * turn of the event loop after its timer (setImmediate runs after the I/O of that turn): an answer
   * that arrived while this process was busy is read first, so a late timer is not a slow Redis.
   */
  async function within<T>(run: Promise<T>): Promise<T | typeof TIMED_OUT> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => setImmediate(resolve, TIMED_OUT), timeoutMs)));
    try {
      return await Promise.race([run, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One command on `link`'s client: its result, or `failure` (counted) when not connected, on an error or a timeout. */
  async function call<T, F>(link: Link, op: StoreOp, failure: F, run: (client: Client) => Promise<T>): Promise<T | F> {
    const client = link.ready();
    try {
      if (!client) throw new Error('not connected');
      const result = await within(run(client));
      if (result !== TIMED_OUT) return result;
      // One slow answer is a miss, not an outage: the connection is dropped only when a PING goes
      // unanswered as well (a paused or silent server), not for a command Redis took long over.
      link.check(client);
    } catch {
      // Why is the outage's business, logged once by the link; a reply error is the call's alone.
    }
    errors?.(op);
    return failure;
  }

  function connect(onReady: (link: Link) => void, onDown: (err: unknown) => void): Link {
    let current: { readonly client: Client; readonly end: () => void } | undefined;
    let attempt = 0;
    let timer: NodeJS.Timeout | undefined;
    let ping: NodeJS.Timeout | undefined;
    let checking: Client | undefined;
    const open = (): void => {
      const client = clientFor(url, options.ca, connectMs);
      // node-redis's destroy() cannot reach a socket still connecting (and throws once the client
      // closed itself): a client ended then is destroyed when its socket connects.
      let socket = false;
      let ended = false;
      const destroy = (): void => {
        try {
          client.destroy();
        } catch {
          // closed already
        }
      };
      client.on('connect', () => {
        socket = true;
        if (ended) destroy();
      });
      current = {
        client,
        end() {
          ended = true;
          if (socket) destroy();
        },
      };
      // Connecting is bounded too: a server that accepts and never answers is tried again.
      timer = setTimeout(() => link.drop(client, new Error(`no answer within ${connectMs} ms of connecting`)), connectMs);
      // Any error ends this client; node-redis emits more for a client dropped already (ignored).
      client.on('error', (err: unknown) => link.drop(client, err));
      client.on('ready', () => {
        clearTimeout(timer);
        attempt = 0;
        ping = setInterval(() => link.check(client), pingMs);
        onReady(link);
      });
      client.connect().catch((err: unknown) => link.drop(client, err));
    };
    const link: Link = {
      ready: () => (current?.client.isReady ? current.client : undefined),
      drop(client, err) {
        if (client !== current?.client) return;
        link.close();
        onDown(err);
        const base = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** attempt++);
        timer = setTimeout(open, base / 2 + (Math.random() * base) / 2);
      },
      check(client) {
        if (checking === client || client !== current?.client) return;
        checking = client;
        within(client.ping())
          .then(
            (reply) => reply === TIMED_OUT && link.drop(client, new Error(`no answer to PING within ${timeoutMs} ms`)),
            (err: unknown) => link.drop(client, err),
          )
          .finally(() => {
            if (checking === client) checking = undefined;
          });
      },
      close() {
        clearTimeout(timer);
        clearInterval(ping);
        current?.end();
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

  /** A subscriber's callback throwing must not reach node-redis's reply parser. */
  const guarded = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      log?.warn({ msg: 'shared state subscriber failed', err: messageOf(err) });
    }
  };
  /** Per prefixed channel: its subscribers, and the one listener node-redis calls for them. */
  const channels = new Map<string, { readonly subscribers: Subscriber[]; readonly listener: (message: string) => void }>();
  let subscription: Link | undefined;
  /** Subscribes `name` on the link's current client: onReconnect for those subscribed before on another one. */
  async function listen(link: Link, name: string, subscribers: Subscriber[], listener: (message: string) => void): Promise<void> {
    const on = await call(link, 'subscribe', undefined, (client) => client.subscribe(name, listener).then(() => client));
    if (!on) return;
    for (const s of subscribers) {
      if (s.on === on) continue;
      const again = s.on !== undefined;
      s.on = on;
      if (again && s.onReconnect) guarded(s.onReconnect);
    }
  }

  const key = (k: string): string => keyPrefix + k;
  const px = (ttlMs: number) => ({ expiration: { type: 'PX' as const, value: Math.max(1, Math.ceil(ttlMs)) } });
  return {
    get: (k) => call(main, 'get', undefined, async (c) => (await c.withTypeMapping(BUFFERS).get(key(k))) ?? undefined),
    set: (k, value, ttlMs) => call(main, 'set', false, async (c) => (await c.set(key(k), value, px(ttlMs))) === 'OK'),
    setIfAbsent: (k, value, ttlMs) =>
      call(main, 'set_nx', undefined, async (c) => (await c.set(key(k), value, { ...px(ttlMs), condition: 'NX' })) === 'OK'),
    addScored: (k, member, score) => call(main, 'zadd', false, (c) => c.zAdd(key(k), { score, value: member }).then(() => true)),
    scoredAbove: (k, minScore) => call(main, 'zrange', undefined, (c) => c.zRange(key(k), `(${minScore}`, '+inf', { BY: 'SCORE' })),
    publish: (channel, message) => call(main, 'publish', false, (c) => c.publish(key(channel), message).then(() => true)),
    subscribe(channel, onMessage, onReconnect) {
      if (closed) return;
      const name = key(channel);
      let entry = channels.get(name);
      if (!entry) {
        const subscribers: Subscriber[] = [];
        entry = { subscribers, listener: (message) => subscribers.forEach((s) => guarded(() => s.onMessage(message))) };
        channels.set(name, entry);
      }
      entry.subscribers.push({ onMessage, ...(onReconnect ? { onReconnect } : {}) });
      // Its own connection, opened by the first subscription: a subscribed connection takes no other commands.
      subscription ??= connect(
        (link) => channels.forEach((e, n) => void listen(link, n, e.subscribers, e.listener)),
        () => undefined,
      );
      if (subscription.ready()) void listen(subscription, name, entry.subscribers, entry.listener);
    },
    connected: () => main.ready() !== undefined,
    async close() {
      closed = true;
      main.close();
      subscription?.close();
    },
  };
}
