import type { Problems } from './problems.js';
import type { AdminConfig, Document, SharedStateConfig } from './types.js';

/** Secrets shared by replicas or callers: long enough to be HMAC keys. */
export const MIN_SECRET_BYTES = 32;

/** A secret file: its bytes with trailing whitespace trimmed (an editor's newline), at least 32 of them. */
function secretFile(at: string, name: string | undefined, p: Problems): Buffer | undefined {
  if (name === undefined) return undefined;
  const file = p.file(at, name);
  if (file === undefined) return undefined;
  let end = file.contents.length;
  while (end > 0 && /\s/.test(String.fromCharCode(file.contents[end - 1] as number))) end--;
  const secret = file.contents.subarray(0, end);
  if (secret.length < MIN_SECRET_BYTES) return void p.add(at, `${file.path} must hold at least ${MIN_SECRET_BYTES} bytes (it has ${secret.length})`);
  return Buffer.from(secret);
}

export function resolveAdmin(doc: Document['admin'], p: Problems): AdminConfig {
  const { revocationSecretFile, ...rest } = doc;
  const revocationSecret = secretFile('admin.revocation_secret_file', revocationSecretFile, p);
  return { ...rest, ...(revocationSecret ? { revocationSecret } : {}) };
}

/** shared_state: undefined without redis_url; with it, the secret is required and the URL must parse. */
export function resolveSharedState(doc: Document['sharedState'], p: Problems): SharedStateConfig | undefined {
  const at = 'shared_state';
  if (doc.redisUrl === undefined) {
    for (const [key, value] of [['secret_file', doc.secretFile], ['ca_file', doc.caFile]] as const) {
      if (value !== undefined) p.add(`${at}.${key}`, 'has no effect without shared_state.redis_url');
    }
    return undefined;
  }
  let url: URL | undefined;
  try {
    url = new URL(doc.redisUrl);
  } catch {
    p.add(`${at}.redis_url`, 'is not a redis:// or rediss:// URL');
  }
  if (url !== undefined && url.protocol !== 'redis:' && url.protocol !== 'rediss:') p.add(`${at}.redis_url`, 'is not a redis:// or rediss:// URL');
  if (doc.secretFile === undefined) p.add(`${at}.secret_file`, 'is required with redis_url: it authenticates and encrypts what replicas share');
  if (url?.protocol === 'redis:' && doc.caFile !== undefined) p.add(`${at}.ca_file`, 'applies to rediss:// URLs only');
  const secret = secretFile(`${at}.secret_file`, doc.secretFile, p);
  const ca = p.certificates(`${at}.ca_file`, doc.caFile);
  if (url === undefined || secret === undefined) return undefined;
  return { url: doc.redisUrl, keyPrefix: doc.keyPrefix, timeoutMs: doc.timeoutMs, secret, ...(ca ? { ca } : {}) };
}
